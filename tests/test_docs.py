"""Every code sample in README.md and docs/*.md is compiled, executed or checked.

Fenced blocks are picked by their info string:

- ``rust``: a handler program (a leading ``%%rust_handler`` line is dropped); all of them are
  compiled in ONE cargo build, each wrapped in a module of its own, by the build service.
  ``rust,ignore`` marks a fragment that is not a whole handler; keep those rare.
- ``python`` and ``ipython`` in the README, the guide and notebook.md: run in order in one
  IPython shell (a child process) against a real gateway in a temporary data dir, stopped
  at the end; no request they send may hit a missing route or a wrong method (404/405).
  ``python`` blocks elsewhere (reference signatures) must at least compile.
- ``sh``: every ``edgebook ...`` line must parse with the real ``edgebook`` argument parser,
  ``make X`` must name a Makefile target, and other commands must exist on PATH.
- ``json``: must parse (one value, or several in a row).
- ``docs/admin-api.md`` must be what ``python -m edgebook.admin.apidoc`` renders now.
"""

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgebook.admin.apidoc import DOC_PATH, render
from edgebook.discovery import find_live, pid_alive

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXECUTED = [REPO / "README.md", REPO / "docs" / "guide.md", REPO / "docs" / "notebook.md"]
GUIDE = REPO / "docs" / "guide.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
KNOWN = {"rust", "rust,ignore", "python", "ipython", "sh", "json", "yaml", ""}

needs_cargo = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is needed")


def blocks(lang: str, docs=DOCS) -> list[tuple[str, int, str]]:
    """``(file name, line, code)`` of every block with info string ``lang``."""
    found = []
    for path in docs:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1).strip() == lang:
                line = text.count("\n", 0, match.start()) + 1
                found.append((path.name, line, match.group(2)))
    return found


def test_every_block_has_a_known_language():
    for path in DOCS:
        for match in FENCE.finditer(path.read_text()):
            assert match.group(1).strip() in KNOWN, \
                f"{path.name}: unknown code block type {match.group(1)!r}"


def test_yaml_samples_parse():
    import yaml
    samples = blocks("yaml")
    assert samples
    for name, line, code in samples:
        try:
            yaml.safe_load(code)
        except yaml.YAMLError as exc:
            pytest.fail(f"{name}:{line}: the YAML sample does not parse: {exc}")


def test_the_guide_has_samples_of_every_kind():
    guide = [REPO / "docs" / "guide.md"]
    counts = {lang: len(blocks(lang, guide)) for lang in ("rust", "python", "ipython", "sh")}
    assert counts["rust"] >= 5 and counts["python"] >= 3 and counts["ipython"] >= 3, counts
    assert counts["sh"] >= 2, counts
    assert not blocks("rust,ignore", guide), "the guide's Rust samples are all whole handlers"


def test_admin_api_reference_is_current():
    assert DOC_PATH.read_text() == render(), (
        "docs/admin-api.md is stale: run `.venv/bin/python -m edgebook.admin.apidoc --write`")


def test_admin_api_reference_lists_every_route():
    from edgebook.admin.routes import ROUTES
    text = DOC_PATH.read_text()
    for route in ROUTES:
        for method in route.methods:
            assert f"### `{method} {route.path}`" in text


# -- Rust ------------------------------------------------------------------------------------

def rust_program(code: str) -> str:
    lines = code.splitlines()
    if lines and lines[0].startswith("%%rust_handler"):
        lines = lines[1:]
    return "\n".join(lines)


@needs_cargo
def test_rust_samples_compile_as_handlers(tmp_path):
    from edgebook.build.builder import Builder, BuildRequest
    samples = blocks("rust")
    assert len(samples) >= 6
    parts = ["#![allow(dead_code, unused_variables, unused_imports)]"]
    spans = []  # (first line in the batch, last line, where the sample is)
    for index, (name, line, code) in enumerate(samples):
        body = rust_program(code)
        first = sum(p.count("\n") + 1 for p in parts) + 1
        parts.append(f"mod sample_{index} {{\n{body}\n}}")
        spans.append((first, first + body.count("\n") + 2, f"{name}:{line}"))
    parts.append("fn main() {}")
    source = "\n".join(parts)
    builder = Builder(tmp_path / "data")
    result = asyncio.run(builder.build(BuildRequest("doc_samples", source)))
    if not result.ok:
        where = sorted({place for d in result.errors for first, last, place in spans
                        if d.line is not None and first <= d.line <= last})
        pytest.fail(f"Rust samples that do not compile: {where}\n{result.render(source)}")


