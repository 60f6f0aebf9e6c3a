"""A response's ``Server-Timing`` header read back: where the request's time went in the
gateway (phases, then each service call the handler made), as a DataFrame and a waterfall.

The gateway sends the header in development (gateways a notebook starts) or when asked
(``edgebook serve --server-timing``); see ``edgebook/gateway/timing.py`` for the phases.
"""

from __future__ import annotations

import html

from ..servertiming import PHASES, Entry

PHASE_HELP = {"recv": "reading the request body", "route": "choosing the endpoint",
              "queue": "waiting for a free worker", "worker": "in the handler",
              "total": "in the gateway, before the response"}


class Waterfall:
    """The gateway's phases of one response laid out in time, service calls under
    ``worker``; a table in text, bars in HTML (JupyterLab's theme colours)."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.rows = _layout(entries)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def df(self):
        import pandas as pd
        return pd.DataFrame(
            [{"phase": name, "what": what, "start_ms": start, "duration_ms": duration,
              "rows": entry.rows if entry else None, "bytes": entry.bytes if entry else None}
             for name, what, start, duration, _, entry in self.rows],
            columns=["phase", "what", "start_ms", "duration_ms", "rows", "bytes"])

    def text(self) -> str:
        if not self.rows:
            return "no Server-Timing header (the gateway measures phases in development, or " \
                   "with edgebook serve --server-timing)"
        width = max(len(name) + (2 if nested else 0) for name, _, _, _, nested, _ in self.rows)
        lines = []
        for name, what, start, duration, nested, _ in self.rows:
            label = ("  " + name if nested else name).ljust(width)
            lines.append(f"{label}  +{start:8.3f} ms  {duration:8.3f} ms  {what}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<div style='color:var(--jp-ui-font-color2)'>{html.escape(self.text())}</div>"
        span = max((start + duration for _, _, start, duration, _, _ in self.rows), default=0.0)
        span = span or 1.0
        rows = []
        for name, what, start, duration, nested, _ in self.rows:
            left, width = 100 * start / span, max(100 * duration / span, 0.5)
            colour = ("var(--jp-brand-color1, #1976d2)" if name == "worker" else
                      "var(--jp-warn-color1, #f57c00)" if name == "queue" else
                      "var(--jp-accent-color1, #388e3c)" if nested else
                      "var(--jp-ui-font-color3, #9e9e9e)")
            rows.append(
                f"<tr><td style='text-align:left;padding-left:{14 if nested else 0}px'>"
                f"{html.escape(name)}</td><td style='text-align:right'>{duration:.3f} ms</td>"
                f"<td style='width:60%'><div style='position:relative;height:10px'>"
                f"<div style='position:absolute;left:{left:.2f}%;width:{width:.2f}%;"
                f"height:10px;background:{colour};border-radius:2px'></div></div></td>"
                f"<td style='text-align:left;color:var(--jp-ui-font-color2)'>"
                f"{html.escape(what)}</td></tr>")
        return ("<table class='edgebook-waterfall' style='font-size:12px;width:100%'>"
                f"{''.join(rows)}</table>")


Row = tuple[str, str, float, float, bool, "Entry | None"]


def _layout(entries: list[Entry]) -> list[Row]:
    """``(name, what, start_ms, duration_ms, nested, call)`` rows: phases one after another,
    service calls (``call``: their entry) one after another from the start of ``worker``."""
    phases = {e.name: e for e in entries if e.name in PHASES and e.duration_ms is not None}
    rows: list[Row] = []
    at = 0.0
    worker_start = None
    for name in PHASES:
        entry = phases.get(name)
        if entry is None:
            continue
        rows.append((name, PHASE_HELP[name], at, entry.duration_ms, False, None))
        if name == "worker":
            worker_start = at
        at += entry.duration_ms
    call_at = worker_start if worker_start is not None else at
    for entry in entries:
        if entry.name in PHASES or entry.name == "total" or entry.duration_ms is None:
            continue
        what = f"{entry.desc} ({entry.size})" if entry.size else entry.desc
        rows.append((entry.name, what, call_at, entry.duration_ms, True, entry))
        call_at += entry.duration_ms
    return rows
