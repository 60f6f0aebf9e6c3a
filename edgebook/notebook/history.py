"""Request history: the last requests sent to each endpoint from this kernel.

Every :func:`edgebook.request` (and every try-it button press) is recorded with its
response, latency and request id, under the name of the endpoint that answered it. The
history shows as a DataFrame, and any entry can be replayed or copied as a curl command.
An endpoint's stderr lines are attached by time: the lines the gateway read while that
request was in flight (requests sent one after another, as from a notebook, separate well).
"""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .request import DEFAULT_TIMEOUT, send
from .response import EdgeResponse

PER_ENDPOINT = 50
PREVIEW = 200
LOG_SLACK = 0.05  # seconds after the response during which stderr lines still belong to it


@dataclass
class HistoryEntry:
    """One recorded exchange. ``seq`` numbers entries across the whole history."""

    seq: int
    response: EdgeResponse
    endpoint: str | None
    stderr: list[str] | None = field(default=None, repr=False)
    pending_stderr: list[str] = field(default_factory=list, repr=False)

    @property
    def started(self) -> float:
        return self.response.sent_at - self.response.elapsed

    @property
    def finished(self) -> float:
        return self.response.sent_at

    @property
    def curl(self) -> str:
        return self.response.curl


class History:
    """The last ``per_endpoint`` requests of each endpoint, oldest first.

    ``endpoint_of(method, url)`` names the endpoint a request went to; ``logs_of(name)``
    returns the endpoint's recent stderr lines as ``(time, text)`` pairs. Both are optional.
    """

    def __init__(self, per_endpoint: int = PER_ENDPOINT,
                 endpoint_of: Callable[[str, str], str | None] | None = None,
                 logs_of: Callable[[str], list[tuple[float, str]]] | None = None):
        self.per_endpoint = per_endpoint
        self.endpoint_of = endpoint_of
        self.logs_of = logs_of
        self._entries: list[HistoryEntry] = []
        self._seq = 0
        self._lock = threading.Lock()

    def record(self, response: EdgeResponse, endpoint: str | None = None) -> HistoryEntry:
        if endpoint is None and self.endpoint_of is not None:
            endpoint = self.endpoint_of(response.request.method, response.request.url)
        with self._lock:
            entry = HistoryEntry(self._seq, response, endpoint)
            self._seq += 1
            self._entries.append(entry)
            same = [e for e in self._entries if e.endpoint == endpoint]
            if len(same) > self.per_endpoint:
                drop = {e.seq for e in same[: len(same) - self.per_endpoint]}
                self._entries = [e for e in self._entries if e.seq not in drop]
        return entry

    def entries(self, name: str | None = None) -> list[HistoryEntry]:
        with self._lock:
            return [e for e in self._entries if name is None or e.endpoint == name]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, seq: int) -> HistoryEntry:
        """The entry numbered ``seq`` (the DataFrame's index); negative counts from the end."""
        with self._lock:
            if seq < 0:
                if -seq > len(self._entries):
                    raise IndexError(f"the history holds {len(self._entries)} requests")
                return self._entries[seq]
            for entry in self._entries:
                if entry.seq == seq:
                    return entry
        raise IndexError(f"no request numbered {seq} in the history (it keeps the last "
                         f"{self.per_endpoint} per endpoint)")

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- stderr ------------------------------------------------------------------------------

    def _attach_logs(self, entries: list[HistoryEntry]) -> None:
        """Fill ``stderr`` for entries that lack it: one logs call per endpoint."""
        if self.logs_of is None:
            return
        by_endpoint: dict[str, list[HistoryEntry]] = {}
        for entry in entries:
            if entry.stderr is None and entry.endpoint is not None:
                by_endpoint.setdefault(entry.endpoint, []).append(entry)
        now = time.time()
        for name, group in by_endpoint.items():
            lines = self.logs_of(name)
            for i, entry in enumerate(group):
                end = entry.finished + LOG_SLACK
                if i + 1 < len(group):
                    end = min(end, group[i + 1].started)
                found = [text for stamp, text in lines if entry.started <= stamp <= end]
                if end < now:  # later lines can no longer belong to it: keep the answer
                    entry.stderr = found
                else:
                    entry.pending_stderr = found

    # -- views -------------------------------------------------------------------------------

    def df(self, name: str | None = None, *, stderr: bool = True):
        """The history as a DataFrame indexed by entry number (usable with :meth:`replay`)."""
        import pandas as pd
        entries = self.entries(name)
        if stderr:
            self._attach_logs(entries)
        rows = []
        for e in entries:
            r = e.response
            rows.append({
                "time": datetime.datetime.fromtimestamp(e.started),
                "endpoint": e.endpoint,
                "method": r.request.method,
                "path": r.request.path,
                "status": r.status,
                "latency_ms": round(r.elapsed_ms, 2),
                "request_id": r.request_id,
                "request_body": _preview(r.request.body),
                "response_body": _preview(r.content),
                "stderr": "\n".join(e.stderr if e.stderr is not None else e.pending_stderr),
            })
        columns = ["time", "endpoint", "method", "path", "status", "latency_ms", "request_id",
                   "request_body", "response_body", "stderr"]
        df = pd.DataFrame(rows, columns=columns,
                          index=pd.Index([e.seq for e in entries], name="n"))
        df["time"] = df["time"].astype("datetime64[ms]")  # 21:37:11.123, not .123456
        return df

    def replay(self, seq: int = -1, *, timeout: float | None = None) -> EdgeResponse:
        """Send entry ``seq`` again (same method, URL, headers, body); records the new one."""
        entry = self[seq]
        response = send(entry.response.request, timeout=timeout or DEFAULT_TIMEOUT)
        self.record(response, endpoint=entry.endpoint)
        return response

    def curl(self, seq: int = -1) -> str:
        return self[seq].curl


def _preview(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes>"
    return text if len(text) <= PREVIEW else text[:PREVIEW] + "..."
