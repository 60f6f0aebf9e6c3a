"""The headless admin page: static files at ``/admin/`` and ``/admin/proxy/<path>``, which
forwards to the data plane for the page's request builder when the
``X-Edgebook-Admin-Token`` header holds the admin token."""

from __future__ import annotations

import hmac
import os

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..errors import GatewayError
from .handlers import AdminHandler

#: The page itself: static files with no secrets in them (the page asks for the token).
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: The proxy's route; what follows it is the data-plane path.
PROXY_PREFIX = "/admin/proxy/"
#: Headers that belong to one hop and are not forwarded by the admin page's proxy.
_PROXY_DROP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te",
                         "upgrade", "proxy-connection", "content-length",
                         "x-edgebook-admin-token", "authorization", "cookie"})


class AdminPageProxyHandler(AdminHandler):
    """``/admin/proxy/<path>``: the admin page's request builder reaching the data plane."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def _authorized(self) -> bool:
        supplied = self.request.headers.get("X-Edgebook-Admin-Token", "")
        return bool(supplied) and hmac.compare_digest(supplied.encode(), self.token.encode())

    async def _forward(self, path: str) -> None:
        request = self.request
        # The raw path: the decoded ``path`` argument would turn %2F into a new segment
        # and %3F into the start of a query.
        raw = request.path[len(PROXY_PREFIX):] if request.path.startswith(PROXY_PREFIX) else ""
        url = self.gateway.url + "/" + raw + (f"?{request.query}" if request.query else "")
        headers = {k: v for k, v in request.headers.get_all() if k.lower() not in _PROXY_DROP}
        try:
            response = await AsyncHTTPClient().fetch(HTTPRequest(
                url, method=request.method, headers=headers,
                body=request.body if request.method in ("POST", "PUT", "PATCH") else None,
                allow_nonstandard_methods=True, follow_redirects=False,
                decompress_response=False, request_timeout=300), raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise GatewayError(502, "proxy_error", "the data plane did not answer",
                               log_message=f"admin page proxy to {url}: {exc}") from None
        self.set_status(response.code, response.reason)
        self.clear_header("Content-Type")
        for name, value in response.headers.get_all():
            if name.lower() not in _PROXY_DROP and name.lower() != "content-encoding":
                self.add_header(name, value)
        self.finish(response.body or b"")

    get = head = post = delete = patch = put = options = _forward
