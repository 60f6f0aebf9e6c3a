"""A stand-in for ``edgebook _follow`` speaking the follower's stdio protocol.

argv[1] is a JSON control file, read at every question: ``{"sync_delay": {"N": seconds}}``
delays the answer to ``sync N``. argv[2] is a journal: one line per question handled
(``<pid> sync N``), written before the answer.
"""

import json
import os
import sys
import time


def main():
    control, journal = sys.argv[1], sys.argv[2]
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        verb, _, rest = line.strip().partition(" ")
        number, _, _ = rest.partition(" ")
        with open(control) as handle:
            settings = json.load(handle)
        time.sleep(settings.get("sync_delay", {}).get(number, 0) if verb == "sync" else 0)
        with open(journal, "a") as handle:
            handle.write(f"{os.getpid()} {verb} {number}\n")
        if verb == "sync":
            out.write(f"synced {number}\n")
        elif verb == "metrics":
            share = {"name": "ep", "state": "running", "revision": "1", "requests": 2,
                     "responses": {"2xx": 2}, "errors": {}, "inflight": 0, "queue_depth": 0,
                     "latencies_s": [0.002, 0.004]}
            out.write(f"metrics {number} {json.dumps(share)}\n")
        elif verb == "logs":
            lines = [{"seq": 1, "time": 1.5, "source": "stderr", "text": f"from {os.getpid()}"}]
            out.write(f"logs {number} {json.dumps(lines)}\n")
        out.flush()


if __name__ == "__main__":
    main()
