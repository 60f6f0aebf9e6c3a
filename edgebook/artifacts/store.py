"""Artifact stores: files kept under their sha256, in a local directory or an S3 bucket.

A store never trusts what it returns: ``get`` hashes the bytes while writing them next to
the destination and renames them into place only when the sha256 is the one asked for.
A digest is always 64 lowercase hex digits, checked before it is used in a path or a key.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import errno
import hashlib
import logging
import os
import re
import tempfile
import urllib.parse
from collections.abc import AsyncIterator

from ..s3 import error_code, open_bucket

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_FULL = (errno.ENOSPC, errno.EDQUOT)


class ArtifactError(Exception):
    """An artifact could not be stored or fetched; ``reason`` says why in plain words."""

    def __init__(self, reason: str, *, digest: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.digest = digest


class InvalidDigest(ArtifactError, ValueError):
    """Not a sha256 in 64 lowercase hex digits."""


class ArtifactUnavailable(ArtifactError):
    """The store did not answer (refused, timed out, failed on its side): worth retrying."""


class ArtifactNotFound(ArtifactError):
    """The store answered and has no artifact with that digest."""

    def __init__(self, digest: str, where: str):
        super().__init__(f"artifact {digest} is not in {where}", digest=digest)


class ArtifactCorrupt(ArtifactError):
    """The bytes fetched for a digest hash to another digest; nothing was written."""

    def __init__(self, digest: str, actual: str, *, where: str | None = None):
        source = f" from {where}" if where else ""
        super().__init__(f"artifact {digest}{source} is corrupt: its content has sha256 "
                         f"{actual}", digest=digest)
        self.actual = actual


def check_digest(digest: object) -> str:
    """The digest itself, or InvalidDigest: never let anything else reach a path or a key."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        shown = repr(digest)[:80]
        raise InvalidDigest(f"{shown} is not a sha256 digest (64 lowercase hex digits)")
    return digest


