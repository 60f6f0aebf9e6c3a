"""edgebook.request and EdgeResponse against a real Tornado server on loopback."""

import json
import shlex
import subprocess

import pytest
from IPython.lib.pretty import pretty

from edgebook.notebook.history import History
from edgebook.notebook.request import EdgeRequestError, build_request, resolve_url
from edgebook.notebook.session import request
from edgebook.notebook.response import HTTPStatusError, curl_command
from edgebook.notebook.session import Session
from tiny_app import TinyServer


@pytest.fixture(scope="module")
def server():
    with TinyServer() as s:
        yield s


def test_json_body_params_and_headers_reach_the_server(server):
    r = request("POST", "/echo/a", json={"x": [1, 2]}, params={"q": "v w", "flag": True},
                headers={"X-Thing": "1"}, base_url=server.url)
    assert r.status == 200 and r.ok
    body = r.json()
    assert body["method"] == "POST" and body["path"] == "/echo/a"
    assert body["query"] == {"q": "v w", "flag": "true"}
    assert json.loads(body["body"]) == {"x": [1, 2]}
    assert body["headers"]["content-type"] == "application/json"
    assert body["headers"]["x-thing"] == "1"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.request_id == "rid-123"
    assert 0 < r.elapsed < 5
    assert r.request.path == "/echo/a?q=v+w&flag=true"


def test_full_url_needs_no_base(server):
    r = request("GET", server.url + "/echo/full", session=None)
    assert r.json()["path"] == "/echo/full"


def test_data_forms(server):
    assert request("PUT", "/echo", data="hi", base_url=server.url).json()["body"] == "hi"
    form = request("POST", "/echo", data={"a": 1}, base_url=server.url).json()
    assert form["body"] == "a=1"
    assert form["headers"]["content-type"] == "application/x-www-form-urlencoded"
    with pytest.raises(ValueError, match="either json= or data="):
        build_request("POST", "http://127.0.0.1/", json={}, data="x")
    with pytest.raises(TypeError):
        build_request("POST", "http://127.0.0.1/", data=42)


def test_caller_header_replaces_default_content_type():
    sent = build_request("POST", "http://127.0.0.1/", json={}, headers={"Content-Type": "x/y"})
    assert dict(sent.headers) == {"Content-Type": "x/y"}


def test_error_status_and_request_id_from_error_body(server):
    r = request("GET", "/status/503", base_url=server.url)
    assert r.status == 503 and not r.ok
    assert r.reason == "Service Unavailable"
    assert "x-request-id" not in r.headers  # so the id can only come from the body
    assert r.request_id == "rid-status"
    with pytest.raises(HTTPStatusError, match="503"):
        r.raise_for_status()


def test_binary_body_and_text(server):
    r = request("GET", "/binary", base_url=server.url)
    assert r.content == bytes(range(256))
    assert "256 bytes" in pretty(r)
    with pytest.raises(ValueError, match="not JSON"):
        r.json()


def test_displays(server):
    r = request("POST", "/echo/d", json={"k": "<v>"}, base_url=server.url)
    text = pretty(r)
    assert text.startswith("HTTP 200 OK  POST /echo/d")
    assert '<v>' in text
    assert "ms" not in text.splitlines()[0]  # no run-dependent values in plain text
    page = r._repr_html_()
    assert "200 OK" in page and "&lt;v&gt;" in page and "rid-123" in page
    assert "#1a7f37" in page  # green for 2xx
    assert "#cf222e" in request("GET", "/status/500", base_url=server.url)._repr_html_()


def test_curl_reproduces_the_request(server):
    r = request("POST", "/echo/c", json={"a": "it's"}, headers={"X-A": "b c"}, base_url=server.url)
    out = subprocess.run(shlex.split(r.curl) + ["--max-time", "5"], capture_output=True,
                         text=True, check=True).stdout
    echoed = json.loads(out.replace("\r\n", "\n").split("\n\n", 1)[1])
    assert echoed["body"] == json.dumps({"a": "it's"})
    assert echoed["headers"]["x-a"] == "b c"


def test_curl_for_binary_body_pipes_bytes():
    cmd = curl_command("POST", "http://127.0.0.1:1/x", [], b"\x00\xff")
    assert cmd.startswith("printf '%b' '\\x00\\xff' | curl")
    assert cmd.endswith("--data-binary @-")


def test_unreachable_gives_a_clear_error():
    with pytest.raises(EdgeRequestError, match="connection refused"):
        request("GET", "http://127.0.0.1:9/nothing", timeout=2)


def test_timeout_gives_a_clear_error(server):
    with pytest.raises(EdgeRequestError, match="within 0.1 s"):
        request("GET", "/slow", params={"s": 1}, base_url=server.url, timeout=0.1)


def test_path_without_gateway_is_a_clear_error():
    with pytest.raises(ValueError, match="no gateway URL"):
        resolve_url("/x", None)


def test_history_records_replays_and_copies(server):
    session = Session(server.url)
    session.history.endpoint_of = lambda method, url: "echo" if "/echo" in url else None
    request("POST", "/echo/1", json={"n": 1}, session=session)
    request("GET", "/status/404", session=session)
    df = session.history.df()
    assert list(df["status"]) == [200, 404]
    assert df["endpoint"].iloc[0] == "echo" and df["endpoint"].isna().iloc[1]
    assert df.loc[0, "request_body"] == '{"n": 1}'
    assert df.loc[0, "request_id"] == "rid-123"
    assert list(session.history.df("echo").index) == [0]
    again = session.history.replay(0)
    assert again.json()["path"] == "/echo/1"
    assert list(session.history.df().index) == [0, 1, 2]
    assert "curl" in session.history.curl(0) and "/echo/1" in session.history.curl(-1)
    with pytest.raises(IndexError):
        session.history[99]


def test_history_is_bounded_per_endpoint_and_attaches_stderr(server):
    history = History(per_endpoint=3)
    logs = []
    history.logs_of = lambda name: logs
    for i in range(5):
        r = request("GET", f"/echo/{i}", base_url=server.url)
        history.record(r, endpoint="a")
        logs.append((r.sent_at - r.elapsed / 2, f"line {i}"))
    history.record(request("GET", "/echo/b", base_url=server.url), endpoint="b")
    df = history.df()
    assert list(df.index) == [2, 3, 4, 5]
    assert list(df["stderr"])[:3] == ["line 2", "line 3", "line 4"]
