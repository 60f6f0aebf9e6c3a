"""Which artifacts to keep, and removing the others from a store."""

from __future__ import annotations

from collections.abc import Iterable

from .store import ArtifactStore, check_digest


def to_keep(revisions: Iterable[tuple[str, int, str | None]], live: set[str],
            keep_last: int) -> set[str]:
    """The digests of each endpoint's ``keep_last`` highest-numbered revisions, plus ``live``.

    ``revisions`` are ``(endpoint, number, digest)``; a revision without a digest (None)
    keeps nothing. ``live`` is every digest some gateway runs or is about to run.
    """
    if keep_last < 0:
        raise ValueError("keep_last must be 0 or more")
    by_endpoint: dict[str, list[tuple[int, str]]] = {}
    for endpoint, number, digest in revisions:
        if digest is not None:
            by_endpoint.setdefault(endpoint, []).append((number, check_digest(digest)))
    keep = {check_digest(digest) for digest in live}
    for found in by_endpoint.values():
        found.sort(key=lambda item: item[0], reverse=True)
        keep.update(digest for _, digest in found[:keep_last])
    return keep


async def collect(store: ArtifactStore, keep: set[str]) -> list[str]:
    """Delete every artifact of ``store`` whose digest is not in ``keep``; the deleted, sorted.

    Run it with a ``keep`` that covers artifacts uploaded but not yet recorded in a revision
    (a deploy in progress), or such an upload is lost.
    """
    keep = {check_digest(digest) for digest in keep}
    deleted = []
    for digest in await store.digests():
        if digest not in keep and await store.delete(digest):
            deleted.append(digest)
    return deleted
