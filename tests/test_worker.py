"""WorkerProcess against the fake worker: handshake, pipelining, faults, stderr, stop."""

import asyncio
import json
import sys
import uuid

from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from edgebook.errors import GatewayError
from edgebook.gateway.logring import LogRing
from edgebook.gateway.worker import WorkerGoneError, WorkerProcess, WorkerStartError

from worker_script import FAKE


def request(path="/echo", **fields):
    frame = {"type": "request", "request_id": str(uuid.uuid4()), "method": "GET", "path": path,
             "query": {}, "headers": {}, "params": {}, "body": None, "client_ip": "127.0.0.1"}
    frame.update(fields)
    return frame


class WorkerTest(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.ring = LogRing(max_lines=100, max_line=200)
        self.exits = []
        self.workers = []

    def tearDown(self):
        for worker in self.workers:
            self.io_loop.run_sync(lambda w=worker: w.stop(0.5))
        super().tearDown()

    def make(self, mode="", argv=FAKE, **kwargs):
        env = {"FAKE_WORKER_MODE": mode} if mode else {}
        worker = WorkerProcess(argv, env=env, log_ring=self.ring, label="test",
                               on_exit=self.exits.append, **kwargs)
        self.workers.append(worker)
        return worker

    async def started(self, **kwargs):
        worker = self.make(**kwargs)
        await worker.start(10)
        return worker

    @gen_test
    async def test_ready_and_round_trip(self):
        worker = await self.started()
        self.assertEqual(worker.state, "ready")
        self.assertEqual(worker.ready_frame["pid"], worker.pid)
        frame = request(query={"a": "1"})
        response = await worker.send(frame, 5)
        self.assertEqual(response["request_id"], frame["request_id"])
        self.assertEqual(json.loads(response["body"])["query"], {"a": "1"})
        self.assertEqual(worker.served, 1)

    @gen_test
    async def test_environment_is_exactly_what_is_given(self):
        worker = WorkerProcess([sys.executable, "-c", "import os,sys; "
                                "sys.stderr.write(repr(sorted(os.environ)) + chr(10))"],
                               env={"ONLY": "1"}, log_ring=self.ring)
        with self.assertRaises(WorkerStartError) as info:
            await worker.start(5)
        self.assertIn("'ONLY'", " ".join(info.exception.stderr_tail))
        self.assertNotIn("'HOME'", " ".join(info.exception.stderr_tail))

    @gen_test
    async def test_pipelining_keeps_several_requests_in_the_pipe(self):
        worker = await self.started()
        futures = [worker.send(request("/mode/slow", query={"s": "0.2"}), 5)]
        futures += [worker.send(request("/mode/slow", query={"s": "0"}), 5) for _ in range(4)]
        self.assertEqual(worker.inflight, 5)
        responses = await asyncio.gather(*futures)
        first = json.loads(responses[0]["body"])
        # While the worker slept on the first request, the other four sat unread in its stdin.
        self.assertGreater(first["pipe_bytes"], 0)
        self.assertEqual([r["request_id"] for r in responses],
                         [r["request_id"] for r in responses])
        self.assertEqual(worker.inflight, 0)

    @gen_test
    async def test_start_failure_reports_stderr_tail(self):
        worker = self.make("exit_at_start")
        with self.assertRaises(WorkerStartError) as info:
            await worker.start(5)
        self.assertIn("status 1", info.exception.reason)
        self.assertIn("fake worker: failing at start", info.exception.stderr_tail)

    @gen_test
    async def test_start_timeout_kills(self):
        worker = self.make("no_ready")
        with self.assertRaises(WorkerStartError) as info:
            await worker.start(0.3)
        self.assertIn("no ready frame within 0.3s", info.exception.reason)
        self.assertEqual(worker.state, "exited")
        self.assertLess(worker.returncode, 0)

    @gen_test
    async def test_wrong_protocol_refused(self):
        worker = self.make("bad_protocol")
        with self.assertRaises(WorkerStartError) as info:
            await worker.start(5)
        self.assertIn("speaks protocol 99", info.exception.reason)

    @gen_test
    async def test_missing_binary(self):
        worker = self.make(argv=["/nonexistent/edgebook-worker"])
        with self.assertRaises(WorkerStartError) as info:
            await worker.start(5)
        self.assertIn("cannot start", info.exception.reason)

    async def assert_failure(self, worker, frame, status, error_type):
        with self.assertRaises(GatewayError) as info:
            await worker.send(frame, 5)
        self.assertEqual((info.exception.status, info.exception.error_type),
                         (status, error_type))
        await worker.wait_exited()
        self.assertEqual(self.exits, [worker])
        return info.exception

    @gen_test
    async def test_crash_after_reading_is_502_and_pipe_mates_too(self):
        worker = await self.started()
        first = worker.send(request("/mode/slow_crash", query={"s": "0.1"}), 5)
        second = worker.send(request("/echo"), 5)  # in the pipe, never read
        results = await asyncio.gather(first, second, return_exceptions=True)
        for result in results:
            self.assertIsInstance(result, GatewayError)
            self.assertEqual((result.status, result.error_type), (502, "worker_crashed"))
        self.assertIn("status 1", results[0].log_message)
        self.assertFalse(worker.exit_expected)
        with self.assertRaises(WorkerGoneError):
            worker.send(request(), 5)

    @gen_test
    async def test_malformed_frame(self):
        worker = await self.started()
        with ExpectLog("edgebook.gateway.worker", ".*broke the protocol"):
            await self.assert_failure(worker, request("/mode/malformed"), 502,
                                      "bad_worker_response")
        self.assertIn("bad_json", worker.exit_reason)

    @gen_test
    async def test_stdout_spam(self):
        worker = await self.started()
        with ExpectLog("edgebook.gateway.worker", ".*broke the protocol"):
            await self.assert_failure(worker, request("/mode/stdout_spam"), 502,
                                      "bad_worker_response")

    @gen_test
    async def test_oversized_length_refused_before_reading(self):
        worker = await self.started(max_frame=1 << 20)
        with ExpectLog("edgebook.gateway.worker", ".*broke the protocol"):
            await self.assert_failure(worker, request("/mode/oversized"), 502,
                                      "bad_worker_response")
        self.assertIn("oversized", worker.exit_reason)

    @gen_test
    async def test_wrong_response_id(self):
        worker = await self.started()
        with ExpectLog("edgebook.gateway.worker", ".*not in flight"):
            await self.assert_failure(worker, request("/mode/wrong_id"), 502,
                                      "bad_worker_response")

    @gen_test
    async def test_timeout_is_504_and_kills_worker_queued_ones_never_started(self):
        worker = await self.started()
        hung = worker.send(request("/mode/hang"), 0.3)
        queued = worker.send(request("/echo"), 5)
        results = await asyncio.gather(hung, queued, return_exceptions=True)
        self.assertEqual((results[0].status, results[0].error_type), (504, "timeout"))
        self.assertIsInstance(results[1], WorkerGoneError)  # free to go to another worker
        await worker.wait_exited()
        self.assertTrue(worker.exit_expected)
        self.assertIn("timeout", worker.exit_reason)

    @gen_test
    async def test_timeout_clock_starts_when_the_worker_starts_the_request(self):
        worker = await self.started()
        first = worker.send(request("/mode/slow", query={"s": "0.3"}), 0.5)
        second = worker.send(request("/mode/slow", query={"s": "0.3"}), 0.5)
        results = await asyncio.gather(first, second)  # 0.6 s in all, each under 0.5 s
        self.assertEqual([r["status"] for r in results], [200, 200])
        self.assertEqual(worker.state, "ready")

    @gen_test
    async def test_stderr_flood_does_not_block(self):
        worker = await self.started()
        response = await worker.send(request("/mode/stderr_flood"), 10)
        self.assertEqual(json.loads(response["body"]), {"flooded": True})
        lines = self.ring.tail(5)
        self.assertEqual(len(self.ring), 100)  # bounded
        self.assertTrue(all(len(line.text) <= 200 + len(" [line truncated]") for line in lines))
        self.assertTrue(lines[-1].text.startswith("xxxx"))
        self.assertTrue(lines[-1].source.startswith("test/pid "))

    @gen_test
    async def test_long_stderr_line_without_newline_is_capped(self):
        code = ("import sys,time; sys.stderr.write('y' * 100000); sys.stderr.flush(); "
                "sys.stderr.write(chr(10) + 'after' + chr(10)); sys.exit(5)")
        worker = WorkerProcess([sys.executable, "-c", code], env={}, log_ring=self.ring)
        with self.assertRaises(WorkerStartError) as info:
            await worker.start(5)
        texts = [line.text for line in self.ring.tail()]
        self.assertIn("after", texts)
        self.assertEqual(info.exception.stderr_tail[-1], "after")
        self.assertTrue(any(t.startswith("yyy") and t.endswith("[line truncated]")
                            for t in texts))

    @gen_test
    async def test_service_call_default_not_bound(self):
        worker = await self.started()
        response = await worker.send(request("/mode/service"), 5)
        reply = json.loads(response["body"])["reply"]
        self.assertEqual(reply["type"], "service_reply")
        self.assertEqual(reply["call_id"], 1)
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["kind"], "not_bound")

    @gen_test
    async def test_service_call_routed_to_injected_handler(self):
        calls = []

        async def handler(call):
            calls.append(call)
            await asyncio.sleep(0)
            return {"ok": True, "result": {"value": 42}}

        worker = await self.started(service_handler=handler)
        frame = request("/mode/service")
        response = await worker.send(frame, 5)
        reply = json.loads(response["body"])["reply"]
        self.assertEqual(reply["result"], {"value": 42})
        self.assertEqual(reply["request_id"], frame["request_id"])
        self.assertEqual(calls[0]["op"], "kv.get")

    @gen_test
    async def test_stop_closes_stdin_and_exits_cleanly(self):
        worker = await self.started()
        pending = worker.send(request("/mode/slow", query={"s": "0.1"}), 5)
        await worker.stop(5)
        self.assertEqual(worker.returncode, 0)  # clean end of input
        self.assertEqual((await pending)["status"], 200)  # what it had read, it answered
        self.assertTrue(worker.exit_expected)

    @gen_test
    async def test_stop_escalates_to_kill(self):
        worker = await self.started()
        pending = worker.send(request("/mode/hang"), None)
        await worker.stop(0.2)
        self.assertLess(worker.returncode, 0)
        with self.assertRaises(GatewayError) as info:
            await pending
        self.assertEqual(info.exception.status, 502)
