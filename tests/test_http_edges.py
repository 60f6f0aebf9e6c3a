"""Malformed HTTP sent raw to the data plane: refused cleanly, the handler never invoked."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port

from edgebook.gateway.dataplane import make_dataplane_app, serve_dataplane
from edgebook.gateway.pool import EndpointConfig
from edgebook.router import Match, Route


class CountingSupervisor:
    """One endpoint, POST /e; counts how often a request reaches it."""

    def __init__(self):
        self.calls = 0

    def route(self, method, path, host):
        return Match(Route("e", "POST", "/e"), {}), EndpointConfig("e", "POST", "/e",
                                                                    max_body=1024)

    async def handle(self, name, frame):
        self.calls += 1
        return {"type": "response", "request_id": frame["request_id"], "status": 200,
                "headers": {}, "body": "ok"}


@pytest.fixture(scope="module")
def server():
    supervisor = CountingSupervisor()
    sock, port = bind_unused_port()
    ready = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        holder["server"] = serve_dataplane(
            make_dataplane_app(supervisor, log_function=lambda h: None), sockets=[sock])
        holder["loop"] = IOLoop.current()
        ready.set()
        holder["loop"].start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield supervisor, port
    holder["loop"].add_callback(holder["server"].stop)
    holder["loop"].add_callback(holder["loop"].stop)
    thread.join(10)
    holder["loop"].close(all_fds=True)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server refused and closed before reading everything: read what it said
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


GOOD = b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
BAD = {
    "content_length_and_chunked": b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    "two_content_lengths": b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                           b"Content-Length: 3\r\n\r\nhi!",
    "bad_chunk_size": b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nhi\r\n0\r\n\r\n",
    "negative_chunk_size": b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"-2\r\nhi\r\n0\r\n\r\n",
    "unknown_transfer_encoding": b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                                 b"\r\nhi",
    "oversized_headers": b"POST /e HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 +
                         b"\r\nContent-Length: 2\r\n\r\nhi",
    "nul_in_header": b"POST /e HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nhi",
    "nul_in_request_line": b"POST /e\x00 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    "bad_content_length": b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2x\r\n\r\nhi",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_requests_never_reach_a_worker_nor_what_is_pipelined_after(server, name):
    supervisor, port = server
    before = supervisor.calls
    answer = exchange(port, BAD[name] + GOOD)  # a good request pipelined after the bad one
    assert supervisor.calls == before, answer[:300]
    if answer:  # either a clean 4xx, or the connection is closed without one
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
        assert answer.count(b"HTTP/1.1 ") == 1, answer  # nothing after the error


def test_a_good_request_on_its_own_reaches_the_worker(server):
    supervisor, port = server
    before = supervisor.calls
    answer = exchange(port, GOOD)
    assert answer.startswith(b"HTTP/1.1 200") and supervisor.calls == before + 1


def test_a_body_over_the_limit_gets_413_and_framing_stays_intact(server):
    """The oversized body never reaches a worker. Known gap: Tornado closes the connection
    after the 413 but may already have read and dispatched a request pipelined behind the
    body, whose answer is then lost; so this checks only that nothing else got through."""
    supervisor, port = server
    before = supervisor.calls
    answer = exchange(port, b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" +
                      b"a" * 5000 + GOOD)
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer
    assert supervisor.calls - before <= 1  # at most the pipelined good request