def file_digest(path: str) -> str:
    """The sha256 of a file, read in chunks (blocking)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _disk_error(exc: OSError, doing: str) -> ArtifactError:
    if exc.errno in _FULL:
        return ArtifactError(f"no space left on the disk {doing} ({exc.strerror})")
    return ArtifactError(f"could not {doing.removeprefix('while ')}: {exc.strerror or exc}")


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ArtifactStore(abc.ABC):
    """Where built binaries live, by digest. Every method is a coroutine but ``describe``."""

    async def put(self, path: str) -> str:
        """Store the file at ``path`` under its sha256 unless already there; the hex digest."""
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        return await self._put_file(path)

    async def put_bytes(self, data: bytes) -> str:
        """Store ``data`` under its sha256 unless already there; the hex digest."""
        return await self._put_data(bytes(data))

    async def get(self, digest: str, dest: str) -> None:
        """Fetch the artifact to ``dest`` (executable), verified, renamed into place.

        The bytes go to a temp file in ``dest``'s folder while they are hashed; on a digest
        mismatch the temp file is deleted and ArtifactCorrupt raised, so ``dest`` only ever
        holds a verified artifact.
        """
        digest = check_digest(digest)
        dest = os.path.abspath(dest)
        try:
            fd, partial = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".part",
                                           prefix=f".{os.path.basename(dest)}.")
        except OSError as exc:
            raise _disk_error(exc, f"while creating a file next to {dest}") from None
        try:
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                async with contextlib.aclosing(self._chunks(digest)) as chunks:
                    async for chunk in chunks:
                        hasher.update(chunk)
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            raise _disk_error(exc, f"while writing {dest}") from None
                actual = hasher.hexdigest()
                if actual != digest:
                    raise ArtifactCorrupt(digest, actual, where=self.describe())
                try:
                    out.flush()
                    await asyncio.to_thread(os.fsync, out.fileno())
                except OSError as exc:
                    raise _disk_error(exc, f"while writing {dest}") from None
            try:
                os.chmod(partial, 0o755)
                os.replace(partial, dest)
            except OSError as exc:
                raise _disk_error(exc, f"while installing {dest}") from None
        except BaseException:
            _unlink_quietly(partial)
            raise

    open = get

    @abc.abstractmethod
    async def exists(self, digest: str) -> bool:
        """Whether the store holds the artifact."""

    @abc.abstractmethod
    async def delete(self, digest: str) -> bool:
        """Remove the artifact; False when it was not there."""

    @abc.abstractmethod
    async def digests(self) -> list[str]:
        """Every digest the store holds, sorted."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The store in a few words, with its URL, for messages."""

    async def warm(self) -> None:
        """Get ready for the first transfer (a client of a remote store made in advance),
        so the first fetch after a deploy does not pay for it. Never raises."""

    async def aclose(self) -> None:
        """Release connections; the store may not be used afterwards."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def _put_file(self, path: str) -> str: ...

    @abc.abstractmethod
    async def _put_data(self, data: bytes) -> str: ...

    @abc.abstractmethod
    def _chunks(self, digest: str) -> AsyncIterator[bytes]:
        """The stored bytes of a (checked) digest; ArtifactNotFound when absent."""


class LocalArtifactStore(ArtifactStore):
    """Files under ``<directory>/sha256/<first two digits>/<digest>``.

    A file is written to ``sha256/.incoming/`` while it is hashed, fsynced, then renamed to
    its digest's name, so a crash or a full disk never leaves a partial artifact.
    """

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        self._root = os.path.join(self.directory, "sha256")
        self._incoming = os.path.join(self._root, ".incoming")

    @property
    def url(self) -> str:
        return "file://" + urllib.parse.quote(self.directory)

    def describe(self) -> str:
        return f"artifact store {self.url}"

    def object_path(self, digest: str) -> str:
        digest = check_digest(digest)
        return os.path.join(self._root, digest[:2], digest)

    async def _put_file(self, path: str) -> str:
        return await asyncio.to_thread(self._store, path, None)

    async def _put_data(self, data: bytes) -> str:
        return await asyncio.to_thread(self._store, None, data)

    def _store(self, path: str | None, data: bytes | None) -> str:
        doing = f"while storing {'a file' if path is None else path} in {self.describe()}"
        try:
            os.makedirs(self._incoming, exist_ok=True)
            fd, partial = tempfile.mkstemp(dir=self._incoming, suffix=".part")
        except OSError as exc:
            raise _disk_error(exc, doing) from None
        try:
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                try:
                    source = open(path, "rb") if path is not None else None
                except OSError as exc:
                    raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
                try:
                    while True:
                        try:
                            chunk = source.read(CHUNK) if source is not None else data
                        except OSError as exc:
                            raise ArtifactError(f"cannot read {path}: "
                                                f"{exc.strerror or exc}") from None
                        if not chunk:
                            break
                        hasher.update(chunk)
                        out.write(chunk)
                        if source is None:
                            break
                    out.flush()
                    os.fsync(out.fileno())
                finally:
                    if source is not None:
                        source.close()
            digest = hasher.hexdigest()
            final = self.object_path(digest)
            if os.path.isfile(final):
                _unlink_quietly(partial)
                return digest
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.chmod(partial, 0o644)
            os.replace(partial, final)
            _fsync_dir(os.path.dirname(final))
            return digest
        except OSError as exc:
            _unlink_quietly(partial)
            raise _disk_error(exc, doing) from None
        except BaseException:
            _unlink_quietly(partial)
            raise

    async def _chunks(self, digest: str) -> AsyncIterator[bytes]:
        path = self.object_path(digest)
        try:
            source = open(path, "rb")
        except FileNotFoundError:
            raise ArtifactNotFound(digest, self.describe()) from None
        except OSError as exc:
            raise ArtifactError(f"cannot read {digest} in {self.describe()}: "
                                f"{exc.strerror or exc}", digest=digest) from None
        with source:
            while True:
                try:
                    chunk = await asyncio.to_thread(source.read, CHUNK)
                except OSError as exc:
                    raise ArtifactError(f"cannot read {digest} in {self.describe()}: "
                                        f"{exc.strerror or exc}", digest=digest) from None
                if not chunk:
                    return
                yield chunk

    async def exists(self, digest: str) -> bool:
        return os.path.isfile(self.object_path(digest))

    async def delete(self, digest: str) -> bool:
        try:
            os.unlink(self.object_path(digest))
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ArtifactError(f"cannot delete {digest} from {self.describe()}: "
                                f"{exc.strerror or exc}", digest=digest) from None

    async def digests(self) -> list[str]:
        def scan() -> list[str]:
            found = []
            try:
                shards = os.listdir(self._root)
            except FileNotFoundError:
                return []
            for shard in shards:
                if len(shard) != 2 or not os.path.isdir(os.path.join(self._root, shard)):
                    continue
                for name in os.listdir(os.path.join(self._root, shard)):
                    if _DIGEST.match(name) and name.startswith(shard):
                        found.append(name)
            return sorted(found)
        return await asyncio.to_thread(scan)


class S3ArtifactStore(ArtifactStore):
    """Objects ``<prefix>/sha256/<digest>`` in an S3 bucket (AWS, MinIO, moto), via aiobotocore.

    Credentials and, without ``region``, the region come from botocore's usual chain (the
    ``AWS_*`` environment variables, ``~/.aws/``). Every request is bounded: connecting by
    ``connect_timeout``, each read by ``read_timeout``, at most ``max_attempts`` tries, and
    ``call_timeout`` in all (an upload gets one more second per MiB); an unreachable or
    silent store fails with ArtifactUnavailable in seconds. A download's body is bounded by
    ``read_timeout`` per read. ``put`` sends the sha256 along, so the server refuses an
    upload damaged on the way.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, *, connect_timeout: float = 3.0,
                 read_timeout: float = 5.0, max_attempts: int = 2,
                 call_timeout: float = 8.0, create_bucket: bool = False):
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"S3 endpoint URL {endpoint_url!r} must start with http:// or "
                             "https://")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max(1, int(max_attempts))
        self.call_timeout = call_timeout
        self.create_bucket = create_bucket
        self._keys = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        self._client = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def describe(self) -> str:
        return f"artifact store {self.url} at {self.endpoint_url or 'AWS'}"

    def key(self, digest: str) -> str:
        return self._keys + check_digest(digest)

    async def warm(self) -> None:
        try:
            await self._get_client()
        except Exception as exc:  # the first real call reports what is wrong
            log.debug("artifact store client not made in advance: %s", exc)

    async def _get_client(self):
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client, self._stack = await open_bucket(
                        self.bucket, endpoint_url=self.endpoint_url, region=self.region,
                        connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                        max_attempts=self.max_attempts, create=self.create_bucket,
                        call_timeout=self.call_timeout)
                except Exception as exc:
                    raise self._error(exc) from None
        return self._client

    async def _call(self, method: str, *, digest: str | None = None,
                    timeout: float | None = None, **kwargs):
        try:
            client = await self._get_client()
            return await asyncio.wait_for(getattr(client, method)(Bucket=self.bucket, **kwargs),
                                          timeout or self.call_timeout)
        except Exception as exc:
            raise self._error(exc, digest) from None

    def _error(self, exc: BaseException, digest: str | None = None) -> ArtifactError:
        from botocore import exceptions as boto_errors
        if isinstance(exc, ArtifactError):
            return exc
        where = self.describe()
        if isinstance(exc, boto_errors.NoCredentialsError):
            return ArtifactError(f"no AWS credentials for {where}: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY or configure a profile", digest=digest)
        if isinstance(exc, boto_errors.ClientError):
            code = error_code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in ("NoSuchKey", "404", "NotFound") and digest is not None:
                return ArtifactNotFound(digest, where)
            if code == "NoSuchBucket":
                return ArtifactError(f"bucket '{self.bucket}' of {where} does not exist",
                                     digest=digest)
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return ArtifactError(f"{where} refused the credentials ({code})",
                                     digest=digest)
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                return ArtifactUnavailable(f"{where} failed on its side ({code})",
                                           digest=digest)
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                return ArtifactError(f"{where} refused an upload damaged on the way ({code})",
                                     digest=digest)
            return ArtifactError(f"{where} answered {code}: {exc}", digest=digest)
        if isinstance(exc, asyncio.TimeoutError | boto_errors.ReadTimeoutError):
            cause = f"{type(exc).__name__}: {exc}" if str(exc) else \
                f"no answer within {self.call_timeout:g} s"
            return ArtifactUnavailable(f"{where} did not answer in time ({cause})",
                                       digest=digest)
        if isinstance(exc, boto_errors.BotoCoreError | OSError) or _is_aiohttp(exc):
            return ArtifactUnavailable(f"{where} is unreachable ({type(exc).__name__}: "
                                       f"{exc})", digest=digest)
        raise exc

    async def _put_file(self, path: str) -> str:
        def read() -> bytes:
            try:
                with open(path, "rb") as source:
                    return source.read()
            except OSError as exc:
                raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        return await self._put_data(await asyncio.to_thread(read))

    async def _put_data(self, data: bytes) -> str:
        raw = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
        digest = raw.hex()
        if await self.exists(digest):
            return digest
        await self._call("put_object", digest=digest, Key=self.key(digest),
                         timeout=self.call_timeout + len(data) / (1 << 20),
                         Body=data, ContentType="application/octet-stream",
                         ChecksumSHA256=base64.b64encode(raw).decode())
        return digest

    async def _chunks(self, digest: str) -> AsyncIterator[bytes]:
        response = await self._call("get_object", digest=digest, Key=self.key(digest))
        try:
            async with response["Body"] as body:
                while chunk := await body.read(CHUNK):
                    yield chunk
        except ArtifactError:
            raise
        except Exception as exc:
            raise self._error(exc, digest) from None

    async def exists(self, digest: str) -> bool:
        try:
            await self._call("head_object", digest=digest, Key=self.key(digest))
            return True
        except ArtifactNotFound:
            return False

    async def delete(self, digest: str) -> bool:
        if not await self.exists(digest):
            return False
        await self._call("delete_object", digest=digest, Key=self.key(digest))
        return True

    async def digests(self) -> list[str]:
        found: list[str] = []
        token = None
        while True:
            options = {"Prefix": self._keys, "MaxKeys": 1000}
            if token:
                options["ContinuationToken"] = token
            page = await self._call("list_objects_v2", **options)
            for item in page.get("Contents", ()):
                name = item["Key"][len(self._keys):]
                if _DIGEST.match(name):
                    found.append(name)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return sorted(found)

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def _is_aiohttp(exc: BaseException) -> bool:
    try:
        import aiohttp
    except ImportError:
        return False
    return isinstance(exc, aiohttp.ClientError)


