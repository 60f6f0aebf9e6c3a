"""Where the Python fake worker lives for the tests: somewhere its user can read it.

Workers drop to an unprivileged user when the tests run as root, and the checkout may sit in
a directory that user cannot enter (a clone into ``mktemp -d`` is 0700); so the script is
copied once into a world-readable temporary directory, removed at exit.
"""

import atexit
import os
import shutil
import sys
import tempfile

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources", "fake_worker.py")
_DIR = tempfile.mkdtemp(prefix="edgebook-fake-worker-")
os.chmod(_DIR, 0o755)
FAKE_WORKER = shutil.copy(_SOURCE, _DIR)
os.chmod(FAKE_WORKER, 0o644)
atexit.register(shutil.rmtree, _DIR, True)

#: argv of a fake worker
FAKE = [sys.executable, FAKE_WORKER]