# -- Python and IPython ----------------------------------------------------------------------

RUNNER = textwrap.dedent("""
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "edgebook")  # as in a notebook that ran the quick start
    results = []
    for place, code in json.loads(sys.stdin.read()):
        with capture_output() as captured:
            outcome = shell.run_cell(code)
        error = outcome.error_before_exec or outcome.error_in_exec
        results.append({"place": place, "ok": outcome.success,
                        "error": f"{type(error).__name__}: {error}" if error else None,
                        "stdout": captured.stdout[-2000:]})
        if not outcome.success:
            break
    import edgebook
    sent = edgebook.history()
    wrong = [] if sent.empty else [
        f"{row.method} {row.path}: {row.status}" for row in sent.itertuples()
        if row.status in (404, 405)]
    print("RESULTS " + json.dumps(results))
    print("WRONG " + json.dumps(wrong))
""")


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / ".edgebook"
    yield path
    info = find_live(str(path), check_health=False)
    if info is not None and pid_alive(info.pid):
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


@needs_cargo
@pytest.mark.timeout(600)
def test_python_and_ipython_samples_run_against_a_gateway(data_dir, tmp_path):
    samples = []
    for path in EXECUTED:
        text = path.read_text()
        for match in FENCE.finditer(text):
            lang = match.group(1).strip()
            line = text.count("\n", 0, match.start()) + 1
            code = match.group(2)
            if lang in ("python", "ipython"):
                samples.append((f"{path.name}:{line}", code))
            elif lang == "rust" and code.startswith("%%rust_handler"):
                samples.append((f"{path.name}:{line}", code))  # a notebook cell
    assert len(samples) >= 6
    env = {k: v for k, v in os.environ.items()
           if k not in ("EDGEBOOK_WIDGETS", "JPY_SESSION_NAME", "EDGEBOOK_PROXY_BASE",
                        "EDGEBOOK_SERVER_ROOT")}
    env["EDGEBOOK_DATA_DIR"] = str(data_dir)
    env["EDGEBOOK_WIDGETS"] = "0"
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(samples),
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=540)
    marker = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert marker, f"the sample runner failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    results = json.loads(marker[-1][len("RESULTS "):])
    failed = [r for r in results if not r["ok"]]
    assert not failed, f"a docs sample failed: {failed[0]}"
    assert len(results) == len(samples)
    wrong = json.loads([line for line in done.stdout.splitlines()
                        if line.startswith("WRONG ")][-1][len("WRONG "):])
    assert not wrong, f"docs samples sent requests to routes that do not take them: {wrong}"


def test_python_reference_blocks_compile():
    for name, line, code in blocks("python"):
        compile(code, f"{name}:{line}", "exec")


# -- shell and JSON --------------------------------------------------------------------------

def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


def shell_commands(code: str) -> list[list[str]]:
    commands = []
    for raw in code.splitlines():
        line = raw.split(" #", 1)[0].strip().rstrip("&").strip()
        if not line or line.startswith("#"):
            continue
        commands.append(shlex.split(line))
    return commands


def test_shell_samples_name_real_commands():
    from edgebook.cli.main import build_parser
    parser = build_parser()
    targets = makefile_targets()
    checked = 0
    for name, line, code in blocks("sh"):
        for argv in shell_commands(code):
            program = os.path.basename(argv[0])
            where = f"{name}:{line}: {shlex.join(argv)}"
            if program == "edgebook":
                if argv[1:] and argv[-1] == "--help":
                    assert argv[1] in parser._subparsers._group_actions[0].choices, where
                else:
                    try:
                        parser.parse_args(argv[1:])
                    except SystemExit:
                        pytest.fail(f"edgebook does not accept {where}")
            elif program == "make":
                assert set(argv[1:]) <= targets, where
            else:
                assert shutil.which(program), f"{where}: {program} is not installed"
            checked += 1
    assert checked >= 10


def test_json_samples_parse():
    samples = blocks("json")
    assert samples
    decoder = json.JSONDecoder()
    for name, line, code in samples:
        position, text = 0, code.strip()
        while position < len(text):  # one value, or several in a row (frames on a pipe)
            try:
                _, position = decoder.raw_decode(text, position)
            except ValueError as exc:
                pytest.fail(f"{name}:{line}: not JSON: {exc}")
            while position < len(text) and text[position].isspace():
                position += 1


# -- what a new user needs is written down -----------------------------------------------------

