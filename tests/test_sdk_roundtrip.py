"""The Rust SDK's examples, built with cargo and driven over real pipes with edgebook.protocol."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from edgebook import protocol

ROOT = Path(__file__).resolve().parent.parent
SDK_MANIFEST = ROOT / "sdk" / "Cargo.toml"
TIMEOUT = 30

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    """Builds the SDK's examples once; maps example name to executable path."""
    build = subprocess.run(
        ["cargo", "build", "--examples", "--message-format=json", "--manifest-path",
         str(SDK_MANIFEST)],
        capture_output=True, text=True, check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    paths = {}
    for line in build.stdout.splitlines():
        message = json.loads(line)
        target = message.get("target", {})
        if message.get("reason") == "compiler-artifact" and "example" in target.get("kind", []):
            paths[target["name"]] = message["executable"]
    assert {"hello", "echo", "chatty", "panicky", "manual", "spawner"} <= paths.keys(), paths
    return paths


def request(request_id: str, path: str, *, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None, **extra) -> dict:
    text, encoding = protocol.encode_body(body)
    frame = {"type": "request", "request_id": request_id, "method": method, "path": path,
             "query": {}, "headers": headers or {}, "params": {}, "body": text,
             "body_encoding": encoding, "client_ip": "127.0.0.1"}
    frame.update(extra)
    return frame


class Worker:
    """One example process with its pipes; stderr is drained as it arrives."""

    def __init__(self, executable: str, env: dict[str, str] | None = None):
        self.executable = executable
        self.env = env

    async def __aenter__(self) -> Worker:
        env = {"PATH": os.environ.get("PATH", "")} | (self.env or {})
        self.process = await asyncio.create_subprocess_exec(
            self.executable, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        self.frames = protocol.FrameReader(self.process.stdout)
        self.stderr_task = asyncio.ensure_future(self.process.stderr.read())
        return self

    async def read(self) -> dict | None:
        return await asyncio.wait_for(self.frames.read(), TIMEOUT)

    async def send(self, *frames: dict) -> None:
        self.process.stdin.write(b"".join(protocol.encode(frame) for frame in frames))
        await self.process.stdin.drain()

    async def close(self) -> tuple[int, str]:
        """Closes stdin; returns the exit status and everything written to stderr."""
        if not self.process.stdin.is_closing():
            self.process.stdin.close()
        status = await asyncio.wait_for(self.process.wait(), TIMEOUT)
        stderr = await asyncio.wait_for(self.stderr_task, TIMEOUT)
        return status, stderr.decode("utf-8", "replace")

    async def __aexit__(self, *exc_info) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 2))


def test_ready_frame_then_hello_json(examples):
    async def scenario():
        async with Worker(examples["hello"]) as worker:
            ready = await worker.read()
            await worker.send(request("h-1", "/hello"))
            response = await worker.read()
            status, _ = await worker.close()
            return ready, response, status, worker.process.pid

    ready, response, status, pid = run(scenario())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ready == {"type": "ready", "protocol": 1, "sdk": "edgebook-sdk",
                     "sdk_version": version, "pid": pid}
    assert response["type"] == "response" and response["request_id"] == "h-1"
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"message": "Hello, World!", "path": "/hello",
                                            "method": "GET"}
    assert status == 0


def test_binary_body_intact_both_ways(examples):
    payload = bytes(range(256)) + b"\xff\xfe\x00\r\n"

    async def scenario():
        async with Worker(examples["echo"]) as worker:
            await worker.read()
            await worker.send(request("b-1", "/echo", method="PUT", body=payload,
                                      headers={"content-type": "image/png"}))
            return await worker.read()

    response = run(scenario())
    assert response["body_encoding"] == "base64"
    assert protocol.decode_body(response) == payload
    assert response["headers"] == {"Content-Type": "image/png"}


def test_repeated_values_and_request_details_reach_the_handler(examples):
    frame = request("m-1", "/meta", query={"meta": "", "tag": "b"},
                    query_all={"meta": [""], "tag": ["a", "b"]},
                    headers={"x-forwarded-for": "10.0.0.2"},
                    headers_all={"x-forwarded-for": ["10.0.0.1", "10.0.0.2"]},
                    params={"id": "7"}, body=b"12345")

    async def scenario():
        async with Worker(examples["echo"]) as worker:
            await worker.read()
            await worker.send(frame)
            return await worker.read()

    meta = json.loads(run(scenario())["body"])
    assert meta["query_all"] == {"meta": [""], "tag": ["a", "b"]}
    assert meta["headers_all"] == {"x-forwarded-for": ["10.0.0.1", "10.0.0.2"]}
    assert (meta["params"], meta["client_ip"], meta["request_id"]) == ({"id": "7"}, "127.0.0.1",
                                                                      "m-1")
    assert meta["body_len"] == 5


