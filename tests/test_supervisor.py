"""Supervisor and pools with real worker processes: restarts, crash loops, overload,
hot reload, stop/start/remove, isolation between endpoints."""

import asyncio
import json
import os
import sys
import uuid

from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from edgebook.errors import GatewayError
from edgebook.gateway.supervisor import DeployError, EndpointConfig, RestartPolicy, Supervisor

from worker_script import FAKE


def request(path="/echo", **fields):
    frame = {"type": "request", "request_id": str(uuid.uuid4()), "method": "GET", "path": path,
             "query": {}, "headers": {}, "params": {}, "body": None, "client_ip": "127.0.0.1"}
    frame.update(fields)
    return frame


def config(name="ep", path=None, mode="", tag="", **kwargs):
    env = {"FAKE_WORKER_TAG": tag}
    if mode:
        env["FAKE_WORKER_MODE"] = mode
    env.update(kwargs.pop("env", {}))
    return EndpointConfig(name, "GET", path or f"/{name}/{{rest}}", env=env, **kwargs)


class SupervisorTestCase(AsyncTestCase):
    policy = RestartPolicy(backoff_base=0.01, backoff_cap=0.2, crash_loop_deaths=3,
                           crash_loop_window=30, crash_loop_retry=30, stop_grace=1)

    def setUp(self):
        super().setUp()
        self.events = []
        self._event_waiters = []
        self.supervisor = Supervisor(on_event=self.on_event, policy=self.policy,
                                     service_handler=self.service_handler)

    def tearDown(self):
        self.io_loop.run_sync(lambda: self.supervisor.shutdown(drain_timeout=1), timeout=20)
        super().tearDown()

    async def service_handler(self, endpoint, call):
        return {"ok": True, "result": {"endpoint": endpoint, "op": call["op"]}}

    def on_event(self, event):
        self.events.append(event)
        for predicate, future in list(self._event_waiters):
            if not future.done() and predicate(event):
                future.set_result(event)

    async def wait_event(self, predicate, timeout=10):
        for event in self.events:
            if predicate(event):
                return event
        future = asyncio.get_running_loop().create_future()
        self._event_waiters.append((predicate, future))
        return await asyncio.wait_for(future, timeout)

    async def call(self, name, frame):
        try:
            return await self.supervisor.handle(name, frame)
        except GatewayError as exc:
            return exc

    async def ok(self, name="ep", path="/echo", **fields):
        response = await self.supervisor.handle(name, request(path, **fields))
        self.assertEqual(response["status"], 200)
        return json.loads(response["body"])


