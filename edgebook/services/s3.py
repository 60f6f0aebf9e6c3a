"""The ``s3`` kind: one bucket of an S3-compatible store (AWS, MinIO, moto) via aiobotocore.

Config::

    {"bucket": "media", "endpoint_url": "http://127.0.0.1:9000", "region": "us-east-1",
     "access_key_id": "...", "secret_access_key": "...", "create_bucket": false,
     "max_connections": 10, "timeout": 10}

Only ``bucket`` is required; without ``endpoint_url`` the client talks to AWS, and without
keys it uses botocore's usual credential chain of the gateway's host. ``create_bucket``
creates the bucket on first use when it does not exist. Path-style addressing is used, which
every S3-compatible server understands. A request that fails on a dropped connection is
retried once, so the service recovers as soon as a restarted server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from botocore import exceptions as boto_errors

from ..s3 import error_code, open_bucket
from . import config as check
from .errors import ServiceConfigError, ServiceError
from .objects import MAX_LIST_LIMIT, ObjectConnector

_MISSING = {"NoSuchKey", "404", "NotFound"}
_UNREACHABLE = (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError,
                boto_errors.ConnectionClosedError, boto_errors.ProxyConnectionError)


class S3Connector(ObjectConnector):
    kind = "s3"
    secret_keys = frozenset({"access_key_id", "secret_access_key", "session_token"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bucket = self.config["bucket"]
        self._client = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def check_config(cls, config: dict[str, Any], name: str) -> dict[str, Any]:
        config = dict(config)
        check.only(config, {"bucket", "endpoint_url", "region", "access_key_id",
                            "secret_access_key", "session_token", "create_bucket",
                            "max_connections", "timeout"}, "s3")
        check.text(config, "bucket", required=True)
        endpoint = check.text(config, "endpoint_url")
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ServiceConfigError("s3 'endpoint_url' must start with http:// or https://")
        check.text(config, "region", "us-east-1")
        check.text(config, "access_key_id")
        check.text(config, "secret_access_key")
        check.text(config, "session_token")
        if (config["access_key_id"] is None) != (config["secret_access_key"] is None):
            raise ServiceConfigError("give both 'access_key_id' and 'secret_access_key', or "
                                     "neither")
        check.flag(config, "create_bucket", False)
        check.number(config, "max_connections", 10, integer=True)
        if config.get("timeout") is not None:
            check.number(config, "timeout", 10.0)
        return config

    def describe_target(self) -> str:
        return f"{self.config.get('endpoint_url') or 'AWS'} bucket {self.bucket}"

    async def _get_client(self):
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client, self._stack = await open_bucket(
                        self.bucket, endpoint_url=self.config.get("endpoint_url"),
                        region=self.config["region"],
                        connect_timeout=self.settings.connect_timeout,
                        read_timeout=self.call_timeout, max_attempts=2,
                        max_pool_connections=self.config["max_connections"],
                        credentials={
                            "aws_access_key_id": self.config.get("access_key_id"),
                            "aws_secret_access_key": self.config.get("secret_access_key"),
                            "aws_session_token": self.config.get("session_token")},
                        create=self.config["create_bucket"])
                except Exception as exc:
                    raise self._error(exc) from None
        return self._client

    def _error(self, exc: Exception) -> ServiceError:
        if isinstance(exc, ServiceError):
            return exc
        if isinstance(exc, _UNREACHABLE):
            return self.unavailable(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, boto_errors.ReadTimeoutError):
            return ServiceError("timeout", f"s3 service '{self.name}' did not answer in time",
                                log_message=str(exc))
        if isinstance(exc, boto_errors.NoCredentialsError):
            return ServiceError("storage", f"s3 service '{self.name}' has no credentials")
        if isinstance(exc, boto_errors.ClientError):
            code = error_code(exc)
            if code == "NoSuchBucket":
                return ServiceError("storage", f"bucket '{self.bucket}' of s3 service "
                                               f"'{self.name}' does not exist")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return ServiceError("storage", f"s3 service '{self.name}' refused the "
                                               f"configured credentials ({code})",
                                    log_message=str(exc))
            return ServiceError("storage", f"s3 service '{self.name}': {code}",
                                log_message=str(exc))
        if isinstance(exc, (boto_errors.BotoCoreError, OSError)):
            return self.unavailable(f"{type(exc).__name__}: {exc}")
        raise exc

    async def _request(self, method: str, *, missing_ok: bool = False, **kwargs) -> Any:
        """One S3 request on the bucket; with ``missing_ok``, None for a missing key."""
        client = await self._get_client()
        try:
            return await getattr(client, method)(Bucket=self.bucket, **kwargs)
        except boto_errors.ClientError as exc:
            if missing_ok and error_code(exc) in _MISSING:
                return None
            raise self._error(exc) from None
        except Exception as exc:
            raise self._error(exc) from None

    async def get_blob(self, key: str) -> tuple[bytes, str] | None:
        response = await self._request("get_object", Key=key, missing_ok=True)
        if response is None:
            return None
        try:
            async with response["Body"] as body:
                data = await body.read()
        except Exception as exc:
            raise self._error(exc) from None
        return data, response.get("ContentType") or "application/octet-stream"

    async def put_blob(self, key: str, data: bytes, content_type: str) -> None:
        await self._request("put_object", Key=key, Body=data, ContentType=content_type)

    async def blob_exists(self, key: str) -> bool:
        return await self._request("head_object", Key=key, missing_ok=True) is not None

    async def delete_blob(self, key: str) -> bool:
        if not await self.blob_exists(key):
            return False
        await self._request("delete_object", Key=key)
        return True

    async def list_blobs(self, prefix: str, limit: int = MAX_LIST_LIMIT) -> list[dict]:
        found: list[dict] = []
        token = None
        while len(found) < limit:
            options = {"Prefix": prefix, "MaxKeys": min(1000, limit - len(found))}
            if token:
                options["ContinuationToken"] = token
            page = await self._request("list_objects_v2", **options)
            for item in page.get("Contents", ()):
                found.append({"key": item["Key"], "size": item["Size"], "content_type": None,
                              "last_modified": item["LastModified"].isoformat()})
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        return found[:limit]

    async def test(self) -> dict[str, Any]:
        await self._request("head_bucket")
        return {"bucket": self.bucket}

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
