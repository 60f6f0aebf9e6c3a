"""A gateway's local copies of artifacts: ``<directory>/<digest>``, each verified on arrival.

A file appears under its digest's name only by a rename after its sha256 was checked, so
a cached file is trusted as it is. Concurrent ``ensure`` calls for one digest share one
download.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import tempfile
from collections.abc import Callable, Sequence

from .store import (
    CHUNK, ArtifactCorrupt, ArtifactError, ArtifactStore, ArtifactUnavailable, _disk_error,
    _unlink_quietly, check_digest,
)

log = logging.getLogger(__name__)

DEFAULT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class ArtifactCache:
    """Local, verified copies of a store's artifacts, ready to run."""

    def __init__(self, store: ArtifactStore, directory: str):
        self.store = store
        self.directory = os.path.abspath(directory)
        self._fetching: dict[str, asyncio.Future] = {}

    def _local(self, digest: str) -> str:
        return os.path.join(self.directory, check_digest(digest))

    def path(self, digest: str) -> str | None:
        """The cached file of ``digest``, or None when it is not here."""
        local = self._local(digest)
        return local if os.path.isfile(local) else None

    async def ensure(self, digest: str) -> str:
        """The cached file of ``digest``, fetched from the store first when missing.

        Raises what the store raises (ArtifactNotFound, ArtifactCorrupt, ArtifactUnavailable,
        ArtifactError); a caller cancelled while waiting does not cancel the shared download.
        """
        cached = self.path(digest)
        if cached is not None:
            return cached
        task = self._fetching.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._fetch(digest))
            self._fetching[digest] = task
            task.add_done_callback(lambda done: self._fetched(digest, done))
        return await asyncio.shield(task)

    def _fetched(self, digest: str, task: asyncio.Future) -> None:
        if self._fetching.get(digest) is task:
            del self._fetching[digest]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter already got it

    async def _fetch(self, digest: str) -> str:
        local = self._local(digest)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise _disk_error(exc, f"while creating {self.directory}") from None
        await self.store.get(digest, local)
        return local

    async def ensure_with_retry(
            self, digest: str, *, attempts: int | None = None,
            backoff: Sequence[float] = DEFAULT_BACKOFF,
            on_failure: Callable[[ArtifactUnavailable, int], object] | None = None) -> str:
        """``ensure``, tried again while the store is unavailable.

        After the n-th failed attempt it waits ``backoff[n-1]`` seconds (the last value once
        the list runs out). ``attempts`` bounds the tries; None tries until the store answers
        (or the caller cancels). ``on_failure(exc, attempt)`` is called for every failed
        attempt, the last included, and awaited when it returns an awaitable. Any other error
        (not found, corrupt) is raised at once: a corrupt artifact is refused, and the caller
        decides whether to try it again later.
        """
        if attempts is not None and attempts < 1:
            raise ValueError("attempts must be at least 1")
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.ensure(digest)
            except ArtifactUnavailable as exc:
                if on_failure is not None:
                    outcome = on_failure(exc, attempt)
                    if inspect.isawaitable(outcome):
                        await outcome
                if attempts is not None and attempt >= attempts:
                    raise
                delay = backoff[min(attempt, len(backoff)) - 1] if backoff else 0.0
                log.info("artifact %s: attempt %d failed (%s); again in %.1f s", digest,
                         attempt, exc.reason, delay)
                await asyncio.sleep(delay)

    async def publish(self, path: str) -> str:
        """Put the file at ``path`` in the store and in this cache; its digest.

        The cache gets a copy (not a link, so a later rewrite of ``path`` cannot change a
        cached artifact), hashed while copied: when the file changed after the upload, the
        copy is refused with ArtifactCorrupt.
        """
        digest = await self.store.put(path)
        if self.path(digest) is None:
            await asyncio.to_thread(self._copy_in, path, digest)
        return digest

    def _copy_in(self, path: str, digest: str) -> None:
        local = self._local(digest)
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd, partial = tempfile.mkstemp(dir=self.directory, prefix=f".{digest}.",
                                           suffix=".part")
        except OSError as exc:
            raise _disk_error(exc, f"while caching {digest} in {self.directory}") from None
        try:
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, open(path, "rb") as source:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if hasher.hexdigest() != digest:
                raise ArtifactCorrupt(digest, hasher.hexdigest(), where=path)
            os.chmod(partial, 0o755)
            os.replace(partial, local)
        except OSError as exc:
            _unlink_quietly(partial)
            raise _disk_error(exc, f"while caching {digest} in {self.directory}") from None
        except BaseException:
            _unlink_quietly(partial)
            raise

    def prune(self, keep: set[str]) -> list[str]:
        """Delete cached artifacts not in ``keep`` (and leftover partial files); the digests."""
        removed = []
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                if name.endswith(".part"):
                    if name[1:65] in self._fetching:
                        continue  # a download under way
                    _unlink_quietly(os.path.join(self.directory, name))
                    continue
                try:
                    check_digest(name)
                except ArtifactError:
                    continue
                if name not in keep and name not in self._fetching:
                    _unlink_quietly(os.path.join(self.directory, name))
                    removed.append(name)
        return sorted(removed)
