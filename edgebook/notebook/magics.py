"""IPython magics: ``%%rust_handler``, ``%edgebook``, ``%rust_request`` and ``%rust_bench``.

Each magic parses its line, hands the work to the module that owns it (``cells``, ``http``,
``bench``, the admin client) and displays the result. Mistakes in a magic's line raise
``UsageError``; a handler that does not compile raises ``BuildFailedError``, rendered as
the compiler's diagnostics at the cell's own line numbers, so "Run All" and nbval stop.
"""

from __future__ import annotations

import json
import os
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .. import endpoint_options
from ..client import AdminError, service_test_report
from ..openapi.document import ADMIN_DOCUMENT_PATH, save_document
from ..openapi.notebook import import_spec
from ..openapi.spec import SpecError
from ..services.errors import ServiceConfigError
from ..services.options import parse_options
from . import session
from .bench import BenchError, bench
from .cells import (CellError, CellSpec, DeployInterrupted, deploy_cell, example_path,
                    failure_card, state_label)
from .progress import TextProgress, WidgetProgress, widgets_wanted
from .session import NoAdminError, request

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
ROUTE_METHODS = METHODS + ("ANY",)  # a route may answer every method


class GatewayUnavailableError(CellError):
    """No gateway could be found or started for this notebook."""


def current_session():
    """The notebook's gateway session, started on first use; a clean error otherwise."""
    try:
        return session.current()
    except AdminError as exc:
        raise GatewayUnavailableError(f"no edgebook gateway is available: {exc.message}") from None


def current_admin(session):
    """The session's admin client; a usage error for a session made from a URL only."""
    try:
        return session.require_admin()
    except NoAdminError as exc:
        raise UsageError(str(exc)) from None


def _flatten(values) -> list[str]:
    out: list[str] = []
    for group in values or []:
        for value in group:
            out.extend(v for v in value.split(",") if v)
    return out


def _cancel_build(admin, name: str) -> str:
    """Ask the gateway to cancel ``name``'s build after an interrupt; what happened, in words."""
    try:
        cancelled = admin.cancel_build(name)
    except AdminError:
        cancelled = False
    if cancelled:
        return "its build was cancelled; the endpoint's live revision, if any, keeps serving"
    return "the gateway had already finished that build"


def notebook_origin(shell) -> dict[str, Any]:
    """Where a cell lives, for the sidebar's jump-to-cell: notebook path and cell id."""
    origin: dict[str, Any] = {}
    path = os.environ.get("JPY_SESSION_NAME") or (shell.user_ns.get("__vsc_ipynb_file__")
                                                   if shell is not None else None)
    if path:
        root = os.environ.get("EDGEBOOK_SERVER_ROOT")
        if root and os.path.isabs(path):
            try:
                relative = os.path.relpath(path, root)
            except ValueError:
                relative = path
            path = path if relative.startswith("..") else relative
        origin["notebook"] = path
    parent = getattr(shell, "parent_header", None) or {}
    cell_id = (parent.get("metadata") or {}).get("cellId")
    if cell_id:
        origin["cell_id"] = cell_id
    return origin


def proxy_url(path: str) -> str | None:
    """The endpoint's URL through the Jupyter server (set by the server extension), if any."""
    base = os.environ.get("EDGEBOOK_PROXY_BASE")
    if not base:
        return None
    return base.rstrip("/") + path


def admin_page_in_jupyter() -> str | None:
    """The admin page's path on the Jupyter server that started this kernel, if any."""
    base = proxy_url("/")
    return base[: -len("proxy/")] + "admin/" if base and base.endswith("/proxy/") else None


def _option_arguments(func):
    """The endpoint's options as ``%%rust_handler`` flags (edgebook/endpoint_options.py),
    in their declared order."""
    for flags, kwargs in reversed(list(endpoint_options.flag_arguments())):
        func = argument(*flags, **kwargs)(func)
    return func


