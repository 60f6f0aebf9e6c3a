"""What recording one exchange for the OpenAPI examples costs on the data plane's hot path.

``SampleStore.record`` runs once per answered request (see docs/openapi.md); this times it
against an empty Python call in the same run, so a loaded machine moves both. A request
through the gateway costs tens of microseconds; recording should stay in the low units.

    python bench/sample_store_bench.py [--rounds 200000]
"""

from __future__ import annotations

import argparse
import time

from edgebook.openapi.samples import SampleStore


def per_call(fn, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    rounds = parser.parse_args().rounds
    store = SampleStore()
    request = {"type": "request", "request_id": "r", "method": "GET", "path": "/x",
               "params": {}, "query": {}, "headers": {}, "body": '{"a": 1}'}
    answer = {"status": 200, "headers": {"Content-Type": "application/json"},
              "body": '{"ok": true}'}
    store.record("ep", "1", request, answer)
    record = per_call(lambda: store.record("ep", "1", request, answer), rounds)
    empty = per_call(lambda: None, rounds)
    print(f"SampleStore.record: {record * 1e6:.2f} us per call "
          f"({record / empty:.1f}x an empty call, {empty * 1e6:.2f} us)")


if __name__ == "__main__":
    main()
