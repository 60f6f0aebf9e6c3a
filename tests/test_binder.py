"""The Binder configuration agrees with the package: Python version, extras, commands,
the server extension's config, the start script and the README's launch link."""

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def commands(script: Path) -> list[list[str]]:
    """The simple commands of a script, one per line (continuations joined, comments cut)."""
    text = script.read_text().replace("\\\n", " ")
    found = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line in ("fi", "then", "else"):
            continue
        for part in re.split(r"\s*(?:\|\||&&|\|)\s*", line):
            part = re.sub(r"^(if !?|then |else )", "", part).rstrip(";").strip()
            if part.startswith("!"):
                part = part[1:].strip()
            if part:
                found.append(shlex.split(part))
    return found


def test_runtime_matches_the_python_floor():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", runtime)
    assert match, f"runtime.txt should say python-X.Y, not {runtime!r}"
    floor = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert floor, PYPROJECT["project"]["requires-python"]
    assert (int(match[1]), int(match[2])) == (int(floor[1]), int(floor[2])), \
        "Binder should test the oldest Python the package supports"


@pytest.mark.parametrize("name", ["postBuild", "start"])
def test_scripts_are_executable_bash_that_parses(name):
    script = BINDER / name
    assert os.access(script, os.X_OK), f"binder/{name} must be executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text() or name == "start"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_post_build_installs_real_extras_without_editable_mode():
    installs = [c for c in commands(BINDER / "postBuild") if c[:4] == ["python", "-m", "pip",
                                                                       "install"]]
    assert len(installs) == 1, installs
    target = installs[0][-1]
    assert "-e" not in installs[0] and "--editable" not in installs[0], \
        "a regular install puts the server extension config and the labextension in place"
    match = re.fullmatch(r"\.\[([\w,-]+)\]", target)
    assert match, target
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for extra in match[1].split(","):
        assert extra in extras, f"postBuild installs unknown extra {extra!r}"
    wanted = {"ipykernel", "jupyterlab", "jupyter_server", "ipywidgets", "matplotlib"}
    listed = {re.split(r"[<>=\[]", d)[0] for d in PYPROJECT["project"]["optional-dependencies"]
              ["notebook"]}
    assert wanted <= listed, "the notebook extra must bring what the notebooks use"


def test_post_build_steps_name_real_commands():
    from edgebook.cli.main import build_parser
    subcommands = build_parser()._subparsers._group_actions[0].choices
    seen = set()
    for argv in commands(BINDER / "postBuild"):
        program = argv[0]
        seen.add(program)
        if program == "edgebook":
            assert argv[1] in subcommands, argv
        elif program == "jupyter":
            assert argv[1:3] == ["server", "extension"], argv
        elif program not in ("set", "export", "command", "curl", "sh", "python", "grep"):
            pytest.fail(f"postBuild runs an unexpected command: {argv}")
    assert {"edgebook", "python", "curl"} <= seen
    assert ["edgebook", "prebuild"] in commands(BINDER / "postBuild")


def test_server_extension_config_ships_in_the_wheel_and_enables_edgebook():
    shared = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared.get("jupyter-config/jupyter_server_config.d") == \
        "etc/jupyter/jupyter_server_config.d"
    config = REPO / "jupyter-config" / "jupyter_server_config.d" / "edgebook.json"
    import json
    assert json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]["edgebook"] is True
    import edgebook
    points = edgebook._jupyter_server_extension_points()
    assert points and points[0]["module"] == "edgebook.jupyter.extension"


def test_start_puts_cargo_on_path_and_runs_the_command():
    done = subprocess.run([str(BINDER / "start"), sys.executable, "-c",
                           "import os; print(os.environ['PATH'])"],
                          capture_output=True, text=True, env={**os.environ, "HOME": "/nowhere"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(os.pathsep)[0] == "/nowhere/.cargo/bin"


def test_readme_launches_binder_on_the_quick_start():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/gh/[^)\s]+", readme)
    assert links, "the README should link to Binder"
    for link in links:
        urlpath = re.search(r"urlpath=lab/tree/([^&)\s]+)", link)
        assert urlpath, link
        assert (REPO / urlpath[1]).exists(), f"{link} opens a file that does not exist"
    assert "## Binder" in readme
