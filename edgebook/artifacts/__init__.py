"""Content-addressed storage of worker binaries, shared by gateways without a shared disk.

A built binary is stored under its sha256 (``store.py``: a local directory or an S3 bucket);
a gateway that lacks it fetches it through its ``ArtifactCache`` (``cache.py``), which
verifies the digest before the file is used; ``gc.py`` removes what no revision needs.
"""

from .cache import ArtifactCache
from .gc import collect, to_keep
from .store import (
    ArtifactCorrupt, ArtifactError, ArtifactNotFound, ArtifactStore, ArtifactUnavailable,
    InvalidDigest, LocalArtifactStore, S3ArtifactStore, check_digest, file_digest,
    store_from_url,
)

__all__ = [
    "ArtifactCache", "ArtifactCorrupt", "ArtifactError", "ArtifactNotFound", "ArtifactStore",
    "ArtifactUnavailable", "InvalidDigest", "LocalArtifactStore", "S3ArtifactStore",
    "check_digest", "collect", "file_digest", "store_from_url", "to_keep",
]
