"""The cargo workspace in the data dir: handler sources in, generated packages out.

One workspace per data dir (``<data_dir>/workspace``), one small package per endpoint
under ``handlers/``. Every file in it is generated: the workspace manifest (profiles
included), each package's ``Cargo.toml`` and its ``src/main.rs``, which is the user's
source verbatim plus, for a bare ``fn handle``, a few appended lines that run the worker
loop. Nothing in a handler's source can change the workspace's cargo configuration: only
a ``[dependencies]`` table is read from it, and only registry dependencies are accepted.

Dependencies beyond the SDK are declared in one of two ways:

* a cargo block in the leading inner doc comment of the source::

      //! ```cargo
      //! [dependencies]
      //! itoa = "1"
      //! serde_with = { version = "3", default-features = false, features = ["macros"] }
      //! ```

  The block must come before any code (blank lines and ``//`` comments may precede it).
  Only ``[dependencies]`` is read; each entry is a version requirement string or a table
  with ``version`` and optionally ``features``, ``default-features``, ``package``.
* ``deps=["itoa@1", "serde_with@3+macros,json"]`` in the build request: ``name``,
  optionally ``@requirement`` (default ``*``), optionally ``+feature,feature``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

#: Bumped whenever the generated files change in a way that changes built binaries.
LAYOUT_VERSION = "1"

SDK_PACKAGE = "edgebook-sdk"
COMPAT_PACKAGE = "rust-edge-gateway-sdk"

#: Crates every handler depends on besides the SDK: ``#[derive(Deserialize)]`` expands to
#: code naming ``serde``, and ``serde_json`` is what handlers reach for first.
DEFAULT_DEPENDENCIES: dict[str, dict] = {
    "serde": {"version": "1", "features": ["derive"]},
    "serde_json": {"version": "1"},
}

PROFILES = ("dev", "release")

#: Profiles of the workspace. Dependencies (the SDK included) are optimised in both so
#: handlers run fast; the handler crate itself is built for a quick edit loop in ``dev``.
#: Measured with a serde-derive handler (bench/build_bench.py): opt-level 1 instead of 0
#: for the handler adds about 0.25 s to an edit but takes a brand-new handler from about
#: 1 s to 5 s, for 9 instead of 20 us of worker CPU per request (release: 7 us). So ``dev``
#: stays at 0 and ``release`` is the build to hot-swap to. Debug info off and stripped
#: keeps links short; no LTO in release (fat LTO with one codegen unit: 13 s per edit).
WORKSPACE_PROFILES = """\
[profile.dev]
opt-level = 0
debug = 0
strip = "debuginfo"
incremental = true

[profile.dev.package."*"]
opt-level = 2

