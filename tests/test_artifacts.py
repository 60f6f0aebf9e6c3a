"""The artifact store and cache: local directory and a real S3 (moto) on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from edgebook.artifacts import (
    ArtifactCache, ArtifactCorrupt, ArtifactError, ArtifactNotFound, ArtifactUnavailable,
    InvalidDigest, LocalArtifactStore, S3ArtifactStore, collect, store_from_url, to_keep,
)
from servers import async_test, free_port, own_s3, s3_server  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
BAD_DIGESTS = ["../../etc/passwd", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "a" * 64 + "\n",
               "/" + "a" * 63, "", None, 42]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def binary(tmp_path: Path, data: bytes, name: str = "worker") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".part"))


class CountingStore(LocalArtifactStore):
    """A local store that counts the downloads and can be made slow."""

    def __init__(self, directory, delay: float = 0.0):
        super().__init__(directory)
        self.downloads = 0
        self.delay = delay

    async def get(self, digest, dest):
        self.downloads += 1
        await asyncio.sleep(self.delay)
        await super().get(digest, dest)


# --- local store -------------------------------------------------------------------------

@async_test
async def test_local_roundtrip(tmp_path):
    store = LocalArtifactStore(str(tmp_path / "store"))
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk
    digest = await store.put(str(binary(tmp_path, data)))
    assert digest == sha(data)
    stored = tmp_path / "store" / "sha256" / digest[:2] / digest
    assert stored.read_bytes() == data
    assert await store.put(str(binary(tmp_path, data, "again"))) == digest  # no second copy
    small = await store.put_bytes(b"fn main() {}")
    assert small == sha(b"fn main() {}")
    assert await store.exists(digest) and await store.exists(small)
    assert await store.digests() == sorted([digest, small])

    dest = tmp_path / "run" / "worker"
    dest.parent.mkdir()
    await store.get(digest, str(dest))
    assert dest.read_bytes() == data
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert leftovers(tmp_path) == []

    assert await store.delete(small) is True
    assert await store.delete(small) is False
    assert await store.digests() == [digest]
    with pytest.raises(ArtifactNotFound) as caught:
        await store.get(small, str(tmp_path / "run" / "gone"))
    assert small in caught.value.reason and store.url in caught.value.reason
    assert not (tmp_path / "run" / "gone").exists() and leftovers(tmp_path) == []


@async_test
async def test_local_tampered_artifact_is_refused(tmp_path):
    store = LocalArtifactStore(str(tmp_path / "store"))
    data = b"\x7fELF" + os.urandom(100_000)
    digest = await store.put_bytes(data)
    stored = Path(store.object_path(digest))
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped

    dest = tmp_path / "run" / "worker"
    dest.parent.mkdir()
    with pytest.raises(ArtifactCorrupt) as caught:
        await store.get(digest, str(dest))
    assert caught.value.digest == digest
    assert caught.value.actual == sha(stored.read_bytes())
    assert "corrupt" in caught.value.reason
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temp file left either

    dest.write_bytes(b"the previous binary")  # a file already there is left alone
    with pytest.raises(ArtifactCorrupt):
        await store.get(digest, str(dest))
    assert dest.read_bytes() == b"the previous binary"


@async_test
async def test_invalid_digests_are_refused(tmp_path):
    store = LocalArtifactStore(str(tmp_path / "store"))
    cache = ArtifactCache(store, str(tmp_path / "cache"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("secret")
    for bad in BAD_DIGESTS:
        for call in (store.exists(bad), store.delete(bad), store.get(bad, str(tmp_path / "x")),
                     cache.ensure(bad)):
            with pytest.raises(InvalidDigest):
                await call
        with pytest.raises(InvalidDigest):
            cache.path(bad)
        with pytest.raises(ValueError):  # InvalidDigest is a ValueError too
            store.object_path(bad)
    assert not (tmp_path / "x").exists()
    assert (tmp_path / "etc" / "passwd").read_text() == "secret"
    with pytest.raises(InvalidDigest):
        to_keep([("hello", 1, "../x")], set(), 1)


@async_test
async def test_concurrent_ensure_downloads_once(tmp_path):
    store = CountingStore(str(tmp_path / "store"), delay=0.2)
    data = os.urandom(200_000)
    digest = await store.put_bytes(data)
    cache = ArtifactCache(store, str(tmp_path / "cache"))
    assert cache.path(digest) is None

    paths = await asyncio.gather(*(cache.ensure(digest) for _ in range(20)))
    assert store.downloads == 1
    assert set(paths) == {str(tmp_path / "cache" / digest)}
    assert cache.path(digest) == paths[0]
    assert Path(paths[0]).read_bytes() == data
    assert stat.S_IMODE(os.stat(paths[0]).st_mode) == 0o755
    assert await cache.ensure(digest) == paths[0] and store.downloads == 1  # cached

    # a waiter that gives up does not cancel the download the others wait for
    other = await store.put_bytes(b"other")
    waiters = [asyncio.ensure_future(cache.ensure(other)) for _ in range(3)]
    await asyncio.sleep(0.05)
    waiters[0].cancel()
    done = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert done[1] == done[2] == str(tmp_path / "cache" / other)
    assert store.downloads == 2


@async_test
async def test_cache_refuses_corrupt_and_missing_without_retrying(tmp_path):
    store = CountingStore(str(tmp_path / "store"))
    digest = await store.put_bytes(b"good bytes")
    Path(store.object_path(digest)).write_bytes(b"bad bytes!")
    cache = ArtifactCache(store, str(tmp_path / "cache"))
    failures = []
    with pytest.raises(ArtifactCorrupt):
        await cache.ensure_with_retry(digest, on_failure=lambda exc, n: failures.append(n))
    assert store.downloads == 1 and failures == []
    assert cache.path(digest) is None and os.listdir(tmp_path / "cache") == []

    # once the store holds the right bytes, a later try succeeds
    Path(store.object_path(digest)).write_bytes(b"good bytes")
    assert Path(await cache.ensure(digest)).read_bytes() == b"good bytes"

    with pytest.raises(ArtifactNotFound):
        await cache.ensure_with_retry(sha(b"never stored"))
    assert store.downloads == 3


@async_test
async def test_publish_puts_in_the_store_and_the_cache(tmp_path):
    store = LocalArtifactStore(str(tmp_path / "store"))
    cache = ArtifactCache(store, str(tmp_path / "cache"))
    built = binary(tmp_path, b"\x7fELF built", "target-binary")
    digest = await cache.publish(str(built))
    assert digest == sha(b"\x7fELF built")
    assert await store.exists(digest)
    cached = cache.path(digest)
    assert cached is not None and Path(cached).read_bytes() == b"\x7fELF built"
    assert stat.S_IMODE(os.stat(cached).st_mode) == 0o755
    built.write_bytes(b"rebuilt in place")  # a copy, not a link: the cache keeps its bytes
    assert Path(cached).read_bytes() == b"\x7fELF built"
    with pytest.raises(ArtifactError):
        await cache.publish(str(tmp_path / "no-such-file"))

    assert cache.prune({digest}) == []
    (tmp_path / "cache" / f".{digest}.x.part").write_bytes(b"left by a crash")
    assert cache.prune(set()) == [digest]
    assert os.listdir(tmp_path / "cache") == []


def test_full_disk_leaves_no_partial_artifact(tmp_path):
    """In a private mount namespace, a 256 KiB tmpfs receives a 1 MiB artifact."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is not installed")
    mount = tmp_path / "small"
    mount.mkdir()
    script = textwrap.dedent(f"""
        import asyncio, json, os
        from edgebook.artifacts import ArtifactError, LocalArtifactStore

        async def main():
            store = LocalArtifactStore({str(mount / "store")!r})
            small = await store.put_bytes(b"fits")
            try:
                await store.put_bytes(os.urandom(1 << 20))
                outcome = "stored"
            except ArtifactError as exc:
                outcome = exc.reason
            os.makedirs({str(mount / "run")!r})
            try:
                await LocalArtifactStore({str(tmp_path / "big")!r}).get(
                    await LocalArtifactStore({str(tmp_path / "big")!r}).put_bytes(
                        os.urandom(1 << 20)), {str(mount / "run" / "worker")!r})
                fetched = "fetched"
            except ArtifactError as exc:
                fetched = exc.reason
            files = sorted(os.path.relpath(os.path.join(d, f), {str(mount)!r})
                           for d, _, fs in os.walk({str(mount)!r}) for f in fs)
            print(json.dumps({{"outcome": outcome, "fetched": fetched, "files": files,
                               "digests": await store.digests(), "small": small}}))

        asyncio.run(main())
    """)
    command = (f"mount -t tmpfs -o size=256k tmpfs {mount} && "
               f"exec {sys.executable} -c \"$SCRIPT\"")
    done = subprocess.run([unshare, "-rm", "sh", "-c", command], capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "SCRIPT": script, "PYTHONPATH": str(REPO)})
    if done.returncode != 0 and "mount" in done.stderr and "Traceback" not in done.stderr:
        pytest.skip(f"no private tmpfs here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"].startswith("no space left on the disk"), result
    assert "store" in result["outcome"] and "No space left on device" in result["outcome"]
    assert result["fetched"].startswith("no space left on the disk while writing"), result
    assert result["digests"] == [result["small"]]
    assert result["files"] == [f"store/sha256/{result['small'][:2]}/{result['small']}"]


