"""The ``edgebook`` command: serve, deploy, status, gateways, stop-gateway, logs, stop,
start, rm, prebuild, service, and
openapi, import-openapi, import-bundle (openapi.py); ``serve`` itself is in serve.py.

``serve`` runs a gateway in the foreground. Every other command finds the running gateway
through the runtime file in the data dir (``--data-dir``, else ``$EDGEBOOK_DATA_DIR``, else
``./.edgebook``) and talks to its admin API. ``deploy`` does not start a gateway unless
asked to with ``--start`` (then one starts in the background and keeps running).

Exit statuses: 0 success; 1 the operation failed (build errors, a worker that would not
start, no gateway running); 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Sequence

from .. import endpoint_options
from .._version import __version__
from ..build.builder import Builder, PrebuildError
from ..client import AdminError, default_data_dir, ensure_gateway, service_test_report
from ..discovery import list_gateways, pid_alive
from ..services.errors import ServiceConfigError
from ..services.options import parse_options
from . import openapi
from .common import CliError, admin_client, configure_logging

log = logging.getLogger(__name__)


# -- parsing ----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgebook", description="Rust HTTP handlers served by a Tornado gateway.")
    parser.add_argument("--version", action="version", version=f"edgebook {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_data_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--data-dir", default=None,
                       help="the project's data dir (default: $EDGEBOOK_DATA_DIR or ./.edgebook)")
        return p

    serve = with_data_dir(sub.add_parser("serve", help="run the gateway in the foreground"))
    serve.add_argument("--host", default="127.0.0.1",
                       help="data-plane address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080,
                       help="data-plane port (default 8080; 0 picks a free port)")
    serve.add_argument("--admin-host", default="127.0.0.1",
                       help="admin API address (default 127.0.0.1)")
    serve.add_argument("--admin-port", type=int, default=0,
                       help="admin API port (default: a free port, published in the "
                            "runtime file)")
    serve.add_argument("--processes", type=int, default=1,
                       help="gateway processes sharing the data-plane port (default 1)")
    serve.add_argument("--release-after-dev", action="store_true",
                       help="serve the dev build at once, then build release in the "
                            "background and hot-swap to it")
    serve.add_argument("--drain-timeout", type=float, default=30.0,
                       help="seconds to let in-flight requests finish on shutdown")
    serve.add_argument("--openapi-path", default="/openapi.json", metavar="PATH",
                       help="where the data plane serves the endpoints' OpenAPI document "
                            "when no endpoint routes that path (default /openapi.json; "
                            "'' turns it off)")
    serve.add_argument("--server-timing", dest="server_timing",
                       action=argparse.BooleanOptionalAction, default=None,
                       help="a Server-Timing header on every response: where the request's "
                            "time went in the gateway (default: on with --dev; otherwise only "
                            "for requests that present the admin token in X-Edgebook-Timing)")
    serve.add_argument("--dev", action="store_true",
                       help="development mode: handlers' error details (panics, 5xx "
                            "messages) reach the client; gateways started by a notebook "
                            "use it")
    serve.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                       help="exit after this many seconds without data-plane requests or "
                            "admin calls (gateways a notebook kernel starts use it; "
                            "default: never)")
    serve.add_argument("--owner-pid", type=int, default=None, metavar="PID",
                       help="the process this gateway serves (a notebook kernel passes its "
                            "own): once it has ended, exit after "
                            "EDGEBOOK_OWNERLESS_IDLE (default 30) seconds without requests "
                            "or admin calls")
    serve.add_argument("--started-by", default="edgebook serve", metavar="WHO",
                       help="who started this gateway, as 'edgebook gateways' shows it")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                       help="run on asyncio's own event loop even when uvloop is installed "
                            "(also EDGEBOOK_UVLOOP=0)")
    scale = serve.add_argument_group("scale-out (docs/scale-out.md)")
    scale.add_argument("--registry", default=os.environ.get("EDGEBOOK_REGISTRY_URL"),
                       metavar="URL",
                       help="a postgresql:// registry shared by several gateways (also "
                            "EDGEBOOK_REGISTRY_URL; default: SQLite in the data dir)")
    scale.add_argument("--artifacts", default=os.environ.get("EDGEBOOK_ARTIFACTS_URL"),
                       metavar="URL",
                       help="where built binaries are stored by digest: s3://bucket/prefix "
                            "or a directory (also EDGEBOOK_ARTIFACTS_URL; default: "
                            "<data dir>/artifacts)")
    scale.add_argument("--artifacts-endpoint",
                       default=os.environ.get("EDGEBOOK_ARTIFACTS_ENDPOINT"), metavar="URL",
                       help="the S3 endpoint of a server other than AWS (also "
                            "EDGEBOOK_ARTIFACTS_ENDPOINT)")
    scale.add_argument("--role", choices=["all", "gateway", "builder"],
                       default=os.environ.get("EDGEBOOK_ROLE", "all"),
                       help="serve and build (all), serve only (gateway: no toolchain "
                            "needed), or build only (builder); also EDGEBOOK_ROLE")
    scale.add_argument("--token-file", metavar="PATH",
                       help="read the admin token from this file (also EDGEBOOK_ADMIN_TOKEN; "
                            "default: a new random token, written to the runtime file)")

    follow = with_data_dir(sub.add_parser("_follow"))  # no help: not listed
    follow.add_argument("--host", required=True)
    follow.add_argument("--port", type=int, required=True)
    follow.add_argument("--drain-timeout", type=float, default=30.0)
    follow.add_argument("--log-level", default="info")
    follow.add_argument("--dev", action="store_true")
    follow.add_argument("--server-timing", dest="server_timing", action="store_true",
                        default=None)

    deploy = with_data_dir(sub.add_parser("deploy", help="build and deploy a handler file"))
    deploy.add_argument("file", help="the handler's Rust source (e.g. hello.rs)")
    deploy.add_argument("--route", required=True, help='method and path, e.g. "GET /hello"')
    deploy.add_argument("--name", help="endpoint name (default: the file name without .rs)")
    for flags, kwargs in endpoint_options.flag_arguments():
        deploy.add_argument(*flags, **kwargs)
    deploy.add_argument("--release", action="store_true", help="build with the release profile")
    deploy.add_argument("--dep", action="append", default=[], metavar="NAME@VERSION",
                        help="an extra crate dependency (repeatable)")
    deploy.add_argument("--domain", help="answer only this host (or *.example.com)")
    deploy.add_argument("--service", action="append", default=[], metavar="NAME",
                        help="bind a registered service (repeatable)")
    deploy.add_argument("--start", action="store_true",
                        help="start a background gateway if none is running")

    with_data_dir(sub.add_parser("status", help="list endpoints and their state"))

    sub.add_parser("gateways", help="list every running gateway of this user (any data dir)")
    stop_gateway = with_data_dir(sub.add_parser(
        "stop-gateway", help="stop a running gateway (default: the data dir's)"))
    stop_gateway.add_argument("--pid", type=int, help="the gateway's pid, as 'edgebook "
                                                       "gateways' lists it")
    stop_gateway.add_argument("--timeout", type=float, default=60.0,
                              help="seconds to wait for it to drain and exit (default 60)")

    logs = with_data_dir(sub.add_parser("logs", help="show an endpoint's worker log"))
    logs.add_argument("name")
    logs.add_argument("-n", "--tail", type=int, default=100, help="lines to show (default 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    for command, text in (("stop", "stop an endpoint's workers"),
                          ("start", "start a stopped endpoint"),
                          ("restart", "replace an endpoint's workers with fresh ones"),
                          ("rm", "remove an endpoint")):
        with_data_dir(sub.add_parser(command, help=text)).add_argument("name")

    prebuild = with_data_dir(sub.add_parser(
        "prebuild", help="compile the SDK's dependencies into the shared target dir"))
    prebuild.add_argument("--profile", action="append", choices=["dev", "release"],
                          help="profile(s) to prebuild (default: both)")

    service = sub.add_parser("service", help="manage services (databases, caches, buckets)")
    service_sub = service.add_subparsers(dest="service_command", required=True,
                                         metavar="ACTION")
    add = with_data_dir(service_sub.add_parser(
        "add", help="add or replace a service: NAME KIND [URL] [key=value ...]"))
    add.add_argument("name")
    add.add_argument("kind", help="sqlite, postgres, redis, s3 or files")
    add.add_argument("options", nargs="*", help="a URL and/or key=value options")
    with_data_dir(service_sub.add_parser("list", help="list services (secrets masked)"))
    for action, text in (("test", "check that a service is reachable"),
                         ("rm", "remove a service")):
        with_data_dir(service_sub.add_parser(action, help=text)).add_argument("name")

    COMMANDS.update(openapi.add_parsers(sub, with_data_dir))
    COMMANDS.update(importlib.import_module(f"{__package__}.k8s").add_parsers(sub))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.data_dir = os.path.abspath(getattr(args, "data_dir", None) or default_data_dir())
    handler = COMMANDS[args.command]
    if isinstance(handler, str):
        module, _, name = handler.partition(":")
        handler = getattr(importlib.import_module(module), name)
    try:
        return handler(args) or 0
    except CliError as exc:
        print(f"edgebook: {exc.message}", file=sys.stderr)
        return exc.status
    except AdminError as exc:
        print(f"edgebook: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (edgebook status | head): not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


# -- client commands --------------------------------------------------------------------------

def parse_route(route: str) -> tuple[str, str]:
    parts = route.split()
    if len(parts) != 2 or not parts[1].startswith("/"):
        raise CliError(f'--route must look like "GET /path", not {route!r}', 2)
    return parts[0].upper(), parts[1]


def cmd_deploy(args: argparse.Namespace) -> int:
    method, path = parse_route(args.route)
    try:
        with open(args.file, encoding="utf-8") as handle:
            source = handle.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    source = _without_cell_magic(source, args.file)
    client = (ensure_gateway(args.data_dir, started_by="edgebook deploy --start",
                             announce=_to_stderr)
              if args.start else admin_client(args))
    owner, moved = client.placement(args.name, method, path, args.domain)
    name = args.name or owner or re.sub(r"[^A-Za-z0-9_.-]", "-",
                                        os.path.splitext(os.path.basename(args.file))[0])
    if owner and not args.name:
        print(f"{method} {path} is endpoint {owner}'s route: updating {owner}",
              file=sys.stderr)
    if moved is None and not args.name:
        moved = client.placement(name, method, path, args.domain)[1]
    if moved:
        print(f"note: {moved}", file=sys.stderr)
    print(f"building {name} ({'release' if args.release else 'dev'}) ...", file=sys.stderr,
          flush=True)
    try:
        result = client.deploy(name, method, path, source, deps=args.dep, domain=args.domain,
                               services=args.service or None,
                               **endpoint_options.from_flags(args))
    except AdminError as exc:
        if exc.error_type == "build_failed":
            rendered = exc.rendered or (exc.build or {}).get("log") or ""
            if rendered:
                print(_relabel(rendered, args.file), file=sys.stderr)
            if (exc.build or {}).get("hint"):
                print(f"hint: {exc.build['hint']}", file=sys.stderr)
            raise CliError(f"{args.file}: build failed; {name} was not deployed"
                           + _keeps(exc)) from None
        if exc.error_type == "deploy_failed":
            tail = (exc.details.get("endpoint") or {}).get("stderr_tail")
            if tail:
                print(tail, file=sys.stderr)
            raise CliError(f"{name} built but did not start: {exc.message}") from None
        raise
    endpoint = result["endpoint"]
    build = result.get("build") or {}
    how = "cached" if build.get("cached") else f"{build.get('duration', 0):.1f} s"
    print(f"deployed {name} revision {endpoint.get('live_revision')} ({how})")
    print(f"{method} {endpoint.get('url')}")
    return 0


def _without_cell_magic(source: str, filename: str) -> str:
    """A notebook cell saved as a file starts with its ``%%rust_handler`` line, which is
    not Rust: blank it (line numbers stay those of the file) and say that it is ignored."""
    first, newline, rest = source.partition("\n")
    if not first.lstrip().startswith("%%rust_handler"):
        return source
    print(f"note: {filename}: ignoring its first line ({first.strip()}); the route and "
          "options come from the command line (--route, --workers, ...)", file=sys.stderr)
    return newline + rest


def _keeps(exc: AdminError) -> str:
    reason = (exc.details.get("endpoint") or {}).get("reason") or ""
    found = re.search(r"revision \d+ keeps serving", reason)
    return f" ({found.group(0)})" if found else ""


def _relabel(rendered: str, filename: str) -> str:
    """Name the user's file where the renderer names the generated one."""
    return re.sub(r"(?m)^(\s*-->\s*)line (\d+), column (\d+)",
                  lambda m: f"{m.group(1)}{filename}:{m.group(2)}:{m.group(3)}", rendered)