[profile.release]
opt-level = 3
debug = 0
strip = "debuginfo"
lto = false
codegen-units = 16
incremental = true
"""

_CRATE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_FEATURE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_+./-]{0,63}$")
_DEP_KEYS = frozenset({"version", "features", "default-features", "default_features",
                       "package", "optional"})
_RESERVED = frozenset({SDK_PACKAGE, COMPAT_PACKAGE, "edgebook_sdk", "rust_edge_gateway_sdk"})


class SourceError(ValueError):
    """A mistake in a handler's source or dependencies, found before cargo runs.

    ``line`` (1-based) points into the user's source when the mistake has a place there.
    """

    def __init__(self, message: str, *, line: int | None = None, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.help = help


# ---------------------------------------------------------------------------------------
# SDK discovery


def find_sdk_dir() -> Path:
    """The SDK's source: ``EDGEBOOK_SDK_DIR``, the wheel's ``edgebook/_sdk``, or ``sdk/``."""
    here = Path(__file__).resolve().parent
    env = os.environ.get("EDGEBOOK_SDK_DIR")
    candidates = ([Path(env)] if env else []) + [here / "_sdk", here.parent / "sdk"]
    for candidate in candidates:
        if (candidate / "Cargo.toml").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        "the edgebook SDK sources were not found (looked in "
        + ", ".join(str(c) for c in candidates) + "); set EDGEBOOK_SDK_DIR")


@dataclass(frozen=True)
class SdkInfo:
    """The SDK crate a workspace builds against."""

    dir: Path
    version: str
    compat_dir: Path
    lockfile: Path | None


def sdk_info(sdk_dir: Path) -> SdkInfo:
    manifest = tomllib.loads((sdk_dir / "Cargo.toml").read_text())
    version = manifest.get("package", {}).get("version", "0.0.0")
    compat = sdk_dir / "compat"
    if not (compat / "Cargo.toml").is_file():
        raise FileNotFoundError(f"the SDK at {sdk_dir} has no compat crate (compat/Cargo.toml)")
    lock = sdk_dir / "Cargo.lock"
    return SdkInfo(dir=sdk_dir, version=version, compat_dir=compat,
                   lockfile=lock if lock.is_file() else None)


class SdkFingerprint:
    """A content hash of the SDK sources, recomputed only when a file's size or mtime moves."""

    def __init__(self, sdk_dir: Path):
        self._dir = sdk_dir
        self._stamp: tuple | None = None
        self._hash = ""

    def _files(self) -> list[Path]:
        files = []
        for root, dirs, names in os.walk(self._dir):
            dirs[:] = sorted(d for d in dirs if d not in ("target", ".git") and
                             not d.startswith("."))
            for name in sorted(names):
                if name.endswith((".rs", ".toml", ".lock")):
                    files.append(Path(root) / name)
        return files

    def value(self) -> str:
        files = self._files()
        stamp = tuple((str(p), st.st_size, st.st_mtime_ns)
                      for p in files for st in [p.stat()])
        if stamp != self._stamp:
            digest = hashlib.sha256()
            for path in files:
                digest.update(str(path.relative_to(self._dir)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
            self._hash, self._stamp = digest.hexdigest(), stamp
        return self._hash


# ---------------------------------------------------------------------------------------
# Handler source analysis


@dataclass
class HandlerSource:
    """A handler's source, analysed: its style, declared dependencies, generated tail."""

    source: str
    style: str  # "program" (has its own main / handler_loop!) or "handle" (bare fn handle)
    is_async: bool = False
    handle_line: int | None = None
    handle_column: int | None = None
    dependencies: dict[str, dict] = field(default_factory=dict)

    @property
    def user_lines(self) -> int:
        return len(self.source.splitlines())

    def main_rs(self) -> str:
        """The package's ``src/main.rs``: the source verbatim, then any generated lines."""
        text = self.source if self.source.endswith("\n") else self.source + "\n"
        if self.style == "program":
            return text
        macro = "handler_loop_async" if self.is_async else "handler_loop"
        tail = ["// ---- generated by edgebook: the worker loop for `handle` ----"]
        if not _PRELUDE_USE.search(blank_rust(self.source)):
            tail += ["#[allow(unused_imports)]", "use ::edgebook_sdk::prelude::*;"]
        tail.append(f"::edgebook_sdk::{macro}!(handle);")
        return text + "\n".join(tail) + "\n"


_MAIN_FN = re.compile(r"\bfn\s+main\s*\(")
_LOOP_MACRO = re.compile(r"\bhandler_loop\w*\s*!")
_HANDLE_FN = re.compile(
    r"(?:\bpub(?:\s*\([^)]*\))?\s+)?(?:\b(async)\s+)?(?:\bunsafe\s+)?\bfn\s+handle\s*[<(]")
_PRELUDE_USE = re.compile(r"\buse\s+(?:::)?(?:edgebook_sdk|rust_edge_gateway_sdk)::prelude::\*")


def analyse(source: str, deps: tuple[str, ...] | list[str] = ()) -> HandlerSource:
    """Checks a handler's source and works out how to build it; raises ``SourceError``."""
    if not source.strip():
        raise SourceError("the handler source is empty",
                          help="write a `fn handle(req: Request) -> Response` or a program "
                               "using `handler_loop!(handle);`")
    if "\0" in source:
        raise SourceError("the handler source contains a NUL character")
    code = blank_rust(source)
    dependencies = dict(frontmatter_dependencies(source))
    for spec in deps:
        name, table = parse_dep_spec(spec)
        dependencies[name] = table
    if _MAIN_FN.search(code) or _LOOP_MACRO.search(code):
        return HandlerSource(source, "program", dependencies=dependencies)
    match = _HANDLE_FN.search(code)
    if match is None:
        raise SourceError(
            "no `fn handle` found, and no `fn main` or `handler_loop!(...)` either",
            help="define `fn handle(req: Request) -> Response` (or returning "
                 "`Result<Response, HandlerError>`, or `async fn handle`), or write a whole "
                 "program ending in `handler_loop!(handle);`")
    fn_at = match.start()  # the declaration, `pub`/`async` included
    line = code.count("\n", 0, fn_at) + 1
    column = fn_at - (code.rfind("\n", 0, fn_at) + 1) + 1
    return HandlerSource(source, "handle", is_async=bool(match.group(1)), handle_line=line,
                         handle_column=column, dependencies=dependencies)


def blank_rust(source: str, *, literals: bool = True) -> str:
    """Rust source with comments (and, with ``literals``, string and char literals) blanked
    out; newlines and offsets are kept, so positions in the result are positions in the
    source. Literals are always skipped over, so ``"//"`` in a string is not a comment."""
    out = []
    i, n = 0, len(source)

    def blank(text: str) -> str:
        return "".join("\n" if ch == "\n" else " " for ch in text)

    def literal(text: str) -> str:
        return blank(text) if literals else text

    while i < n:
        ch = source[i]
        nxt = source[i + 1] if i + 1 < n else ""
        if ch == "/" and nxt == "/":
            end = source.find("\n", i)
            end = n if end < 0 else end
            out.append(blank(source[i:end]))
            i = end
        elif ch == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(source[i:j]))
            i = j
        elif ch == "r" and re.match(r'r#*"', source[i:i + 258]) and \
                (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            hashes = len(re.match(r'r(#*)"', source[i:]).group(1))
            close = '"' + "#" * hashes
            end = source.find(close, i + 2 + hashes)
            end = n if end < 0 else end + len(close)
            out.append(literal(source[i:end]))
            i = end
        elif ch == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append(literal(source[i:j + 1]))
            i = j + 1
        elif ch == "'":
            lit = re.match(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'",
                           source[i:i + 12])
            if lit:  # a char literal; otherwise a lifetime or label
                out.append(literal(lit.group(0)))
                i += len(lit.group(0))
            else:
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_FENCE_OPEN = re.compile(r"^//!\s?```\s*cargo\s*$")
_FENCE_CLOSE = re.compile(r"^//!\s?```\s*$")


def frontmatter_dependencies(source: str) -> dict[str, dict]:
    """The ``[dependencies]`` of a leading ``//! ```cargo`` block (see the module docs)."""
    lines = source.splitlines()
    index = 0
    if lines and lines[0].startswith("#!") and not lines[0].startswith("#!["):
        index = 1
    while index < len(lines) and (not lines[index].strip() or
                                  (lines[index].lstrip().startswith("//") and
                                   not lines[index].lstrip().startswith("//!"))):
        index += 1
    # Skip inner doc lines before the fence (crate docs may precede it).
    while index < len(lines) and lines[index].lstrip().startswith("//!") and \
            not _FENCE_OPEN.match(lines[index].strip()):
        index += 1
    if index >= len(lines) or not _FENCE_OPEN.match(lines[index].strip()):
        return {}
    start = index + 1
    body = []
    for number in range(start, len(lines)):
        stripped = lines[number].strip()
        if _FENCE_CLOSE.match(stripped):
            return _dependencies_table("\n".join(body), first_line=start + 1)
        if not stripped.startswith("//!"):
            break
        text = stripped[3:]
        body.append(text[1:] if text.startswith(" ") else text)
    raise SourceError("the ```cargo block is not closed with //! ```", line=start)


def _dependencies_table(text: str, first_line: int) -> dict[str, dict]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise SourceError(f"the ```cargo block is not valid TOML: {exc}",
                          line=None if line is None else first_line + line - 1) from None
    extra = sorted(set(doc) - {"dependencies"})
    if extra:
        raise SourceError(
            "only a [dependencies] table is allowed in the ```cargo block, found "
            + ", ".join(f"[{key}]" for key in extra),
            line=first_line, help="profiles, patches and build scripts are set by edgebook")
    deps = doc.get("dependencies", {})
    return {name: _check_dependency(name, spec) for name, spec in deps.items()}


def _check_dependency(name: str, spec) -> dict:
    if not _CRATE_NAME.match(name):
        raise SourceError(f"invalid crate name {name!r} in dependencies")
    if name in _RESERVED:
        raise SourceError(f"{name!r} is already a dependency of every handler")
    if isinstance(spec, str):
        return {"version": spec}
    if not isinstance(spec, dict):
        raise SourceError(f"dependency {name!r} must be a version string or a table")
    unknown = sorted(set(spec) - _DEP_KEYS)
    if unknown:
        raise SourceError(
            f"dependency {name!r} uses {', '.join(unknown)}; only crates from the registry "
            "are supported (keys: version, features, default-features, package)")
    table = {"version": str(spec.get("version", "*"))}
    features = spec.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) and _FEATURE.match(f)
                                                 for f in features):
        raise SourceError(f"features of dependency {name!r} must be a list of feature names")
    if features:
        table["features"] = sorted(set(features))
    default = spec.get("default-features", spec.get("default_features", True))
    if default is not True:
        table["default-features"] = bool(default)
    if "package" in spec:
        if not isinstance(spec["package"], str) or not _CRATE_NAME.match(spec["package"]):
            raise SourceError(f"invalid package name for dependency {name!r}")
        table["package"] = spec["package"]
    return table


