"""Tests for the build service: workspace generation, diagnostics, cache, scheduling.

The real-cargo tests share one cargo target dir (``EDGEBOOK_TARGET_DIR``, default
``~/.cache/edgebook/target``), so after the first run (or ``edgebook prebuild``) each
build is an incremental compile of one small crate. Fake cargo scripts stand in where a
test needs cargo to hang or to fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from edgebook import protocol
from edgebook.build.builder import BuildRequest, Builder, BuildResult
from edgebook.paths import target_dir as default_target_dir
from edgebook.diagnostics import (Diagnostic, Label, SourceMap, from_cargo_stderr, from_rustc,
                                  render_diagnostics)
from edgebook.build.sdk import find_sdk_dir, sdk_info
from edgebook.build.source import SourceError, analyse, frontmatter_dependencies, parse_dep_spec
from edgebook.build.workspace import Workspace, package_name

HANDLERS = Path(__file__).parent / "resources" / "handlers"
HAVE_CARGO = shutil.which("cargo") is not None and shutil.which("rustc") is not None
needs_cargo = pytest.mark.skipif(not HAVE_CARGO, reason="cargo and rustc are needed")

BARE_HANDLE = """\
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"style": "bare", "path": req.path}))
}
"""


# ---------------------------------------------------------------------------------------
# Helpers


def run_build(builder: Builder, name: str, source: str, **kwargs) -> BuildResult:
    events = kwargs.pop("events", None)
    request = BuildRequest(name, source, **kwargs)
    return asyncio.run(builder.build(request, events.append if events is not None else None))


async def _call(binary: Path, request: dict) -> tuple[dict, dict]:
    proc = await asyncio.create_subprocess_exec(
        str(binary), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    reader = protocol.FrameReader(proc.stdout)
    try:
        ready = await asyncio.wait_for(reader.read(), 10)
        frame = {"type": "request", "request_id": "req-1", "method": "GET", "path": "/",
                 "query": {}, "headers": {}, "params": {}, "body": None,
                 "body_encoding": "utf8", "client_ip": "127.0.0.1", **request}
        proc.stdin.write(protocol.encode(frame))
        await proc.stdin.drain()
        response = await asyncio.wait_for(reader.read(), 10)
        proc.stdin.close()
        await asyncio.wait_for(proc.stderr.read(), 10)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        return ready, response
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def call(binary: Path, **request) -> dict:
    """Starts a built worker, checks its ready frame, sends one request, returns the response."""
    ready, response = asyncio.run(_call(binary, request))
    assert ready["type"] == "ready" and ready["protocol"] == protocol.PROTOCOL_VERSION
    assert response["type"] == "response" and response["request_id"] == "req-1"
    return response


def body_json(response: dict) -> dict:
    return json.loads(protocol.decode_body(response))


def write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def assert_ok(result: BuildResult, source: str = "") -> None:
    assert result.ok, f"{result.status}\n{render_diagnostics(result.diagnostics, source)}\n" \
                      f"{result.log[-3000:]}"


@pytest.fixture(scope="module")
def builder(tmp_path_factory) -> Builder:
    return Builder(tmp_path_factory.mktemp("data"), target_dir=default_target_dir(),
                   time_limit=600)


def writable_in_build(data_dir: Path) -> Path:
    """A dir a (fake) cargo may write to: builds see the data dir read-only, but for its
    workspace."""
    path = data_dir / "workspace" / "test-notes"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def failing_cargo(tmp_path) -> tuple[Path, Path]:
    """A cargo that records that it ran and fails: proves a code path runs no cargo."""
    marker = writable_in_build(tmp_path) / "cargo-ran"
    script = write_script(tmp_path / "cargo", f"#!/bin/sh\ntouch '{marker}'\nexit 101\n")
    return script, marker


@pytest.fixture
def hanging_cargo(tmp_path) -> tuple[Path, Path]:
    """A cargo that reports one artifact, then waits on a child process forever. Both run
    as ``sleep`` with a duration unique to the test (the markers file lists them): a build
    has a PID namespace of its own, so the pids they see are not the host's."""
    artifact = json.dumps({"reason": "compiler-artifact", "fresh": False,
                           "package_id": "registry+https://x#slowdep@1.0.0",
                           "target": {"name": "slowdep", "kind": ["lib"]}})
    unique = f"{os.getpid()}{len(str(tmp_path))}{abs(hash(str(tmp_path))) % 10**6:06d}"
    markers = tmp_path / "markers"
    markers.write_text(f"300.{unique} 301.{unique}")
    script = write_script(tmp_path / "cargo", f"""#!/bin/sh
sleep 300.{unique} &
echo '{artifact}'
exec sleep 301.{unique}
""")
    return script, markers


