"""Real PostgreSQL, Redis and S3 (moto) servers on loopback, started by the service tests.

Each server class is the one owner of one server process: it starts it on a port from the
kernel, waits until it answers, and stops it by its pid. PostgreSQL refuses to run as root,
so under root it runs as the unprivileged ``postgres`` user in a temp dir owned by that user.

A missing server program skips the tests that need it, with the reason; with
``EDGEBOOK_REQUIRE_SERVICES=1`` (CI) it fails them instead.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REQUIRE = os.environ.get("EDGEBOOK_REQUIRE_SERVICES") == "1"
START_TIMEOUT = 30.0


def missing(reason: str):
    """Skip (or, when services are required, fail) the test that needs what is missing."""
    if REQUIRE:
        pytest.fail(f"{reason} (EDGEBOOK_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def async_test(fn):
    """Run an ``async def`` test on a fresh event loop (fixtures still work)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 120))
    return wrapper


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ServerProcess:
    """One server process: ``start``, ``stop`` (by pid, waiting for it), ``restart``."""

    name = "server"

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict:
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        assert self.proc is None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, **self.popen_options())
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.proc.poll() is not None:
                output = open(self.log_path, errors="replace").read()[-2000:]
                self.proc = None
                raise RuntimeError(f"{self.name} exited at start:\n{output}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT} s")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisServer(ServerProcess):
    name = "redis-server"

    def __init__(self):
        super().__init__()
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            missing("redis-server is not installed (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="edgebook-redis-")
        self.log_path = os.path.join(self.dir, "redis.log")
        self.password = secrets.token_hex(8)

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--requirepass", self.password]

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"AUTH %s\r\nPING\r\n" % self.password.encode())
                reply = b""
                while b"PONG" not in reply and len(reply) < 200:
                    chunk = sock.recv(100)
                    if not chunk:
                        return False
                    reply += chunk
                return True
        except OSError:
            return False

    def config(self, **extra) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "password": self.password, **extra}

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bindir() -> str | None:
    configured = os.environ.get("EDGEBOOK_PG_BINDIR")
    if configured:
        return configured
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        bindir = found.stdout.strip()
        if os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    # Debian and Ubuntu keep the server programs out of PATH, one folder per major version.
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer(ServerProcess):
    """A throwaway cluster: ``initdb`` with a password, then ``postgres`` on loopback."""

    name = "postgres"
    user = "edgebook"

    def __init__(self):
        super().__init__()
        self.bindir = postgres_bindir()
        if self.bindir is None:
            missing("PostgreSQL server programs are not installed (apt-get install postgresql)")
        self.run_as = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and there is no 'postgres' user to run PostgreSQL")
        self.dir = tempfile.mkdtemp(prefix="edgebook-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.password = secrets.token_hex(8)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as out:
            out.write(self.password + "\n")
        if self.run_as is not None:
            for path in (self.dir, pwfile):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        done = subprocess.run(
            [os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", self.user,
             "--pwfile", pwfile, "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync",
             "--locale", "C"],
            capture_output=True, text=True, **self.popen_options())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def popen_options(self) -> dict:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": [],
                "cwd": self.dir}

    def command(self) -> list[str]:
        return [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                "-h", "127.0.0.1", "-k", self.dir, "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=60", "-c", "shared_buffers=16MB"]

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        done = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", "127.0.0.1",
                               "-p", str(self.port), "-U", self.user, "-d", "postgres"],
                              capture_output=True)
        return done.returncode == 0

    def stop(self, sig: int = signal.SIGINT) -> None:
        super().stop(sig)  # SIGINT: fast shutdown, ends every session

    def config(self, **extra) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": self.user,
                "password": self.password, "database": "postgres", **extra}

    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/postgres"

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MotoServer(ServerProcess):
    """moto's S3 in server mode, in its own Python process."""

    name = "moto"
    access_key = "edgebook-test-key"
    secret_key = "edgebook-test-secret"

    def __init__(self):
        super().__init__()
        try:
            import moto.server  # noqa: F401  (only to know it is installed)
        except ImportError:
            missing("moto[server] is not installed (pip install 'moto[server]')")
        self.dir = tempfile.mkdtemp(prefix="edgebook-moto-")
        self.log_path = os.path.join(self.dir, "moto.log")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def popen_options(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {"env": env}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=0.5):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def config(self, bucket: str, **extra) -> dict:
        return {"endpoint_url": self.url, "bucket": bucket, "access_key_id": self.access_key,
                "secret_access_key": self.secret_key, "create_bucket": True, **extra}

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _server(cls):
    server = cls()
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="session")
def redis_server():
    server = _server(RedisServer)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    server = _server(PostgresServer)
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def s3_server():
    server = _server(MotoServer)
    yield server
    server.cleanup()


@pytest.fixture
def own_redis():
    """A Redis server of the test's own, which the test may stop and restart."""
    server = _server(RedisServer)
    yield server
    server.cleanup()


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of the test's own, which the test may stop and restart."""
    server = _server(PostgresServer)
    yield server
    server.cleanup()


@pytest.fixture
def own_s3():
    server = _server(MotoServer)
    yield server
    server.cleanup()
