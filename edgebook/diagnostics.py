"""Compiler diagnostics: rustc's JSON messages mapped onto the lines of a user's handler.

A handler's ``src/main.rs`` is the user's source verbatim followed by a few generated
lines, so user line numbers need no translation; this module only decides which spans
belong to the user's code, re-anchors problems found in the generated lines, and renders
diagnostics as plain text with the offending lines and carets.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Callable

#: rustc levels that stop a build.
ERROR_LEVELS = frozenset({"error", "error: internal compiler error"})

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Label:
    """One highlighted range of the user's source, with rustc's label text (may be empty)."""

    line: int
    column: int
    end_line: int
    end_column: int
    label: str = ""
    primary: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Note:
    """A child of a diagnostic: a note, help or suggestion, with its location when it has one."""

    level: str
    message: str
    line: int | None = None
    column: int | None = None
    suggestion: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Diagnostic:
    """One compiler (or build) message located in the user's own source.

    ``line``/``column`` are 1-based (columns count characters) and refer to the source the
    user wrote; ``None`` when the message has no place there (a dependency that failed to
    resolve, a linker error). ``generated`` marks a problem rustc found in the lines edgebook
    appends (the worker loop), re-anchored to the user's ``fn handle``.
    """

    level: str
    message: str
    code: str | None = None
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None
    rendered: str = ""
    labels: list[Label] = field(default_factory=list)
    children: list[Note] = field(default_factory=list)
    generated: bool = False

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Diagnostic:
        """The inverse of ``to_dict`` (a build done on another machine sends its
        diagnostics as JSON); unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["labels"] = [Label(**label) for label in values.get("labels") or []]
        values["children"] = [Note(**note) for note in values.get("children") or []]
        return cls(**values)


@dataclass
class SourceMap:
    """Where the user's code sits in the generated ``main.rs``.

    ``is_user_file`` tells whether a span's ``file_name`` is the handler's ``main.rs``;
    lines up to ``user_lines`` are the user's, later ones are generated. ``anchor`` is the
    (line, column) generated-code problems are reported at (the user's ``fn handle``).
    """

    is_user_file: Callable[[str], bool]
    user_lines: int
    anchor: tuple[int, int] | None = None
    display_name: str = "main.rs"
    file_names: tuple[str, ...] = ()


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _span_in_user_file(span: dict, smap: SourceMap) -> bool:
    return bool(span.get("file_name")) and smap.is_user_file(span["file_name"])


def _user_span(span: dict, smap: SourceMap) -> dict | None:
    """The span itself or the macro call site it came from, if that lies in main.rs."""
    seen = 0
    while span is not None and seen < 64:
        if _span_in_user_file(span, smap):
            return span
        expansion = span.get("expansion") or {}
        span = expansion.get("span")
        seen += 1
    return None


def _is_generated(span: dict, smap: SourceMap) -> bool:
    return span["line_start"] > smap.user_lines


def _label(span: dict, primary: bool) -> Label:
    return Label(line=span["line_start"], column=span["column_start"],
                 end_line=span["line_end"], end_column=span["column_end"],
                 label=span.get("label") or "", primary=primary)


def _note(child: dict, smap: SourceMap) -> Note:
    note = Note(level=child.get("level", "note"), message=child.get("message", ""))
    for span in child.get("spans") or []:
        user = _user_span(span, smap)
        if user is None or _is_generated(user, smap):
            continue
        note.line, note.column = user["line_start"], user["column_start"]
        if span.get("suggested_replacement") is not None:
            note.suggestion = span["suggested_replacement"]
        break
    return note


def _rewrite_paths(rendered: str, smap: SourceMap) -> str:
    text = strip_ansi(rendered or "")
    for name in smap.file_names:
        text = text.replace(name, smap.display_name)
    return text


def from_rustc(message: dict, smap: SourceMap) -> Diagnostic:
    """A ``Diagnostic`` from one rustc JSON diagnostic (cargo's ``compiler-message.message``)."""
    code = (message.get("code") or {}).get("code")
    diag = Diagnostic(level=message.get("level", "error"), message=message.get("message", ""),
                      code=code, rendered=_rewrite_paths(message.get("rendered") or "", smap))
    primary: Label | None = None
    primary_in_generated = False
    for span in message.get("spans") or []:
        user = _user_span(span, smap)
        if user is None:
            continue
        is_primary = bool(span.get("is_primary"))
        if _is_generated(user, smap):
            primary_in_generated = primary_in_generated or is_primary
            continue
        label = _label(user, is_primary)
        if user is not span:  # a macro call site in the user's code: keep the inner label
            label.label = span.get("label") or ""
        diag.labels.append(label)
        if is_primary and primary is None:
            primary = label
    diag.children = [_note(child, smap) for child in message.get("children") or []]
    if primary is None and primary_in_generated:
        diag.generated = True
        _anchor_generated(diag, smap)
        return diag
    if primary is None and diag.labels:
        primary = diag.labels[0]
    if primary is not None:
        diag.line, diag.column = primary.line, primary.column
        diag.end_line, diag.end_column = primary.end_line, primary.end_column
    return diag