def assert_dead(marker: str) -> None:
    """No process runs ``sleep MARKER`` (a zombie of a killed one has exited)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        assert marker.encode() not in argv, f"process {entry} (sleep {marker}) is still running"


# ---------------------------------------------------------------------------------------
# Source analysis and workspace generation (no cargo)


def test_whole_program_is_kept_verbatim():
    source = (HANDLERS / "seed_hello.rs").read_text()
    handler = analyse(source)
    assert handler.style == "program"
    assert handler.main_rs() == source


def test_bare_handle_gets_a_loop_appended_without_shifting_lines():
    handler = analyse(BARE_HANDLE)
    assert handler.style == "handle" and not handler.is_async
    main_rs = handler.main_rs()
    assert main_rs.startswith(BARE_HANDLE)
    tail = main_rs[len(BARE_HANDLE):]
    assert "::edgebook_sdk::handler_loop!(handle);" in tail
    assert "use ::edgebook_sdk::prelude::*" not in tail  # the user imported a prelude
    assert (handler.handle_line, handler.handle_column) == (3, 1)


def test_bare_handle_without_imports_gets_the_prelude():
    source = "pub async fn handle(req: Request) -> Response {\n    Response::ok(json!({}))\n}"
    handler = analyse(source)
    assert handler.is_async and handler.handle_line == 1 and handler.handle_column == 1
    tail = handler.main_rs()[len(source) + 1:]
    assert "use ::edgebook_sdk::prelude::*;" in tail
    assert "::edgebook_sdk::handler_loop_async!(handle);" in tail


def test_fn_main_in_comments_and_strings_does_not_count():
    source = ('// fn main() is generated\n/* handler_loop!(x) */\n'
              'const S: &str = "fn main() {}";\nfn handle(req: Request) -> Response {\n'
              '    let c = \'"\'; Response::ok(json!({"c": c.to_string(), "p": req.path}))\n}\n')
    handler = analyse(source)
    assert handler.style == "handle" and handler.handle_line == 4


@pytest.mark.parametrize("source, message", [
    ("", "empty"),
    ("   \n\n", "empty"),
    ("fn helper() {}\n", "no `fn handle` found"),
    ("// fn handle(req: Request) -> Response\n", "no `fn handle` found"),
])
def test_obvious_mistakes_are_reported_before_cargo(source, message):
    with pytest.raises(SourceError, match=message):
        analyse(source)


def test_frontmatter_dependencies():
    source = """\