@magics_class
class RustHandlerMagics(Magics):
    """``%%rust_handler``: a cell of Rust becomes a live HTTP endpoint."""

    @magic_arguments()
    @argument("method", help="HTTP method the endpoint answers (GET, POST, ...)")
    @argument("path", help="path pattern, e.g. /hello or /users/{id}")
    @argument("--name", "-n", help="endpoint name (default: from method and path)")
    @_option_arguments
    @argument("--release", action="store_true", help="build with optimisations")
    @argument("--dep", action="append", nargs="+", metavar="CRATE@VERSION",
              help="extra crate dependency, e.g. rand@0.8 (repeatable)")
    @argument("--service", action="append", nargs="+", metavar="NAME",
              help="a service the handler may use (repeatable)")
    @argument("--domain", help="answer only this host (or *.example.com)")
    @no_var_expand
    @cell_magic
    def rust_handler(self, line: str, cell: str):
        """Compile the cell's Rust handler and serve it at METHOD /path (hot reload)."""
        args = parse_argstring(self.rust_handler, line)
        spec = self._spec(args, line, cell)
        session = current_session()
        admin = current_admin(session)
        progress = WidgetProgress() if widgets_wanted(self.shell) else TextProgress()
        progress.start(spec)
        try:
            deployed = deploy_cell(admin, spec, progress.event)
        except KeyboardInterrupt:
            message = f"stopped waiting for {spec.name!r}; " + _cancel_build(admin, spec.name)
            progress.interrupted(f"interrupted: {message}")
            raise DeployInterrupted(message) from None
        except CellError as exc:
            progress.fail(failure_card(exc, spec))
            raise
        deployed.proxy_url = proxy_url(deployed.path)
        session.forget_routes()
        progress.finish(deployed, session)

    def _spec(self, args, line: str, cell: str) -> CellSpec:
        method = args.method.upper()
        if method not in ROUTE_METHODS:
            raise UsageError(f"%%rust_handler: unknown method {args.method!r}; "
                             f"use one of {', '.join(ROUTE_METHODS)}")
        if not args.path.startswith("/"):
            raise UsageError(f"%%rust_handler: the path must start with '/', not {args.path!r}")
        if not cell.strip():
            raise UsageError("%%rust_handler: the cell is empty; write a handler, e.g.\n"
                             "fn handle(req: Request) -> Response { Response::ok(json!({})) }")
        options = endpoint_options.from_flags(args)
        try:
            endpoint_options.check(options)
        except ValueError as exc:  # "workers must be ..." -> "--workers must be ..."
            text = str(exc)
            name = text.split()[0]
            if name in endpoint_options.NAMES:
                text = "--" + name.replace("_", "-") + text[len(name):]
            raise UsageError(f"%%rust_handler: {text}") from None
        return CellSpec(
            method=method, path=args.path, source=cell, name=args.name or "",
            deps=_flatten(args.dep), options=options, domain=args.domain,
            services=_flatten(args.service) if args.service else None,
            origin=notebook_origin(self.shell) or None,
            header=f"%%rust_handler {line}\n", header_lines=1)


