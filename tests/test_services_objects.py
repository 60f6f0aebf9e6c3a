"""Object storage (S3 through moto's server, and local files) through ServiceManager."""

import base64
import os
import time
import uuid

import pytest

from edgebook.services import ServiceManager
from servers import async_test, own_s3, s3_server  # noqa: F401  (fixtures)
from service_calls import Caller

EVERY_BYTE = bytes(range(256)) * 4 + b"\x00\r\n\xff"


@pytest.fixture(params=["s3", "files"])
def store(request):
    """``(kind, config)`` of an object store; S3 buckets get unique names per test."""
    if request.param == "files":
        return "files", {"path": "services/objects"}
    bucket = "b-" + uuid.uuid4().hex[:12]
    return "s3", request.getfixturevalue("s3_server").config(bucket)


async def open_store(tmp_path, kind, config, **options):
    options.setdefault("connect_timeout", 10.0)  # a loaded machine is slow to connect
    manager = ServiceManager(tmp_path, **options)
    await manager.put("store", kind, config)
    return manager, Caller(manager, bindings={"store"})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@async_test
async def test_objects_round_trip_byte_for_byte(store, tmp_path):
    manager, call = await open_store(tmp_path, *store)
    big = os.urandom(3 * 1024 * 1024 + 7)
    try:
        assert await call("store", "objects.get", {"key": "none"}) is None
        assert await call("store", "objects.put", {"key": "bin/every", "data": b64(EVERY_BYTE),
                                                   "content_type": "application/x-test"}) is None
        await call("store", "objects.put", {"key": "bin/big.dat", "data": b64(big),
                                            "content_type": "application/octet-stream"})
        await call("store", "objects.put", {"key": "empty", "data": "",
                                            "content_type": "text/plain"})
        got = await call("store", "objects.get", {"key": "bin/every"})
        assert base64.b64decode(got["data"]) == EVERY_BYTE
        assert got["content_type"] == "application/x-test"
        got = await call("store", "objects.get", {"key": "bin/big.dat"})
        assert base64.b64decode(got["data"]) == big
        got = await call("store", "objects.get", {"key": "empty"})
        assert (got["data"], got["content_type"]) == ("", "text/plain")
        listed = await call("store", "objects.list", {"prefix": "bin/"})
        assert [(o["key"], o["size"]) for o in listed] == [("bin/big.dat", len(big)),
                                                           ("bin/every", len(EVERY_BYTE))]
        everything = await call("store", "objects.list", {"prefix": None})
        assert [o["key"] for o in everything] == ["bin/big.dat", "bin/every", "empty"]
        assert await call("store", "objects.delete", {"key": "bin/every"}) is True
        assert await call("store", "objects.delete", {"key": "bin/every"}) is False
        assert await call("store", "objects.get", {"key": "bin/every"}) is None
    finally:
        await manager.close()


@async_test
async def test_bad_keys_and_data_are_refused(store, tmp_path):
    manager, call = await open_store(tmp_path, *store)
    try:
        for key in ("../escape", "/abs", "a//b", "a/./b", "a/..", "back\\slash", ""):
            error = await call.error("store", "objects.put", {"key": key, "data": "AA=="})
            assert error.kind == "bad_request", key
        error = await call.error("store", "objects.put", {"key": "k", "data": "not base64!"})
        assert (error.kind, error.message) == ("bad_request",
                                               "argument 'data' is not valid base64")
        assert await call("store", "objects.list", {}) == []
    finally:
        await manager.close()