// An endpoint that formats numbers.
//! ```cargo
//! [dependencies]
//! itoa = "1"
//! serde_with = { version = "3", default-features = false, features = ["macros"] }
//! ```
fn handle(req: Request) -> Response { Response::ok(json!({})) }
"""
    assert frontmatter_dependencies(source) == {
        "itoa": {"version": "1"},
        "serde_with": {"version": "3", "features": ["macros"], "default-features": False},
    }
    assert analyse(source, deps=["ryu@1.0"]).dependencies["ryu"] == {"version": "1.0"}


@pytest.mark.parametrize("block, message", [
    ('[profile.dev]\nopt-level = 3', r"only a \[dependencies\] table"),
    ('[patch.crates-io]\nitoa = { path = "x" }', r"only a \[dependencies\] table"),
    ('[dependencies]\nfoo = { path = "../foo" }', "only crates from the registry"),
    ('[dependencies]\nfoo = { git = "https://example.com/foo" }', "only crates from the registry"),
    ('[dependencies]\nedgebook-sdk = "1"', "already a dependency"),
    ('[dependencies\n', "not valid TOML"),
])
def test_frontmatter_cannot_change_the_workspace(block, message):
    source = "//! ```cargo\n" + "".join(f"//! {line}\n" for line in block.splitlines()) + \
        "//! ```\nfn handle(req: Request) -> Response { Response::not_found() }\n"
    with pytest.raises(SourceError, match=message):
        analyse(source)


def test_unclosed_frontmatter():
    with pytest.raises(SourceError, match="not closed") as info:
        analyse("//! ```cargo\n//! [dependencies]\nfn handle() {}\n")
    assert info.value.line == 1  # the opening fence


@pytest.mark.parametrize("spec, expected", [
    ("itoa", ("itoa", {"version": "*"})),
    ("itoa@1", ("itoa", {"version": "1"})),
    ("itoa@=1.0.11", ("itoa", {"version": "=1.0.11"})),
    ("serde_with@3+macros,json", ("serde_with", {"version": "3",
                                                 "features": ["json", "macros"]})),
])
def test_dep_specs(spec, expected):
    assert parse_dep_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "1abc@1", "a b", "itoa@1+bad feature"])
def test_bad_dep_specs(spec):
    with pytest.raises(SourceError):
        parse_dep_spec(spec)


def test_package_names_are_unique_per_data_dir_and_endpoint(tmp_path):
    a = package_name(tmp_path / "one", "hello")
    assert a == package_name(tmp_path / "one", "hello")
    assert a != package_name(tmp_path / "two", "hello")
    assert package_name(tmp_path, "a-b") != package_name(tmp_path, "a_b")
    assert a.startswith("h_hello_")


def test_generated_manifests(tmp_path):
    sdk = sdk_info(find_sdk_dir())
    ws = Workspace(tmp_path, sdk)
    ws.ensure()
    manifest = (ws.root / "Cargo.toml").read_text()
    assert 'members = ["handlers/*"]' in manifest
    assert "[profile.dev.package.\"*\"]" in manifest and "lto = false" in manifest
    if sdk.lockfile:
        assert (ws.root / "Cargo.lock").read_bytes() == sdk.lockfile.read_bytes()
    handler = analyse(BARE_HANDLE, deps=["itoa@1"])
    main_rs = ws.write_package("h_x", "x", handler)
    assert main_rs.read_text() == handler.main_rs()
    package = (main_rs.parent.parent / "Cargo.toml").read_text()
    assert 'itoa = { version = "1" }' in package
    assert f'edgebook-sdk = {{ path = "{sdk.dir}" }}' in package
    assert "rust-edge-gateway-sdk" in package and "build = false" in package
    assert "[profile" not in package and "[patch" not in package


# ---------------------------------------------------------------------------------------
# Diagnostics (cargo JSON fixtures)

USER_FILE = "handlers/h_x/src/main.rs"
SMAP = SourceMap(is_user_file=lambda name: name == USER_FILE, user_lines=7, anchor=(3, 1),
                 display_name="x.rs", file_names=(USER_FILE,))


def span(line, col, end_col, *, primary=True, label=None, file=USER_FILE, expansion=None):
    return {"file_name": file, "line_start": line, "line_end": line, "column_start": col,
            "column_end": end_col, "is_primary": primary, "label": label,
            "byte_start": 0, "byte_end": 0, "expansion": expansion,
            "suggested_replacement": None}


MISMATCH = {
    "level": "error", "message": "mismatched types", "code": {"code": "E0308"},
    "rendered": f"error[E0308]: mismatched types\n --> {USER_FILE}:5:18\n",
    "spans": [span(5, 18, 24, label="expected `u32`, found `&str`"),
              span(5, 12, 15, primary=False, label="expected due to this")],
    "children": [],
}


def test_rustc_error_maps_to_user_line():
    diag = from_rustc(MISMATCH, SMAP)
    assert (diag.level, diag.code, diag.line, diag.column, diag.end_column) == \
        ("error", "E0308", 5, 18, 24)
    assert not diag.generated and len(diag.labels) == 2
    assert "x.rs:5:18" in diag.rendered and USER_FILE not in diag.rendered


def test_error_in_generated_loop_is_anchored_at_fn_handle():
    macro_site = span(9, 1, 38, primary=False)
    message = {
        "level": "error", "message": "the trait bound `u32: IntoResponse` is not satisfied",
        "code": {"code": "E0277"}, "rendered": "",
        "spans": [span(99, 13, 34, file="/sdk/src/lib.rs",
                       expansion={"span": macro_site, "macro_decl_name": "handler_loop!"})],
        "children": [{"level": "note", "message": "required by a bound in `run`",
                      "spans": [span(212, 8, 11, file="/sdk/src/ipc.rs")], "children": []}],
    }
    diag = from_rustc(message, SMAP)
    assert diag.generated and (diag.line, diag.column) == (3, 1)
    assert diag.labels == []
    assert any("fn handle" in note.message for note in diag.children)


def test_error_inside_user_macro_call_points_at_the_call():
    call_site = span(4, 5, 20, primary=False)
    message = {"level": "error", "message": "boom", "code": None, "rendered": "",
               "spans": [span(1, 1, 2, file="/registry/x/src/lib.rs",
                              expansion={"span": call_site})], "children": []}
    diag = from_rustc(message, SMAP)
    assert (diag.line, diag.column, diag.generated) == (4, 5, False)


def test_render_shows_lines_and_carets():
    source = "fn a() {}\n\nfn handle() {}\n\n    let x: u32 = \"nope\";\n"
    text = render_diagnostics([from_rustc(MISMATCH, SMAP)], source, name="x.rs")
    assert text.splitlines()[:6] == [
        "error[E0308]: mismatched types",
        "  --> x.rs line 5, column 18",
        "  |",
        '5 |     let x: u32 = "nope";',
        "  |                  ^^^^^^ expected `u32`, found `&str`",
        "  |            --- expected due to this",
    ]
    assert text.rstrip().endswith("1 error")
    assert "\x1b" not in text


def test_render_without_location_and_multiline():
    diags = [Diagnostic("warning", "unused", line=2, column=1,
                        labels=[Label(1, 3, 3, 2, "here", True)]),
             Diagnostic("error", "linker failed")]
    text = render_diagnostics(diags, "ab\ncd\nef\n")
    assert text.index("error: linker failed") < text.index("warning: unused")
    assert "1 | ab\n  |   ^ here" in text and "3 | ef" in text
    assert "1 error, 1 warning" in text


def test_cargo_stderr_errors():
    stderr = ("    Updating crates.io index\n"
              "error: no matching package named `nosuchcrate` found\n"
              "location searched: crates.io index\n"
              "required by package `h_x v0.0.0 (/tmp/ws/handlers/h_x)`\n")
    [diag] = from_cargo_stderr(stderr)
    assert diag.message == "no matching package named `nosuchcrate` found"
    assert [c.message for c in diag.children][0] == "location searched: crates.io index"


def test_results_serialise_to_json():
    result = BuildResult(ok=True, status="ok", binary=Path("/x/bin/abc"), content_hash="abc",
                         diagnostics=[Diagnostic("warning", "w", line=1, column=2,
                                                 labels=[Label(1, 2, 1, 3)])])
    data = json.loads(json.dumps(result.to_dict()))
    assert data["binary"] == "/x/bin/abc"
    assert data["diagnostics"][0]["labels"][0]["line"] == 1


# ---------------------------------------------------------------------------------------
# Builds with no cargo run


def test_empty_source_fails_without_cargo(tmp_path, failing_cargo):
    cargo, marker = failing_cargo
    builder = Builder(tmp_path, cargo=str(cargo))
    result = run_build(builder, "empty", "  \n")
    assert result.status == "failed" and not result.ok and result.binary is None
    assert "empty" in result.diagnostics[0].message
    assert not marker.exists()


def test_unknown_profile_is_refused(tmp_path, failing_cargo):
    cargo, marker = failing_cargo
    result = run_build(Builder(tmp_path, cargo=str(cargo)), "x", BARE_HANDLE, profile="fast")
    assert result.status == "failed" and "unknown profile" in result.diagnostics[0].message
    assert not marker.exists()


def test_cargo_failure_without_diagnostics_is_reported(tmp_path, failing_cargo):
    cargo, marker = failing_cargo
    result = run_build(Builder(tmp_path, cargo=str(cargo)), "x", BARE_HANDLE)
    assert result.status == "failed" and marker.exists()
    assert "exit status 101" in result.diagnostics[-1].message
    # A package that never built is removed again, so it cannot break the workspace.
    assert not (tmp_path / "workspace" / "handlers" / package_name(tmp_path, "x")).exists()


def test_time_limit_kills_cargo_and_its_children(tmp_path, hanging_cargo):
    cargo, markers = hanging_cargo
    builder = Builder(tmp_path, cargo=str(cargo), time_limit=1.0, offline_first=False)
    events = []
    result = run_build(builder, "slow", BARE_HANDLE, events=events)
    assert result.status == "timeout" and not result.ok
    assert "time limit" in result.log and result.duration < 30
    assert {"crate": "slowdep"}.items() <= events[2].items()
    for marker in markers.read_text().split():
        assert_dead(marker)


def test_cancel_kills_cargo(tmp_path, hanging_cargo):
    cargo, markers = hanging_cargo
    builder = Builder(tmp_path, cargo=str(cargo), offline_first=False)

    async def scenario():
        compiling = asyncio.Event()

        def on_progress(event):
            if event["phase"] == "compiling":
                compiling.set()

        task = asyncio.create_task(builder.build(BuildRequest("c", BARE_HANDLE), on_progress))
        await compiling.wait()
        assert builder.cancel("c")
        return await task

    result = asyncio.run(scenario())
    assert result.status == "cancelled" and not result.ok
    for marker in markers.read_text().split():
        assert_dead(marker)


def test_cancelling_the_caller_kills_cargo(tmp_path, hanging_cargo):
    cargo, markers = hanging_cargo
    builder = Builder(tmp_path, cargo=str(cargo), offline_first=False)

    async def scenario():
        compiling = asyncio.Event()
        task = asyncio.create_task(builder.build(
            BuildRequest("c", BARE_HANDLE),
            lambda e: compiling.set() if e["phase"] == "compiling" else None))
        await compiling.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await builder.aclose()

    asyncio.run(scenario())
    for marker in markers.read_text().split():
        assert_dead(marker)


def test_queued_build_is_superseded_by_a_newer_one(tmp_path, hanging_cargo):
    cargo, _ = hanging_cargo
    builder = Builder(tmp_path, cargo=str(cargo), offline_first=False, time_limit=60)

    async def scenario():
        compiling = asyncio.Event()
        first = asyncio.create_task(builder.build(
            BuildRequest("e", BARE_HANDLE),
            lambda e: compiling.set() if e["phase"] == "compiling" else None))
        await compiling.wait()
        second = asyncio.create_task(builder.build(BuildRequest("e", BARE_HANDLE + "\n")))
        third = asyncio.create_task(builder.build(BuildRequest("e", BARE_HANDLE + "\n\n")))
        superseded = await second  # returns at once, while the first still runs
        assert not first.done()
        builder.cancel("e")
        return superseded, await first, await third

    superseded, first, third = asyncio.run(scenario())
    assert superseded.status == "superseded" and superseded.binary is None
    assert first.status == "cancelled" and third.status == "cancelled"


def test_cache_hit_supersedes_a_queued_build(tmp_path, hanging_cargo):
    cargo, _ = hanging_cargo
    builder = Builder(tmp_path, cargo=str(cargo), offline_first=False, time_limit=60)
    cached_source = BARE_HANDLE.replace("bare", "already built")

    async def scenario():
        key = await builder.content_hash_of(analyse(cached_source), "dev")
        builder.bin_dir.mkdir(parents=True)
        write_script(builder.binary_path(key), "#!/bin/sh\n")
        assert await builder.cached_binary(BuildRequest("e", cached_source)) == \
            builder.binary_path(key)
        assert await builder.cached_binary(BuildRequest("e", BARE_HANDLE)) is None
        compiling = asyncio.Event()
        first = asyncio.create_task(builder.build(
            BuildRequest("e", BARE_HANDLE),
            lambda e: compiling.set() if e["phase"] == "compiling" else None))
        await compiling.wait()
        waiting = asyncio.Event()
        queued = asyncio.create_task(builder.build(
            BuildRequest("e", BARE_HANDLE + "\n"),
            lambda e: waiting.set() if e["phase"] == "queued" else None))
        await waiting.wait()
        hit = await builder.build(BuildRequest("e", cached_source))
        superseded = await queued
        builder.cancel("e")
        return hit, superseded, await first

    hit, superseded, first = asyncio.run(scenario())
    assert hit.ok and hit.cached
    assert superseded.status == "superseded" and first.status == "cancelled"


# ---------------------------------------------------------------------------------------
# Real builds


@needs_cargo
def test_seed_hello_world_builds_and_runs(builder):
    source = (HANDLERS / "seed_hello.rs").read_text()
    events = []
    result = run_build(builder, "hello", source, events=events)
    assert_ok(result, source)
    assert result.binary == builder.bin_dir / result.content_hash
    assert result.binary.is_file() and result.diagnostics == []
    response = call(result.binary, method="POST", path="/hello")
    assert response["status"] == 200
    assert body_json(response) == {"message": "Hello, World!", "path": "/hello",
                                   "method": "POST"}
    phases = [event["phase"] for event in events]
    assert phases[0] == "queued" and phases[-1] == "done"
    assert "resolving" in phases and "linking" in phases
    assert all(event["name"] == "hello" and event["elapsed"] >= 0 for event in events)


@needs_cargo
def test_bare_handle_without_imports(builder):
    source = "fn handle(req: Request) -> Response {\n" \
             "    Response::ok(json!({\"q\": req.query_param(\"q\")}))\n}\n"
    result = run_build(builder, "bare", source)
    assert_ok(result, source)
    assert body_json(call(result.binary, query={"q": "x"})) == {"q": "x"}


@needs_cargo
def test_result_returning_handle(builder):
    source = """\
