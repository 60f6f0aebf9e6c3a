"""The ``edgebook`` command: serve, deploy, status, logs, stop, start, rm, prebuild, and
openapi, import-openapi, import-bundle (see ``edgebook.openapi.commands``).

``serve`` runs a gateway in the foreground. Every other command finds the running gateway
through the runtime file in the data dir (``--data-dir``, else ``$EDGEBOOK_DATA_DIR``, else
``./.edgebook``) and talks to its admin API. ``deploy`` does not start a gateway unless
asked to with ``--start`` (then one starts in the background and keeps running).

Exit statuses: 0 success; 1 the operation failed (build errors, a worker that would not
start, no gateway running); 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import asyncio
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Sequence

from . import __version__
from .client import AdminClient, AdminError, default_data_dir, ensure_gateway

log = logging.getLogger("edgebook.cli")


class CliError(Exception):
    """A failure to report on stderr without a traceback, with an exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.message = message
        self.status = status


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
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])

    follow = with_data_dir(sub.add_parser("_follow"))  # no help: not listed
    follow.add_argument("--host", required=True)
    follow.add_argument("--port", type=int, required=True)
    follow.add_argument("--drain-timeout", type=float, default=30.0)
    follow.add_argument("--log-level", default="info")

    deploy = with_data_dir(sub.add_parser("deploy", help="build and deploy a handler file"))
    deploy.add_argument("file", help="the handler's Rust source (e.g. hello.rs)")
    deploy.add_argument("--route", required=True, help='method and path, e.g. "GET /hello"')
    deploy.add_argument("--name", help="endpoint name (default: the file name without .rs)")
    deploy.add_argument("--workers", type=int, help="worker processes (default 1)")
    deploy.add_argument("--timeout", type=float, help="per-request timeout in seconds")
    deploy.add_argument("--max-body", type=int, help="request body limit in bytes")
    deploy.add_argument("--release", action="store_true", help="build with the release profile")
    deploy.add_argument("--dep", action="append", default=[], metavar="NAME@VERSION",
                        help="an extra crate dependency (repeatable)")
    deploy.add_argument("--domain", help="answer only this host (or *.example.com)")
    deploy.add_argument("--service", action="append", default=[], metavar="NAME",
                        help="bind a registered service (repeatable)")
    deploy.add_argument("--start", action="store_true",
                        help="start a background gateway if none is running")

    with_data_dir(sub.add_parser("status", help="list endpoints and their state"))

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

    from .openapi.commands import add_parsers as add_openapi_parsers
    COMMANDS.update(add_openapi_parsers(sub, with_data_dir))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.data_dir = os.path.abspath(args.data_dir or default_data_dir())
    handler = COMMANDS[args.command]
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


# -- serve ------------------------------------------------------------------------------------

def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def cmd_serve(args: argparse.Namespace) -> int:
    from .runtime import find_live

    if args.processes < 1:
        raise CliError("--processes must be at least 1", 2)
    if args.openapi_path and not args.openapi_path.startswith("/"):
        raise CliError("--openapi-path must start with '/'", 2)
    live = find_live(args.data_dir)
    if live is not None:
        raise CliError(f"a gateway (pid {live.pid}) is already running for {args.data_dir}: "
                       f"{live.url} (admin {live.admin_url})")
    _configure_logging(args.log_level)
    from .gateway import GatewayConfig
    config = GatewayConfig(data_dir=args.data_dir, host=args.host, port=args.port,
                           admin_host=args.admin_host, admin_port=args.admin_port,
                           processes=args.processes, release_after_dev=args.release_after_dev,
                           drain_timeout=args.drain_timeout,
                           openapi_path=args.openapi_path or None)
    return asyncio.run(_serve(config))


async def _serve(config) -> int:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from .admin import LOOPBACK_HOSTS, make_admin_app
    from .gateway import Gateway, bind_dataplane
    from .multiprocess import FollowerSet
    from .runtime import new_info, remove_runtime, write_runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        sockets = bind_dataplane(config.host, config.port)
        admin_sockets = bind_sockets(config.admin_port, address=config.admin_host)
    except OSError as exc:
        print(f"edgebook: cannot listen: {exc} (use --port 0 for a free port)", file=sys.stderr)
        return 1
    gateway = Gateway(config)
    admin_server = None
    followers = None
    try:
        await gateway.start(sockets)
        admin_port = admin_sockets[0].getsockname()[1]
        admin_url = f"http://{_url_host(config.admin_host)}:{admin_port}"
        loopback = config.admin_host in ("127.0.0.1", "localhost", "::1")
        admin_server = HTTPServer(make_admin_app(
            gateway, gateway.token, allowed_hosts=LOOPBACK_HOSTS if loopback else None))
        admin_server.add_sockets(admin_sockets)
        if config.processes > 1:
            followers = FollowerSet(config)
            await followers.start()
            gateway.followers = followers
        write_runtime(config.data_dir, new_info(
            url=gateway.url, admin_url=admin_url, token=gateway.token,
            data_dir=config.data_dir, version=__version__, processes=config.processes))
        print(f"edgebook {__version__} serving {gateway.url}  (admin API {admin_url}, "
              f"{config.processes} process{'es' if config.processes > 1 else ''}; "
              f"data dir {config.data_dir})", flush=True)
        await stop.wait()
        print("edgebook: shutting down (draining in-flight requests)", flush=True)
    finally:
        remove_runtime(config.data_dir, pid=os.getpid())
        if admin_server is not None:
            admin_server.stop()
        if followers is not None:
            followers.begin_stop()
        await gateway.stop()
        if followers is not None:
            await followers.wait_stopped(config.drain_timeout + 10)
        if admin_server is not None:
            await admin_server.close_all_connections()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