class LifecycleTest(SupervisorTestCase):
    @gen_test
    async def test_deploy_handle_state_metrics_logs(self):
        state = await self.supervisor.deploy(config(workers=2, tag="v1"), FAKE, "r1")
        self.assertEqual(state["state"], "running")
        self.assertEqual(state["revision"], "r1")
        self.assertEqual(len(state["workers"]), 2)
        body = await self.ok()
        self.assertEqual(body["tag"], "v1")
        metrics = self.supervisor.metrics("ep")
        self.assertEqual(metrics["requests"], 1)
        self.assertEqual(metrics["responses"], {"2xx": 1})
        self.assertIsNotNone(metrics["latency_ms"]["p99"])
        self.assertEqual((metrics["inflight"], metrics["queue_depth"]), (0, 0))
        self.assertTrue(any("revision r1 is serving" in l["text"]
                            for l in self.supervisor.logs("ep", 10)))
        self.assertEqual([(e["type"], e["state"]) for e in self.events],
                         [("state", "starting"), ("state", "running")])
        self.assertEqual([e["name"] for e in self.supervisor.endpoints()], ["ep"])

    @gen_test
    async def test_worker_env_is_scrubbed_and_annotated(self):
        os.environ["EDGEBOOK_TEST_SECRET"] = "x"
        try:
            await self.supervisor.deploy(config(), FAKE, "r1")
        finally:
            del os.environ["EDGEBOOK_TEST_SECRET"]
        code = ("import os,sys,json; sys.stderr.write(json.dumps(dict(os.environ)) + chr(10)); "
                "sys.exit(1)")
        with self.assertRaises(DeployError) as info:
            await self.supervisor.deploy(config("envtest"), [sys.executable, "-c", code], "r1")
        env = json.loads(info.exception.stderr_tail[-1])
        self.assertEqual(env["EDGEBOOK_ENDPOINT"], "envtest")
        self.assertEqual(env["EDGEBOOK_REVISION"], "r1")
        self.assertIn("EDGEBOOK_MAX_FRAME", env)
        self.assertNotIn("EDGEBOOK_TEST_SECRET", env)

    @gen_test
    async def test_stop_start_remove(self):
        await self.supervisor.deploy(config(tag="v1"), FAKE, "r1")
        state = await self.supervisor.stop("ep")
        self.assertEqual((state["state"], state["workers"]), ("stopped", []))
        error = await self.call("ep", request())
        self.assertEqual((error.status, error.error_type), (503, "unavailable"))
        self.assertIn("Retry-After", error.headers)
        state = await self.supervisor.start("ep")
        self.assertEqual(state["state"], "running")
        self.assertEqual((await self.ok())["tag"], "v1")
        await self.supervisor.remove("ep")
        with self.assertRaises(GatewayError) as info:
            self.supervisor.route("GET", "/ep/x", None)
        self.assertEqual(info.exception.status, 404)
        self.assertEqual(self.events[-1]["type"], "removed")

    @gen_test
    async def test_service_calls_reach_injected_handler_with_endpoint_name(self):
        await self.supervisor.deploy(config(), FAKE, "r1")
        reply = (await self.ok(path="/mode/service"))["reply"]
        self.assertEqual(reply["result"], {"endpoint": "ep", "op": "kv.get"})

    @gen_test
    async def test_service_calls_for_an_answered_request_are_refused(self):
        await self.supervisor.deploy(config(), FAKE, "r1")
        self.assertEqual(await self.ok(path="/mode/late_service"), {"answered": True})
        reply = (await self.ok(path="/mode/late_reply"))["reply"]
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["kind"], "bad_request")
        self.assertIn("not in flight", reply["error"]["message"])

    @gen_test(timeout=30)
    async def test_hot_reload_keeps_a_request_longer_than_the_drain_timeout(self):
        await self.supervisor.deploy(config(timeout=4, drain_timeout=0.3, tag="v1"), FAKE, "r1")
        slow = asyncio.ensure_future(self.call("ep", request("/mode/slow", query={"s": "2"})))
        while self.supervisor.metrics("ep")["inflight"] == 0:  # until the old worker has it
            await asyncio.sleep(0.01)
        await self.supervisor.deploy(config(timeout=4, drain_timeout=0.3, tag="v2"), FAKE, "r2")
        self.assertEqual((await self.ok())["tag"], "v2")  # the switch happened at once
        response = await slow
        self.assertFalse(isinstance(response, GatewayError), response)
        self.assertEqual(json.loads(response["body"])["tag"], "v1")

    @gen_test
    async def test_route_conflict_is_deploy_error(self):
        await self.supervisor.deploy(config("a", path="/same"), FAKE, "r1")
        with self.assertRaises(DeployError) as info:
            await self.supervisor.deploy(config("b", path="/same"), FAKE, "r1")
        self.assertIn("conflicts", info.exception.reason)

    @gen_test
    async def test_shutdown_stops_every_worker(self):
        await self.supervisor.deploy(config("a", workers=2), FAKE, "r1")
        await self.supervisor.deploy(config("b"), FAKE, "r1")
        pids = [w["pid"] for n in ("a", "b") for w in self.supervisor.state(n)["workers"]]
        await self.supervisor.shutdown()
        for pid in pids:
            with self.assertRaises(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # already reaped by the supervisor
        self.assertEqual({self.supervisor.state(n)["state"] for n in ("a", "b")}, {"stopped"})


class FailureTest(SupervisorTestCase):
    @gen_test
    async def test_crash_is_502_then_replaced(self):
        await self.supervisor.deploy(config(), FAKE, "r1")
        first_pid = (await self.ok())["pid"]
        with ExpectLog("edgebook.gateway.pool", ".*exited with status 1"):
            error = await self.call("ep", request("/mode/crash"))
        self.assertEqual((error.status, error.error_type), (502, "worker_crashed"))
        body = await self.ok()  # waits in the queue for the replacement
        self.assertNotEqual(body["pid"], first_pid)
        self.assertEqual(self.supervisor.state("ep")["spawned"], 2)
        self.assertEqual(self.supervisor.metrics("ep")["errors"], {"worker_crashed": 1})
        self.assertTrue(any("crashing on purpose" in line["text"]
                            for line in self.supervisor.logs("ep", 20)))

    @gen_test
    async def test_hang_is_504_within_timeout_and_replaced(self):
        await self.supervisor.deploy(config(timeout=0.5), FAKE, "r1")
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await self.call("ep", request("/mode/hang"))
        self.assertEqual((error.status, error.error_type), (504, "timeout"))
        self.assertLess(loop.time() - started, 2.0)
        await self.ok()
        self.assertEqual(self.supervisor.state("ep")["spawned"], 2)
        self.assertEqual(self.supervisor.state("ep")["state"], "running")

    @gen_test
    async def test_malformed_and_oversized_and_wrong_id_are_502_and_replaced(self):
        await self.supervisor.deploy(config(), FAKE, "r1")
        for mode in ("malformed", "oversized", "wrong_id"):
            with ExpectLog("edgebook.gateway.worker", ".*broke the protocol"):
                error = await self.call("ep", request(f"/mode/{mode}"))
            self.assertEqual((error.status, error.error_type), (502, "bad_worker_response"))
            await self.ok()
        self.assertEqual(self.supervisor.state("ep")["state"], "running")

    @gen_test
    async def test_crash_loop_503_without_spawning_per_request(self):
        with ExpectLog("edgebook.gateway.pool", ".*crash looping"):
            await self.supervisor.deploy(config(mode="exit_after_ready", workers=1), FAKE, "r1")
            event = await self.wait_event(lambda e: e["state"] == "crash_looping")
        self.assertIn("3 workers died", event["reason"])
        state = self.supervisor.state("ep")
        self.assertIn("fake worker: exiting after ready", state["stderr_tail"])
        spawned = state["spawned"]
        errors = await asyncio.gather(*(self.call("ep", request()) for _ in range(50)))
        for error in errors:
            self.assertEqual((error.status, error.error_type), (503, "crash_looping"))
            self.assertGreaterEqual(int(error.headers["Retry-After"]), 1)
        self.assertEqual(self.supervisor.state("ep")["spawned"], spawned)
        # A fixed revision deployed over the crash loop takes over.
        await self.supervisor.deploy(config(tag="fixed"), FAKE, "r2")
        self.assertEqual((await self.ok())["tag"], "fixed")
        self.assertEqual(self.supervisor.state("ep")["state"], "running")

    @gen_test
    async def test_queue_full_is_503_and_freed_slots_go_to_oldest_waiter(self):
        await self.supervisor.deploy(
            config(workers=1, max_inflight_per_worker=1, queue_limit=3), FAKE, "r1")
        order = []

        async def slow(i):
            response = await self.call("ep", request("/mode/slow", query={"s": "0.05"}))
            order.append(i)
            return response

        tasks = [asyncio.ensure_future(slow(i)) for i in range(4)]  # 1 running + 3 queued
        await asyncio.sleep(0)
        for task in tasks:  # let each get its slot or its place in line
            await asyncio.sleep(0)
        self.assertEqual(self.supervisor.metrics("ep")["queue_depth"], 3)
        error = await self.call("ep", request())
        self.assertEqual((error.status, error.error_type), (503, "overloaded"))
        self.assertEqual(error.headers["Retry-After"], "1")
        results = await asyncio.gather(*tasks)
        self.assertEqual([r["status"] for r in results], [200] * 4)
        self.assertEqual(order, [0, 1, 2, 3])

    @gen_test
    async def test_a_request_that_waits_longer_than_the_timeout_is_told_why(self):
        # One slot; the timeout (1 s) bounds the handler and the wait for the slot alike.
        await self.supervisor.deploy(
            config(workers=1, max_inflight_per_worker=1, timeout=1.0), FAKE, "r1")
        slow = request("/mode/slow", query={"s": "0.7"})
        busy = asyncio.ensure_future(self.call("ep", slow))  # slot taken until ~0.7 s
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(  # gets the slot at ~0.7 s, holds it to ~1.4 s
            self.call("ep", request("/mode/slow", query={"s": "0.7"})))
        await asyncio.sleep(0.1)
        third = await self.call("ep", request())  # would get the slot at ~1.4 s: too late
        self.assertEqual((third.status, third.error_type), (503, "overloaded"))
        self.assertIn("no worker was free within 1 s", str(third))
        self.assertEqual((await busy)["status"], 200)
        self.assertEqual((await waiting)["status"], 200)

    @gen_test
    async def test_least_loaded_dispatch_spreads_over_workers(self):
        await self.supervisor.deploy(config(workers=3, max_inflight_per_worker=2), FAKE, "r1")
        responses = await asyncio.gather(*(
            self.supervisor.handle("ep", request("/mode/slow", query={"s": "0.1"}))
            for _ in range(6)))
        pids = [json.loads(r["body"])["pid"] for r in responses]
        self.assertEqual(sorted(pids.count(p) for p in set(pids)), [2, 2, 2])

    @gen_test
    async def test_failing_endpoint_does_not_affect_another(self):
        await self.supervisor.deploy(config("bad", timeout=0.3, workers=1), FAKE, "r1")
        await self.supervisor.deploy(config("good", workers=1), FAKE, "r1")

        async def abuse():
            for mode in ("crash", "hang", "malformed", "crash"):
                await self.call("bad", request(f"/mode/{mode}"))

        async def load():
            return await asyncio.gather(*(self.call("good", request()) for _ in range(200)))

        with ExpectLog("edgebook", ".*", required=False):
            _, good = await asyncio.gather(abuse(), load())
        self.assertEqual({r["status"] for r in good}, {200})
        self.assertEqual(self.supervisor.metrics("good")["errors"], {})
        self.assertGreater(sum(self.supervisor.metrics("bad")["errors"].values()), 3)


class DeployTest(SupervisorTestCase):
    @gen_test
    async def test_failed_revision_leaves_old_serving(self):
        await self.supervisor.deploy(config(tag="v1"), FAKE, "r1")
        with self.assertRaises(DeployError) as info:
            await self.supervisor.deploy(config(tag="v2", mode="exit_at_start"), FAKE, "r2")
        self.assertIn("r2", str(info.exception))
        self.assertIn("fake worker: failing at start", info.exception.stderr_tail)
        self.assertEqual((await self.ok())["tag"], "v1")
        state = self.supervisor.state("ep")
        self.assertEqual((state["state"], state["revision"]), ("running", "r1"))
        self.assertEqual(state["deploy_error"]["revision"], "r2")
        self.assertEqual(self.events[-1]["type"], "deploy_failed")

    @gen_test
    async def test_start_timeout_is_deploy_error(self):
        with self.assertRaises(DeployError) as info:
            await self.supervisor.deploy(config(mode="no_ready", start_timeout=0.3), FAKE, "r1")
        self.assertIn("no ready frame", info.exception.reason)
        state = self.supervisor.state("ep")
        self.assertEqual(state["state"], "deploy_failed")
        error = await self.call("ep", request())
        self.assertEqual((error.status, error.error_type), (503, "unavailable"))

    @gen_test
    async def test_hot_reload_under_load_loses_nothing(self):
        await self.supervisor.deploy(
            config(tag="v1", workers=2, queue_limit=1000), FAKE, "r1")

        async def one(i):
            await asyncio.sleep(0.002 * (i % 50))
            return await self.call("ep", request("/mode/slow", query={"s": "0.01"}))

        load = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(300))))
        await asyncio.sleep(0.03)
        state = await self.supervisor.deploy(config(tag="v2", workers=2, queue_limit=1000),
                                             FAKE, "r2")
        self.assertEqual(state["revision"], "r2")
        results = await load
        statuses = [getattr(r, "status", None) or r["status"] for r in results]
        self.assertEqual(statuses, [200] * 300)
        tags = [json.loads(r["body"])["tag"] for r in results]
        self.assertIn("v1", tags)
        self.assertEqual((await self.ok())["tag"], "v2")
        self.assertEqual(self.supervisor.state("ep")["spawned"], 2)  # the new pool's own


class RequestDoneHookTest(AsyncTestCase):
    @gen_test
    async def test_hook_sees_every_request_id_on_success_and_failure(self):
        done = []
        supervisor = Supervisor(on_request_done=lambda *key: done.append(key),
                                policy=RestartPolicy(backoff_base=0.01, stop_grace=1))
        try:
            await supervisor.deploy(config(timeout=5), FAKE, "r1")
            ok, crash = request("/echo"), request("/mode/crash")
            await supervisor.handle("ep", ok)
            with ExpectLog("edgebook", ".*", required=False):
                with self.assertRaises(GatewayError):
                    await supervisor.handle("ep", crash)
            self.assertEqual(done, [("ep", ok["request_id"]), ("ep", crash["request_id"])])
        finally:
            await supervisor.shutdown(drain_timeout=1)