use edgebook_sdk::prelude::*;

fn handle(req: Request) -> Result<Response, HandlerError> {
    let id: u64 = req.require_query_param("id")?;
    Ok(Response::ok(json!({"id": id})))
}
"""
    result = run_build(builder, "result", source)
    assert_ok(result, source)
    assert body_json(call(result.binary, query={"id": "7"})) == {"id": 7}
    assert call(result.binary)["status"] == 400


@needs_cargo
def test_async_handle(builder):
    source = """\
use rust_edge_gateway_sdk::prelude::*;

async fn greeting() -> String { "hi".to_string() }

async fn handle(req: Request) -> Response {
    Response::text(200, format!("{} {}", greeting().await, req.path))
}
"""
    result = run_build(builder, "async", source)
    assert_ok(result, source)
    assert protocol.decode_body(call(result.binary, path="/a")) == b"hi /a"


@needs_cargo
def test_whole_program_with_result_macro_and_derive(builder):
    source = """\
use rust_edge_gateway_sdk::prelude::*;

#[derive(Deserialize)]
struct Item { name: String, qty: u32 }

fn create(req: Request) -> Result<Response, HandlerError> {
    let item: Item = req.json()?;
    Ok(Response::created(json!({"name": item.name, "total": item.qty * 2})))
}

