"""The Python codec against the golden frames and hostile input."""

import asyncio
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from edgebook import protocol
from edgebook.protocol import (BadJsonError, BadUtf8Error, EmptyFrameError, FrameReader,
                               NotAnObjectError, OversizedFrameError, ProtocolError,
                               TruncatedFrameError, UnknownFrameTypeError)

VECTORS = Path(__file__).parent / "vectors"
VALID = sorted((VECTORS / "valid").glob("*.bin"))
INVALID_MANIFEST = json.loads((VECTORS / "invalid" / "manifest.json").read_text())
MIB = 1024 * 1024


def test_vectors_exist():
    assert len(VALID) >= 10
    assert len(INVALID_MANIFEST) >= 7


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_golden_frame_decodes_and_reencodes_byte_for_byte(path):
    data = path.read_bytes()
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    payload, rest = protocol.decode(data)
    assert rest == b""
    assert payload == expected
    assert protocol.encode(payload) == data


@pytest.mark.parametrize("name", sorted(INVALID_MANIFEST))
def test_invalid_vector_is_refused_with_its_kind(name):
    data = (VECTORS / "invalid" / f"{name}.bin").read_bytes()
    with pytest.raises(ProtocolError) as info:
        protocol.decode_all(data, max_frame=MIB)
    assert info.value.kind == INVALID_MANIFEST[name]


@pytest.mark.parametrize("name", sorted(INVALID_MANIFEST))
def test_invalid_vector_is_refused_by_the_stream_reader(name):
    data = (VECTORS / "invalid" / f"{name}.bin").read_bytes()

    async def read_all():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return [frame async for frame in FrameReader(reader, max_frame=MIB)]

    with pytest.raises(ProtocolError) as info:
        asyncio.run(read_all())
    assert info.value.kind == INVALID_MANIFEST[name]


def test_oversized_length_is_refused_before_the_payload_arrives():
    async def scenario():
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack(">I", 2 * MIB))  # no payload, no EOF: must not wait
        return await asyncio.wait_for(FrameReader(reader, max_frame=MIB).read(), 1)

    with pytest.raises(OversizedFrameError):
        asyncio.run(scenario())


def test_clean_end_between_frames_is_none():
    async def scenario():
        reader = asyncio.StreamReader()
        reader.feed_data(protocol.encode({"type": "ready", "protocol": 1}))
        reader.feed_eof()
        frames = FrameReader(reader)
        return await frames.read(), await frames.read()

    first, second = asyncio.run(scenario())
    assert first["type"] == "ready"
    assert second is None


def test_error_classes_name_their_rule():
    cases = {TruncatedFrameError: "truncated", OversizedFrameError: "oversized",
             EmptyFrameError: "empty", BadUtf8Error: "bad_utf8", BadJsonError: "bad_json",
             NotAnObjectError: "not_object", UnknownFrameTypeError: "unknown_type"}
    for cls, kind in cases.items():
        assert issubclass(cls, ProtocolError) and cls.kind == kind


def test_frame_without_type_is_a_request():
    payload, _ = protocol.decode(protocol.encode({"method": "GET", "path": "/"}))
    assert payload["path"] == "/"


def test_unknown_type_can_be_restricted_by_direction():
    frame = protocol.encode({"type": "request", "request_id": "x"})
    with pytest.raises(UnknownFrameTypeError):
        protocol.decode(frame, known_types=protocol.WORKER_FRAME_TYPES)


def test_writer_batches_frames_written_in_one_loop_turn():
    writes = []

    class Transport:
        def write(self, data):
            writes.append(data)

        def is_closing(self):
            return False

        async def drain(self):
            pass

    async def scenario():
        writer = protocol.FrameWriter(Transport())
        for i in range(5):
            writer.write({"type": "request", "request_id": str(i)})
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert len(writes) == 1
    frames = protocol.decode_all(writes[0])
    assert [f["request_id"] for f in frames] == ["0", "1", "2", "3", "4"]


# -- bodies --------------------------------------------------------------------------------

@given(st.binary(max_size=2048))
def test_body_round_trips_any_bytes(body):
    text, encoding = protocol.encode_body(body)
    frame = {"body": text, "body_encoding": encoding}
    assert protocol.decode_body(protocol.decode(protocol.encode(
        {"type": "response", **frame}))[0]) == body
    if body:
        try:
            body.decode("utf-8")
            assert encoding == "utf8"
        except UnicodeDecodeError:
            assert encoding == "base64"


def test_decode_body_refuses_bad_fields():
    with pytest.raises(ProtocolError, match="base64"):
        protocol.decode_body({"body": "***", "body_encoding": "base64"})
    with pytest.raises(ProtocolError, match="body_encoding"):
        protocol.decode_body({"body": "x", "body_encoding": "rot13"})
    with pytest.raises(ProtocolError, match="string or null"):
        protocol.decode_body({"body": 12})


# -- properties over arbitrary payloads and hostile bytes ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)
payloads = st.dictionaries(st.text(max_size=12), json_values, max_size=6).map(
    lambda d: {**d, "type": "response"})


@given(st.lists(payloads, max_size=5))
@settings(max_examples=200)
def test_any_payload_sequence_round_trips(frames):
    stream = b"".join(protocol.encode(f) for f in frames)
    assert protocol.decode_all(stream) == frames


@given(st.lists(payloads, min_size=1, max_size=3), st.data())
def test_every_proper_prefix_of_a_stream_is_truncated(frames, data):
    stream = b"".join(protocol.encode(f) for f in frames)
    cut = data.draw(st.integers(1, len(stream) - 1))
    prefix = stream[:cut]
    try:
        decoded = protocol.decode_all(prefix)
    except TruncatedFrameError:
        return
    # a cut exactly between frames is a clean end
    assert decoded == frames[:len(decoded)]
    assert sum(len(protocol.encode(f)) for f in decoded) == cut


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_never_escape_as_anything_but_protocol_errors(data):
    try:
        frames = protocol.decode_all(data, max_frame=MIB)
    except ProtocolError:
        return
    assert all(isinstance(f, dict) for f in frames)


def test_fast_encoder_falls_back_for_what_orjson_cannot_encode():
    big = {"type": "service_reply", "result": {"n": 2 ** 70}}
    assert protocol.decode(protocol.encode_fast(big))[0] == big


def test_fast_decoder_still_names_each_broken_rule():
    with pytest.raises(BadUtf8Error):
        protocol.decode_payload(b'{"type":"request","x":"\xff"}')
    with pytest.raises(BadJsonError):
        protocol.decode_payload(b'{"type":')
    assert protocol.decode_payload(b'{"type":"response","n":%d}' % 2 ** 70)["n"] == 2 ** 70