_DEP_SPEC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*)(?:@(?P<req>[^+\s]+))?"
                       r"(?:\+(?P<features>[^\s]+))?$")


def parse_dep_spec(spec: str) -> tuple[str, dict]:
    """``"name@req+feat,feat"`` as a dependency ``(name, table)``; raises ``SourceError``."""
    match = _DEP_SPEC.match(spec.strip())
    if not match:
        raise SourceError(f"invalid dependency {spec!r}: expected name@version, optionally "
                          "followed by +feature,feature")
    table: dict = {"version": match.group("req") or "*"}
    if match.group("features"):
        table["features"] = [f for f in match.group("features").split(",") if f]
    return match.group("name"), _check_dependency(match.group("name"), table)


def merged_dependencies(user: dict[str, dict]) -> dict[str, dict]:
    """The handler package's registry dependencies: the defaults, then the user's."""
    deps = {name: dict(spec) for name, spec in DEFAULT_DEPENDENCIES.items()}
    for name, spec in user.items():
        if name in deps:
            features = sorted(set(deps[name].get("features", [])) |
                              set(spec.get("features", [])))
            spec = {**spec, **({"features": features} if features else {})}
        deps[name] = spec
    return deps


# ---------------------------------------------------------------------------------------
# Generated files


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_str(str(value))