handler_loop_result!(create);
"""
    result = run_build(builder, "program", source)
    assert_ok(result, source)
    response = call(result.binary, method="POST", body='{"name":"a","qty":4}',
                    headers={"content-type": "application/json"})
    assert response["status"] == 201 and body_json(response) == {"name": "a", "total": 8}
    assert call(result.binary, method="POST", body="nope")["status"] == 400


@needs_cargo
def test_compile_error_at_user_line_and_column(builder):
    source = """\
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    let n: u32 = "not a number";
    Response::ok(json!({"n": n, "p": req.path}))
}
"""
    result = run_build(builder, "broken", source)
    assert result.status == "failed" and result.binary is None
    [error] = result.errors
    assert (error.code, error.line, error.column, error.end_column) == ("E0308", 4, 18, 32)
    text = render_diagnostics(result.diagnostics, source)
    assert '4 |     let n: u32 = "not a number";' in text
    assert "  |                  ^^^^^^^^^^^^^^ expected `u32`, found `&str`" in text


@needs_cargo
def test_wrong_handle_signature_is_a_generated_code_problem(builder):
    source = "use rust_edge_gateway_sdk::prelude::*;\n\n" \
             "fn handle(_req: Request) -> u32 {\n    1\n}\n"
    result = run_build(builder, "signature", source)
    assert result.status == "failed"
    error = result.errors[0]
    assert error.generated and (error.line, error.column) == (3, 1)
    assert "IntoResponse" in error.message


@needs_cargo
def test_warning_does_not_block(builder):
    source = BARE_HANDLE.replace("    Response::ok", "    let unused = 1;\n    Response::ok")
    result = run_build(builder, "warned", source)
    assert_ok(result, source)
    [warning] = result.warnings
    assert warning.line == 4 and warning.column == 9 and "unused" in warning.message
    assert call(result.binary)["status"] == 200


@needs_cargo
def test_dependency_from_frontmatter_and_from_deps(builder):
    source = """\