def test_printing_handler_stays_framed_and_its_prints_go_to_stderr(examples):
    async def scenario():
        async with Worker(examples["chatty"]) as worker:
            await worker.read()
            await worker.send(request("c-1", "/one"), request("c-2", "/two"))
            responses = [await worker.read(), await worker.read()]
            status, stderr = await worker.close()
            return responses, status, stderr

    responses, status, stderr = run(scenario())
    assert [(r["request_id"], r["body"]) for r in responses] == [
        ("c-1", "done with /one"), ("c-2", "done with /two")]
    assert "chatty: line 199 while handling GET /two" in stderr
    assert status == 0


def test_a_child_process_and_the_handler_cannot_touch_the_protocol_pipes(examples):
    async def scenario():
        async with Worker(examples["spawner"]) as worker:
            await worker.read()
            await worker.send(request("s-1", "/spawn"), request("s-2", "/next"))
            responses = [await worker.read(), await worker.read()]
            status, stderr = await worker.close()
            return responses, status

    (spawned, after), status = run(scenario())
    assert spawned["request_id"] == "s-1"
    assert json.loads(spawned["body"]) == {"child_ok": True, "stdin_bytes": 0}
    assert (after["request_id"], after["body"]) == ("s-2", "after /next")
    assert status == 0


def panic_then_fine(executable: str, env: dict[str, str] | None = None):
    async def scenario():
        async with Worker(executable, env=env) as worker:
            await worker.read()
            await worker.send(request("p-1", "/panic"), request("p-2", "/fine"))
            responses = [await worker.read(), await worker.read()]
            status, stderr = await worker.close()
            return responses, status, stderr

    return run(scenario())


def test_panicking_handler_answers_500_and_keeps_serving(examples):
    (panicked, fine), status, stderr = panic_then_fine(examples["panicky"])
    assert panicked["status"] == 500
    assert json.loads(panicked["body"]) == {"error": "Internal Server Error"}
    assert (fine["request_id"], fine["status"]) == ("p-2", 200)
    assert "asked to panic at /panic" in stderr
    assert ("edgebook handler: 500 for request p-1: Internal error: handler panicked: "
            "asked to panic at /panic") in stderr
    assert status == 0


def test_exposed_errors_send_the_panic_message_to_the_client(examples):
    (panicked, _), status, _ = panic_then_fine(
        examples["panicky"], env={"EDGEBOOK_EXPOSE_ERRORS": "1"})
    assert json.loads(panicked["body"]) == {
        "error": "Internal error: handler panicked: asked to panic at /panic"}
    assert status == 0


def test_pipelined_requests_are_answered_in_order(examples):
    ids = [f"q-{i}" for i in range(50)]

    async def scenario():
        async with Worker(examples["hello"]) as worker:
            await worker.read()
            await worker.send(*(request(i, f"/n/{i}") for i in ids))
            return [await worker.read() for _ in ids]

    responses = run(scenario())
    assert [r["request_id"] for r in responses] == ids
    assert [json.loads(r["body"])["path"] for r in responses] == [f"/n/{i}" for i in ids]


def test_closing_stdin_exits_0_after_answering(examples):
    async def scenario():
        async with Worker(examples["hello"]) as worker:
            await worker.read()
            await worker.send(request("e-1", "/last"))
            worker.process.stdin.close()
            response = await worker.read()
            end = await worker.read()
            status, stderr = await worker.close()
            return response, end, status, stderr

    response, end, status, stderr = run(scenario())
    assert response["request_id"] == "e-1"
    assert end is None
    assert (status, stderr) == (0, "")


def test_an_oversized_length_exits_3_with_a_reason(examples):
    async def scenario():
        async with Worker(examples["hello"], env={"EDGEBOOK_MAX_FRAME": "1024"}) as worker:
            await worker.read()
            worker.process.stdin.write((1025).to_bytes(4, "big"))
            await worker.process.stdin.drain()
            return await worker.close()

    status, stderr = run(scenario())
    assert status == 3
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "1025" in lines[0] and "1024" in lines[0], stderr


def test_a_truncated_frame_exits_2(examples):
    async def scenario():
        async with Worker(examples["hello"]) as worker:
            await worker.read()
            worker.process.stdin.write(protocol.encode(request("t-1", "/"))[:-2])
            await worker.process.stdin.drain()
            return await worker.close()

    status, stderr = run(scenario())
    assert status == 2
    assert "truncated" in stderr


def test_a_hand_written_loop_with_read_request_and_send_response(examples):
    async def scenario():
        async with Worker(examples["manual"]) as worker:
            ready = await worker.read()
            await worker.send(request("m-1", "/a"), request("m-2", "/b"))
            responses = [await worker.read(), await worker.read()]
            status, stderr = await worker.close()
            return ready, responses, status, stderr

    ready, responses, status, stderr = run(scenario())
    assert ready["type"] == "ready"
    assert [(r["request_id"], json.loads(r["body"])) for r in responses] == [
        ("m-1", {"path": "/a", "served": 1}), ("m-2", {"path": "/b", "served": 2})]
    assert "manual loop: request 2" in stderr
    assert status == 0