def _dep_line(name: str, spec: dict) -> str:
    inner = ", ".join(f"{key} = {_toml_value(value)}" for key, value in spec.items())
    return f"{name} = {{ {inner} }}"


def package_name(data_dir: Path, endpoint: str) -> str:
    """A cargo package name unique to (data dir, endpoint) across a shared target dir."""
    slug = re.sub(r"[^a-z0-9]+", "_", endpoint.lower()).strip("_")[:40] or "handler"
    digest = hashlib.sha256(f"{Path(data_dir).resolve()}\0{endpoint}".encode()).hexdigest()
    return f"h_{slug}_{digest[:10]}"


def write_if_changed(path: Path, text: str) -> bool:
    """Writes ``text`` atomically unless the file already holds it (keeps mtimes stable)."""
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


class Workspace:
    """The generated cargo workspace of one data dir."""

    def __init__(self, data_dir: Path, sdk: SdkInfo):
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "workspace"
        self.sdk = sdk

    def ensure(self) -> None:
        """Writes the workspace manifest and seeds ``Cargo.lock`` from the SDK's lockfile."""
        manifest = (
            "# Generated by edgebook and rewritten on every build: edits here are lost.\n"
            "[workspace]\n"
            'resolver = "2"\n'
            'members = ["handlers/*"]\n\n' + WORKSPACE_PROFILES)
        write_if_changed(self.root / "Cargo.toml", manifest)
        (self.root / "handlers").mkdir(parents=True, exist_ok=True)
        self._seed_lockfile()

    def _seed_lockfile(self) -> None:
        """Starts from the SDK's lockfile so versions match what ``prebuild`` compiled.

        Re-seeds when the SDK's lockfile changes; cargo re-adds handler-only crates.
        """
        if self.sdk.lockfile is None:
            return
        seed = self.sdk.lockfile.read_bytes()
        stamp = self.root / ".lock-seed"
        digest = hashlib.sha256(seed).hexdigest()
        lock = self.root / "Cargo.lock"
        if lock.is_file() and stamp.is_file() and stamp.read_text() == digest:
            return
        tmp = lock.with_name(".Cargo.lock.tmp")
        tmp.write_bytes(seed)
        os.replace(tmp, lock)
        stamp.write_text(digest)

    def package_dir(self, package: str) -> Path:
        return self.root / "handlers" / package

    def write_package(self, package: str, endpoint: str, handler: HandlerSource) -> Path:
        """Writes the endpoint's package; returns the path of its ``src/main.rs``."""
        pkg_dir = self.package_dir(package)
        main_rs = pkg_dir / "src" / "main.rs"
        write_if_changed(main_rs, handler.main_rs())
        write_if_changed(pkg_dir / "Cargo.toml", self.package_manifest(package, endpoint, handler))
        return main_rs

    def package_manifest(self, package: str, endpoint: str, handler: HandlerSource) -> str:
        lines = [
            f"# Generated by edgebook for endpoint {_toml_str(endpoint)}; rewritten on every build.",
            "[package]",
            f"name = {_toml_str(package)}",
            'version = "0.0.0"',
            'edition = "2021"',
            "publish = false",
            "build = false",
            "autobins = false",
            "autoexamples = false",
            "autotests = false",
            "autobenches = false",
            "",
            "[[bin]]",
            f"name = {_toml_str(package)}",
            'path = "src/main.rs"',
            "test = false",
            "bench = false",
            "",
            "[dependencies]",
            f"{SDK_PACKAGE} = {{ path = {_toml_str(str(self.sdk.dir))} }}",
            f"{COMPAT_PACKAGE} = {{ path = {_toml_str(str(self.sdk.compat_dir))} }}",
        ]
        lines += [_dep_line(name, spec)
                  for name, spec in sorted(merged_dependencies(handler.dependencies).items())]
        return "\n".join(lines) + "\n"

    def snapshot(self, package: str) -> dict[str, bytes | None]:
        """The package's current files, to restore if a new manifest breaks the workspace."""
        pkg_dir = self.package_dir(package)
        files = {}
        for rel in ("Cargo.toml", "src/main.rs"):
            try:
                files[rel] = (pkg_dir / rel).read_bytes()
            except FileNotFoundError:
                files[rel] = None
        return files

    def restore(self, package: str, snapshot: dict[str, bytes | None]) -> None:
        """Puts a package back as ``snapshot`` found it (removing it if it did not exist)."""
        pkg_dir = self.package_dir(package)
        if snapshot.get("Cargo.toml") is None:
            shutil.rmtree(pkg_dir, ignore_errors=True)
            return
        for rel, data in snapshot.items():
            if data is not None:
                (pkg_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (pkg_dir / rel).write_bytes(data)

    def remove_package(self, package: str) -> None:
        shutil.rmtree(self.package_dir(package), ignore_errors=True)
