"""The one parser of the admin API's server-sent events, whatever the chunking."""

import json

from edgebook.sse import EventParser

STREAM = (b'data: {"type": "hello", "seq": 0}\n\n'
          b": heartbeat\n\n"
          b'data: {"type": "build",\r\ndata:  "seq": 1}\r\n\r\n'
          b"data: not json\n\n"
          b'data: {"type": "endpoint", "seq": 2, "name": "caf\xc3\xa9"}\n\n'
          b'data: {"type": "partial"')

EXPECTED = [{"type": "hello", "seq": 0}, {"type": "build", "seq": 1},
            {"type": "endpoint", "seq": 2, "name": "café"}]


def test_events_whole_and_byte_by_byte(caplog):
    assert EventParser().feed(STREAM) == EXPECTED
    parser = EventParser()
    events = [event for i in range(len(STREAM)) for event in parser.feed(STREAM[i:i + 1])]
    assert events == EXPECTED
    assert "ignoring a malformed event" in caplog.text


def test_an_unfinished_event_waits_for_its_end():
    parser = EventParser()
    assert parser.feed(b'data: {"type": "partial"') == []
    assert parser.feed(b', "seq": 3}\n\n') == [{"type": "partial", "seq": 3}]


def test_only_objects_are_events():
    assert EventParser().feed(b"data: " + json.dumps([1, 2]).encode() + b"\n\n") == []