@magics_class
class GatewayMagics(Magics):
    """``%edgebook``: look at and drive the gateway's endpoints."""

    @magic_arguments()
    @argument("command", nargs="?", default="status",
              choices=["status", "logs", "stop", "start", "restart", "rm", "url", "open",
                       "openapi", "import-openapi", "service"],
              help="what to do (default: status)")
    @argument("name", nargs="?", help="the endpoint (for logs, stop, start, restart, rm), "
                                      "the spec file (for import-openapi), or the action "
                                      "for service: add, list, test, rm")
    @argument("rest", nargs="*", help="service add: NAME KIND [URL] [key=value ...]; "
                                      "service test|rm: NAME")
    @argument("--lines", "-n", type=int, default=50, help="how many log lines")
    @argument("--save", metavar="FILE",
              help="openapi: also write the document to FILE (.json, .yaml or .yml)")
    @argument("--output", "-o", metavar="NOTEBOOK",
              help="import-openapi: the notebook to write (default: SPEC's name .ipynb)")
    @line_magic
    def edgebook(self, line: str):
        """%edgebook status | logs NAME | stop NAME | start NAME | restart NAME | rm NAME |
        url [NAME] | open [NAME] | openapi [--save FILE] | import-openapi SPEC [-o NOTEBOOK] |
        service add NAME KIND [URL] [key=value ...] | service list | service test NAME |
        service rm NAME"""
        args = parse_argstring(self.edgebook, line)
        needs_name = ("logs", "stop", "start", "restart", "rm")
        if args.command in needs_name and not args.name:
            raise UsageError(f"%edgebook {args.command} needs an endpoint name; "
                             "see %edgebook status")
        if args.command == "import-openapi":
            return self._import_openapi(args)  # needs no gateway
        session = current_session()
        admin = current_admin(session)
        try:
            return getattr(self, f"_{args.command}")(session, admin, args)
        except AdminError as exc:
            if exc.status == 404:
                raise UsageError(f"%edgebook {args.command}: {exc.message}") from None
            raise GatewayUnavailableError(f"%edgebook {args.command}: {exc}") from None

    def _status(self, session, admin, args):
        import pandas as pd
        rows = []
        for ep in admin.endpoints():
            options = ep.get("options") or {}
            rows.append({"name": ep.get("name"), "method": ep.get("method"),
                         "path": ep.get("path"), "state": ep.get("state"),
                         "revision": ep.get("live_revision"),
                         "workers": options.get("workers"), "url": ep.get("url"),
                         "reason": ep.get("reason") or ""})
        columns = ["name", "method", "path", "state", "revision", "workers", "url", "reason"]
        df = pd.DataFrame(rows, columns=columns)
        df["revision"] = df["revision"].astype("Int64")  # 1, not 1.0; <NA>, not NaN
        df["workers"] = df["workers"].astype("Int64")
        df["state"] = df["state"].map(state_label)
        page = admin_page_in_jupyter()
        if page:
            print(f"admin page: {page} on this Jupyter server (behind its login, no token)")
        admin_url = getattr(admin, "admin_url", None)
        if admin_url:
            print(f"admin page: {admin_url.rstrip('/')}/admin/ (token in the data dir's "
                  "runtime.json)")
        return df.set_index("name") if not df.empty else df

    def _logs(self, session, admin, args):
        lines = admin.logs(args.name, tail=args.lines)
        if not lines:
            print(f"{args.name}: no log lines yet")
        for line in lines:
            if isinstance(line, dict):
                source = line.get("source")
                print(f"[{source}] {line.get('text', '')}" if source else line.get("text", ""))
            else:
                print(line)

    def _stop(self, session, admin, args):
        self._state_line(admin.stop(args.name), args.name)

    def _start(self, session, admin, args):
        self._state_line(admin.start(args.name), args.name)

    def _restart(self, session, admin, args):
        self._state_line(admin.restart(args.name), args.name)

    def _rm(self, session, admin, args):
        admin.remove(args.name)
        session.forget_routes()
        print(f"{args.name}: removed")

    def _url(self, session, admin, args):
        if args.name:
            return admin.endpoint(args.name).get("url")
        return session.data_url

    def _open(self, session, admin, args):
        from IPython.display import HTML, display
        if args.name:
            ep = admin.endpoint(args.name)
            path = example_path(ep.get("path", "/"))
            url = proxy_url(path) or session.data_url + path
        else:
            url = proxy_url("/") or session.data_url + "/"
        if getattr(self.shell, "kernel", None) is None:
            import webbrowser
            webbrowser.open(url)
        display(HTML(f"<a href='{url}' target='_blank'>{url}</a>"), metadata={})
        print(url)

    def _openapi(self, session, admin, args):
        from IPython.display import JSON
        document = admin.request("GET", ADMIN_DOCUMENT_PATH)
        if args.save:
            save_document(document, args.save)
            print(f"saved the OpenAPI document of {len(document.get('paths') or {})} "
                  f"path(s) to {args.save}")
        return JSON(document, expanded=False, root="openapi")

    def _service(self, session, admin, args):
        """Services (databases, caches, buckets) handlers may use: add, list, test, rm."""
        action, rest = args.name or "list", args.rest
        if action == "add":
            if len(rest) < 2:
                raise UsageError("usage: %edgebook service add NAME KIND [URL] [key=value ...]")
            try:
                config = parse_options(rest[1], rest[2:])
            except ServiceConfigError as exc:
                raise UsageError(f"%edgebook service add: {exc}") from None
            shown = admin.put_service(rest[0], rest[1], config)
            print(f"service {rest[0]} ({rest[1]}): {json.dumps(shown.get('config', {}))}")
            return None
        if action == "list":
            import pandas as pd
            rows = [{"name": r["name"], "kind": r["kind"], "builtin": bool(r.get("builtin")),
                     "config": json.dumps(r.get("config", {}))} for r in admin.services()]
            return pd.DataFrame(rows, columns=["name", "kind", "builtin", "config"])
        if action in ("test", "rm") and len(rest) == 1:
            if action == "rm":
                admin.delete_service(rest[0])
                print(f"{rest[0]}: removed")
                return None
            print("\n".join(service_test_report(rest[0], admin.test_service(rest[0]))))
            return None
        raise UsageError("usage: %edgebook service add NAME KIND [URL] [key=value ...] | "
                         "service list | service test NAME | service rm NAME")

    def _import_openapi(self, args):
        if not args.name:
            raise UsageError("usage: %edgebook import-openapi SPEC [-o NOTEBOOK]")
        output = args.output or os.path.splitext(os.path.basename(args.name))[0] + ".ipynb"
        try:
            report = import_spec(args.name, output)
        except SpecError as exc:
            raise UsageError(f"%edgebook import-openapi: {exc}") from None
        print(report.summary())
        if report.kept:
            print("kept your edits in: " + ", ".join(report.kept))
        return report

    @staticmethod
    def _state_line(result: Any, name: str) -> None:
        state = (result or {}).get("state") if isinstance(result, dict) else None
        if state is None and isinstance(result, dict):
            state = (result.get("endpoint") or {}).get("state")
        print(f"{name}: {state or 'done'}")


