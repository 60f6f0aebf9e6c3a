"""What measuring a request's phases costs: the data plane's per-request timing work
(a RequestTiming, five marks, the in-flight registry, the Server-Timing header) timed in a
loop, against a hello request's gateway CPU time measured by `make bench`.

    .venv/bin/python bench/timing_bench.py [gateway_cpu_us_per_request]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgebook.gateway.timing import RequestTiming  # noqa: E402

N = 200_000


def per_request(with_header: bool) -> float:
    timings: dict = {}
    start = time.perf_counter()
    for i in range(N):
        timing = RequestTiming()
        timing.mark("routed")
        timing.mark("received")
        timings[i] = timing
        timing.mark("dispatched")  # the pool's lookup and mark
        timings.get(i)
        timing.mark("replied")
        timings.pop(i, None)
        if with_header:
            timing.header()
        timing.mark("written")
    return (time.perf_counter() - start) / N * 1e6


def main() -> int:
    gateway_cpu = float(sys.argv[1]) if len(sys.argv) > 1 else 125.0
    always = min(per_request(False) for _ in range(3))
    header = min(per_request(True) for _ in range(3))
    print(f"timing work per request: {always:.2f} us always, {header:.2f} us with the "
          f"Server-Timing header")
    print(f"against {gateway_cpu:g} us of gateway CPU per hello request: "
          f"{always / gateway_cpu:.1%} always on, {header / gateway_cpu:.1%} with the header "
          f"(target: under 3% of hello throughput)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