def store_from_url(url: str | None, *, data_dir: str,
                   endpoint_url: str | None = None) -> ArtifactStore:
    """The store a URL names.

    None: ``<data_dir>/artifacts``; ``file:///abs/dir`` or a directory path: that directory;
    ``s3://bucket/prefix``: that bucket (``endpoint_url`` for a server other than AWS).
    """
    if url is None:
        return LocalArtifactStore(os.path.join(data_dir, "artifacts"))
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the artifact store URL is empty: give s3://bucket/prefix, "
                         "file:///absolute/dir or a directory path")
    url = url.strip()
    if "://" not in url:
        return LocalArtifactStore(os.path.abspath(os.path.expanduser(url)))
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"artifact store URL {url!r} names host {parts.netloc!r}; a "
                             "file URL must be file:///absolute/dir on this machine")
        path = urllib.parse.unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"artifact store URL {url!r} needs an absolute path "
                             "(file:///absolute/dir)")
        return LocalArtifactStore(path)
    if scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"artifact store URL {url!r} names no bucket "
                             "(s3://bucket/prefix)")
        if parts.query or parts.fragment:
            raise ValueError(f"artifact store URL {url!r} has a query or fragment; give "
                             "s3://bucket/prefix")
        return S3ArtifactStore(parts.netloc, urllib.parse.unquote(parts.path),
                               endpoint_url=endpoint_url)
    raise ValueError(f"artifact store URL {url!r} has an unsupported scheme "
                     f"{parts.scheme!r}: give s3://bucket/prefix, file:///absolute/dir "
                     "or a directory path")
