"""The ``redis`` kind: a Redis server through ``redis.asyncio`` with a bounded pool.

Config: either ``{"url": "redis://[user:password@]host:port/db"}`` or
``{"host": "127.0.0.1", "port": 6379, "db": 0, "username": null, "password": null}``, plus
``"max_connections": 10`` and ``"timeout"`` (seconds per call). ``rediss://`` URLs use TLS.

A server that is down fails a call within ``connect_timeout``. A connection that breaks
during a call (a server restart) retries the call once, at once, on a new connection, but
only for operations that may safely run twice: never ``redis.incr``, which may have
counted before the connection broke (it fails with ``unavailable`` instead).
Values are UTF-8 text (bytes that are not valid UTF-8 come back with U+FFFD in their place).
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import arguments
from . import config as check
from .base import CallContext, Connector
from .errors import ServiceConfigError, ServiceError

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 64 * 1024
#: Operations whose second run changes nothing the first did not: retried once when the
#: connection breaks. ``redis.incr`` is left out (a lost reply may hide an applied count).
RETRY_SAFE = frozenset({"redis.get", "redis.set", "redis.setex", "redis.del", "redis.expire",
                        "redis.exists", "redis.hget", "redis.hset", "redis.hgetall"})


class RedisConnector(Connector):
    kind = "redis"
    ops = frozenset({"redis.get", "redis.set", "redis.setex", "redis.del", "redis.incr",
                     "redis.expire", "redis.exists", "redis.hget", "redis.hset",
                     "redis.hgetall"})
    secret_keys = frozenset({"password"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._client: aioredis.Redis | None = None

    @classmethod
    def check_config(cls, config: dict[str, Any], name: str) -> dict[str, Any]:
        config = dict(config)
        check.only(config, {"url", "host", "port", "db", "username", "password",
                            "max_connections", "timeout"}, "redis")
        url = check.text(config, "url")
        if url is not None:
            if not url.startswith(("redis://", "rediss://", "unix://")):
                raise ServiceConfigError("redis 'url' must start with redis://, rediss:// or "
                                         "unix://")
        else:
            check.text(config, "host", "127.0.0.1")
            check.number(config, "port", 6379, integer=True)
            check.number(config, "db", 0, integer=True, strict=False)
            check.text(config, "username")
            check.text(config, "password")
        check.number(config, "max_connections", 10, integer=True)
        if config.get("timeout") is not None:
            check.number(config, "timeout", 10.0)
        return config

    def describe_target(self) -> str:
        if self.config.get("url"):
            return self.config["url"].rpartition("@")[2]
        return f"{self.config['host']}:{self.config['port']}/{self.config['db']}"

    def _make_client(self) -> aioredis.Redis:
        options = dict(
            max_connections=self.config["max_connections"],
            timeout=self.settings.connect_timeout,  # wait for a free pooled connection
            socket_connect_timeout=self.settings.connect_timeout,
            socket_timeout=self.call_timeout,
            health_check_interval=30,
            decode_responses=True,
            encoding_errors="replace",
            retry=Retry(NoBackoff(), 0),  # call() decides, per operation
        )
        if self.config.get("url"):
            pool = aioredis.BlockingConnectionPool.from_url(self.config["url"], **options)
        else:
            pool = aioredis.BlockingConnectionPool(
                host=self.config["host"], port=self.config["port"], db=self.config["db"],
                username=self.config.get("username"), password=self.config.get("password"),
                **options)
        return aioredis.Redis(connection_pool=pool)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    async def call(self, op: str, args: dict[str, Any], ctx: CallContext) -> Any:
        key = arguments.text(args, "key", max_length=MAX_KEY_LENGTH)
        try:
            try:
                return await self._run(op, key, args)
            except redis_errors.ConnectionError as exc:
                if op not in RETRY_SAFE or isinstance(exc, redis_errors.AuthenticationError):
                    raise
                log.info("redis '%s': %s broke the connection (%s); retrying once", self.name,
                         op, exc)
                return await self._run(op, key, args)
        except redis_errors.AuthenticationError as exc:
            raise ServiceError("unavailable", f"redis service '{self.name}' refused the "
                                              "configured credentials",
                               log_message=str(exc)) from None
        except redis_errors.TimeoutError as exc:
            raise ServiceError("timeout", f"redis service '{self.name}' did not answer in "
                                          "time", log_message=str(exc)) from None
        except (redis_errors.ConnectionError, OSError) as exc:
            raise self.unavailable(str(exc)) from None
        except redis_errors.ResponseError as exc:
            raise ServiceError("redis", str(exc)) from None
        except redis_errors.RedisError as exc:
            raise ServiceError("redis", str(exc), log_message=repr(exc)) from None

    async def _run(self, op: str, key: str, args: dict[str, Any]) -> Any:
        client = self.client
        if op == "redis.get":
            return await client.get(key)
        if op == "redis.set":
            value = arguments.string_or_json(args, "value")
            seconds = arguments.integer(args, "seconds", default=None, minimum=1)
            await client.set(key, value, ex=seconds)
            return None
        if op == "redis.setex":
            value = arguments.string_or_json(args, "value")
            seconds = arguments.integer(args, "seconds", minimum=1)
            await client.set(key, value, ex=seconds)
            return None
        if op == "redis.del":
            return await client.delete(key) > 0
        if op == "redis.incr":
            by = arguments.integer(args, "by", default=1)
            return await client.incrby(key, by)
        if op == "redis.expire":
            seconds = arguments.integer(args, "seconds", minimum=0)
            return bool(await client.expire(key, seconds))
        if op == "redis.exists":
            return await client.exists(key) > 0
        if op == "redis.hget":
            return await client.hget(key, arguments.text(args, "field", allow_empty=True))
        if op == "redis.hset":
            field = arguments.text(args, "field", allow_empty=True)
            await client.hset(key, field, arguments.string_or_json(args, "value"))
            return None
        # redis.hgetall
        return await client.hgetall(key)

    async def test(self) -> dict[str, Any]:
        try:
            info = await self.client.info("server")
        except redis_errors.AuthenticationError as exc:
            raise ServiceError("unavailable", f"redis service '{self.name}' refused the "
                                              "configured credentials",
                               log_message=str(exc)) from None
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise self.unavailable(str(exc)) from None
        return {"server_version": info.get("redis_version")}

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
            await client.connection_pool.disconnect()
