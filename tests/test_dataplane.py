"""The data plane over real HTTP on loopback, with fake workers behind it."""

import asyncio
import base64
import json
import socket

from tornado.httpclient import AsyncHTTPClient
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream
from tornado.testing import AsyncHTTPTestCase, ExpectLog, gen_test

from edgebook.gateway.dataplane import make_dataplane_app, serve_dataplane
from edgebook.gateway.supervisor import EndpointConfig, RestartPolicy, Supervisor

from worker_script import FAKE


def config(name, method, path, tag="", **kwargs):
    env = {"FAKE_WORKER_TAG": tag}
    env.update(kwargs.pop("env", {}))
    return EndpointConfig(name, method, path, env=env, **kwargs)


class DataPlaneTest(AsyncHTTPTestCase):
    def get_app(self):
        self.supervisor = Supervisor(policy=RestartPolicy(backoff_base=0.01, stop_grace=1))
        return make_dataplane_app(self.supervisor, log_function=lambda handler: None)

    def get_http_client(self):
        return AsyncHTTPClient(force_instance=True, max_clients=300)

    def setUp(self):
        super().setUp()
        deploy = self.supervisor.deploy
        self.io_loop.run_sync(lambda: asyncio.gather(
            deploy(config("echo", "GET", "/echo/{id}", tag="v1"), FAKE, "r1"),
            deploy(config("post", "POST", "/echo/{id}", max_body=1024), FAKE, "r1"),
            deploy(config("modes", "GET", "/mode/{name}", timeout=0.5), FAKE, "r1"),
            deploy(config("bin", "POST", "/mode/echo_body"), FAKE, "r1")), timeout=20)

    def tearDown(self):
        self.io_loop.run_sync(lambda: self.supervisor.shutdown(drain_timeout=1), timeout=20)
        super().tearDown()

    def fetch_json(self, path, **kwargs):
        response = self.fetch(path, raise_error=False, **kwargs)
        return response, json.loads(response.body) if response.body else None

    def assert_gateway_error(self, response, status, error_type):
        self.assertEqual(response.code, status)
        self.assertEqual(response.headers["Content-Type"], "application/json")
        body = json.loads(response.body)
        self.assertEqual(body["error_type"], error_type)
        self.assertEqual(body["request_id"], response.headers["X-Request-Id"])
        self.assertTrue(body["error"])

    # -- routing and request fields ----------------------------------------------------

    def test_request_fields(self):
        response, body = self.fetch_json("/echo/a%20b?x=1&y=&x=2",
                                         headers={"X-Thing": "1", "Accept": "text/plain"})
        self.assertEqual(response.code, 200)
        self.assertEqual(body["params"], {"id": "a%20b"})
        self.assertEqual(body["path"], "/echo/a%20b")
        self.assertEqual(body["query"], {"x": "2", "y": ""})
        self.assertEqual(body["query_all"], {"x": ["1", "2"], "y": [""]})
        self.assertEqual(body["headers"]["x-thing"], "1")
        self.assertIsNone(body["headers_all"])
        self.assertEqual(body["client_ip"], "127.0.0.1")
        self.assertEqual(body["body"], None)
        self.assertEqual(body["tag"], "v1")
        self.assertEqual(response.headers["X-Request-Id"], body["request_id"])
        self.assertEqual(len(body["request_id"]), 36)

    def test_single_values_have_no_all_maps(self):
        _, body = self.fetch_json("/echo/1?a=1")
        self.assertIsNone(body["query_all"])
        self.assertEqual(body["query"], {"a": "1"})

    def test_repeated_headers(self):
        headers = HTTPHeaders()
        headers.add("X-Many", "one")
        headers.add("X-Many", "two")
        response = self.fetch("/echo/1", headers=headers)
        body = json.loads(response.body)
        self.assertEqual(body["headers"]["x-many"], "two")
        self.assertEqual(body["headers_all"]["x-many"], ["one", "two"])
        self.assertEqual(body["headers_all"]["host"], [body["headers"]["host"]])

    def test_client_request_id_echoed_if_sane(self):
        response, body = self.fetch_json("/echo/1", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(response.headers["X-Request-Id"], "abc-123")
        self.assertEqual(body["headers"]["x-request-id"], "abc-123")  # the handler sees it
        # but the frame's id, which keys the worker's pipe and service transactions, is ours
        self.assertNotEqual(body["request_id"], "abc-123")
        self.assertEqual(len(body["request_id"]), 36)
        response, body = self.fetch_json("/echo/1", headers={"X-Request-Id": "bad id\t!"})
        self.assertNotEqual(body["request_id"], "bad id\t!")
        response, body = self.fetch_json("/nowhere", headers={"X-Request-Id": "r-404"})
        self.assertEqual((response.headers["X-Request-Id"], body["request_id"]),
                         ("r-404", "r-404"))

    def test_requests_sharing_a_client_id_do_not_collide(self):
        async def both():
            return await asyncio.gather(*(self.http_client.fetch(
                self.get_url("/mode/slow?s=0.1"), headers={"X-Request-Id": "same"},
                raise_error=False) for _ in range(2)))
        responses = self.io_loop.run_sync(both, timeout=10)
        self.assertEqual([r.code for r in responses], [200, 200])
        self.assertEqual([r.headers["X-Request-Id"] for r in responses], ["same", "same"])

    def test_404_and_405(self):
        response, _ = self.fetch_json("/nowhere")
        self.assert_gateway_error(response, 404, "not_found")
        response, _ = self.fetch_json("/echo/1", method="DELETE")
        self.assert_gateway_error(response, 405, "method_not_allowed")
        self.assertEqual(response.headers["Allow"], "GET, POST")

    def test_404_keeps_the_connection_alive(self):
        async def two_requests():
            stream = IOStream(socket.socket())
            await stream.connect(("127.0.0.1", self.get_http_port()))
            stream.write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            first = await stream.read_until(b"}")
            second = await stream.read_until(b"}")
            stream.close()
            return first, second
        first, second = self.io_loop.run_sync(two_requests, timeout=10)
        self.assertTrue(first.startswith(b"HTTP/1.1 404"))
        self.assertTrue(second.startswith(b"HTTP/1.1 200"))

    def test_body_and_binary_round_trip(self):
        _, body = self.fetch_json("/echo/1", method="POST", body="héllo")
        self.assertEqual((body["body"], body["body_encoding"]), ("héllo", "utf8"))
        raw = bytes(range(256)) * 2
        _, body = self.fetch_json("/echo/1", method="POST", body=raw)
        self.assertEqual(body["body_encoding"], "base64")
        self.assertEqual(base64.b64decode(body["body"]), raw)
        response = self.fetch("/mode/echo_body", method="POST", body=raw)
        self.assertEqual(response.body, raw)
        self.assertEqual(response.headers["Content-Type"], "application/octet-stream")

    def test_worker_status_and_headers(self):
        response = self.fetch("/mode/status?code=201&h=abc&body=made")
        self.assertEqual((response.code, response.body), (201, b"made"))
        self.assertEqual(response.headers["X-Custom"], "abc")
        response = self.fetch("/mode/status?code=204&body=ignored")
        self.assertEqual((response.code, response.body), (204, b""))

    def test_repeated_response_headers_all_reach_the_client(self):
        response = self.fetch("/mode/two_cookies")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.get_list("Set-Cookie"), ["a=1", "b=2"])
        self.assertEqual(response.headers["Content-Type"], "text/plain")

    def test_invalid_worker_header_is_502(self):
        with ExpectLog("edgebook.gateway.dataplane", ".*invalid response"):
            response, _ = self.fetch_json("/mode/status?h=a%0d%0aInjected:%201")
        self.assert_gateway_error(response, 502, "bad_worker_response")
        self.assertNotIn("Injected", response.headers)

    # -- body limit --------------------------------------------------------------------

    def test_413_on_content_length_before_worker_sees_it(self):
        response, _ = self.fetch_json("/echo/1", method="POST", body=b"x" * 2000)
        self.assert_gateway_error(response, 413, "body_too_large")
        self.assertEqual(self.supervisor.metrics("post")["requests"], 0)
        self.assertEqual(self.supervisor.state("post")["workers"][0]["served"], 0)
        response, body = self.fetch_json("/echo/1", method="POST", body=b"x" * 1024)
        self.assertEqual((response.code, len(body["body"])), (200, 1024))

    def test_413_while_streaming_a_chunked_body(self):
        async def chunks(write):
            for _ in range(8):
                await write(b"y" * 300)
        response = self.fetch("/echo/1", method="POST", body_producer=chunks,
                              raise_error=False)
        self.assert_gateway_error(response, 413, "body_too_large")
        self.assertEqual(self.supervisor.metrics("post")["requests"], 0)

    # -- failure contract over HTTP ----------------------------------------------------

    def test_crash_502_then_next_ok(self):
        with ExpectLog("edgebook", ".*", required=False):
            response, _ = self.fetch_json("/mode/crash")
        self.assert_gateway_error(response, 502, "worker_crashed")
        self.assertEqual(self.fetch("/mode/ok").code, 200)

    def test_hang_504_then_next_ok(self):
        with ExpectLog("edgebook", ".*", required=False):
            response, _ = self.fetch_json("/mode/hang")
        self.assert_gateway_error(response, 504, "timeout")
        self.assertEqual(self.fetch("/mode/ok").code, 200)

    def test_stderr_flood_over_http(self):
        response, body = self.fetch_json("/mode/stderr_flood")
        self.assertEqual((response.code, body), (200, {"flooded": True}))
        self.assertTrue(self.supervisor.logs("modes", 1)[0]["text"].startswith("xxx"))

    def test_stopped_endpoint_503(self):
        self.io_loop.run_sync(lambda: self.supervisor.stop("echo"))
        with ExpectLog("edgebook.gateway.dataplane", ".*503", required=False):
            response, _ = self.fetch_json("/echo/1")
        self.assert_gateway_error(response, 503, "unavailable")
        self.assertTrue(response.headers["Retry-After"].isdigit())

    @gen_test(timeout=60)
    async def test_hot_reload_under_http_load(self):
        client = self.http_client

        async def one(i):
            await asyncio.sleep(0.001 * (i % 100))
            response = await client.fetch(self.get_url(f"/echo/{i}"), raise_error=False,
                                          request_timeout=30)
            return response.code, json.loads(response.body).get("tag")

        load = asyncio.ensure_future(asyncio.gather(*(one(i) for i in range(250))))
        await asyncio.sleep(0.05)
        await self.supervisor.deploy(config("echo", "GET", "/echo/{id}", tag="v2", workers=2),
                                     FAKE, "r2")
        results = await load
        self.assertEqual([code for code, _ in results], [200] * 250)
        after = await client.fetch(self.get_url("/echo/x"))
        self.assertEqual(json.loads(after.body)["tag"], "v2")

    @gen_test(timeout=60)
    async def test_unrelated_endpoint_sees_no_errors(self):
        client = self.http_client

        async def abuse():
            for path in ("/mode/crash", "/mode/hang", "/mode/malformed", "/mode/crash"):
                await client.fetch(self.get_url(path), raise_error=False)

        async def load():
            return await asyncio.gather(*(
                client.fetch(self.get_url(f"/echo/{i}"), raise_error=False) for i in range(150)))

        with ExpectLog("edgebook", ".*", required=False):
            _, responses = await asyncio.gather(abuse(), load())
        self.assertEqual({r.code for r in responses}, {200})
        self.assertEqual(self.supervisor.metrics("echo")["errors"], {})