def test_every_command_and_option_is_in_the_guide():
    """Every ``edgebook`` command, ``service`` action and ``serve``/``deploy`` option."""
    import argparse

    from edgebook.cli.main import build_parser
    guide = GUIDE.read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        if name.startswith("_"):
            continue
        assert f"edgebook {name}" in guide, f"the guide never shows `edgebook {name}`"
    service = commands["service"]._subparsers._group_actions[0].choices
    for action in service:
        assert f"edgebook service {action}" in guide, f"`edgebook service {action}` undocumented"
    for command in ("serve", "deploy"):
        for action in commands[command]._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings:
                continue
            flag = max(action.option_strings, key=len)
            assert flag in guide or flag in ("--help", "--data-dir"), \
                f"`{command} {flag}` is not in the guide"


def test_the_guide_states_the_defaults_methods_and_dependency_features():
    from edgebook.endpoint_options import DEFAULTS as DEFAULT_OPTIONS
    from edgebook.gateway.spec import METHODS
    guide = GUIDE.read_text()
    assert f"default {DEFAULT_OPTIONS['timeout']:g})" in guide
    assert f"default {DEFAULT_OPTIONS['max_body']}, 10 MiB" in guide
    assert DEFAULT_OPTIONS["max_body"] == 10 * 1024 * 1024
    sentence = guide[guide.index("`METHOD` is one of"):][:300]
    for method in METHODS:
        assert f"`{method}`" in sentence, f"{method} is not among the guide's methods"
    assert "--dep uuid@1+v4" in guide  # crate features, with the case that needs one
    assert "What `--timeout` counts" in guide


def test_install_instructions_name_no_package_index():
    """edgebook is not on PyPI: every pip install in the docs installs a path or a wheel."""
    for name, line, code in blocks("sh"):
        for argv in shell_commands(code):
            if os.path.basename(argv[0]) == "pip" and argv[1:2] == ["install"]:
                targets = [a for a in argv[2:] if not a.startswith("-")]
                assert all(t.startswith((".", "/", "dist/")) for t in targets), \
                    f"{name}:{line}: {shlex.join(argv)} names a package index"
    for path in DOCS:
        assert "pip install 'edgebook" not in path.read_text(), path.name


def test_the_readme_shows_the_file_it_deploys():
    readme = (REPO / "README.md").read_text()
    assert "edgebook deploy hello.rs" in readme
    programs = [code for _, _, code in blocks("rust", [REPO / "README.md"])
                if not code.startswith("%%rust_handler")]
    assert programs and "handler_loop!" in programs[0], \
        "the README deploys hello.rs but never shows it"


def test_readme_and_guide_agree_on_node():
    for path in (REPO / "README.md", GUIDE):
        text = " ".join(path.read_text().split())
        assert "Node 20" in text and "`make` builds the JupyterLab sidebar from source" in text, \
            path.name


def test_stale_claims_are_gone():
    """Sentences that were wrong once, and the fixes that made them wrong."""
    notebook = (REPO / "docs" / "notebook.md").read_text()
    assert "the gateway finishes that build" not in notebook
    assert "cancels the build" in notebook
    assert "c.EdgebookExtension.serve_args = [" in notebook  # a serve_args example


@needs_cargo
def test_the_guides_async_sample_answers_as_its_comments_say(tmp_path):
    """The guide's async handler, deployed: an empty body is the 400 it returns, bad JSON a
    400 from `req.json()?`, good JSON echoed, and its println! lands in the endpoint's log."""
    import urllib.error
    import urllib.request

    from test_cli import Server

    from edgebook.client import AdminClient

    sample = next(code for _, _, code in blocks("rust", [GUIDE])
                  if "handler_loop_async_result!" in code and "send a JSON body" in code)
    server = Server(tmp_path / ".edgebook")
    try:
        client = AdminClient(server.info.admin_url, server.info.token)
        client.deploy("echo_async", "POST", "/echo-async", sample)

        def post(body: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(f"{server.info.url}/echo-async", data=body,
                                             method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                with error:
                    return error.code, json.loads(error.read())

        assert post(b"") == (400, {"error": "Bad request: send a JSON body"})
        status, body = post(b"{not json")
        assert status == 400 and body["error"].startswith("Bad request"), body
        assert post(b'{"a": [1, 2]}') == (200, {"echo": {"a": [1, 2]}})
        deadline = time.monotonic() + 10
        while not any("handling POST /echo-async" in line["text"]
                      for line in client.logs("echo_async")):
            assert time.monotonic() < deadline, client.logs("echo_async")
            time.sleep(0.05)
    finally:
        server.terminate()
