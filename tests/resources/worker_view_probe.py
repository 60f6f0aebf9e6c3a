"""A gateway in miniature for the worker-view tests: makes a data dir with a token and a
registry, starts one worker through ``Sandbox.wrap_worker`` exactly as the gateway does, and
prints what the worker could reach, as JSON.

``python worker_view_probe.py BASE_DIR`` (BASE_DIR belongs to the user running this).
"""

import json
import os
import subprocess
import sys
import tempfile

from edgebook.sandbox import DEFAULT_WORKER_UIDS, EndpointUsers, Sandbox

base = sys.argv[1]
os.chmod(base, 0o755)  # as a project dir usually is; the data dir in it is 0700
data = os.path.join(base, "dd")
os.makedirs(data, mode=0o700)
for name, secret in (("runtime.json", "admin-secret"), ("registry.sqlite3", "registry-secret")):
    with open(os.path.join(data, name), "w") as file:
        file.write(secret)
home = tempfile.mkdtemp(dir=base)
# as Sandbox.default() sets it up: a uid per endpoint when root
users = EndpointUsers.parse(DEFAULT_WORKER_UIDS) if os.geteuid() == 0 else None
sandbox = Sandbox(cache_dir=os.path.join(base, "launcher"), endpoint_users=users)
sandbox.give(home)
sandbox.hide_from_workers(data)
outside = f"/var/tmp/edgebook-escape-{os.getpid()}"
probe = f"""
grep -q admin-secret {data}/runtime.json && echo READ-TOKEN
grep -q registry-secret {data}/registry.sqlite3 && echo READ-REGISTRY
grep -q admin-secret /proc/{os.getpid()}/root{data}/runtime.json && echo READ-THROUGH-PROC
touch {data}/planted && echo PLANTED-IN-DATA-DIR
touch {outside} && echo WROTE-OUTSIDE
echo mine > $HOME/file && echo home-writable
ls -a $HOME | tr '\\n' ' ' | sed 's/^/home=/'; echo
kill -0 {os.getpid()} 2>/dev/null && echo SEES-THE-GATEWAY
grep -E '^Cap(Prm|Eff|Bnd|Amb):' /proc/self/status
echo done
"""
argv = sandbox.wrap_worker(["/bin/sh", "-c", probe], None, endpoint="probe", home=home)
done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                      env={"PATH": "/usr/bin:/bin", "HOME": home})
try:
    os.unlink(outside)
except FileNotFoundError:
    pass
print(json.dumps({"stdout": done.stdout, "stderr": done.stderr, "status": done.returncode,
                  "view": sandbox.can_confine(), "uid": os.getuid(),
                  "planted": os.path.exists(os.path.join(data, "planted"))}))