def cmd_status(args: argparse.Namespace) -> int:
    client = admin_client(args)
    info = client.info
    if info is None:  # a remote gateway (EDGEBOOK_ADMIN_URL): what it says of itself
        stats = client.stats()
        print(f"gateway at {client.admin_url} (pid {stats.get('pid')} on its machine): "
              f"{client.url or stats.get('url')}")
    else:
        print(f"gateway pid {info.pid}: {info.url}  (admin {info.admin_url}, "
              f"{info.processes} process{'es' if info.processes > 1 else ''})")
    endpoints = client.endpoints()
    if not endpoints:
        print("no endpoints")
        return 0
    rows = [("NAME", "ROUTE", "STATE", "REV", "URL")]
    for ep in endpoints:
        route = f"{ep['method']} {ep['path']}" + (f" @{ep['domain']}" if ep.get("domain") else "")
        rows.append((ep["name"], route, ep["state"], str(ep.get("live_revision") or "-"),
                     ep.get("url") or ""))
    _print_table(rows)
    for ep in endpoints:
        if ep["state"] in ("build_failed", "deploy_failed", "crash_looping") and ep.get("reason"):
            print(f"{ep['name']}: {ep['reason']}")
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_gateways(args: argparse.Namespace) -> int:
    notes = list_gateways()
    if not notes:
        print("no gateway is running")
        return 0
    rows = [("PID", "DATA DIR", "URL", "ADMIN", "STARTED BY", "UP", "IDLE EXIT")]
    now = time.time()
    for note in notes:
        rows.append((str(note.pid), note.data_dir, note.url, note.admin_url, note.started_by,
                     _duration(now - note.started),
                     f"{note.idle_exit:g} s" if note.idle_exit else "-"))
    _print_table(rows)
    return 0


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def cmd_stop_gateway(args: argparse.Namespace) -> int:
    notes = list_gateways()
    if args.pid is not None:
        found = [n for n in notes if n.pid == args.pid]
        what = f"pid {args.pid}"
    else:
        found = [n for n in notes if n.data_dir == args.data_dir]
        what = f"data dir {args.data_dir}"
    if not found:
        raise CliError(f"no running gateway for {what} (see 'edgebook gateways')")
    note = found[0]
    try:
        os.kill(note.pid, signal.SIGTERM)
    except ProcessLookupError:
        print(f"gateway pid {note.pid} had already exited")
        return 0
    deadline = time.monotonic() + args.timeout
    while pid_alive(note.pid):
        if time.monotonic() > deadline:
            raise CliError(f"gateway pid {note.pid} did not exit within {args.timeout:g} s")
        time.sleep(0.1)
    print(f"stopped gateway pid {note.pid} ({note.data_dir}, {note.url})")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = admin_client(args)
    lines = client.logs(args.name, tail=args.tail)
    last = _print_lines(lines, 0)
    while args.follow:
        time.sleep(0.5)
        new = client.request("GET", f"/api/endpoints/{args.name}/logs",
                             query={"since": last, "tail": 10000})["lines"]
        last = _print_lines(new, last)
    return 0


