"""Deploying a notebook cell as an endpoint: the request, the wait, the outcome.

``deploy_cell(admin, spec, on_event)`` submits a :class:`CellSpec` through the admin API,
hands build-progress events to ``on_event`` while it waits, and returns a
:class:`DeployedEndpoint` or raises :class:`BuildFailedError` (diagnostics shown at the
cell's own line numbers) or :class:`DeployFailedError`. The blocking admin call runs on a
helper thread, so the waiting thread only sleeps in interruptible waits.
"""

from __future__ import annotations

import dataclasses
import html
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..client import AdminError
from ..diagnostics import Diagnostic, Label, Note, render_diagnostics
from .eventstream import EventStream, EventStreamError
from .response import curl_command

_PARAM = re.compile(r"\{(\w+)\}")

#: Colours for HTML outputs: JupyterLab's theme variables (light and dark), with the
#: light theme's values where the variables are not defined (a static viewer).
GREEN = "var(--jp-success-color1, #1a7f37)"
AMBER = "var(--jp-warn-color1, #9a6700)"
RED = "var(--jp-error-color1, #cf222e)"
MUTED = "var(--jp-ui-font-color2, #57606a)"

#: The MIME type of a failed build's diagnostics in a cell's output; the JupyterLab
#: extension marks them in the cell's editor (labextension/src/diagnostics.ts).
DIAGNOSTICS_MIME = "application/vnd.edgebook.diagnostics+json"


@dataclass
class CellSpec:
    """An endpoint as a cell declares it. ``header_lines`` lines of the cell precede
    ``source`` (the ``%%rust_handler`` line), so diagnostics can use cell line numbers."""

    method: str
    path: str
    source: str
    name: str = ""
    deps: Sequence[str] = ()
    #: the endpoint's options the cell set (``workers``, ``profile``, ``limit_processes``, ...;
    #: see edgebook/endpoint_options.py); the others keep the gateway's defaults
    options: dict[str, Any] = field(default_factory=dict)
    domain: str | None = None
    services: Sequence[str] | None = None
    origin: dict | None = None
    header: str = ""
    header_lines: int = 1
    #: the cell said ``--name`` (else the name is ``default_name``'s, or the name of the
    #: endpoint that already answers the route, whoever deployed it)
    named: bool = field(default=False, init=False)

    def __post_init__(self):
        self.method = self.method.upper()
        self.named = bool(self.name)
        if not self.name:
            self.name = default_name(self.method, self.path)


def default_name(method: str, path: str) -> str:
    """``GET /users/{id}`` -> ``get_users_id``: what a cell's endpoint is called by default."""
    words = re.findall(r"[A-Za-z0-9]+", path)
    name = "_".join([method.lower(), *[w.lower() for w in words]]) if words else \
        f"{method.lower()}_root"
    return name[:64]


def example_path(path: str) -> str:
    """A concrete path for a pattern: ``/users/{id}`` -> ``/users/1``."""
    return _PARAM.sub(lambda m: "1" if m.group(1).lower().endswith("id") else m.group(1), path)


# -- outcomes ----------------------------------------------------------------------------------

class CellError(Exception):
    """A cell's endpoint could not be deployed; shown without a Python traceback."""

    def __init__(self, message: str, rendered: str = ""):
        super().__init__(message)
        self.message = message
        self.rendered = rendered

    def _render_traceback_(self) -> list[str]:
        red, reset = "\x1b[1;31m", "\x1b[0m"
        lines = [f"{red}{type(self).__name__}{reset}: {self.message}"]
        if self.rendered:
            lines.append("")
            lines.extend(self.rendered.rstrip("\n").split("\n"))
        return lines


class DeployInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a cell waited for its deploy; shown in one line."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31mKeyboardInterrupt\x1b[0m: {self}"]


