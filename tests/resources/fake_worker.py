"""A worker written in Python that speaks the edgebook protocol, for gateway tests.

Behaviour is chosen per request by the request's path (``/mode/<name>``) or, for faults
at start-up, by the ``FAKE_WORKER_MODE`` environment variable. It exists so gateway tests
can run without cargo; the real workers are Rust binaries built against sdk/.
"""

import fcntl
import json
import os
import struct
import sys
import termios
import time

HEADER = struct.Struct(">I")
stdin = os.fdopen(0, "rb", buffering=0)  # unbuffered, so FIONREAD sees unread requests
stdout = sys.stdout.buffer


def write(payload):
    data = json.dumps(payload).encode()
    stdout.write(HEADER.pack(len(data)) + data)
    stdout.flush()


def read_exactly(n):
    data = b""
    while len(data) < n:
        chunk = stdin.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read():
    header = read_exactly(4)
    if len(header) < 4:
        return None
    (length,) = HEADER.unpack(header)
    return json.loads(read_exactly(length))


def pipe_bytes():
    """How many bytes wait unread in stdin: proof that requests are pipelined."""
    return struct.unpack("i", fcntl.ioctl(0, termios.FIONREAD, b"\0\0\0\0"))[0]


def respond(request, status=200, body=None, headers=None, encoding="utf8"):
    write({"type": "response", "request_id": request["request_id"], "status": status,
           "headers": headers or {"content-type": "application/json"},
           "body": body, "body_encoding": encoding})


def main():
    start_mode = os.environ.get("FAKE_WORKER_MODE", "")
    if start_mode == "exit_at_start":
        sys.stderr.write("fake worker: failing at start\n")
        sys.exit(1)
    if start_mode == "no_ready":
        time.sleep(3600)
    if start_mode == "bad_protocol":
        write({"type": "ready", "protocol": 99, "sdk": "fake-worker", "sdk_version": "0.0.0",
               "pid": os.getpid()})
        time.sleep(3600)
    write({"type": "ready", "protocol": 1, "sdk": "fake-worker", "sdk_version": "0.0.0",
           "pid": os.getpid()})
    tag = os.environ.get("FAKE_WORKER_TAG", "")
    if start_mode == "exit_after_ready":
        time.sleep(float(os.environ.get("FAKE_WORKER_EXIT_DELAY", "0")))
        sys.stderr.write("fake worker: exiting after ready\n")
        sys.exit(1)
    late_replies, queued = [], []
    while True:
        request = queued.pop(0) if queued else read()
        if request is None:
            return
        mode = request["path"].rsplit("/", 1)[-1] if request["path"].startswith("/mode/") else ""
        if mode == "crash":
            sys.stderr.write("fake worker: crashing on purpose\n")
            sys.stderr.flush()
            os._exit(1)
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "malformed":
            stdout.write(HEADER.pack(5) + b"nope!")
            stdout.flush()
        elif mode == "oversized":
            stdout.write(b"\xff\xff\xff\xff")
            stdout.flush()
        elif mode == "wrong_id":
            write({"type": "response", "request_id": "not-a-real-id", "status": 200,
                   "headers": {}, "body": None})
        elif mode == "stderr_flood":
            chunk = "x" * 1023 + "\n"
            for _ in range(4096):  # 4 MiB, far more than a pipe holds
                sys.stderr.write(chunk)
            sys.stderr.flush()
            respond(request, body=json.dumps({"flooded": True}))
        elif mode == "slow":
            time.sleep(float(request["query"].get("s", "0.2")))
            respond(request, body=json.dumps({"slept": True, "tag": tag,
                                              "pipe_bytes": pipe_bytes(), "pid": os.getpid()}))
        elif mode == "slow_crash":
            time.sleep(float(request["query"].get("s", "0.2")))
            sys.stderr.write("fake worker: crashing after a nap\n")
            sys.stderr.flush()
            os._exit(1)
        elif mode == "stdout_spam":
            stdout.write(b"hello from println!\n" * 10)
            stdout.flush()
        elif mode == "echo_body":
            respond(request, body=request.get("body"),
                    encoding=request.get("body_encoding", "utf8"),
                    headers={"content-type": "application/octet-stream"})
        elif mode == "status":
            respond(request, status=int(request["query"].get("code", "200")),
                    headers={"x-custom": request["query"].get("h", "v")},
                    body=request["query"].get("body"))
        elif mode == "two_cookies":  # a repeated header, as the SDK sends it
            write({"type": "response", "request_id": request["request_id"], "status": 200,
                   "headers": {"set-cookie": "b=2", "content-type": "text/plain"},
                   "headers_all": [["set-cookie", "a=1"], ["set-cookie", "b=2"],
                                   ["content-type", "text/plain"]],
                   "body": "ok", "body_encoding": "utf8"})
        elif mode == "late_service":
            # answers first, then makes a service call for the request it already answered
            respond(request, body=json.dumps({"answered": True}))
            write({"type": "service_call", "request_id": request["request_id"], "call_id": 1,
                   "service": "default", "op": "db.begin", "args": {}})
            while True:  # the next request may arrive before the reply: keep it for later
                frame = read()
                if frame is None or frame.get("type") == "service_reply":
                    late_replies.append(frame)
                    break
                queued.append(frame)
        elif mode == "late_reply":
            respond(request, body=json.dumps({"reply": late_replies[-1]}))
        elif mode == "service":
            write({"type": "service_call", "request_id": request["request_id"], "call_id": 1,
                   "service": "default", "op": "kv.get", "args": {"key": "k"}})
            reply = read()
            respond(request, body=json.dumps({"reply": reply}))
        else:
            echo = {"method": request["method"], "path": request["path"],
                    "query": request["query"], "params": request["params"],
                    "headers": request["headers"], "client_ip": request.get("client_ip"),
                    "request_id": request["request_id"], "body": request.get("body"),
                    "body_encoding": request.get("body_encoding", "utf8"),
                    "query_all": request.get("query_all"),
                    "headers_all": request.get("headers_all"), "tag": tag, "pid": os.getpid()}
            respond(request, body=json.dumps(echo))


if __name__ == "__main__":
    main()
