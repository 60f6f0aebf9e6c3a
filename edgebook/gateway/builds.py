"""A build's outcome as the gateway reports it: the reason a build failed, a hint for a
missing crate feature, the build as the admin API shows it (with rendered diagnostics),
and the build service's progress reports as event fields."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from ..diagnostics import render_diagnostics
from .views import field, jsonable

log = logging.getLogger(__name__)


class FailedBuild:
    """A build result for a build service that raised instead of answering."""

    def __init__(self, message: str, profile: str, duration: float):
        self.ok = False
        self.status = "error"
        self.binary = None
        self.content_hash = None
        self.cached = False
        self.diagnostics = [{"level": "error", "message": message}]
        self.duration = duration
        self.profile = profile
        self.log = message

    def to_dict(self) -> dict:
        return {"ok": False, "status": self.status, "binary": None, "content_hash": None,
                "cached": False, "diagnostics": self.diagnostics, "duration": self.duration,
                "profile": self.profile, "log": self.log}


def build_reason(result: Any) -> str:
    if result.status in ("cancelled", "superseded"):
        return f"build {result.status}"
    errors = [d for d in result.diagnostics or []
              if field(d, "level") in ("error", "error: internal compiler error")]
    if errors:
        first = field(errors[0], "message") or "error"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"build failed: {first}{more}"
    return f"build failed ({result.status})"


#: rustc's words for a name it could not find, which in a dependency is often an item
#: behind a cargo feature (uuid's ``Uuid::new_v4`` needs ``v4``).
_NOT_FOUND = re.compile(r"no (function or associated item|method) named|cannot find|"
                        r"unresolved import|could not find|configured out|gated behind")


def feature_hint(result: Any, deps: Sequence[str]) -> str | None:
    """A hint for a build that failed on a missing name while the handler has extra
    dependencies: the name may need one of their features."""
    if result.ok or not deps:
        return None
    if not any(_NOT_FOUND.search(str(field(d, "message") or "")) for d in
               result.diagnostics or [] if field(d, "level") == "error"):
        return None
    names = ", ".join(dep.split("@")[0].split("+")[0] for dep in deps)
    return (f"if the missing name comes from {names}, it may need a crate feature: add it "
            f"after '+' in the dependency (--dep uuid@1+v4 gives uuid's Uuid::new_v4)")


def build_dict(result: Any, source: str) -> dict[str, Any]:
    data = result.to_dict() if hasattr(result, "to_dict") else dict(vars(result))
    data = jsonable(data)
    data.pop("binary", None)  # a server-side path; clients have no use for it
    if not result.ok and result.diagnostics:
        try:
            data["rendered"] = render_diagnostics(result.diagnostics, source)
        except Exception:
            log.warning("rendering diagnostics failed", exc_info=True)
            data["rendered"] = "\n".join(str(field(d, "message")) for d in result.diagnostics)
    return data


def progress_fields(args: tuple, kwargs: dict) -> dict[str, Any]:
    """A build service progress report as event fields: its ``phase`` becomes ``stage``
    (the event's own ``phase`` is ``progress``) and its ``name`` is the event's endpoint."""
    if kwargs:
        data = dict(kwargs)
    elif len(args) == 1 and isinstance(args[0], dict):
        data = dict(args[0])
    else:
        data = {"message": " ".join(str(a) for a in args)}
    data = {k: jsonable(v) for k, v in data.items()}
    if "phase" in data:
        data["stage"] = data.pop("phase")
    data.pop("name", None)
    data.pop("endpoint", None)
    data.pop("type", None)
    return data