def cmd_follow(args: argparse.Namespace) -> int:
    """A secondary process of ``serve --processes N``; driven by its primary over stdio."""
    _configure_logging(args.log_level)
    from .multiprocess import run_follower
    return asyncio.run(run_follower(args.data_dir, args.host, args.port, args.drain_timeout))


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


# -- client commands --------------------------------------------------------------------------

def _client(args: argparse.Namespace) -> AdminClient:
    try:
        return AdminClient.from_data_dir(args.data_dir)
    except AdminError as exc:
        raise CliError(exc.message) from None


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
    name = args.name or re.sub(r"[^A-Za-z0-9_.-]", "-",
                               os.path.splitext(os.path.basename(args.file))[0])
    client = ensure_gateway(args.data_dir) if args.start else _client(args)
    print(f"building {name} ({'release' if args.release else 'dev'}) ...", file=sys.stderr,
          flush=True)
    try:
        result = client.deploy(name, method, path, source, deps=args.dep, workers=args.workers,
                               timeout=args.timeout, max_body=args.max_body,
                               profile="release" if args.release else None,
                               domain=args.domain, services=args.service or None)
    except AdminError as exc:
        if exc.error_type == "build_failed":
            rendered = exc.rendered or (exc.build or {}).get("log") or ""
            if rendered:
                print(_relabel(rendered, args.file), file=sys.stderr)
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


def _keeps(exc: AdminError) -> str:
    reason = (exc.details.get("endpoint") or {}).get("reason") or ""
    found = re.search(r"revision \d+ keeps serving", reason)
    return f" ({found.group(0)})" if found else ""


def _relabel(rendered: str, filename: str) -> str:
    """Name the user's file where the renderer names the generated one."""
    return re.sub(r"(?m)^(\s*-->\s*)line (\d+), column (\d+)",
                  lambda m: f"{m.group(1)}{filename}:{m.group(2)}:{m.group(3)}", rendered)


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    info = client.info
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
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for ep in endpoints:
        if ep["state"] in ("build_failed", "deploy_failed", "crash_looping") and ep.get("reason"):
            print(f"{ep['name']}: {ep['reason']}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args)
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
    view = _client(args).stop(args.name)
    print(f"{args.name}: {view['state']}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    view = _client(args).start(args.name)
    print(f"{args.name}: {view['state']}" + (f" ({view['reason']})" if view.get("reason") else ""))
    return 0 if view["state"] == "running" else 1


def cmd_restart(args: argparse.Namespace) -> int:
    view = _client(args).restart(args.name)
    print(f"{args.name}: {view['state']}")
    return 0 if view["state"] == "running" else 1


def cmd_rm(args: argparse.Namespace) -> int:
    _client(args).remove(args.name)
    print(f"removed {args.name}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from .services.errors import ServiceConfigError
    from .services.options import parse_options

    client = _client(args)
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
        if not result.get("ok"):
            error = result.get("error") or {}
            print(f"{args.name}: not reachable: {error.get('message', result)}")
            return 1
        print(f"{args.name}: ok ({result.get('latency_ms', 0):.1f} ms)")
    elif action == "rm":
        client.delete_service(args.name)
        print(f"removed service {args.name}")
    return 0


def cmd_prebuild(args: argparse.Namespace) -> int:
    from .build import Builder, PrebuildError

    _configure_logging("warning")
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


COMMANDS = {"serve": cmd_serve, "_follow": cmd_follow, "deploy": cmd_deploy,
            "status": cmd_status, "logs": cmd_logs, "stop": cmd_stop, "start": cmd_start,
            "restart": cmd_restart, "rm": cmd_rm, "prebuild": cmd_prebuild,
            "service": cmd_service}


if __name__ == "__main__":
    sys.exit(main())