class BuildFailedError(CellError):
    """The handler did not compile. ``diagnostics`` are dicts with cell line numbers;
    ``endpoint`` is the endpoint as the gateway left it (an older revision may be serving)."""

    def __init__(self, message: str, rendered: str, diagnostics: list[dict], build: dict,
                 endpoint: dict | None = None):
        super().__init__(message, rendered)
        self.diagnostics = diagnostics
        self.build = build
        self.endpoint = endpoint or {}


class DeployFailedError(CellError):
    """The handler compiled but its workers did not start (or the gateway refused it)."""

    def __init__(self, message: str, rendered: str = "", endpoint: dict | None = None):
        super().__init__(message, rendered)
        self.endpoint = endpoint or {}


@dataclass
class DeployedEndpoint:
    """A live endpoint, as the cell that deployed it shows it."""

    name: str
    method: str
    path: str
    url: str
    revision: int | None
    build: dict = field(default_factory=dict)
    endpoint: dict = field(default_factory=dict)
    elapsed: float = 0.0
    proxy_url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def example_url(self) -> str:
        return self.url[: len(self.url) - len(self.path)] + example_path(self.path) \
            if self.url.endswith(self.path) else self.url

    @property
    def request_method(self) -> str:
        """The method to try the endpoint with (GET for a route that answers any)."""
        return "GET" if self.method == "ANY" else self.method

    @property
    def curl(self) -> str:
        body = b'{"hello": "edgebook"}' if self.method in ("POST", "PUT", "PATCH") else None
        headers = [("content-type", "application/json")] if body else []
        return curl_command(self.request_method, self.example_url, headers, body)

    def build_note(self) -> str:
        if not self.build:
            return ""
        if self.build.get("cached"):
            return ("unchanged, cached binary" if self.build.get("unchanged", True)
                    else "from the build cache, no compile")
        duration = self.build.get("duration")
        profile = self.build.get("profile", "dev")
        return f"built in {duration:.2f} s ({profile})" if duration is not None else "built"

    def summary(self) -> str:
        parts = [f"endpoint {self.name}"]
        if self.revision is not None:
            parts.append(f"revision {self.revision}")
        note = self.build_note()
        if note:
            parts.append(note)
        return " | ".join(parts + self.notes)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(f"{self.method} {self.path} is live: {self.url}\n  {self.summary()}\n"
                     f"  {self.curl}")

    def _repr_html_(self) -> str:
        e = html.escape
        link = self.proxy_url or self.example_url
        via = (f" <span style='color:{MUTED}'>(through Jupyter; direct: "
               f"<code>{e(self.example_url)}</code>)</span>" if self.proxy_url else "")
        return (f"<div class='edgebook-endpoint'><span style='color:{GREEN}'>&#9679;</span> "
                f"<code>{e(self.method)} {e(self.path)}</code> is live at "
                f"<a href='{e(link)}' target='_blank'>{e(link)}</a>{via}"
                f"<div style='color:{MUTED}'>{e(self.summary())}</div>"
                f"<pre style='white-space:pre-wrap;user-select:all'>{e(self.curl)}</pre></div>")


# -- diagnostics at cell lines ----------------------------------------------------------------

def shift_diagnostics(diagnostics: list[dict], offset: int) -> list[dict]:
    """The diagnostics with every line number moved down by ``offset``."""
    out = []
    for diag in diagnostics:
        d = dict(diag)
        for key in ("line", "end_line"):
            if d.get(key) is not None:
                d[key] += offset
        d["labels"] = [dict(lab, line=lab["line"] + offset, end_line=lab["end_line"] + offset)
                       for lab in d.get("labels") or []]
        d["children"] = [dict(ch, line=ch["line"] + offset if ch.get("line") is not None else None)
                         for ch in d.get("children") or []]
        out.append(d)
    return out


def render_cell_diagnostics(diagnostics: list[dict], cell_text: str) -> str:
    """Diagnostics (already at cell lines) rendered over the whole cell's text."""
    names = {f.name for f in dataclasses.fields(Diagnostic)}
    objects = []
    for d in diagnostics:
        fields = {k: v for k, v in d.items() if k in names}
        fields["labels"] = [Label(**lab) for lab in d.get("labels") or []]
        fields["children"] = [Note(**ch) for ch in d.get("children") or []]
        objects.append(Diagnostic(**fields))
    return render_diagnostics(objects, cell_text, name="cell")


