"""Build progress for a ``%%rust_handler`` cell: a widget in a live frontend, text elsewhere.

Both displays take the gateway's events for one endpoint (``event``) on the thread that runs
the cell, so widgets are only touched from that thread. The text display prints one line
when the build starts and nothing per event, so notebooks run by nbclient or nbval get
the same text on every run.
"""

from __future__ import annotations

import os
import sys
from typing import Any

# The steps of a deploy, in order; the progress bar advances through them.
STEPS = ("submitted", "queued", "resolving", "compiling", "linking", "built", "starting",
         "running")


def widgets_wanted(shell: Any) -> bool:
    """True when the cell runs under a frontend that renders widgets live.

    ``EDGEBOOK_WIDGETS=1``/``0`` decides outright. Otherwise widgets are used in a kernel
    that was started for a notebook by a Jupyter server (``JPY_SESSION_NAME``) or whose
    execute request carries a ``cellId`` (JupyterLab, VS Code); headless runners such as
    nbclient and nbval, and terminal IPython, get plain text.
    """
    forced = os.environ.get("EDGEBOOK_WIDGETS")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes", "on")
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    parent = getattr(shell, "parent_header", None) or {}
    if (parent.get("metadata") or {}).get("cellId"):
        return True
    return bool(os.environ.get("JPY_SESSION_NAME"))


def step_of(event: dict) -> tuple[int, str] | None:
    """(step index, short description) for one gateway event, or None to ignore it."""
    kind = event.get("type")
    if kind == "build":
        phase = event.get("phase")
        if phase == "started":
            return 1, f"building ({event.get('profile', 'dev')})"
        if phase == "release_queued":
            return None
        if phase == "finished":
            if not event.get("ok"):
                return 5, "build failed"
            if event.get("cached"):
                return 5, ("unchanged: using the cached binary" if event.get("unchanged", True)
                           else "from the build cache: no compile needed")
            duration = event.get("duration")
            return 5, f"built in {duration:.2f} s" if duration is not None else "built"
        inner = event.get("step") or event.get("stage") or phase
        crate = event.get("crate")
        if inner in STEPS:
            text = f"{inner} {crate}" if crate else inner
            return STEPS.index(inner), text
        if crate:
            return STEPS.index("compiling"), f"compiling {crate}"
        return None
    if kind == "state":
        state = event.get("state")
        if state == "starting":
            return 6, event.get("reason") or "starting workers"
        if state == "running":
            return 7, "running"
    return None


class TextProgress:
    """One line when the deploy starts; the outcome is displayed by the caller."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def start(self, spec) -> None:
        profile = spec.options.get("profile") or "dev"
        print(f"edgebook: deploying {spec.method} {spec.path} as {spec.name!r} ({profile})",
              file=self.stream, flush=True)

    def event(self, event: dict) -> None:
        pass

    def finish(self, deployed, session) -> None:
        from IPython.display import display
        display(deployed)

    def fail(self, card: dict) -> None:
        pass

    def interrupted(self, message: str) -> None:
        print(f"edgebook: {message}", file=sys.stderr, flush=True)


class WidgetProgress:
    """A progress bar and a status line, replaced by the endpoint card on success."""

    def __init__(self):
        import ipywidgets as w
        self.bar = w.FloatProgress(value=0, min=0, max=len(STEPS) - 1, bar_style="info",
                                   layout=w.Layout(width="240px"))
        self.label = w.HTML()
        self.box = w.HBox([self.bar, self.label])
        self.handle = None
        self.step = 0

    def start(self, spec) -> None:
        from IPython.display import display
        self.label.value = (f"<code>{spec.method} {spec.path}</code> &middot; submitting "
                            f"<b>{spec.name}</b>")
        self.handle = display(self.box, display_id=True)

    def event(self, event: dict) -> None:
        found = step_of(event)
        if found is None:
            return
        step, text = found
        self.step = max(self.step, step)
        self.bar.value = self.step
        if text == "build failed":
            self.bar.bar_style = "danger"
        self.label.value = f"{_esc(text)}"

    def finish(self, deployed, session) -> None:
        from IPython.lib.pretty import pretty

        from .tryit import endpoint_card
        self.bar.value = self.bar.max
        self.bar.bar_style = "success"
        # The widget, plus the card as HTML and text: what a saved notebook shows where
        # widgets do not run (a static viewer, a later session without the kernel).
        bundle = endpoint_card(deployed, session)._repr_mimebundle_()
        bundle["text/html"] = deployed._repr_html_()
        bundle["text/plain"] = pretty(deployed)
        self.handle.update(bundle, raw=True)

    def fail(self, card: dict) -> None:
        """The bar gives way to ``card`` (a MIME bundle: the endpoint's state, diagnostics
        for the editor), so no half-full bar stays behind; the error's message is the
        traceback's, shown once below it."""
        self.handle.update(card, raw=True)
        self.box.close()

    def interrupted(self, message: str) -> None:
        self.bar.bar_style = "warning"
        self.label.value = _esc(message)


def _esc(text: str) -> str:
    import html
    return html.escape(text)


class BenchProgress:
    """A load test's progress bar, shown once a run lasts over ``delay`` seconds and
    removed when it ends (the report is what stays)."""

    def __init__(self, total: int | None, duration: float | None, delay: float = 0.5):
        self.total = total
        self.duration = duration
        self.delay = delay
        self.box = None

    def update(self, done: int, elapsed: float) -> None:
        if elapsed < self.delay:
            return
        if self.box is None:
            import ipywidgets as w
            from IPython.display import display
            self.bar = w.FloatProgress(value=0, min=0, max=1, bar_style="info",
                                       layout=w.Layout(width="240px"))
            self.label = w.HTML()
            self.box = w.HBox([self.bar, self.label])
            self.handle = display(self.box, display_id=True)
        fractions = []
        if self.total:
            fractions.append(done / self.total)
        if self.duration:
            fractions.append(elapsed / self.duration)
        self.bar.value = min(max(fractions, default=0.0), 1.0)
        rate = done / elapsed if elapsed > 0 else 0.0
        self.label.value = f"{done:,} requests in {elapsed:.1f} s ({rate:,.0f} req/s)"

    def close(self) -> None:
        if self.box is not None:
            self.handle.update({"text/plain": ""}, raw=True)  # leave no dead widget behind
            self.box.close()