def _anchor_generated(diag: Diagnostic, smap: SourceMap) -> None:
    if smap.anchor is not None:
        diag.line, diag.column = smap.anchor
        diag.end_line, diag.end_column = smap.anchor[0], smap.anchor[1] + 2
    diag.children.append(Note(
        level="note",
        message="reported in the worker loop edgebook generates for `fn handle`; it must be "
                "`fn handle(req: Request) -> Response` or `-> Result<Response, HandlerError>`, "
                "optionally `async`"))


def generated_problem(message: str, *, line: int | None = None, column: int | None = None,
                      help: str | None = None) -> Diagnostic:
    """An error edgebook itself reports about the source, before or instead of rustc."""
    diag = Diagnostic(level="error", message=message, line=line, column=column,
                      end_line=line, end_column=None if column is None else column + 1)
    if help:
        diag.children.append(Note(level="help", message=help))
    return diag


def from_cargo_stderr(stderr: str) -> list[Diagnostic]:
    """Errors cargo printed itself (manifest, resolution, download, linker), one per block."""
    diags: list[Diagnostic] = []
    current: list[str] | None = None
    for raw in strip_ansi(stderr).splitlines():
        if raw.startswith("error"):
            if current:
                diags.append(_cargo_error(current))
            current = [raw]
        elif current is not None:
            if raw.startswith(("warning:", "   Compiling", "    Finished", "    Blocking",
                               "    Updating", " Downloading", "  Downloaded", "     Locking",
                               "      Adding", "    Checking")):
                diags.append(_cargo_error(current))
                current = None
            else:
                current.append(raw)
    if current:
        diags.append(_cargo_error(current))
    return diags


def _cargo_error(lines: list[str]) -> Diagnostic:
    while lines and not lines[-1].strip():
        lines.pop()
    first = lines[0]
    message = first.split(":", 1)[1].strip() if ":" in first else first
    rest = [line for line in lines[1:]]
    if not message and rest:
        message = rest.pop(0).strip()
    children = [Note(level="note", message=line.strip()) for line in rest if line.strip()]
    return Diagnostic(level="error", message=message, rendered="\n".join(lines),
                      children=children)


# ---------------------------------------------------------------------------------------
# Rendering


def render_diagnostics(diags: list[Diagnostic], source: str, *, name: str = "") -> str:
    """Plain-text rendering of diagnostics over the user's source, with carets.

    Errors come first, then warnings; each shows its location, the offending lines with
    a gutter of line numbers, carets under the reported columns, and its notes.
    """
    lines = source.splitlines()
    ordered = sorted(diags, key=lambda d: (not d.is_error,
                                           d.line if d.line is not None else 1 << 30))
    blocks = [_render_one(diag, lines, name) for diag in ordered]
    errors = sum(1 for d in diags if d.is_error)
    warnings = sum(1 for d in diags if d.level == "warning")
    summary = []
    if errors:
        summary.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        summary.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    if summary:
        blocks.append(", ".join(summary))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _render_one(diag: Diagnostic, lines: list[str], name: str) -> str:
    head = diag.level + (f"[{diag.code}]" if diag.code else "") + ": " + diag.message
    out = [head]
    labels = [lab for lab in diag.labels if 1 <= lab.line <= len(lines)]
    if not labels and diag.line is not None and 1 <= diag.line <= len(lines):
        labels = [Label(diag.line, diag.column or 1, diag.end_line or diag.line,
                        diag.end_column or (diag.column or 1) + 1, "", True)]
    if diag.line is not None:
        where = f"line {diag.line}" + (f", column {diag.column}" if diag.column else "")
        out.append(f"  --> {name + ' ' if name else ''}{where}")
    if labels:
        out.extend(_render_snippet(labels, lines))
    for note in diag.children:
        if not note.message:
            continue
        text = f"  = {note.level}: {note.message}"
        if note.line is not None:
            text += f" (line {note.line})"
        if note.suggestion:
            text += f": `{note.suggestion}`"
        out.append(text)
    return "\n".join(out)


def _render_snippet(labels: list[Label], lines: list[str]) -> list[str]:
    shown: dict[int, list[Label]] = {}
    for lab in labels:
        for number in _lines_of(lab):
            shown.setdefault(number, [])
        shown[lab.line].append(lab)
    width = len(str(max(shown)))
    gutter = " " * width + " |"
    out = [gutter]
    previous = None
    for number in sorted(shown):
        if previous is not None and number > previous + 1:
            out.append(" " * width + "...")
        text = lines[number - 1]
        out.append(f"{number:>{width}} | {text}".rstrip())
        for lab in shown[number]:
            out.append(f"{gutter} {_caret_line(lab, text)}".rstrip())
        previous = number
    return out


def _lines_of(lab: Label) -> list[int]:
    if lab.end_line - lab.line <= 2:
        return list(range(lab.line, lab.end_line + 1))
    return [lab.line, lab.end_line]


def _caret_line(lab: Label, text: str) -> str:
    start = max(lab.column - 1, 0)
    if lab.end_line == lab.line:
        end = max(lab.end_column - 1, start + 1)
    else:
        end = max(len(text), start + 1)
    pad = "".join("\t" if ch == "\t" else " " for ch in text[:start])
    pad += " " * max(start - len(text), 0)
    mark = "^" if lab.primary else "-"
    caret = pad + mark * (end - start)
    return caret + (" " + lab.label if lab.label else "")