def build_failure(spec: CellSpec, details: dict) -> BuildFailedError:
    build = details.get("build") or {}
    endpoint = details.get("endpoint") or {}
    diagnostics = shift_diagnostics(build.get("diagnostics") or [], spec.header_lines)
    cell_text = spec.header + spec.source if spec.header else spec.source
    try:
        rendered = render_cell_diagnostics(diagnostics, cell_text) if diagnostics else ""
    except (TypeError, KeyError, ValueError):  # an unexpected shape: the gateway's rendering
        rendered = build.get("rendered") or ""
    if not rendered:
        rendered = (build.get("log") or "")[-4000:]
    if build.get("hint"):
        rendered = f"{rendered}\nhint: {build['hint']}"
    errors = sum(1 for d in diagnostics if str(d.get("level", "")).startswith("error"))
    what = f"{errors} error{'s' if errors != 1 else ''}" if errors else build.get("status", "failed")
    reason = endpoint.get("reason") or ""
    keeps = re.search(r"revision \d+ keeps serving", reason)
    message = f"the handler {spec.name!r} did not compile ({what})" + \
        (f"; {keeps.group(0)}" if keeps else "")
    return BuildFailedError(message, rendered, diagnostics, build, endpoint)


#: How a state reads to a person (the same words as the sidebar and the admin page).
STATE_LABELS = {"running_build_failed": "running, latest build failed",
                "running_deploy_failed": "running, latest revision failed to start",
                "crash_looping": "crash looping", "build_failed": "build failed",
                "deploy_failed": "failed to start"}


def state_label(state: str | None) -> str:
    return STATE_LABELS.get(state or "", (state or "").replace("_", " "))


# -- the failure card -------------------------------------------------------------------------

#: States whose endpoint still serves an older revision (the registry's SERVING_STATES).
SERVING_STATES = ("running", "running_build_failed", "running_deploy_failed")


def editor_diagnostics(diagnostics: list[dict]) -> list[dict]:
    """Diagnostics at cell lines as an editor marks them: one range (the primary label's,
    else the diagnostic's own) with level, message and code; those with no place are left
    out (the traceback still shows them)."""
    marks = []
    for d in diagnostics:
        span = next((lab for lab in d.get("labels") or [] if lab.get("primary")), d)
        if span.get("line") is None:
            continue
        line, column = span["line"], span.get("column") or 1
        message = d.get("message", "")
        label = span.get("label") if span is not d else ""
        marks.append({"line": line, "column": column,
                      "end_line": span.get("end_line") or line,
                      "end_column": span.get("end_column") or column,
                      "level": d.get("level", "error"), "code": d.get("code"),
                      "message": f"{message}: {label}" if label else message})
    return marks


def failure_card(error: CellError, spec: CellSpec) -> dict:
    """The output that replaces a failed cell's progress bar: the endpoint's state in the
    words the sidebar and the admin page use (green with a warning when an older revision
    keeps serving) and, for a build, its diagnostics for the editor. The error message
    itself is the traceback's, so it is not repeated here."""
    endpoint = getattr(error, "endpoint", None) or {}
    state = endpoint.get("state") or ("build_failed" if isinstance(error, BuildFailedError)
                                      else "deploy_failed")
    serving = state in SERVING_STATES
    marks = editor_diagnostics(error.diagnostics) if isinstance(error, BuildFailedError) else []
    lines = sorted({m["line"] for m in marks if str(m["level"]).startswith("error")})
    where = ""
    if lines:
        where = (f"; marked at line{'s' if len(lines) > 1 else ''} "
                 f"{', '.join(map(str, lines))} of the cell")
    revision = endpoint.get("live_revision")
    keeps = f" (revision {revision} keeps serving)" if serving and revision is not None else ""
    words = state_label(state)
    e = html.escape
    dot = (f"<span style='color:{GREEN}'>&#9679;</span>" if serving
           else f"<span style='color:{RED}'>&#10006;</span>")
    text_html = (f"<div class='edgebook-endpoint' data-state='{e(state)}'>{dot} "
                 f"<code>{e(spec.method)} {e(spec.path)}</code> "
                 f"<b style='color:{AMBER if serving else RED}'>{e(words)}</b>"
                 f"<span style='color:{MUTED}'>{e(keeps + where)}</span></div>")
    bundle = {"text/html": text_html,
              "text/plain": f"{spec.method} {spec.path}: {words}{keeps}{where}"}
    if isinstance(error, BuildFailedError):
        bundle[DIAGNOSTICS_MIME] = {"endpoint": spec.name, "state": state,
                                    "diagnostics": marks}
    return bundle


