"""One way to open an S3 bucket (AWS, MinIO, moto) with aiobotocore, for the artifact store
and the ``s3`` service kind alike: path-style addressing (every S3-compatible server
understands it), standard retries, and, when asked, the bucket created if it is missing.

Errors are botocore's, as they come: each caller turns them into its own kind of error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

#: Codes of a head_bucket on a bucket that does not exist (servers differ).
NO_BUCKET = frozenset({"404", "NotFound", "NoSuchBucket", "NoSuchKey"})
#: Codes of a create_bucket that lost a race to another creator: the bucket is there.
BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def error_code(exc: Any) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` when it has none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


async def open_bucket(bucket: str, *, endpoint_url: str | None, region: str | None,
                      connect_timeout: float, read_timeout: float, max_attempts: int,
                      max_pool_connections: int | None = None,
                      credentials: dict[str, str | None] | None = None,
                      create: bool = False, call_timeout: float | None = None,
                      ) -> tuple[Any, contextlib.AsyncExitStack]:
    """An S3 client and the stack that closes it; with ``create`` the bucket is made first
    if it does not exist (each of those calls bounded by ``call_timeout``). ``credentials``:
    ``aws_access_key_id`` and friends, else botocore's usual chain."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    options: dict[str, Any] = {
        "connect_timeout": connect_timeout, "read_timeout": read_timeout,
        "retries": {"max_attempts": max_attempts, "mode": "standard"},
        "s3": {"addressing_style": "path"}}
    if max_pool_connections is not None:
        options["max_pool_connections"] = max_pool_connections
    stack = contextlib.AsyncExitStack()
    try:
        client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region, **(credentials or {}),
            config=AioConfig(**options)))
        if create:
            await _ensure_bucket(client, bucket, region, call_timeout)
    except BaseException:
        await stack.aclose()
        raise
    return client, stack


async def _ensure_bucket(client: Any, bucket: str, region: str | None,
                         timeout: float | None) -> None:
    from botocore.exceptions import ClientError

    def bounded(call: Awaitable[Any]) -> Awaitable[Any]:
        return asyncio.wait_for(call, timeout) if timeout else call

    try:
        await bounded(client.head_bucket(Bucket=bucket))
        return
    except ClientError as exc:
        if error_code(exc) not in NO_BUCKET:
            raise
    options = {}
    if region and region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await bounded(client.create_bucket(Bucket=bucket, **options))
        log.info("created bucket '%s'", bucket)
    except ClientError as exc:
        if error_code(exc) not in BUCKET_EXISTS:
            raise