class ReusePortTest(AsyncHTTPTestCase):
    def get_app(self):
        return make_dataplane_app(Supervisor())

    @gen_test
    async def test_two_servers_share_a_port_with_reuse_port(self):
        first = serve_dataplane(self._app, "127.0.0.1", 0, reuse_port=True)
        port = next(iter(first._sockets.values())).getsockname()[1]
        second = serve_dataplane(self._app, "127.0.0.1", port, reuse_port=True)
        try:
            response = await self.http_client.fetch(f"http://127.0.0.1:{port}/x",
                                                    raise_error=False)
            self.assertEqual(response.code, 404)
        finally:
            first.stop()
            second.stop()

    @gen_test
    async def test_stop_serves_connections_waiting_to_be_accepted_instead_of_resetting(self):
        server = serve_dataplane(self._app, "127.0.0.1", 0)
        port = next(iter(server._sockets.values())).getsockname()[1]
        waiting = []
        for _ in range(20):  # connected, still in the accept queue: the loop has not run
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            waiting.append(sock)
        server.stop()
        try:
            refused = socket.socket()
            with self.assertRaises(ConnectionRefusedError):  # new clients go elsewhere
                refused.connect(("127.0.0.1", port))
            refused.close()
            loop = asyncio.get_running_loop()
            for sock in waiting:  # each is answered; none was reset
                sock.setblocking(False)
                head = await asyncio.wait_for(loop.sock_recv(sock, 64), 10)
                self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)
        finally:
            for sock in waiting:
                sock.close()
            await server.close_all_connections()