def _print_lines(lines: list[dict], last: int) -> int:
    for line in lines:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.get("time", 0)))
        print(f"{stamp} [{line.get('source', '')}] {line.get('text', '')}", flush=True)
        last = max(last, int(line.get("seq", 0)))
    return last


def cmd_stop(args: argparse.Namespace) -> int:
    view = admin_client(args).stop(args.name)
    print(f"{args.name}: {view['state']}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    view = admin_client(args).start(args.name)
    print(f"{args.name}: {view['state']}" + (f" ({view['reason']})" if view.get("reason") else ""))
    return 0 if view["state"] == "running" else 1


def cmd_restart(args: argparse.Namespace) -> int:
    view = admin_client(args).restart(args.name)
    print(f"{args.name}: {view['state']}")
    return 0 if view["state"] == "running" else 1


def cmd_rm(args: argparse.Namespace) -> int:
    admin_client(args).remove(args.name)
    print(f"removed {args.name}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:

    client = admin_client(args)
    action = args.service_command
    if action == "add":
        try:
            config = parse_options(args.kind, args.options)
        except ServiceConfigError as exc:
            raise CliError(str(exc), 2) from None
        shown = client.put_service(args.name, args.kind, config)
        print(f"service {args.name} ({args.kind}): {json.dumps(shown.get('config', {}))}")
    elif action == "list":
        for record in client.services():
            mark = " (built in)" if record.get("builtin") else ""
            print(f"{record['name']:<16} {record['kind']:<9}{mark} "
                  f"{json.dumps(record.get('config', {}))}")
    elif action == "test":
        result = client.test_service(args.name)
        print("\n".join(service_test_report(args.name, result)))
        if not result.get("ok"):
            return 1
    elif action == "rm":
        client.delete_service(args.name)
        print(f"removed service {args.name}")
    return 0


def cmd_prebuild(args: argparse.Namespace) -> int:

    configure_logging("warning")
    builder = Builder(args.data_dir)
    profiles = tuple(args.profile) if args.profile else None

    last: list[tuple] = []

    def progress(event: dict) -> None:
        """One line per phase, and per crate while compiling (cargo reports each twice)."""
        line = (event.get("profile", ""), event.get("phase", ""), event.get("crate"))
        if last and last[-1] == line:
            return
        last[:] = [line]
        crate = f" {line[2]}" if line[2] else ""
        print(f"prebuild {line[0]}: {line[1]}{crate}", file=sys.stderr, flush=True)

    started = time.monotonic()
    try:
        results = (builder.prebuild(profiles, on_progress=progress) if profiles
                   else builder.prebuild(on_progress=progress))
    except PrebuildError as exc:
        raise CliError(f"prebuild failed:\n{exc}") from None
    failed = [r for r in results if not r.ok]
    if failed:
        for result in failed:
            print(result.log[-4000:], file=sys.stderr)
        raise CliError("prebuild failed")
    print(f"prebuilt the SDK ({', '.join(r.profile for r in results)}) in "
          f"{time.monotonic() - started:.1f} s")
    return 0


#: A command's handler, or "module:function" for those that load the gateway itself
#: (imported only when run, so the client commands start fast).
COMMANDS = {"serve": "edgebook.cli.serve:cmd_serve", "_follow": "edgebook.cli.serve:cmd_follow",
            "deploy": cmd_deploy,
            "status": cmd_status, "gateways": cmd_gateways,
            "stop-gateway": cmd_stop_gateway, "logs": cmd_logs, "stop": cmd_stop, "start": cmd_start,
            "restart": cmd_restart, "rm": cmd_rm, "prebuild": cmd_prebuild,
            "service": cmd_service}


if __name__ == "__main__":
    sys.exit(main())
