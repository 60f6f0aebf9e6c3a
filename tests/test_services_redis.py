"""The redis service through ServiceManager, against a real redis-server."""

import asyncio
import time

from edgebook.services import ServiceManager
from servers import async_test, free_port, own_redis, redis_server  # noqa: F401  (fixtures)
from service_calls import Caller


async def open_cache(tmp_path, config, **options):
    options.setdefault("connect_timeout", 10.0)  # a loaded machine is slow to connect
    manager = ServiceManager(tmp_path, **options)
    await manager.put("cache", "redis", config)
    return manager, Caller(manager, bindings={"cache"})


@async_test
async def test_every_operation(redis_server, tmp_path):
    manager, call = await open_cache(tmp_path, redis_server.config())
    k = f"test:{time.monotonic_ns()}"
    try:
        assert await call("cache", "redis.get", {"key": k}) is None
        assert await call("cache", "redis.set", {"key": k, "value": "héllo"}) is None
        assert await call("cache", "redis.get", {"key": k}) == "héllo"
        assert await call("cache", "redis.exists", {"key": k}) is True
        assert await call("cache", "redis.del", {"key": k}) is True
        assert await call("cache", "redis.del", {"key": k}) is False
        assert await call("cache", "redis.exists", {"key": k}) is False
        assert await call("cache", "redis.setex", {"key": k, "value": "v", "seconds": 60}) \
            is None
        ttl = await redis_ttl(redis_server, k)
        assert 0 < ttl <= 60
        assert await call("cache", "redis.expire", {"key": k, "seconds": 120}) is True
        assert 60 < await redis_ttl(redis_server, k) <= 120
        assert await call("cache", "redis.expire", {"key": k + ":none", "seconds": 5}) is False
        assert await call("cache", "redis.incr", {"key": k + ":n", "by": 1}) == 1
        assert await call("cache", "redis.incr", {"key": k + ":n", "by": 41}) == 42
        assert await call("cache", "redis.incr", {"key": k + ":n"}) == 43
        assert await call("cache", "redis.hgetall", {"key": k + ":h"}) == {}
        assert await call("cache", "redis.hset", {"key": k + ":h", "field": "a",
                                                  "value": "1"}) is None
        await call("cache", "redis.hset", {"key": k + ":h", "field": "b", "value": "2"})
        assert await call("cache", "redis.hget", {"key": k + ":h", "field": "a"}) == "1"
        assert await call("cache", "redis.hget", {"key": k + ":h", "field": "z"}) is None
        assert await call("cache", "redis.hgetall", {"key": k + ":h"}) == {"a": "1", "b": "2"}
    finally:
        await manager.close()


async def redis_ttl(server, key):
    import redis.asyncio as aioredis
    client = aioredis.Redis(port=server.port, password=server.password)
    try:
        return await client.ttl(key)
    finally:
        await client.aclose()


@async_test
async def test_command_injection_stays_inert(redis_server, tmp_path):
    manager, call = await open_cache(tmp_path, redis_server.config())
    try:
        key = "k\r\nFLUSHALL\r\n"
        value = "*1\r\n$8\r\nFLUSHALL\r\n"
        await call("cache", "redis.set", {"key": "survivor", "value": "yes"})
        await call("cache", "redis.set", {"key": key, "value": value})
        assert await call("cache", "redis.get", {"key": key}) == value
        assert await call("cache", "redis.get", {"key": "survivor"}) == "yes"
    finally:
        await manager.close()


@async_test
async def test_errors_have_kinds(redis_server, tmp_path):
    manager, call = await open_cache(tmp_path, redis_server.config())
    try:
        await call("cache", "redis.set", {"key": "text", "value": "abc"})
        error = await call.error("cache", "redis.incr", {"key": "text", "by": 1})
        assert error.kind == "redis" and "not an integer" in error.message
        error = await call.error("cache", "redis.hget", {"key": "text", "field": "f"})
        assert error.kind == "redis" and "WRONGTYPE" in error.message
        error = await call.error("cache", "redis.setex", {"key": "k", "value": "v"})
        assert (error.kind, error.message) == ("bad_request", "missing argument 'seconds'")
        error = await call.error("cache", "redis.get", {})
        assert error.kind == "bad_request"
        error = await call.error("cache", "db.query", {"sql": "select 1"})
        assert error.kind == "bad_request"
    finally:
        await manager.close()


