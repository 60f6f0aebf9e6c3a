"""Property-based tests: the Python codec, the data plane's handling of worker response
headers, and a differential check that the Python and Rust frame readers agree."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgebook.protocol import (FRAME_TYPES, FrameReader, OversizedFrameError, ProtocolError,
                               decode, decode_all, decode_body, encode, encode_body)

SDK = Path(__file__).resolve().parent.parent / "sdk"
# `make fuzz` runs these with many more examples; `make test` keeps the defaults.
settings.register_profile("long", max_examples=5000, deadline=None)
if os.environ.get("EDGEBOOK_FUZZ_LONG"):
    settings.load_profile("long")
SMALL = 4096

json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)
frames = st.builds(lambda kind, rest: {**rest, "type": kind}, st.sampled_from(sorted(FRAME_TYPES)),
                   st.dictionaries(st.text(max_size=8), json_values, max_size=5))


@given(frames)
def test_encode_then_decode_is_the_identity(frame):
    payload, rest = decode(encode(frame))
    assert payload == frame and rest == b""


def _mutated_stream(draw_bytes, frame_list):
    stream = b"".join(encode(f) for f in frame_list)
    return stream + draw_bytes


@given(st.lists(frames, max_size=3), st.binary(max_size=64))
def test_any_stream_decodes_or_raises_a_protocol_error(frame_list, tail):
    stream = _mutated_stream(tail, frame_list)
    try:
        decoded = decode_all(stream, max_frame=SMALL)
    except ProtocolError:
        return
    assert decoded[:len(frame_list)] == [f for f in frame_list if len(encode(f)) <= SMALL + 4][:len(decoded)]


@given(st.binary(max_size=200), st.integers(1, SMALL))
def test_the_async_reader_agrees_with_decode(data, max_frame):
    async def read_all():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [frame async for frame in FrameReader(reader, max_frame=max_frame)]

    try:
        expected = ("ok", decode_all(data, max_frame=max_frame))
    except ProtocolError as exc:
        expected = ("error", exc.kind)
    try:
        got = ("ok", asyncio.run(read_all()))
    except ProtocolError as exc:
        got = ("error", exc.kind)
    assert got == expected


@given(st.integers(SMALL + 1, 2**32 - 1))
def test_an_oversized_length_is_refused_from_its_four_bytes(length):
    with pytest.raises(OversizedFrameError):
        decode(struct.pack(">I", length), max_frame=SMALL)


@given(st.one_of(st.none(), st.text(), st.binary(), st.integers()),
       st.one_of(st.sampled_from(["utf8", "base64", "gzip"]), st.none()))
def test_body_decoding_returns_bytes_or_a_protocol_error(body, encoding):
    frame = {"body": body}
    if encoding is not None:
        frame["body_encoding"] = encoding
    try:
        assert isinstance(decode_body(frame), bytes)
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_bodies_round_trip(raw):
    text, encoding = encode_body(raw)
    assert decode_body({"body": text, "body_encoding": encoding}) == raw


# -- response headers from a worker, on the wire -------------------------------------------

header_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | \
    st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", "X-A: b",
                     "Set-Cookie", "x\r\nInjected: 1", "bad name", "x\0y", ""])


class _Canned:
    """A supervisor stand-in whose one endpoint answers with a given response frame."""

    def __init__(self):
        self.response: dict = {}

    def route(self, method, path, host):
        from edgebook.gateway.pool import EndpointConfig
        from edgebook.router import Match, Route
        return Match(Route("e", "GET", "/e"), {}), EndpointConfig("e", "GET", "/e")

    async def handle(self, name, frame):
        return dict(self.response, request_id=frame["request_id"])

    def __getattr__(self, name):  # hooks the data plane may look up
        raise AttributeError(name)


def _raw_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /e HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(header_text, header_text, max_size=4))
def test_worker_headers_cannot_inject_anything_on_the_wire(dataplane, headers):
    canned, port = dataplane
    canned.response = {"type": "response", "status": 200, "headers": headers, "body": "hi"}
    raw = _raw_get(port)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split()[1]
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert all(b":" in line for line in lines[1:]), lines
    assert b"\0" not in head and b"injected" not in names
    assert names.count(b"content-length") <= 1 and b"transfer-encoding" not in names
    if status == b"200":
        assert body == b"hi"
        for line in lines[1:]:
            name = line.split(b":", 1)[0]
            assert name and all(33 <= c <= 126 for c in name), line
    else:
        assert status == b"502" and json.loads(body)["error_type"] == "bad_worker_response"


@pytest.fixture(scope="module")
def dataplane():
    import threading

    from tornado.ioloop import IOLoop
    from tornado.testing import bind_unused_port

    from edgebook.gateway.dataplane import make_dataplane_app, serve_dataplane

    canned = _Canned()
    sock, port = bind_unused_port()
    started = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        holder["server"] = serve_dataplane(make_dataplane_app(canned, log_function=lambda h: None),
                                           sockets=[sock])
        holder["loop"] = IOLoop.current()
        started.set()
        holder["loop"].start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    yield canned, port
    holder["loop"].add_callback(holder["server"].stop)
    holder["loop"].add_callback(holder["loop"].stop)
    thread.join(10)
    holder["loop"].close(all_fds=True)


# -- the Rust reader agrees ------------------------------------------------------------------

@pytest.fixture(scope="module")
def frame_check():
    if shutil.which("cargo") is None:
        pytest.skip("needs cargo")
    build = subprocess.run(["cargo", "build", "--example", "frame_check", "--message-format=json",
                            "--manifest-path", str(SDK / "Cargo.toml")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and \
                message["target"]["name"] == "frame_check":
            return message["executable"]
    raise AssertionError("frame_check was not built")


def _python_view(stream: bytes, max_frame: int) -> list:
    out = []
    while stream:
        try:
            frame, stream = decode(stream, max_frame=max_frame)
        except ProtocolError as exc:
            out.append({"error": exc.kind})
            break
        out.append(frame)
    return out


def _mutate(data: bytes, cuts: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for at, value in cuts:
        if buffer:
            buffer[at % len(buffer)] = value
    return bytes(buffer)


@settings(max_examples=120, deadline=None)
@given(st.lists(frames, min_size=1, max_size=3),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
       st.integers(0, 40), st.integers(16, 1024))
def test_python_and_rust_read_the_same_stream_the_same_way(frame_check, frame_list, cuts, chop,
                                                            max_frame):
    stream = _mutate(b"".join(encode(f) for f in frame_list), cuts)
    stream = stream[:max(0, len(stream) - chop)]
    rust = subprocess.run([frame_check, str(max_frame)], input=stream, capture_output=True,
                          timeout=30)
    assert rust.returncode == 0, rust.stderr
    rust_view = [json.loads(line) for line in rust.stdout.decode().split("\n") if line]
    assert rust_view == _python_view(stream, max_frame)
