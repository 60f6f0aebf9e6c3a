"""The ``files`` kind: object storage in plain files under a directory of the data dir.

The embedded default object store (service ``files``), so handlers can keep files with no
server. Layout under the service directory: ``data/<key>`` holds the bytes and
``meta/<key>.json`` the content type. Keys are checked segment by segment and every path is
resolved and checked to stay inside the service directory, so no key (or symlink) reaches
outside it. File I/O runs on executor threads.

Config (optional)::

    {"path": "services/files"}

``path`` is relative to the data dir and must stay inside it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import config as check
from .errors import ServiceError
from .objects import DEFAULT_CONTENT_TYPE, MAX_LIST_LIMIT, ObjectConnector


class FilesConnector(ObjectConnector):
    kind = "files"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.root = (self.settings.data_dir / self.config["path"]).resolve()

    @classmethod
    def check_config(cls, config: dict[str, Any], name: str) -> dict[str, Any]:
        config = dict(config)
        check.only(config, {"path", "timeout"}, "files")
        check.data_dir_path(config, "path", f"services/{name}", "files")
        if config.get("timeout") is not None:
            check.number(config, "timeout", 10.0)
        return config

    def describe_target(self) -> str:
        return str(self.root)

    def _path(self, area: str, key: str) -> Path:
        base = self.root / area
        path = (base / key).resolve()
        if not path.is_relative_to(base.resolve()) or path == base.resolve():
            raise ServiceError("bad_request", f"key '{key}' leaves the storage directory")
        return path

    async def _io(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except IsADirectoryError:
            raise ServiceError("storage", "that key names a folder, not an object") from None
        except OSError as exc:
            raise ServiceError("storage", f"file storage failed: {exc.strerror or exc}",
                               log_message=f"files '{self.name}': {exc}") from None

    async def get_blob(self, key: str) -> tuple[bytes, str] | None:
        data_path, meta_path = self._path("data", key), self._path("meta", key + ".json")

        def read():
            try:
                data = data_path.read_bytes()
            except FileNotFoundError:
                return None
            try:
                content_type = json.loads(meta_path.read_text())["content_type"]
            except (OSError, ValueError, KeyError, TypeError):
                content_type = DEFAULT_CONTENT_TYPE
            return data, content_type

        return await self._io(read)

    async def put_blob(self, key: str, data: bytes, content_type: str) -> None:
        data_path, meta_path = self._path("data", key), self._path("meta", key + ".json")
        meta = json.dumps({"content_type": content_type}).encode()
        await self._io(lambda: (_write_atomic(data_path, data), _write_atomic(meta_path, meta)))

    async def delete_blob(self, key: str) -> bool:
        data_path, meta_path = self._path("data", key), self._path("meta", key + ".json")

        def delete():
            try:
                data_path.unlink()
            except FileNotFoundError:
                return False
            meta_path.unlink(missing_ok=True)
            return True

        return await self._io(delete)

    async def blob_exists(self, key: str) -> bool:
        path = self._path("data", key)
        return await self._io(path.is_file)

    async def list_blobs(self, prefix: str, limit: int = MAX_LIST_LIMIT) -> list[dict]:
        base = self.root / "data"

        def walk():
            found = []
            for folder, _dirs, names in os.walk(base):
                for name in names:
                    path = Path(folder, name)
                    key = path.relative_to(base).as_posix()
                    if key.startswith(prefix) and not name.startswith(".tmp-"):
                        found.append((key, path))
            found.sort()
            return [describe(key, path) for key, path in found[:limit]]

        def describe(key: str, path: Path) -> dict:
            stat = path.stat()
            try:
                meta = json.loads(self._path("meta", key + ".json").read_text())
                content_type = meta["content_type"]
            except (OSError, ValueError, KeyError, TypeError):
                content_type = DEFAULT_CONTENT_TYPE
            modified = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
            return {"key": key, "size": stat.st_size, "content_type": content_type,
                    "last_modified": modified.isoformat()}

        return await self._io(walk)

    async def test(self) -> dict[str, Any]:
        def probe():
            (self.root / "data").mkdir(parents=True, exist_ok=True)
            if not os.access(self.root / "data", os.W_OK):
                raise PermissionError(f"{self.root} is not writable")
        await self._io(probe)
        return {"path": str(self.root)}

    async def close(self) -> None:
        pass


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temp file in the same folder, then rename over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
