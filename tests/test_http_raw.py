"""HTTP/1.1 behaviour real clients rely on, over raw sockets, against the data plane with a
real supervisor and fake workers behind it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port

from edgebook.gateway.dataplane import make_dataplane_app, serve_dataplane
from edgebook.gateway.supervisor import EndpointConfig, RestartPolicy, Supervisor

from worker_script import FAKE

MAX_FRAME = 64 * 1024


async def big_reply(endpoint, call):
    return {"ok": True, "result": "r" * (2 * MAX_FRAME)}


@pytest.fixture(scope="module")
def port():
    sock, port = bind_unused_port()
    ready = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = IOLoop.current()
        supervisor = Supervisor(policy=RestartPolicy(backoff_base=0.01, stop_grace=1),
                                max_frame=MAX_FRAME, service_handler=big_reply)

        async def deploy():
            await asyncio.gather(
                supervisor.deploy(EndpointConfig("get", "GET", "/echo/{id}"), FAKE, "1"),
                supervisor.deploy(EndpointConfig("post", "POST", "/echo/{id}", max_body=1024),
                                  FAKE, "1"),
                supervisor.deploy(EndpointConfig("big", "POST", "/mode/echo_body",
                                                 max_body=10 * MAX_FRAME), FAKE, "1"),
                supervisor.deploy(EndpointConfig("modes", "GET", "/mode/{m}", timeout=1),
                                  FAKE, "1"),
                supervisor.deploy(EndpointConfig("upload", "POST", "/upload"), FAKE, "1"))

        loop.run_sync(deploy, timeout=30)
        holder.update(supervisor=supervisor, loop=loop,
                      server=serve_dataplane(make_dataplane_app(
                          supervisor, log_function=lambda exchange: None), sockets=[sock]))
        ready.set()
        loop.start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield port
    loop = holder["loop"]

    async def stop():
        holder["server"].stop()
        await holder["supervisor"].shutdown(drain_timeout=1)

    done = threading.Event()
    loop.add_callback(lambda: asyncio.ensure_future(stop()).add_done_callback(
        lambda _: (loop.stop(), done.set())))
    done.wait(20)
    thread.join(10)


class Conn:
    """A raw client connection that parses responses it is told to expect."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self, head: bool = False) -> tuple[int, dict, bytes]:
        """The next response: status, headers (lower-case names), body."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed; got {self.buffer!r}")
        raw, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or status in (100, 204, 304):
            length = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        else:  # the body ends with the connection
            while self._fill():
                pass
            length = len(self.buffer)
        while len(self.buffer) < length:
            if not self._fill():
                raise EOFError("connection closed inside a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """True when the server closed the connection with nothing more to say."""
        try:
            return not self.buffer and not self._fill()
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn(port):
    connection = Conn(port)
    yield connection
    connection.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


def test_pipelined_requests_are_answered_in_order(conn):
    conn.send(b"".join(get(f"/echo/{i}") for i in range(5)) + post("/echo/p", b"hi") +
              get("/nowhere") + get("/echo/last"))
    ids = []
    for _ in range(5):
        status, _, body = conn.response()
        assert status == 200
        ids.append(json.loads(body)["params"]["id"])
    assert ids == ["0", "1", "2", "3", "4"]
    status, _, body = conn.response()
    assert (status, json.loads(body)["body"]) == (200, "hi")
    assert conn.response()[0] == 404
    status, _, body = conn.response()
    assert (status, json.loads(body)["params"]["id"]) == (200, "last")


def test_chunked_request_body(conn):
    conn.send(b"POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + get("/echo/after"))
    status, _, body = conn.response()
    assert (status, json.loads(body)["body"]) == (200, "hello world")
    assert conn.response()[0] == 200


def test_expect_100_continue(conn):
    conn.send(b"POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
              b"Expect: 100-continue\r\n\r\n")
    assert conn.response()[0] == 100
    conn.send(b"ping")
    status, _, body = conn.response()
    assert (status, json.loads(body)["body"]) == (200, "ping")


def test_expect_100_continue_over_the_limit_gets_413_without_100(conn):
    conn.send(b"POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
              b"Expect: 100-continue\r\n\r\n")
    status, headers, body = conn.response()
    assert (status, json.loads(body)["error_type"]) == (413, "body_too_large")
    assert headers["connection"] == "close"
    assert conn.closed()


def test_declared_oversized_body_refused_before_it_is_sent(conn):
    """The client has sent headers only: the 413 comes without waiting for the body."""
    conn.send(b"POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
    status, headers, body = conn.response()
    assert status == 413 and headers["x-request-id"] == json.loads(body)["request_id"]
    assert conn.closed()


def test_chunked_body_over_the_limit_is_413(conn):
    chunk = b"400\r\n" + b"z" * 1024 + b"\r\n"
    conn.send(b"POST /echo/e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
              chunk * 2 + b"0\r\n\r\n")
    assert conn.response()[0] == 413
    assert conn.closed()


def test_http_10_closes_unless_keep_alive(port):
    one = Conn(port)
    one.send(b"GET /echo/a HTTP/1.0\r\n\r\n")
    assert one.response()[0] == 200
    assert one.closed()
    one.close()
    two = Conn(port)
    two.send(b"GET /echo/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    status, headers, _ = two.response()
    assert (status, headers["connection"].lower()) == (200, "keep-alive")
    two.send(b"GET /echo/b HTTP/1.0\r\n\r\n")
    assert two.response()[0] == 200
    assert two.closed()
    two.close()


def test_connection_close(conn):
    conn.send(get("/echo/a", "Connection: close\r\n"))
    status, headers, _ = conn.response()
    assert (status, headers["connection"]) == (200, "close")
    assert conn.closed()


@pytest.mark.parametrize("data", [
    b"POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    b"POST /echo/e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!",
    b"GARBAGE\r\n\r\n",
    b"GET /echo/1 HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /echo/1 HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
], ids=["cl_and_te", "two_lengths", "garbage", "bad_version", "bad_header"])
def test_malformed_input_is_answered_or_closed_never_hung(conn, data):
    conn.send(data + get("/echo/after"))
    try:
        status, _, _ = conn.response()
    except (EOFError, ConnectionResetError):
        return  # closed without an answer
    assert status == 400
    assert conn.closed()  # and nothing pipelined after it is answered


def test_head_answers_like_get_without_the_body(conn):
    conn.send(get("/echo/h").replace(b"GET", b"HEAD", 1) + get("/echo/g"))
    status, headers, body = conn.response(head=True)
    assert status == 200 and int(headers["content-length"]) > 0 and headers["x-request-id"]
    status, _, body = conn.response()  # the HEAD answer carried no body: framing intact
    assert (status, json.loads(body)["params"]["id"]) == (200, "g")


def test_head_where_no_get_route_is_405(conn):
    conn.send(b"HEAD /upload HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = conn.response(head=True)
    assert status == 405 and "POST" in headers["allow"]


def test_options_and_unknown_methods_are_405(conn):
    conn.send(b"OPTIONS /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = conn.response()
    assert (status, headers["allow"]) == (405, "GET, POST")
    assert json.loads(body)["error_type"] == "method_not_allowed"
    conn.send(b"BREW /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = conn.response()
    assert (status, json.loads(body)["error_type"]) == (405, "method_not_allowed")


def test_request_id_and_date(conn):
    conn.send(get("/echo/1", "X-Request-Id: abc-1\r\n"))
    status, headers, body = conn.response()
    assert headers["x-request-id"] == "abc-1"  # the client's id is echoed
    internal = json.loads(body)["request_id"]  # the worker sees the gateway's own
    assert internal != "abc-1" and len(internal) == 36
    assert headers["date"].endswith("GMT")


def test_body_that_fits_the_limit_but_not_a_frame_is_413_and_the_worker_lives(conn):
    """Binary bodies travel as base64: 60 KiB of bytes is 80 KiB in a frame, over the
    64 KiB maximum. The gateway refuses it; the worker never sees a frame it would die on."""
    conn.send(post("/mode/echo_body", bytes(range(256)) * 16))
    status, _, echoed = conn.response()
    assert status == 200 and echoed == bytes(range(256)) * 16
    conn.send(post("/mode/echo_body", bytes(range(256)) * 240))
    status, _, body = conn.response()
    assert (status, json.loads(body)["error_type"]) == (413, "body_too_large")
    conn.send(post("/mode/echo_body", b"still alive"))
    assert conn.response()[2] == b"still alive"


def test_body_limit_is_capped_by_the_frame_size(conn):
    conn.send(post("/mode/echo_body", b"a" * (MAX_FRAME + 1)))
    status, _, body = conn.response()
    assert (status, json.loads(body)["error_type"]) == (413, "body_too_large")
    assert str(MAX_FRAME) in json.loads(body)["error"]


def test_service_reply_over_the_frame_size_is_an_error_to_the_handler(conn):
    conn.send(get("/mode/service") + get("/mode/service"))
    for _ in range(2):
        status, _, body = conn.response()
        reply = json.loads(body)["reply"]
        assert status == 200 and reply["ok"] is False
        assert reply["error"]["kind"] == "internal" and "too large" in reply["error"]["message"]
