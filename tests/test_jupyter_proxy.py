"""The server extension's proxies, in a real `jupyter server`, in front of a recording stand-in
gateway (no cargo needed): what reaches the gateway, what the browser gets back, and who
may call them.

The stand-in is found like a real gateway: through the runtime file of the project's data
dir (its pid is this test process), so the extension attaches instead of starting one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from edgebook.discovery import RuntimeInfo, write_runtime
from edgebook.jupyter.extension import declared_headers

from test_serverextension import TOKEN, call, jupyter_server
from tiny_app import RecordingGateway

GATEWAY_TOKEN = "stand-in-admin-token"


@contextlib.contextmanager
def jupyter_with_stand_in(root: Path, *extra_args: str):
    """Jupyter with the extension attached to a recording stand-in for the gateway (its
    health may answer 403 under a test authorizer)."""
    with RecordingGateway() as gateway:
        write_runtime(str(root / ".edgebook"), RuntimeInfo(
            url=gateway.url, admin_url=gateway.url, token=GATEWAY_TOKEN, pid=os.getpid(),
            version="0", started=time.time(), data_dir=str(root / ".edgebook")))
        with jupyter_server(root, *extra_args, ready=(200, 403)) as running:
            yield running["base"], running["auth"], gateway


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    with jupyter_with_stand_in(tmp_path_factory.mktemp("proxy-root")) as running:
        yield running


def test_jupyter_credentials_in_the_query_are_not_forwarded(proxied):
    base, auth, gateway = proxied
    status, _, body = call(base + f"/edgebook/proxy/echo?a=1&token={TOKEN}&_xsrf=x&b=%26",
                           headers=auth)
    assert status == 200, body
    assert json.loads(body)["uri"] == "/echo?a=1&b=%26"
    status, _, body = call(base + f"/edgebook/api/endpoints?token={TOKEN}", headers=auth)
    assert json.loads(body) == {"uri": "/api/endpoints", "auth": f"Bearer {GATEWAY_TOKEN}"}
    assert not [uri for uri in gateway.seen if TOKEN in uri]


def test_proxied_responses_are_sandboxed(proxied):
    base, auth, _ = proxied
    with urllib.request.urlopen(urllib.request.Request(base + "/edgebook/proxy/page",
                                                       headers=auth), timeout=30) as response:
        assert response.status == 200
        policies = response.headers.get_all("Content-Security-Policy")
        assert response.headers.get_all("X-Content-Type-Options") == ["nosniff"]
    assert policies and all("sandbox" in [directive.strip() for directive in policy.split(";")]
                            for policy in policies), policies


def test_raw_paths_are_forwarded(proxied):
    base, auth, _ = proxied
    status, _, body = call(base + "/edgebook/api/endpoints/a%2Fb%3Fc", headers=auth)
    assert status == 200 and json.loads(body)["uri"] == "/api/endpoints/a%2Fb%3Fc"
    status, _, body = call(base + "/edgebook/proxy/items/a%2Fb%3Fc", headers=auth)
    assert status == 200 and json.loads(body)["uri"] == "/items/a%2Fb%3Fc"


def test_jupyter_authorization_is_asked_for_the_edgebook_resource(tmp_path):
    with jupyter_with_stand_in(
            tmp_path, "--ServerApp.authorizer_class=edgebook_authorizer.ReadOnlyEdgebook"
    ) as (base, auth, gateway):
        assert call(base + "/api/status", headers=auth)[0] == 200  # Jupyter itself: allowed
        assert call(base + "/edgebook/api/endpoints", headers=auth)[0] == 200
        seen = len(gateway.seen)
        status, _, _ = call(base + "/edgebook/api/endpoints/x", method="PUT", body={},
                            headers=auth)
        assert status == 403
        assert call(base + "/edgebook/proxy/echo", method="POST", body={},
                    headers=auth)[0] == 403
        assert call(base + "/edgebook/proxy/echo", headers=auth)[0] == 403
        assert call(base + "/edgebook/admin/index.html", headers=auth)[0] == 403
        assert len(gateway.seen) == seen  # nothing refused reached the gateway


def test_declared_headers_forward_exactly_what_can_be_sent():
    def encode(pairs) -> str:
        return base64.b64encode(json.dumps(pairs).encode()).decode()

    kept, dropped = declared_headers(encode([
        ["Content-Type", "text/csv"], ["X-Sample", "café"], ["Host", "evil.example"],
        ["X-Split", "a\r\nX-Injected: 1"], ["Bad Name", "x"], ["X-Wide", "\u2603"],
        ["X-Repeat", "1"], ["X-Repeat", "2"]]))
    assert kept == [("Content-Type", "text/csv"), ("X-Sample", "café"),
                    ("X-Repeat", "1"), ("X-Repeat", "2")]
    assert dropped == ["Host", "X-Split", "Bad Name", "X-Wide"]
    for malformed in ("not base64!", encode({"a": "b"}), encode([["only-a-name"]]),
                      encode([["X", 1]])):
        assert declared_headers(malformed) is None
