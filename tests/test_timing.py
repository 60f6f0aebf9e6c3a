"""Latency anatomy: the gateway's phase marks, the Server-Timing header, and the notebook's
reading of it (waterfall, DataFrame)."""

from __future__ import annotations

import pytest

from edgebook.gateway.timing import RequestTiming, call_size
from edgebook.notebook.timing import Waterfall
from edgebook.servertiming import parse_server_timing


def marked() -> RequestTiming:
    timing = RequestTiming(start=10.0)
    for name, at in (("routed", 10.0001), ("received", 10.00012), ("dispatched", 10.0032),
                     ("replied", 10.0142), ("written", 10.0145)):
        timing.mark(name, at)
    timing.service_call("db.query", 10.004, 0.006, ("rows", 3))
    timing.service_call("cache.get", 10.0105, 0.0005)
    return timing


def test_phases_add_up_to_the_gateway_time():
    timing = marked()
    phases = timing.phases()
    assert [name for name, _, _ in phases] == ["route", "recv", "queue", "worker"]
    total = sum(duration for _, _, duration in phases)
    assert total == pytest.approx((10.0142 - 10.0) * 1e3, abs=1e-6)
    assert phases[2][2] == pytest.approx(3.08, abs=1e-6)  # waiting for a worker
    assert timing.to_dict()["write_ms"] == pytest.approx(0.3, abs=1e-6)


def test_the_header_reads_back_into_the_same_phases():
    header = marked().header()
    entries = parse_server_timing(header)
    by_name = {e.name: e for e in entries}
    assert by_name["queue"].duration_ms == pytest.approx(3.08, abs=1e-3)
    assert by_name["worker"].duration_ms == pytest.approx(11.0, abs=1e-3)
    assert by_name["db"].desc == "db.query" and by_name["db"].duration_ms == pytest.approx(6.0)
    assert by_name["cache"].desc == "cache.get"
    phases = sum(e.duration_ms for e in entries if e.name in ("recv", "route", "queue", "worker"))
    assert phases == pytest.approx(by_name["total"].duration_ms, abs=0.002)  # rounding only


def test_service_calls_show_their_operation_never_their_arguments():
    timing = RequestTiming()
    timing.service_call("db.query", timing.start, 0.001)
    header = timing.header()
    assert 'desc="db.query"' in header and "SELECT" not in header


def test_service_calls_say_what_they_moved_where_the_reply_tells():
    ok = {"ok": True}
    assert call_size("db.query", {}, {**ok, "result": {"rows": [{}, {}], "rows_affected": 0}}) \
        == ("rows", 2)
    assert call_size("db.execute", {}, {**ok, "result": {"rows_affected": 5}}) == ("rows", 5)
    assert call_size("storage.list", {}, {**ok, "result": [{"id": 1}]}) == ("rows", 1)
    assert call_size("redis.get", {}, {**ok, "result": "héllo"}) == ("bytes", 6)
    assert call_size("objects.get", {}, {**ok, "result": {"data": "AAAA", "size": 3}}) \
        == ("bytes", 3)
    for data, size in (("", 0), ("YQ==", 1), ("YWI=", 2), ("YWJj", 3)):
        assert call_size("objects.put", {"data": data}, {**ok, "result": None}) \
            == ("bytes", size)
    assert call_size("redis.get", {}, {**ok, "result": None}) is None  # a miss
    assert call_size("db.begin", {}, {**ok, "result": {"tx": "t1"}}) is None
    assert call_size("db.query", {}, {"ok": False, "error": {"kind": "sql"}}) is None


def test_the_header_carries_sizes_and_the_notebook_shows_them():
    header = marked().header()
    assert 'db;desc="db.query";dur=6.000;rows=3' in header
    entries = {e.name: e for e in parse_server_timing(header)}
    assert entries["db"].rows == 3 and entries["db"].size == "3 rows"
    assert entries["cache"].rows is None and entries["cache"].size == ""
    one = parse_server_timing('storage;desc="objects.get";dur=1;bytes=1')[0]
    assert one.bytes == 1 and one.size == "1 byte"
    waterfall = Waterfall(parse_server_timing(header))
    assert "db.query (3 rows)" in waterfall.text()
    df = waterfall.df()
    assert df[df.phase == "db"].iloc[0]["rows"] == 3
    assert RequestTiming.to_dict(marked())["calls"][0]["rows"] == 3
    assert "rows" not in marked().to_dict()["calls"][1]


def test_parser_takes_other_servers_headers_and_skips_junk():
    entries = parse_server_timing('cache;desc="Cache Read";dur=23.2, db;dur=53, app;dur=47.2, '
                                  'missedCache, bad;dur=x')
    assert [(e.name, e.duration_ms, e.desc) for e in entries] == [
        ("cache", 23.2, "Cache Read"), ("db", 53.0, ""), ("app", 47.2, ""),
        ("missedCache", None, ""), ("bad", None, "")]
    assert parse_server_timing(None) == [] and parse_server_timing("") == []


def test_waterfall_lays_calls_inside_the_worker_phase():
    waterfall = Waterfall(parse_server_timing(marked().header()))
    df = waterfall.df()
    assert list(df["phase"]) == ["route", "recv", "queue", "worker", "db", "cache"]
    worker = df[df.phase == "worker"].iloc[0]
    db = df[df.phase == "db"].iloc[0]
    assert db.start_ms == pytest.approx(worker.start_ms)
    text = waterfall.text()
    assert "waiting for a free worker" in text and "  db" in text
    assert "edgebook-waterfall" in waterfall._repr_html_()
    assert not Waterfall([]) and "no Server-Timing" in Waterfall([]).text()


def test_a_response_reads_its_server_timing():
    from email.message import Message

    from edgebook.notebook.response import EdgeResponse, SentRequest

    headers = Message()
    headers["Server-Timing"] = marked().header()
    response = EdgeResponse(status=200, headers=headers, content=b"{}", elapsed=0.02,
                            request=SentRequest("GET", "http://127.0.0.1:1/x", [], None))
    assert list(response.timing["phase"])[:4] == ["route", "recv", "queue", "worker"]
    assert "where the time went" in response._repr_html_()