@async_test
async def test_petstore_documents(store, tmp_path):
    kind, config = store
    manager, call = await open_store(tmp_path, kind, config)
    storage_type = "objectstorage" if kind == "s3" else "filestorage"
    pets = {"storage_type": storage_type, "base_path": "shop/pets"}
    rex = {"name": "Rex", "status": "available"}
    tom = {"name": "Tom", "status": "sold"}
    try:
        assert await call("store", "storage.list", {**pets, "filter": None}) == []
        await call("store", "storage.create", {**pets, "id": "pet-1", "data": rex})
        await call("store", "storage.create", {**pets, "id": "pet-2", "data": tom})
        assert await call("store", "storage.get", {**pets, "id": "pet-1"}) == rex
        assert await call("store", "storage.list", {**pets, "filter": "sold"}) == [tom]
        assert await call("store", "storage.list", {**pets, "filter": None}) == [rex, tom]
        await call("store", "storage.update", {**pets, "id": "pet-1",
                                               "data": {**rex, "status": "sold"}})
        assert await call("store", "storage.list", {**pets, "filter": "sold"}) == [
            {**rex, "status": "sold"}, tom]
        error = await call.error("store", "storage.create", {**pets, "id": "pet-1", "data": 1})
        assert error.kind == "storage"
        error = await call.error("store", "storage.update", {**pets, "id": "pet-9", "data": 1})
        assert error.kind == "storage"
        assert await call("store", "storage.delete", {**pets, "id": "pet-2"}) is True
        assert await call("store", "storage.delete", {**pets, "id": "pet-2"}) is False
        # Documents are objects <base>/<id>.json, readable as raw objects too.
        raw = await call("store", "objects.get", {"key": "shop/pets/pet-1.json"})
        assert raw["content_type"] == "application/json"
        for bad in ("../x", "a/b", ".hidden"):
            error = await call.error("store", "storage.get", {**pets, "id": bad})
            assert error.kind == "bad_request", bad
        error = await call.error("store", "storage.get", {**pets, "base_path": "../up",
                                                          "id": "x"})
        assert error.kind == "bad_request"
        error = await call.error("store", "storage.get", {"storage_type": "database",
                                                          "table_name": "t", "id": "x"})
        assert error.kind == "bad_request"
    finally:
        await manager.close()


@async_test
async def test_files_never_leave_their_directory(tmp_path):
    manager = ServiceManager(tmp_path)
    call = Caller(manager)
    outside = tmp_path / "secret.txt"
    outside.write_text("keep out")
    link_dir = tmp_path / "services" / "files" / "data"
    link_dir.mkdir(parents=True)
    (link_dir / "link").symlink_to(tmp_path)
    try:
        error = await call.error("files", "objects.get", {"key": "link/secret.txt"})
        assert error.kind == "bad_request"
        error = await call.error("files", "objects.put", {"key": "link/new", "data": "AA=="})
        assert error.kind == "bad_request"
        assert not (tmp_path / "new").exists()
        assert outside.read_text() == "keep out"
    finally:
        await manager.close()
    with pytest.raises(ValueError, match="inside the data dir"):
        ServiceManager.check("up", "files", {"path": "../elsewhere"})


@async_test
async def test_s3_down_fails_fast_and_recovers(own_s3, tmp_path):
    manager, call = await open_store(tmp_path, "s3", own_s3.config("outage"),
                                     connect_timeout=1.0)
    try:
        await call("store", "objects.put", {"key": "k", "data": b64(b"one")})
        own_s3.stop()
        started = time.monotonic()
        error = await call.error("store", "objects.get", {"key": "k"})
        assert (error.kind, error.message) == ("unavailable",
                                               "s3 service 'store' is not reachable")
        assert time.monotonic() - started < 10  # not a client default: a minute, or never
        own_s3.start()
        # moto keeps nothing across restarts: the bucket is gone, and says so.
        error = await call.error("store", "objects.get", {"key": "k"})
        assert error.kind == "storage" and "does not exist" in error.message
        await manager.put("store", "s3", own_s3.config("outage"))  # create_bucket again
        await call("store", "objects.put", {"key": "k", "data": b64(b"two")})
        got = await call("store", "objects.get", {"key": "k"})
        assert base64.b64decode(got["data"]) == b"two"
    finally:
        await manager.close()


@async_test
async def test_s3_credentials_and_masking(s3_server, tmp_path):
    manager = ServiceManager(tmp_path)
    await manager.put("store", "s3", s3_server.config("masked"))
    try:
        shown = manager.describe("store")["config"]
        assert shown["secret_access_key"] == "****" and shown["access_key_id"] == "****"
        assert shown["bucket"] == "masked"
        assert (await manager.test("store")) | {"latency_ms": 0} == {
            "ok": True, "latency_ms": 0, "bucket": "masked"}
    finally:
        await manager.close()