# -- the deploy itself -----------------------------------------------------------------------

def deploy_cell(admin, spec: CellSpec, on_event: Callable[[dict], None] | None = None, *,
                poll: float = 0.1) -> DeployedEndpoint:
    """Deploy ``spec`` and wait; ``on_event`` gets this endpoint's events on this thread."""

    notes = _place(admin, spec)
    events: queue.SimpleQueue = queue.SimpleQueue()
    stream = None
    if on_event is not None:
        try:
            stream = EventStream(admin.admin_url, admin.token)
        except EventStreamError:
            stream = None  # progress is a nicety; the deploy goes on without it
        else:
            stream.follow(lambda e: events.put(e) if e.get("endpoint") == spec.name else None)
    outcome: dict[str, Any] = {}

    def submit():
        try:
            outcome["result"] = admin.deploy(
                spec.name, spec.method, spec.path, spec.source, deps=list(spec.deps),
                domain=spec.domain, services=spec.services, origin=spec.origin, wait=True,
                **spec.options)
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    started = time.perf_counter()
    worker = threading.Thread(target=submit, name="edgebook-deploy", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(poll)
            _drain(events, on_event)
        _drain(events, on_event)
    finally:
        if stream is not None:
            stream.close()
    elapsed = time.perf_counter() - started
    error = outcome.get("error")
    if isinstance(error, AdminError):
        raise _failure(spec, error) from None
    if error is not None:
        raise error
    result = outcome["result"]
    endpoint = result.get("endpoint") or {}
    return DeployedEndpoint(name=spec.name, method=spec.method, path=spec.path,
                            url=endpoint.get("url") or "", revision=endpoint.get("live_revision"),
                            build=result.get("build") or {}, endpoint=endpoint, elapsed=elapsed,
                            notes=notes)


def _place(admin, spec: CellSpec) -> list[str]:
    """Settle ``spec``'s name against what the gateway has: a cell without ``--name``
    updates the endpoint that already answers its route (say, one ``edgebook deploy``
    named after its file) instead of colliding with it. Returns notes for the cell."""
    owner, moved = admin.placement(spec.name, spec.method, spec.path, spec.domain)
    notes = []
    if owner and owner != spec.name and not spec.named:
        notes.append(f"{spec.method} {spec.path} is endpoint {owner}'s route: updating {owner}")
        spec.name = owner
        moved = None
    if moved:
        notes.append(moved)
    return notes


def _drain(events: queue.SimpleQueue, on_event) -> None:
    while True:
        try:
            event = events.get_nowait()
        except queue.Empty:
            return
        if on_event is not None:
            on_event(event)


def _failure(spec: CellSpec, error) -> CellError:
    if error.error_type == "build_failed":
        return build_failure(spec, error.details)
    endpoint = error.details.get("endpoint") or {}
    if error.error_type == "deploy_failed":
        tail = endpoint.get("stderr_tail") or ""
        return DeployFailedError(f"{spec.name!r} compiled but did not start: {error.message}",
                                 f"worker stderr:\n{tail}" if tail else "", endpoint)
    return DeployFailedError(f"the gateway refused {spec.name!r}: {error.message}",
                             endpoint=endpoint)
