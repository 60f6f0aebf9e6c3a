"""``edgebook serve``: a gateway in the foreground (data plane, admin API, followers with
``--processes N``), and ``_follow``, the hidden command each follower process runs."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from .._version import __version__
from ..admin.routes import LOOPBACK_HOSTS, make_admin_app
from ..discovery import (
    GatewayNote,
    find_live,
    gateway_on_port,
    mark_starting,
    new_info,
    ownerless_idle,
    pid_alive,
    register_gateway,
    remove_runtime,
    runtime_path,
    starting_done,
    unregister_gateway,
    url_host,
    write_runtime,
)
from ..gateway.core import Gateway, GatewayConfig, bind_dataplane
from ..gateway.eventloop import UVLOOP_ENV, event_loop_name, run_event_loop
from ..gateway.followers import FollowerSet, run_follower
from ..sandbox import describe_isolation, isolation_report
from .common import CliError, configure_logging


def cmd_serve(args: argparse.Namespace) -> int:
    if args.processes < 1:
        raise CliError("--processes must be at least 1", 2)
    if args.idle_exit is not None and args.idle_exit <= 0:
        raise CliError("--idle-exit must be a positive number of seconds", 2)
    if (args.idle_exit is not None or args.owner_pid is not None) and args.processes > 1:
        # followers' traffic never reaches the primary's clock: it would exit while busy
        raise CliError("--idle-exit and --owner-pid work with one process only (not with "
                       "--processes)", 2)
    if args.openapi_path and not args.openapi_path.startswith("/"):
        raise CliError("--openapi-path must start with '/'", 2)
    live = find_live(args.data_dir)
    if live is not None:
        raise CliError(f"a gateway (pid {live.pid}) is already running for {args.data_dir}: "
                       f"{live.url} (admin {live.admin_url})")
    cluster = bool(args.registry) and not args.registry.startswith("sqlite")
    if args.registry and not (cluster or args.registry.startswith("sqlite")):
        raise CliError("--registry must be a postgresql:// URL (or sqlite:)", 2)
    if cluster and args.processes > 1:
        raise CliError("--processes works with the SQLite registry only; with --registry "
                       "run more gateways (each with its own data dir) instead", 2)
    if args.role != "all" and not cluster:
        raise CliError(f"--role {args.role} needs a shared --registry postgresql://...: "
                       "alone a gateway both serves and builds", 2)
    configure_logging(args.log_level)
    config = GatewayConfig(data_dir=args.data_dir, host=args.host, port=args.port,
                           admin_host=args.admin_host, admin_port=args.admin_port,
                           processes=args.processes, release_after_dev=args.release_after_dev,
                           drain_timeout=args.drain_timeout,
                           openapi_path=args.openapi_path or None, dev=args.dev,
                           server_timing=args.server_timing, token=_admin_token(args),
                           registry_url=args.registry if cluster else None,
                           artifacts_url=args.artifacts,
                           artifacts_endpoint=args.artifacts_endpoint, role=args.role)
    if not args.uvloop:
        os.environ[UVLOOP_ENV] = "0"  # followers inherit it
    return run_event_loop(_serve(config, started_by=args.started_by, idle_exit=args.idle_exit,
                                 owner_pid=args.owner_pid))


def _admin_token(args: argparse.Namespace) -> str | None:
    """The admin token from --token-file or EDGEBOOK_ADMIN_TOKEN (a Kubernetes Secret);
    None: the gateway makes a random one."""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise CliError(f"cannot read --token-file {args.token_file}: {exc}", 2) from None
        if not token:
            raise CliError(f"--token-file {args.token_file} is empty", 2)
        return token
    return os.environ.get("EDGEBOOK_ADMIN_TOKEN") or None


def _cannot_listen(config: GatewayConfig, exc: OSError) -> str:
    """Why the data plane cannot listen, naming the gateway that holds the port if any."""
    holder = gateway_on_port(config.port)
    if holder is not None:
        return (f"edgebook: port {config.port} is taken by another edgebook gateway "
                f"(pid {holder.pid}, data dir {holder.data_dir}, started by "
                f"{holder.started_by}); pick another --port (0: a free one) or stop it "
                f"with: edgebook stop-gateway --pid {holder.pid}")
    return f"edgebook: cannot listen on {config.host}:{config.port}: {exc} (use --port 0 " \
           "for a free port)"


async def _watch_idle(gateway: Gateway, idle_exit: float | None, stop: asyncio.Event,
                      owner_pid: int | None = None) -> None:
    """Set ``stop`` once the gateway has had no traffic and no admin call for ``idle_exit``
    seconds, or, once the process ``owner_pid`` has ended, for ``ownerless_idle()``."""
    grace = ownerless_idle()
    while not stop.is_set():
        idle = gateway.idle_for()
        if idle_exit and idle >= idle_exit:
            print(f"edgebook: idle for {idle:.0f} s (--idle-exit {idle_exit:g}); exiting",
                  flush=True)
            stop.set()
            return
        if owner_pid and idle >= grace and not pid_alive(owner_pid):
            print(f"edgebook: the process it served (pid {owner_pid}) has ended and nothing "
                  f"reached it for {idle:.0f} s; exiting", flush=True)
            stop.set()
            return
        await asyncio.sleep(min(max(min(idle_exit or grace, grace) - idle, 0.0), 1.0) + 0.05)


async def _serve(config, *, started_by: str = "edgebook serve",
                 idle_exit: float | None = None, owner_pid: int | None = None) -> int:
    mark_starting(config.data_dir)  # clients wait for the runtime file meanwhile
    try:
        return await _serve_started(config, started_by=started_by, idle_exit=idle_exit,
                                    owner_pid=owner_pid)
    finally:
        starting_done(config.data_dir)


async def _serve_started(config, *, started_by: str, idle_exit: float | None,
                         owner_pid: int | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    try:
        sockets = bind_dataplane(config.host, config.port, shared=config.processes > 1)
    except OSError as exc:
        print(_cannot_listen(config, exc), file=sys.stderr)
        return 1
    try:
        admin_sockets = bind_sockets(config.admin_port, address=config.admin_host)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        print(f"edgebook: the admin API cannot listen on {config.admin_host}:"
              f"{config.admin_port}: {exc}", file=sys.stderr)
        return 1
    gateway = Gateway(config)
    admin_server = None
    followers = None
    watcher = None
    try:
        await gateway.start(sockets)
        admin_port = admin_sockets[0].getsockname()[1]
        admin_url = f"http://{url_host(config.admin_host)}:{admin_port}"
        gateway.admin_url = admin_url
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
        starting_done(config.data_dir)
        register_gateway(GatewayNote(
            pid=os.getpid(), data_dir=os.path.abspath(config.data_dir), url=gateway.url,
            admin_url=admin_url, started_by=started_by, started=time.time(),
            processes=config.processes, idle_exit=idle_exit or 0.0))
        if idle_exit or owner_pid:
            watcher = asyncio.create_task(_watch_idle(gateway, idle_exit, stop, owner_pid))
        print(f"edgebook {__version__} serving {gateway.url}  (admin API {admin_url}, "
              f"{config.processes} process{'es' if config.processes > 1 else ''}, "
              f"{event_loop_name()}; data dir {config.data_dir})", flush=True)
        print(f"edgebook: admin page {admin_url}/admin/ (the token is in "
              f"{runtime_path(config.data_dir)})", flush=True)
        print("edgebook: " + describe_isolation(await asyncio.to_thread(
            isolation_report, gateway.sandbox, getattr(gateway.builder, "sandbox", None))),
            flush=True)
        await stop.wait()
        print("edgebook: shutting down (draining in-flight requests)", flush=True)
    finally:
        if watcher is not None:
            watcher.cancel()
        unregister_gateway(os.getpid())
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
    configure_logging(args.log_level)
    return run_event_loop(run_follower(args.data_dir, args.host, args.port, args.drain_timeout,
                                    dev=args.dev, server_timing=args.server_timing))