@async_test
async def test_down_fails_fast_and_recovers_after_restart(own_redis, tmp_path):
    manager, call = await open_cache(tmp_path, own_redis.config(), connect_timeout=1.0)
    try:
        await call("cache", "redis.set", {"key": "k", "value": "before"})
        own_redis.stop()
        started = time.monotonic()
        error = await call.error("cache", "redis.get", {"key": "k"})
        assert (error.kind, error.message) == ("unavailable",
                                               "redis service 'cache' is not reachable")
        assert time.monotonic() - started < 10  # not a client default: a minute, or never
        assert (await manager.test("cache"))["ok"] is False
        own_redis.start()
        # The server kept nothing (--save ''), but the pool reconnects on the next call.
        assert await call("cache", "redis.get", {"key": "k"}) is None
        await call("cache", "redis.set", {"key": "k", "value": "after"})
        assert await call("cache", "redis.get", {"key": "k"}) == "after"
    finally:
        await manager.close()


@async_test
async def test_wrong_password_url_config_and_masking(redis_server, tmp_path):
    manager = ServiceManager(tmp_path, connect_timeout=1.0)
    url = f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/0"
    await manager.put("good", "redis", {"url": url})
    await manager.put("bad", "redis", {**redis_server.config(), "password": "wrong"})
    await manager.put("nowhere", "redis", {"port": free_port()})
    call = Caller(manager, bindings={"good", "bad", "nowhere"})
    try:
        assert (await manager.test("good"))["ok"] is True
        assert await call("good", "redis.incr", {"key": "url-config", "by": 2}) >= 2
        error = await call.error("bad", "redis.get", {"key": "k"})
        assert (error.kind, error.message) == (
            "unavailable", "redis service 'bad' refused the configured credentials")
        error = await call.error("nowhere", "redis.get", {"key": "k"})
        assert error.kind == "unavailable"
        assert manager.describe("bad")["config"]["password"] == "****"
        shown = manager.describe("good")["config"]["url"]
        assert redis_server.password not in shown and ":****@" in shown
    finally:
        await manager.close()


class DroppingRedis:
    """A loopback stand-in that speaks just enough RESP, and drops the connection instead
    of answering the first command named in ``drop`` (as a server restart would mid-call).
    ``seen`` counts every command that arrived, by name."""

    def __init__(self, drop):
        self.drop = set(drop)
        self.seen = {}
        self.server = None

    async def start(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer):
        try:
            while True:
                command = await read_command(reader)
                name = command[0].upper()
                self.seen[name] = self.seen.get(name, 0) + 1
                if name in self.drop:
                    self.drop.discard(name)
                    return  # connection closed, no answer
                answers = {"GET": b"$1\r\nv\r\n", "INCRBY": b":7\r\n", "PING": b"+PONG\r\n",
                           "HELLO": b"-ERR unknown command 'HELLO'\r\n"}  # so RESP2
                writer.write(answers.get(name, b"+OK\r\n"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def read_command(reader):
    count = int((await reader.readuntil(b"\r\n"))[1:-2])
    parts = []
    for _ in range(count):
        size = int((await reader.readuntil(b"\r\n"))[1:-2])
        parts.append((await reader.readexactly(size + 2))[:-2].decode())
    return parts


@async_test
async def test_a_broken_connection_retries_only_what_may_run_twice(tmp_path):
    fake = DroppingRedis(drop={"GET", "INCRBY"})
    port = await fake.start()
    manager, call = await open_cache(tmp_path, {"host": "127.0.0.1", "port": port})
    try:
        assert await call("cache", "redis.get", {"key": "k"}) == "v"  # retried, answered
        assert fake.seen["GET"] == 2
        error = await call.error("cache", "redis.incr", {"key": "n"})
        assert error.kind == "unavailable"
        assert fake.seen["INCRBY"] == 1  # not sent again: it may have counted
        assert await call("cache", "redis.incr", {"key": "n"}) == 7  # the next call works
    finally:
        await manager.close()
        fake.server.close()
