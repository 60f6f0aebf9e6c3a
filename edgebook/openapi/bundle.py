"""The original gateway's bundles: a ZIP with a spec and one ``.rs`` handler per operation.

Layout (as the original documents it)::

    bundle.zip
    ├── openapi.yaml          (or .yml/.json; also api.*, spec.*, swagger.*)
    ├── bundle.yaml           (optional: ``dependencies`` applied to every handler)
    └── handlers/
        ├── list_pets.rs      (snake_case of the operationId ``listPets``)
        └── create_pet.rs

Handler files may also sit at the root or under ``src/``. A file matches an operation
when its name, in snake_case, equals the operationId in snake_case, or does so once
underscores are ignored. The archive is read in memory (nothing is extracted), with
limits on sizes and file counts. ``deploy_bundle`` deploys every matched handler through
the admin client; operations without a handler are reported, or deployed as 501 stubs
with ``stubs=True``.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from ..client import AdminError
from .spec import Operation, SpecError, operations, parse_spec, snake_case
from .stubs import stub_source

SPEC_NAMES = tuple(f"{stem}.{ext}" for stem in ("openapi", "api", "spec", "swagger")
                   for ext in ("yaml", "yml", "json"))
MANIFEST_NAMES = ("bundle.yaml", "bundle.yml", "manifest.yaml", "manifest.yml")
MAX_FILES = 500
MAX_FILE_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 32 * 1024 * 1024


class BundleError(ValueError):
    """The file is not a bundle we can read; the message says why."""


@dataclass
class Bundle:
    spec: dict[str, Any]
    spec_name: str
    handlers: dict[str, tuple[str, str]]  # snake name -> (file name in the zip, source)
    deps: list[str] = field(default_factory=list)


@dataclass
class PlannedHandler:
    operation: Operation
    file: str | None  # None: no handler in the bundle (a stub, if wanted)
    source: str

    @property
    def name(self) -> str:
        return self.operation.snake_name


def read_bundle(data: bytes | str) -> Bundle:
    """Read a bundle from its bytes or its path."""
    if isinstance(data, str):
        try:
            with open(data, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise BundleError(f"cannot read {data}: {exc.strerror or exc}") from None
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BundleError(f"not a ZIP archive: {exc}") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > MAX_FILES:
            raise BundleError(f"the bundle has {len(infos)} files; at most {MAX_FILES}")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise BundleError("the bundle is larger than 32 MiB uncompressed")
        files: dict[str, str] = {}
        for info in infos:
            name = info.filename.replace("\\", "/")
            base = posixpath.basename(name).lower()
            wanted = base in SPEC_NAMES or base in MANIFEST_NAMES or base.endswith(".rs")
            if not wanted or "__MACOSX" in name.split("/"):
                continue
            if info.file_size > MAX_FILE_BYTES:
                raise BundleError(f"{name} is larger than 1 MiB")
            try:
                files[name] = archive.read(info).decode("utf-8")
            except UnicodeDecodeError:
                raise BundleError(f"{name} is not UTF-8 text") from None
    spec_name = _first(files, SPEC_NAMES)
    if spec_name is None:
        raise BundleError("the bundle has no spec (openapi.yaml, openapi.json, api.yaml, "
                          "spec.yaml, ...)")
    try:
        spec = parse_spec(files[spec_name], spec_name)
    except SpecError as exc:
        raise BundleError(str(exc)) from None
    deps: list[str] = []
    manifest_name = _first(files, MANIFEST_NAMES)
    if manifest_name is not None:
        deps = _manifest_deps(manifest_name, files[manifest_name])
    handlers: dict[str, tuple[str, str]] = {}
    for name, text in sorted(files.items()):
        if not name.lower().endswith(".rs"):
            continue
        stem = posixpath.basename(name)[:-3]
        if stem in ("main", "lib", "mod"):
            continue
        key = snake_case(stem)
        if key in handlers:
            raise BundleError(f"two handler files for {key!r}: {handlers[key][0]} and {name}")
        handlers[key] = (name, text)
    return Bundle(spec=spec, spec_name=spec_name, handlers=handlers, deps=deps)


def _first(files: dict[str, str], names: tuple[str, ...]) -> str | None:
    by_base: dict[str, str] = {}
    for name in sorted(files, key=lambda n: n.count("/")):  # shallowest first
        by_base.setdefault(posixpath.basename(name).lower(), name)
    return next((by_base[n] for n in names if n in by_base), None)


def _manifest_deps(name: str, text: str) -> list[str]:
    try:
        manifest = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise BundleError(f"{name} is not valid YAML: {exc}") from None
    deps = manifest.get("dependencies") if isinstance(manifest, dict) else None
    if not deps:
        return []
    if not isinstance(deps, dict):
        raise BundleError(f"{name}: dependencies must be a mapping of crate to version")
    out = []
    for crate, spec in deps.items():
        if isinstance(spec, (str, int, float)):
            out.append(f"{crate}@{spec}")
        elif isinstance(spec, dict):
            entry = f"{crate}@{spec.get('version', '*')}"
            features = spec.get("features") or []
            if features:
                entry += "+" + ",".join(str(f) for f in features)
            out.append(entry)
        else:
            raise BundleError(f"{name}: dependency {crate!r} must be a version or a table")
    return out


def plan(bundle: Bundle, *, stubs: bool = False) -> tuple[list[PlannedHandler], list[str],
                                                          list[str]]:
    """(handlers to deploy, operationIds without a handler, handler files matching no
    operation)."""
    planned: list[PlannedHandler] = []
    missing: list[str] = []
    used: set[str] = set()
    loose = {key.replace("_", ""): key for key in bundle.handlers}
    for op in operations(bundle.spec):
        key = op.snake_name
        if key not in bundle.handlers:
            key = loose.get(key.replace("_", ""), key)
        if key in bundle.handlers:
            used.add(key)
            file, source = bundle.handlers[key]
            planned.append(PlannedHandler(op, file, source))
        else:
            missing.append(op.operation_id)
            if stubs:
                planned.append(PlannedHandler(op, None, stub_source(op)))
    unmatched = [bundle.handlers[k][0] for k in sorted(set(bundle.handlers) - used)]
    return planned, missing, unmatched


@dataclass
class BundleReport:
    deployed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def deploy_bundle(admin: Any, bundle: Bundle, *, stubs: bool = False, base_path: str = "",
                  on_progress: Callable[[str], None] | None = None) -> BundleReport:
    """Deploy every handler of ``bundle`` through ``admin`` (an ``AdminClient``)."""

    planned, missing, unmatched = plan(bundle, stubs=stubs)
    report = BundleReport(missing=missing, unmatched=unmatched)
    for item in planned:
        op = item.operation
        path = base_path.rstrip("/") + op.path if base_path else op.path
        moved = admin.placement(item.name, op.method, path)[1]
        if on_progress is not None:
            what = item.file or "generated stub"
            on_progress(f"{op.method} {path}: building {item.name} ({what})"
                        + (f"; note: {moved}" if moved else ""))
        try:
            result = admin.deploy(item.name, op.method, path, item.source, deps=bundle.deps,
                                  origin={"bundle": bundle.spec_name,
                                          "operationId": op.operation_id,
                                          **({"file": item.file} if item.file else {})})
        except AdminError as exc:
            report.failed.append({"name": item.name, "operationId": op.operation_id,
                                  "file": item.file, "error": exc.message,
                                  "rendered": exc.rendered})
            continue
        endpoint = result.get("endpoint") or {}
        report.deployed.append({"name": item.name, "operationId": op.operation_id,
                                "method": op.method, "path": path, "file": item.file,
                                "url": endpoint.get("url"),
                                "revision": endpoint.get("live_revision"),
                                **({"moved": moved} if moved else {})})
    return report
