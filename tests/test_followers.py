"""``serve --processes N``'s primary side: numbered sync rounds, restarts with backoff,
questions to every follower; against stand-in followers (tests/resources/fake_follower.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from tornado.testing import ExpectLog

from edgebook.gateway.followers import FollowerSet
from edgebook.gateway.metrics import EndpointMetrics, merge_shares

FAKE = Path(__file__).parent / "resources" / "fake_follower.py"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def follower_set(tmp_path, processes=2, **options):
    control, journal = tmp_path / "control.json", tmp_path / "journal"
    control.write_text("{}")
    journal.write_text("")
    followers = FollowerSet(SimpleNamespace(processes=processes),
                            command=lambda index: [sys.executable, str(FAKE), str(control),
                                                   str(journal)], **options)
    return followers, control, journal


async def until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_late_answer_never_stands_for_a_later_round(tmp_path):
    async def main():
        followers, control, journal = follower_set(tmp_path)
        control.write_text(json.dumps({"sync_delay": {"1": 2.0}}))
        await followers.start()
        try:
            followers._sync_timeout = 0.3
            with ExpectLog("edgebook.gateway.followers", ".*did not sync"):
                await followers.sync()  # round 1 times out; its answer comes later
            followers._sync_timeout = 10
            await followers.sync()  # round 2 must wait for "synced 2", not take "synced 1"
            assert journal.read_text().split("\n")[-2].split()[1:] == ["sync", "2"]
        finally:
            await followers.wait_stopped(10)
    run(main())


def test_a_dead_follower_is_restarted_with_backoff_and_synced(tmp_path):
    async def main():
        followers, _, journal = follower_set(tmp_path, processes=3, backoff=(0.05, 0.1))
        await followers.start()
        try:
            first = followers.followers[1].process.pid
            with ExpectLog("edgebook.gateway.followers", ".*exited with -9"):
                os.kill(first, signal.SIGKILL)
                await until(lambda: followers.restarts == 1)
            replacement = followers.followers[1]
            assert replacement.process.pid != first and replacement.serving
            assert f"{replacement.process.pid} sync" in journal.read_text()  # caught up
            assert len(followers.serving()) == 2
            await followers.sync()
        finally:
            await followers.wait_stopped(10)
    run(main())


def test_metrics_and_logs_come_from_every_follower(tmp_path):
    async def main():
        followers, _, _ = follower_set(tmp_path, processes=3)
        await followers.start()
        try:
            answers = await followers.ask_all("metrics", {"name": "ep"})
            assert sorted(index for index, _ in answers) == [1, 2]
            assert all(share["requests"] == 2 for _, share in answers)
            logs = await followers.ask_all("logs", {"name": "ep", "tail": 10})
            assert len(logs) == 2 and all(len(lines) == 1 for _, lines in logs)
        finally:
            await followers.wait_stopped(10)
    run(main())


def test_shares_merge_into_one_endpoints_metrics():
    primary = EndpointMetrics()
    for seconds in (0.001, 0.003):
        primary.record(seconds, 200)
    primary.record(0.010, 504, "timeout")
    mine = {**primary.snapshot(), "name": "ep", "state": "running", "revision": "3",
            "inflight": 1, "queue_depth": 0, "latencies_s": primary.latencies()}
    theirs = {"name": "ep", "state": "running", "revision": "3", "requests": 2,
              "responses": {"2xx": 2}, "errors": {}, "inflight": 2, "queue_depth": 1,
              "latencies_s": [0.002, 0.004]}
    merged = merge_shares([mine, theirs])
    assert merged["requests"] == 5 and merged["processes"] == 2
    assert merged["responses"] == {"2xx": 4, "5xx": 1}
    assert merged["errors"] == {"timeout": 1}
    assert (merged["inflight"], merged["queue_depth"]) == (3, 1)
    assert merged["latency_ms"]["window"] == 5 and merged["latency_ms"]["p50"] == 3.0
    assert "latencies_s" not in merged and merged["revision"] == "3"