@async_test
async def test_store_from_url(tmp_path):
    default = store_from_url(None, data_dir=str(tmp_path))
    assert isinstance(default, LocalArtifactStore)
    assert default.directory == str(tmp_path / "artifacts")
    by_url = store_from_url(f"file://{tmp_path}/shared", data_dir="/unused")
    assert isinstance(by_url, LocalArtifactStore)
    assert by_url.directory == str(tmp_path / "shared")
    by_path = store_from_url(str(tmp_path / "plain"), data_dir="/unused")
    assert by_path.directory == str(tmp_path / "plain")

    s3 = store_from_url("s3://edgebook-bins/prod/workers/", data_dir="/unused",
                        endpoint_url="http://127.0.0.1:9")
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("edgebook-bins", "prod/workers",
                                                       "http://127.0.0.1:9")
    assert s3.key("a" * 64) == "prod/workers/sha256/" + "a" * 64
    assert store_from_url("s3://bins", data_dir="/unused").key("b" * 64) == "sha256/" + "b" * 64
    assert "s3://edgebook-bins/prod/workers" in s3.describe()

    for bad, words in [("http://example.com/x", "unsupported scheme"),
                       ("s3:///prefix", "names no bucket"),
                       ("file://otherhost/dir", "names host"),
                       ("ftp://x/y", "unsupported scheme"),
                       ("", "empty")]:
        with pytest.raises(ValueError, match=words):
            store_from_url(bad, data_dir=str(tmp_path))


