"""EdgeResponse: one HTTP exchange with an endpoint, with a rich notebook display."""

from __future__ import annotations

import html
import json as jsonlib
import shlex
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Iterable
from urllib.parse import urlsplit

from ..servertiming import parse_server_timing
from .timing import Waterfall

#: Bodies longer than this are cut in the displays (the object keeps every byte).
DISPLAY_LIMIT = 64 * 1024

#: Status badges (white text): JupyterLab's theme colours, the light theme's where the
#: variables are not defined (a static viewer).
STATUS_COLOURS = {1: "#6c757d", 2: "var(--jp-success-color1, #1a7f37)",
                  3: "var(--jp-brand-color1, #0969da)", 4: "var(--jp-warn-color1, #bc4c00)",
                  5: "var(--jp-error-color1, #cf222e)"}
MUTED = "var(--jp-ui-font-color2, #57606a)"


@dataclass(frozen=True)
class SentRequest:
    """What was sent: enough to show it, replay it and turn it into a curl command."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @property
    def curl(self) -> str:
        return curl_command(self.method, self.url, self.headers, self.body)


def curl_command(method: str, url: str, headers: Iterable[tuple[str, str]],
                 body: bytes | None) -> str:
    """A shell command that sends the same request with curl.

    A body that is not UTF-8 text is piped in through ``printf`` so every byte survives.
    """
    parts = ["curl", "-sS", "-i"]
    if method != "GET" or body:
        parts += ["-X", method]
    parts.append(shlex.quote(url))
    for name, value in headers:
        if name.lower() in ("content-length", "host", "accept-encoding", "connection"):
            continue
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if not body:
        return " ".join(parts)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        escaped = "".join(f"\\x{b:02x}" for b in body)
        return f"printf '%b' {shlex.quote(escaped)} | " + " ".join(parts + ["--data-binary", "@-"])
    return " ".join(parts + ["--data-raw", shlex.quote(text)])


def status_reason(status: int) -> str:
    from http import HTTPStatus
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@dataclass
class EdgeResponse:
    """The response to one request sent with :func:`edgebook.request`.

    ``elapsed`` is the time from sending the request to having read the whole body, in
    seconds. ``request_id`` is the gateway's ``X-Request-Id`` (also found in the endpoint's
    logs). ``curl`` reproduces the request in a shell.
    """

    status: int
    headers: Message
    content: bytes
    elapsed: float
    request: SentRequest
    reason: str = ""
    sent_at: float = field(default_factory=time.time)

    # -- data -------------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def request_id(self) -> str | None:
        rid = self.headers.get("x-request-id")
        if rid:
            return rid
        if self.content_type.endswith("json"):
            try:
                body = self.json()
            except ValueError:
                return None
            if isinstance(body, dict) and isinstance(body.get("request_id"), str):
                return body["request_id"]
        return None

    @property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()

    @property
    def encoding(self) -> str:
        charset = self.headers.get_content_charset() if self.headers else None
        return charset or "utf-8"

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` names the status and shows the body start."""
        try:
            return jsonlib.loads(self.text)
        except ValueError as exc:
            preview = self.text[:200]
            raise ValueError(f"response body is not JSON (status {self.status}, "
                             f"content-type {self.content_type or 'none'}): {preview!r}") from exc

    @property
    def elapsed_ms(self) -> float:
        return self.elapsed * 1000.0

    @property
    def waterfall(self) -> Waterfall:
        """Where the request's time went in the gateway (from its ``Server-Timing``)."""
        return Waterfall(parse_server_timing(self.headers.get("server-timing")))

    @property
    def timing(self):
        """The gateway's phases and the handler's service calls as a DataFrame (empty when
        the response has no ``Server-Timing``)."""
        return self.waterfall.df()

    @property
    def curl(self) -> str:
        """The request as a curl command line, ready to paste in a terminal."""
        return self.request.curl

    def raise_for_status(self) -> "EdgeResponse":
        if self.status >= 400:
            message = self.text[:500]
            raise HTTPStatusError(self, f"{self.status} {self.reason} for {self.request.method} "
                                        f"{self.request.path}: {message}")
        return self

    # -- display ----------------------------------------------------------------------------

    def _body_for_display(self) -> tuple[str, bool]:
        """(text to show, whether it is pretty JSON)."""
        if not self.content:
            return "", False
        if self.content_type.endswith("json") or self.content[:1] in (b"{", b"["):
            try:
                return jsonlib.dumps(self.json(), indent=2, ensure_ascii=False), True
            except ValueError:
                pass
        try:
            text = self.content.decode(self.encoding)
        except (UnicodeDecodeError, LookupError):
            head = self.content[:64].hex(" ")
            return f"<{len(self.content)} bytes of {self.content_type or 'binary'}> {head}", False
        return text, False

    def summary_line(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip() + f"  {self.request.method} {self.request.path}"

    def __repr__(self) -> str:
        return (f"<EdgeResponse {self.status} {self.request.method} {self.request.path} "
                f"{self.elapsed_ms:.2f} ms>")

    def _repr_pretty_(self, printer, cycle) -> None:
        # Plain text is kept free of values that change between runs (latency, request id,
        # port), so notebooks checked with nbval compare stable output.
        body, _ = self._body_for_display()
        lines = [self.summary_line()]
        if self.content_type:
            lines.append(f"content-type: {self.content_type}")
        if body:
            lines.append("")
            lines.append(_cut(body))
        printer.text("\n".join(lines))

    def _repr_html_(self) -> str:
        body, _is_json = self._body_for_display()
        colour = STATUS_COLOURS.get(self.status // 100, "#6c757d")
        e = html.escape
        rows = "".join(f"<tr><td style='text-align:left;font-family:monospace'>{e(k)}</td>"
                       f"<td style='text-align:left;font-family:monospace'>{e(v)}</td></tr>"
                       for k, v in self.headers.items())
        rid = self.request_id
        rid_html = (f"<span style='color:{MUTED}'>request id</span> <code>{e(rid)}</code>"
                    if rid else "")
        body_html = (f"<pre style='margin:4px 0;max-height:24em;overflow:auto'>{e(_cut(body))}</pre>"
                     if body else f"<div style='color:{MUTED}'>(empty body)</div>")
        return (
            "<div class='edgebook-response' style='font-size:13px'>"
            f"<div><span style='background:{colour};color:white;border-radius:4px;"
            f"padding:1px 7px;font-weight:600'>{self.status} {e(self.reason)}</span> "
            f"<code>{e(self.request.method)} {e(self.request.path)}</code> "
            f"<span style='color:{MUTED}'>{self.elapsed_ms:.2f} ms</span> {rid_html}</div>"
            f"{body_html}"
            f"{_waterfall_html(self.waterfall)}"
            f"<details><summary>headers ({len(self.headers)})</summary>"
            f"<table>{rows}</table></details>"
            f"<details><summary>curl</summary><pre style='white-space:pre-wrap'>{e(self.curl)}</pre>"
            "</details></div>"
        )


class HTTPStatusError(Exception):
    """Raised by :meth:`EdgeResponse.raise_for_status` for a 4xx or 5xx response."""

    def __init__(self, response: EdgeResponse, message: str):
        super().__init__(message)
        self.response = response


def _waterfall_html(waterfall: Waterfall) -> str:
    if not waterfall:
        return ""
    return ("<details open><summary>where the time went (in the gateway)</summary>"
            f"{waterfall._repr_html_()}</details>")


def _cut(text: str) -> str:
    if len(text) <= DISPLAY_LIMIT:
        return text
    return text[:DISPLAY_LIMIT] + f"\n... ({len(text) - DISPLAY_LIMIT} more characters)"
