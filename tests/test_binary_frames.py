"""Binary body frames: golden vectors, the reader across chunk boundaries, fuzzing, and the
negotiation at a worker's ready frame (a worker that does not announce them keeps JSON)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebook.gateway.logring import LogRing
from edgebook.gateway.worker import WorkerProcess
from edgebook.protocol import (BINARY_BODY_ENV, FrameReader, ProtocolError, TruncatedFrameError,
                               decode, decode_body, encode, encode_fast)

BINARY = Path(__file__).parent / "vectors" / "binary"
MAX_FRAME = 1024 * 1024  # as the invalid vectors assume


@pytest.mark.parametrize("name", ["request_binary_body", "response_binary_body"])
def test_golden_binary_frames(name):
    frame = (BINARY / f"{name}.bin").read_bytes()
    header = json.loads((BINARY / f"{name}.json").read_text())
    body = (BINARY / f"{name}.body").read_bytes()
    payload, rest = decode(frame)
    assert rest == b""
    assert payload.pop("body") == body
    assert payload == header
    assert encode({**header, "body": body}) == frame
    assert encode_fast({**header, "body": body}, binary=True)[4:] != b""  # same bytes, any order
    assert decode(encode_fast({**header, "body": body}, binary=True))[0]["body"] == body


def test_golden_ready_frame_announces_binary_bodies():
    frame = (BINARY / "ready_binary_body.bin").read_bytes()
    payload, _ = decode(frame)
    assert payload == json.loads((BINARY / "ready_binary_body.json").read_text())
    assert payload["binary_body"] is True and encode(payload) == frame


@pytest.mark.parametrize("name,kind", sorted(json.loads(
    (BINARY / "manifest.json").read_text()).items()))
def test_invalid_binary_frames(name, kind):
    with pytest.raises(ProtocolError) as info:
        decode((BINARY / name).read_bytes(), max_frame=MAX_FRAME)
    assert info.value.kind == ("protocol" if kind == "invalid" else kind)


def test_without_negotiation_bytes_go_as_text_or_base64():
    text = {"type": "request", "request_id": "1", "body": "héllo".encode()}
    data = encode_fast(text)
    assert decode(data)[0]["body"] == "héllo" and text["body_encoding"] == "utf8"
    raw = {"type": "request", "request_id": "2", "body": b"\xff\x00"}
    frame = decode(encode_fast(raw))[0]
    assert frame["body_encoding"] == "base64" and decode_body(frame) == b"\xff\x00"


async def read_all(stream: bytes, sizes: list[int]) -> list[dict]:
    reader = asyncio.StreamReader()
    position = 0
    for size in sizes:
        reader.feed_data(stream[position:position + size])
        position += size
    reader.feed_data(stream[position:])
    reader.feed_eof()
    frames = []
    async for frame in FrameReader(reader, max_frame=MAX_FRAME):
        frames.append(frame)
    return frames


@settings(max_examples=150, deadline=None)
@given(bodies=st.lists(st.binary(max_size=3000), min_size=1, max_size=4),
       sizes=st.lists(st.integers(1, 700), max_size=20), binary=st.booleans())
def test_reader_round_trip_any_chunking(bodies, sizes, binary):
    frames = [{"type": "response", "request_id": str(i), "status": 200, "body": body}
              for i, body in enumerate(bodies)]
    stream = b"".join(encode_fast(dict(frame), binary=binary) for frame in frames)
    got = asyncio.run(read_all(stream, sizes))
    assert [decode_body(frame) for frame in got] == bodies


@settings(max_examples=100, deadline=None)
@given(body=st.binary(min_size=1, max_size=500), cut=st.integers(1, 400))
def test_reader_refuses_a_stream_cut_inside_a_binary_frame(body, cut):
    stream = encode_fast({"type": "response", "request_id": "x", "body": body}, binary=True)
    cut = min(cut, len(stream) - 1)
    with pytest.raises(TruncatedFrameError):
        asyncio.run(read_all(stream[:cut], []))


#: A worker that announces binary bodies only when the gateway offers them, and echoes the
#: request body back in the same form it came.
ECHO_WORKER = r"""
import json, os, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
def frame(head, body=None):
    data = json.dumps(head).encode()
    out.write(struct.pack(">I", len(data)) + data + (body or b"")); out.flush()
binary = os.environ.get("EDGEBOOK_BINARY_BODY") == "1" and "--old" not in sys.argv
frame({"type": "ready", "protocol": 1, "sdk": "t", "sdk_version": "0", "pid": os.getpid(),
       **({"binary_body": True} if binary else {})})
while True:
    header = inp.read(4)
    if len(header) < 4:
        break
    request = json.loads(inp.read(struct.unpack(">I", header)[0]))
    body = inp.read(request["body_length"]) if request.get("body_encoding") == "binary" else None
    reply = {"type": "response", "request_id": request["request_id"], "status": 200,
             "headers": {"x-came-as": request.get("body_encoding", "none")}}
    if body is not None:
        frame({**reply, "body_encoding": "binary", "body_length": len(body)}, body)
    else:
        frame({**reply, "body": request.get("body"),
               "body_encoding": request.get("body_encoding", "utf8")})
"""


@pytest.mark.parametrize("announce,expected,size", [
    (True, "binary", 300), (False, "base64", 300),
    (True, "binary", 10_000),  # 2.5 MiB: more than a (widened) pipe holds; partial writes
])
def test_negotiated_at_the_ready_frame(announce, expected, size):
    body = bytes(range(256)) * size

    async def exchange():
        argv = [sys.executable, "-c", ECHO_WORKER] + ([] if announce else ["--old"])
        worker = WorkerProcess(argv, env={}, log_ring=LogRing(100))
        assert worker.env[BINARY_BODY_ENV] == "1"
        await worker.start(10)
        try:
            return await worker.send({"type": "request", "request_id": "b-1", "method": "PUT",
                                      "path": "/", "body": body}, 10)
        finally:
            await worker.stop(2)

    response = asyncio.run(exchange())
    assert response["headers"]["x-came-as"] == expected
    assert decode_body(response) == body
