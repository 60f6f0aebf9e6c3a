"""A notebook of ``%%rust_handler`` cells from an OpenAPI spec, updated in place.

Per operation the notebook has a markdown cell (method, path, summary, description) and a
handler cell (the stub of ``edgebook.openapi.stubs``). Both carry
``metadata.edgebook = {"operationId", "role", "generated"}``, where ``generated`` is the
hash of the text the import wrote. Importing into an existing notebook matches cells by
operationId and role, so nothing is duplicated:

- a cell nobody edited since the last import (its text still hashes to ``generated``) is
  rewritten from the current spec;
- an edited handler cell keeps its body; only its ``%%rust_handler`` line follows the spec
  (method, path and name), so implemented handlers survive a re-import;
- operations new in the spec are appended; cells of operations the spec no longer has are
  left alone and reported.

``overwrite=True`` rewrites edited cells too.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any


from .spec import Operation, load_spec, operations
from .stubs import stub_source

ROLE_INTRO, ROLE_SETUP, ROLE_SUMMARY, ROLE_HANDLER, ROLE_EXPORT = (
    "intro", "setup", "summary", "handler", "export")


@dataclass
class ImportReport:
    """What an import did, by operationId."""

    path: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # edited handlers: header line only
    orphaned: list[str] = field(default_factory=list)  # in the notebook, not in the spec

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("created", self.created),
                                               ("updated", self.updated),
                                               ("unchanged", self.unchanged),
                                               ("kept (edited)", self.kept),
                                               ("not in the spec", self.orphaned)) if v]
        return f"{self.path}: " + (", ".join(parts) if parts else "nothing to do")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def handler_header(op: Operation, base_path: str = "") -> str:
    path = base_path.rstrip("/") + op.path if base_path else op.path
    return f"%%rust_handler {op.method} {path} --name {op.snake_name}"


def handler_cell_text(op: Operation, base_path: str = "") -> str:
    return handler_header(op, base_path) + "\n" + stub_source(op).rstrip("\n")


def summary_cell_text(op: Operation, base_path: str = "") -> str:
    path = base_path.rstrip("/") + op.path if base_path else op.path
    title = f"## `{op.method} {path}`" + (f": {op.summary}" if op.summary else "")
    lines = [title, ""]
    if op.description:
        lines += [op.description.strip(), ""]
    meta = [f"operationId `{op.operation_id}`"]
    if op.tags:
        meta.append("tags " + ", ".join(f"`{t}`" for t in op.tags))
    statuses = ", ".join(sorted(op.responses))
    if statuses:
        meta.append(f"responses {statuses}")
    lines.append("; ".join(meta) + ".")
    return "\n".join(lines)


def _intro_text(spec: dict[str, Any], source_name: str) -> str:
    info = spec.get("info") or {}
    lines = [f"# {info.get('title') or 'API'}", ""]
    if info.get("description"):
        lines += [str(info["description"]).strip(), ""]
    lines.append(f"Handlers generated from `{source_name}` (OpenAPI {spec.get('openapi')}, "
                 f"version {info.get('version', '?')}). Each one answers 501 with the "
                 "spec's example until you implement it; run a cell to deploy it, and "
                 "`%edgebook openapi` to see what the running endpoints really answer.")
    return "\n".join(lines)


def import_spec(spec_path: str, notebook_path: str, *, base_path: str = "",
                overwrite: bool = False) -> ImportReport:
    """Create or update ``notebook_path`` from the spec at ``spec_path``."""
    import nbformat  # here, not at the top: importing it takes seconds (jsonschema)
    spec = load_spec(spec_path)
    ops = operations(spec)
    if os.path.exists(notebook_path):
        nb = nbformat.read(notebook_path, as_version=4)
    else:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
    report = ImportReport(path=notebook_path)
    update_notebook(nb, spec, ops, os.path.basename(str(spec_path)), report,
                    base_path=base_path, overwrite=overwrite)
    directory = os.path.dirname(os.path.abspath(notebook_path))
    os.makedirs(directory, exist_ok=True)
    nbformat.validate(nb)
    tmp = notebook_path + ".tmp"
    nbformat.write(nb, tmp)
    os.replace(tmp, notebook_path)
    return report


def update_notebook(nb: Any, spec: dict[str, Any], ops: list[Operation], source_name: str,
                    report: ImportReport, *, base_path: str = "",
                    overwrite: bool = False) -> None:
    """Apply the spec's operations to ``nb`` (an nbformat v4 notebook) in place."""
    index: dict[tuple[str, str], Any] = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("edgebook") or {}
        if meta.get("role"):
            index.setdefault((meta["role"], meta.get("operationId", "")), cell)
    if (ROLE_INTRO, "") not in index:
        cell = _new_cell("markdown", _intro_text(spec, source_name), ROLE_INTRO)
        nb.cells.insert(0, cell)
        setup = _new_cell("code", "%load_ext edgebook", ROLE_SETUP)
        nb.cells.insert(1, setup)
    else:
        _refresh(index[(ROLE_INTRO, "")], _intro_text(spec, source_name), overwrite)
    export = index.get((ROLE_EXPORT, ""))
    if export is None:
        export = _new_cell("code", "%edgebook openapi", ROLE_EXPORT)
        nb.cells.append(export)
    wanted = set()
    for op in ops:
        wanted.add(op.operation_id)
        summary = summary_cell_text(op, base_path)
        handler = handler_cell_text(op, base_path)
        md = index.get((ROLE_SUMMARY, op.operation_id))
        code = index.get((ROLE_HANDLER, op.operation_id))
        if md is None and code is None:
            at = nb.cells.index(export)
            nb.cells.insert(at, _new_cell("markdown", summary, ROLE_SUMMARY, op.operation_id))
            nb.cells.insert(at + 1, _new_cell("code", handler, ROLE_HANDLER, op.operation_id))
            report.created.append(op.operation_id)
            continue
        if md is None:
            md = _new_cell("markdown", summary, ROLE_SUMMARY, op.operation_id)
            nb.cells.insert(nb.cells.index(code), md)
        else:
            _refresh(md, summary, overwrite)
        if code is None:
            nb.cells.insert(nb.cells.index(md) + 1,
                            _new_cell("code", handler, ROLE_HANDLER, op.operation_id))
            report.updated.append(op.operation_id)
            continue
        outcome = _refresh(code, handler, overwrite, header=handler_header(op, base_path))
        {"unchanged": report.unchanged, "updated": report.updated,
         "kept": report.kept}[outcome].append(op.operation_id)
    for (role, operation_id) in index:
        if role == ROLE_HANDLER and operation_id not in wanted:
            report.orphaned.append(operation_id)


def _new_cell(kind: str, text: str, role: str, operation_id: str = "") -> Any:
    import nbformat  # here, not at the top: importing it takes seconds (jsonschema)
    maker = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    meta: dict[str, Any] = {"role": role, "generated": digest(text)}
    if operation_id:
        meta["operationId"] = operation_id
    return maker(text, metadata={"edgebook": meta})


def _refresh(cell: Any, text: str, overwrite: bool, header: str | None = None) -> str:
    """Bring one generated cell up to date; returns unchanged, updated or kept."""
    meta = cell.metadata.setdefault("edgebook", {})
    current = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    if current == text:
        meta["generated"] = digest(text)
        return "unchanged"
    if overwrite or digest(current) == meta.get("generated"):
        cell.source = text
        meta["generated"] = digest(text)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        return "updated"
    if header is not None:
        first, sep, rest = current.partition("\n")
        if first.startswith("%%rust_handler") and first != header:
            cell.source = header + sep + rest
    return "kept"
