"""Several requests in one worker's pipe: one slow request must not fail its neighbours."""

import asyncio
import uuid

import pytest
from tornado.testing import AsyncTestCase, ExpectLog, gen_test

from edgebook.errors import GatewayError
from edgebook.gateway.supervisor import EndpointConfig, RestartPolicy, Supervisor

from worker_script import FAKE


def request(path, **query):
    return {"type": "request", "request_id": str(uuid.uuid4()), "method": "GET", "path": path,
            "query": query, "headers": {}, "params": {}, "body": None,
            "client_ip": "127.0.0.1"}


class PipelinedNeighboursTest(AsyncTestCase):
    def setUp(self):
        super().setUp()
        self.supervisor = Supervisor(policy=RestartPolicy(backoff_base=0.01, stop_grace=1))
        self.io_loop.run_sync(lambda: self.supervisor.deploy(
            EndpointConfig("ep", "GET", "/mode/{m}", workers=1, timeout=0.5), FAKE, "r1"),
            timeout=20)

    def tearDown(self):
        self.io_loop.run_sync(lambda: self.supervisor.shutdown(drain_timeout=1), timeout=20)
        super().tearDown()

    async def outcome(self, frame):
        try:
            return (await self.supervisor.handle("ep", frame))["status"]
        except GatewayError as exc:
            return exc.status

    @gen_test(timeout=30)
    async def test_a_timeout_answers_504_to_its_own_request_only(self):
        """Before: the requests queued behind a hung one in the same pipe got 502 when the
        hung one's timeout killed the worker. Now they run on the replacement worker."""
        with ExpectLog("edgebook", ".*", required=False):
            statuses = await asyncio.gather(
                self.outcome(request("/mode/hang")),
                *(self.outcome(request("/mode/echo")) for _ in range(5)))
        self.assertEqual(statuses, [504] + [200] * 5)
        self.assertEqual(self.supervisor.metrics("ep")["errors"], {"timeout": 1})

    @gen_test(timeout=30)
    async def test_queued_requests_have_their_own_clock(self):
        """Each request in the pipe gets the full timeout from the moment the worker
        starts it: three 0.3 s requests behind each other all succeed with a 0.5 s timeout."""
        statuses = await asyncio.gather(
            *(self.outcome(request("/mode/slow", s="0.3")) for _ in range(3)))
        self.assertEqual(statuses, [200, 200, 200])


def test_pipe_depth_defaults_by_worker_count():
    assert EndpointConfig("a", "GET", "/a").pipe_depth == 32
    assert EndpointConfig("a", "GET", "/a", workers=3).pipe_depth == 8
    assert EndpointConfig("a", "GET", "/a", workers=3, max_inflight_per_worker=2).pipe_depth == 2


def test_config_refuses_values_no_endpoint_can_run_with():
    for bad in ({"timeout": 0}, {"start_timeout": -1}, {"queue_limit": -1}, {"max_body": -1},
                {"workers": 0}, {"max_inflight_per_worker": 0}):
        with pytest.raises(ValueError):
            EndpointConfig("a", "GET", "/a", **bad)