//! ```cargo
//! [dependencies]
//! itoa = "1"
//! ```
use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    let mut buf = itoa::Buffer::new();
    Response::text(200, buf.format(12345u32).to_string())
}
"""
    result = run_build(builder, "itoa", source)
    assert_ok(result, source)
    assert protocol.decode_body(call(result.binary)) == b"12345"
    plain = source.split("//! ```\n", 1)[1]
    result = run_build(builder, "itoa2", plain, deps=("itoa@1",))
    assert_ok(result, plain)
    assert protocol.decode_body(call(result.binary)) == b"12345"


@needs_cargo
def test_broken_manifest_does_not_break_other_endpoints(builder):
    result = run_build(builder, "badver", BARE_HANDLE, deps=("itoa@not.a.version",))
    assert result.status == "failed"
    assert any("not.a.version" in (d.rendered + d.message) for d in result.errors)
    source = BARE_HANDLE.replace("bare", "still fine")
    assert_ok(run_build(builder, "fine", source), source)


@needs_cargo
def test_cache_hit_runs_no_cargo_and_survives_a_restart(builder, tmp_path):
    source = BARE_HANDLE.replace("bare", "cached")
    first = run_build(builder, "cached", source)
    assert_ok(first, source)
    again = run_build(builder, "cached", source)
    assert again.ok and again.cached and again.binary == first.binary
    marker = writable_in_build(builder.data_dir) / "cargo-ran"  # a cargo that must not run
    cargo = write_script(tmp_path / "cargo", f"#!/bin/sh\ntouch '{marker}'\nexit 101\n")
    restarted = Builder(builder.data_dir, target_dir=builder.target_dir, cargo=str(cargo))
    events = []
    hit = run_build(restarted, "other-endpoint", source, events=events)
    assert hit.ok and hit.cached and hit.binary == first.binary
    assert hit.content_hash == first.content_hash and hit.duration < 1.0
    assert [event["phase"] for event in events] == ["done"]
    assert not marker.exists()
    assert body_json(call(hit.binary))["style"] == "cached"
    # A different profile is a different binary, hence a miss that needs cargo.
    miss = run_build(restarted, "cached", source, profile="release")
    assert not miss.ok and marker.exists()


@needs_cargo
def test_concurrent_submits_supersede_the_queued_build(builder):
    sources = [BARE_HANDLE.replace("bare", f"v{n}") for n in range(3)]

    async def scenario():
        started = asyncio.Event()
        first = asyncio.create_task(builder.build(
            BuildRequest("same", sources[0]),
            lambda e: started.set() if e["phase"] == "resolving" else None))
        await started.wait()  # the first build runs; the next two queue behind it
        rest = [asyncio.create_task(builder.build(BuildRequest("same", s))) for s in sources[1:]]
        return await asyncio.gather(first, *rest)

    first, second, third = asyncio.run(scenario())
    assert first.ok and third.ok, (first.log, third.log)
    assert second.status == "superseded" and second.binary is None
    assert body_json(call(third.binary))["style"] == "v2"
    assert body_json(call(first.binary))["style"] == "v0"


@needs_cargo
def test_release_profile(builder):
    source = BARE_HANDLE.replace("bare", "release")
    result = run_build(builder, "rel", source, profile="release")
    assert_ok(result, source)
    assert result.profile == "release"
    dev = run_build(builder, "rel", source)
    assert dev.content_hash != result.content_hash
    assert body_json(call(result.binary))["style"] == "release"


@needs_cargo
def test_real_cargo_over_its_time_limit_is_killed_and_the_target_dir_stays_usable(builder):
    spinning = """\
#![allow(long_running_const_eval)]
use rust_edge_gateway_sdk::prelude::*;

const SPIN: u64 = {
    let mut i = 0u64;
    while i < 1_000_000_000_000 {
        i += 1;
    }
    i
};

fn handle(_req: Request) -> Response {
    Response::ok(json!({"spin": SPIN}))
}
"""
    impatient = Builder(builder.data_dir, target_dir=builder.target_dir, time_limit=3.0)
    result = run_build(impatient, "spin", spinning)
    assert result.status == "timeout" and not result.ok and result.duration < 20
    assert "took longer than 3 s" in result.errors[0].message
    source = BARE_HANDLE.replace("bare", "after the timeout")
    after = run_build(builder, "spin", source)
    assert_ok(after, source)
    assert body_json(call(after.binary))["style"] == "after the timeout"


@needs_cargo
def test_prebuild_compiles_the_hello_handler(builder):
    [result] = builder.prebuild(profiles=("dev",))
    assert result.ok and result.profile == "dev"
    assert not result.binary.exists()  # built in a temporary data dir, gone afterwards