@magics_class
class RequestMagics(Magics):
    """``%rust_request`` and ``%rust_bench``: talk to endpoints from a line."""

    @no_var_expand
    @line_magic
    def rust_request(self, line: str):
        """%rust_request METHOD /path [body]: send one request; a JSON body is sent as JSON."""
        parts = line.strip().split(None, 2)
        if len(parts) < 2:
            raise UsageError("usage: %rust_request METHOD /path [body]")
        method, path = parts[0].upper(), parts[1]
        if method not in METHODS:
            raise UsageError(f"%rust_request: unknown method {parts[0]!r}")
        kwargs = _body_kwargs(parts[2] if len(parts) > 2 else "")
        session = None if path.startswith(("http://", "https://")) else current_session()
        return request(method, path, session=session, **kwargs)

    @magic_arguments()
    @argument("method")
    @argument("path")
    @argument("-n", "--requests", type=int, default=None, help="stop after this many requests")
    @argument("-c", "--concurrency", type=int, default=8, help="connections in parallel")
    @argument("-d", "--duration", type=float, default=None, help="stop after this many seconds (default 2 when -n is not given)")
    @argument("-b", "--body", default="", help="request body (JSON is sent as JSON)")
    @argument("--label", default=None, help="name of this run in comparisons")
    @no_var_expand
    @line_magic
    def rust_bench(self, line: str):
        """%rust_bench METHOD /path [-n N] [-c C] [-d S] [-b BODY]: a bounded load test."""
        args = parse_argstring(self.rust_bench, line)
        session = None if args.path.startswith(("http://", "https://")) else current_session()
        try:
            return bench(args.method, args.path, n=args.requests, concurrency=args.concurrency,
                         duration=args.duration, label=args.label, session=session,
                         **_body_kwargs(args.body))
        except (ValueError, BenchError) as exc:
            raise UsageError(f"%rust_bench: {exc}") from None


def _body_kwargs(body: str) -> dict[str, Any]:
    body = body.strip()
    if not body:
        return {}
    try:
        return {"json": json.loads(body)}
    except ValueError:
        return {"data": body}


def load_ipython_extension(ipython) -> None:
    for magics in (RustHandlerMagics, GatewayMagics, RequestMagics):
        ipython.register_magics(magics)


def unload_ipython_extension(ipython) -> None:
    # IPython has no unregister for magics classes; dropping them from the tables does it.
    for kind in ("line", "cell"):
        table = ipython.magics_manager.magics[kind]
        for name in [n for n, fn in table.items()
                     if isinstance(getattr(fn, "__self__", None),
                                   (RustHandlerMagics, GatewayMagics, RequestMagics))]:
            del table[name]