# --- garbage collection ------------------------------------------------------------------

def test_to_keep():
    a, b, c, d, e = (sha(bytes([n])) for n in range(5))
    revisions = [("hello", 1, a), ("hello", 2, b), ("hello", 3, c),
                 ("other", 7, d), ("other", 2, a), ("nodigest", 1, None)]
    assert to_keep(revisions, set(), 1) == {c, d}
    assert to_keep(revisions, set(), 2) == {b, c, d, a}
    assert to_keep(revisions, {e}, 0) == {e}
    assert to_keep(revisions, {a}, 1) == {a, c, d}  # live anywhere: kept
    assert to_keep([], set(), 3) == set()
    with pytest.raises(ValueError):
        to_keep(revisions, set(), -1)


@async_test
async def test_collect_local(tmp_path):
    store = LocalArtifactStore(str(tmp_path / "store"))
    digests = [await store.put_bytes(f"rev {n}".encode()) for n in range(5)]
    revisions = [("hello", n, digest) for n, digest in enumerate(digests)]
    keep = to_keep(revisions, live={digests[0]}, keep_last=2)
    deleted = await collect(store, keep)
    assert deleted == sorted(digests[1:3])
    assert await store.digests() == sorted([digests[0], digests[3], digests[4]])
    assert await collect(store, keep) == []


# --- S3 (moto) ---------------------------------------------------------------------------

@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Credentials for moto through the standard variables, and no ~/.aws of the host."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "edgebook-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "edgebook-test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def s3_store(server, bucket: str, prefix: str = "workers", **options) -> S3ArtifactStore:
    return S3ArtifactStore(bucket, prefix, endpoint_url=server.url, region="us-east-1",
                           create_bucket=True, **options)


def overwrite_object(server, bucket: str, key: str, data: bytes) -> None:
    import boto3
    client = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data)
    finally:
        client.close()


