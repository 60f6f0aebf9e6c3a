"""A bounded, in-memory log of one endpoint's worker stderr lines."""

from __future__ import annotations

import collections
import time
from typing import NamedTuple


class LogLine(NamedTuple):
    seq: int        # increases by one per line, so a reader can ask for what is new
    time: float     # wall-clock seconds (time.time()) when the gateway read the line
    source: str     # who wrote it, e.g. "rev3/pid 4242" or "gateway"
    text: str

    def as_dict(self) -> dict:
        return {"seq": self.seq, "time": self.time, "source": self.source, "text": self.text}


class LogRing:
    """The last ``max_lines`` lines, each cut to ``max_line`` characters.

    Memory is bounded by ``max_lines * max_line``; old lines fall off the front.
    """

    def __init__(self, max_lines: int = 2000, max_line: int = 4096):
        self.max_line = max_line
        self._lines: collections.deque[LogLine] = collections.deque(maxlen=max_lines)
        self._seq = 0

    def append(self, source: str, text: str) -> None:
        if len(text) > self.max_line:
            text = text[: self.max_line] + " [line truncated]"
        self._seq += 1
        self._lines.append(LogLine(self._seq, time.time(), source, text))

    def tail(self, n: int | None = None) -> list[LogLine]:
        """The last ``n`` lines (all kept lines when ``n`` is None), oldest first."""
        if n is None or n >= len(self._lines):
            return list(self._lines)
        if n <= 0:
            return []
        return list(self._lines)[-n:]

    def since(self, seq: int) -> list[LogLine]:
        """Lines with a sequence number greater than ``seq``, oldest first."""
        return [line for line in self._lines if line.seq > seq]

    @property
    def last_seq(self) -> int:
        return self._seq

    def __len__(self) -> int:
        return len(self._lines)