@async_test
async def test_s3_roundtrip_tampering_and_collect(s3_server, aws_env, tmp_path):
    bucket = f"artifacts-{uuid.uuid4().hex[:8]}"
    async with s3_store(s3_server, bucket, "prod/bins") as store:
        data = os.urandom(2 * 1024 * 1024 + 5)
        digest = await store.put(str(binary(tmp_path, data)))
        assert digest == sha(data)
        assert await store.put_bytes(data) == digest
        other = await store.put_bytes(b"other")
        assert await store.exists(digest) and not await store.exists(sha(b"absent"))
        assert await store.digests() == sorted([digest, other])

        dest = tmp_path / "run" / "worker"
        dest.parent.mkdir()
        await store.get(digest, str(dest))
        assert dest.read_bytes() == data and stat.S_IMODE(dest.stat().st_mode) == 0o755

        cache = ArtifactCache(store, str(tmp_path / "cache"))
        assert Path(await cache.ensure(other)).read_bytes() == b"other"

        # the object replaced behind the store's back: refused, nothing written
        overwrite_object(s3_server, bucket, f"prod/bins/sha256/{digest}", b"evil" + data[4:])
        fresh = tmp_path / "run" / "fresh"
        with pytest.raises(ArtifactCorrupt) as caught:
            await store.get(digest, str(fresh))
        assert caught.value.actual == sha(b"evil" + data[4:])
        assert "s3://" + bucket in caught.value.reason
        assert sorted(os.listdir(dest.parent)) == ["worker"]
        with pytest.raises(ArtifactCorrupt):
            await cache.ensure(digest)
        assert cache.path(digest) is None

        with pytest.raises(ArtifactNotFound):
            await store.get(sha(b"absent"), str(tmp_path / "run" / "absent"))
        assert sorted(os.listdir(dest.parent)) == ["worker"]

        # an object beside the artifacts is neither listed nor collected
        overwrite_object(s3_server, bucket, "prod/bins/sha256/notes.txt", b"x")
        assert await collect(store, {other}) == [digest]
        assert await store.digests() == [other]
        assert await store.delete(digest) is False


async def timed(call) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(ArtifactUnavailable) as caught:
        await call
    return caught.value, time.monotonic() - started


@async_test
async def test_s3_down_fails_fast(own_s3, aws_env, tmp_path):
    async with s3_store(own_s3, "outage") as store:
        digest = await store.put_bytes(b"binary")
        own_s3.stop()
        for call in (store.exists(digest), store.get(digest, str(tmp_path / "w")),
                     store.put_bytes(b"new"), store.digests(), store.delete(digest)):
            error, seconds = await timed(call)
            assert seconds < 10, f"{error} took {seconds:.1f} s"
            assert own_s3.url in error.reason and "s3://outage/workers" in error.reason
            assert "unreachable" in error.reason and "EndpointConnectionError" in error.reason
        assert not (tmp_path / "w").exists() and leftovers(tmp_path) == []

    # a store that was never there: a port nobody listens on
    nowhere = S3ArtifactStore("bins", endpoint_url=f"http://127.0.0.1:{free_port()}")
    try:
        error, seconds = await timed(nowhere.exists("c" * 64))
        assert seconds < 10 and "127.0.0.1" in error.reason
    finally:
        await nowhere.aclose()

    # a store that takes connections and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes the handshakes; nobody reads
        port = silent.getsockname()[1]
        hung = S3ArtifactStore("bins", endpoint_url=f"http://127.0.0.1:{port}")
        try:
            error, seconds = await timed(hung.get("d" * 64, str(tmp_path / "w")))
            assert seconds < 10, f"{error} took {seconds:.1f} s"
            assert "did not answer in time" in error.reason and str(port) in error.reason
        finally:
            await hung.aclose()
    assert not (tmp_path / "w").exists() and leftovers(tmp_path) == []


@async_test
async def test_ensure_with_retry_recovers_when_the_store_is_back(own_s3, aws_env, tmp_path):
    data = os.urandom(50_000)
    async with s3_store(own_s3, "recover") as store:
        digest = await store.put_bytes(data)
        own_s3.stop()
        cache = ArtifactCache(store, str(tmp_path / "cache"))
        failures = []

        async def on_failure(exc, attempt):
            failures.append((attempt, type(exc).__name__, time.monotonic()))
            if attempt == 2:  # the store comes back (moto keeps nothing: upload again)
                await asyncio.to_thread(own_s3.start)
                async with s3_store(own_s3, "recover") as again:
                    assert await again.put_bytes(data) == digest

        started = time.monotonic()
        path = await cache.ensure_with_retry(digest, backoff=(0.1, 0.3),
                                             on_failure=on_failure)
        assert Path(path).read_bytes() == data
        assert [(n, kind) for n, kind, _ in failures] == [(1, "ArtifactUnavailable"),
                                                          (2, "ArtifactUnavailable")]
        assert time.monotonic() - started < 60

        # bounded attempts: the last failure is raised, reported to on_failure as well
        own_s3.stop()
        seen = []
        with pytest.raises(ArtifactUnavailable):
            await cache.ensure_with_retry(sha(b"other"), attempts=2, backoff=(0.05,),
                                          on_failure=lambda exc, n: seen.append(n))
        assert seen == [1, 2]
