"""The package's import rules (docs/architecture.md) hold, and the check can fail."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def run_contracts(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(cwd / "pyproject.toml")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    done = run_contracts(REPO, REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_violation_breaks_the_contracts(tmp_path):
    shutil.copytree(REPO / "edgebook", tmp_path / "edgebook",
                    ignore=shutil.ignore_patterns("labextension", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    protocol = tmp_path / "edgebook" / "protocol.py"  # the base, importing the gateway
    protocol.write_text(protocol.read_text() + "\nfrom .gateway import core  # noqa\n")
    magics = tmp_path / "edgebook" / "notebook" / "magics.py"  # a face reaching past HTTP
    magics.write_text(magics.read_text() + "\nfrom ..build import builder  # noqa\n")
    done = run_contracts(tmp_path, tmp_path)
    assert done.returncode != 0
    assert "The base imports only the base BROKEN" in done.stdout
    assert "reach the gateway over HTTP only BROKEN" in done.stdout


def test_no_import_cycles():
    graph = grimp.build_graph("edgebook")
    cycles = _strongly_connected(sorted(graph.modules), graph.find_modules_directly_imported_by)
    assert not cycles, f"import cycles: {cycles}"


def sdk_module_graph(src: Path) -> dict[str, set[str]]:
    """Which of the SDK's modules each one names (`crate::module`, comments left out). The
    crate root declares and re-exports every module, so it is not a node."""
    def code(path: Path) -> str:
        return "\n".join(line.split("//", 1)[0] for line in path.read_text().splitlines())

    modules = {path.stem for path in src.glob("*.rs")} - {"lib"}
    # What the root re-exports (`pub use module::{A, B}`): `crate::A` names `module`.
    home = {}
    for module, items in re.findall(r"^pub use (\w+)::\{?([^;}]*)\}?;", code(src / "lib.rs"),
                                    re.MULTILINE):
        home.update((item.strip(), module) for item in items.split(",") if item.strip())
    graph: dict[str, set[str]] = {}
    for name in modules:
        text = code(src / f"{name}.rs")
        named = set(re.findall(r"\bcrate::(\w+)", text))
        for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
            named |= {item.strip().split("::")[0] for item in group.split(",")}
        named = {home.get(item, item) for item in named}
        graph[name] = (named & modules) - {name}
    return graph


def test_no_module_cycles_in_the_sdk():
    graph = sdk_module_graph(REPO / "sdk" / "src")
    assert {"error", "response", "request", "extras", "ipc", "services"} <= graph.keys()
    cycles = _strongly_connected(sorted(graph), lambda module: graph[module])
    assert not cycles, f"module cycles in the SDK: {cycles}"


def test_an_sdk_cycle_is_found(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "sdk" / "src", src)
    error = src / "error.rs"  # errors rendering themselves as responses again
    error.write_text(error.read_text() + "\nuse crate::response::Response;\n")
    graph = sdk_module_graph(src)
    assert _strongly_connected(sorted(graph), lambda module: graph[module]) == [
        ["error", "response"]]


def _strongly_connected(modules, imports_of) -> list[list[str]]:
    """Tarjan's algorithm over a module graph (``imports_of(module)``: what it imports);
    the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(module: str) -> None:
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for imported in imports_of(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for module in modules:
        if module not in index:
            visit(module)
    return found


# -- what a gateway process loads -------------------------------------------------------------

#: Modules a gateway never needs: the notebook and Jupyter layers and what they bring.
NOT_IN_A_GATEWAY = ("edgebook.notebook", "edgebook.jupyter", "pandas", "ipywidgets",
                    "IPython", "matplotlib")
HELLO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(_req: Request) -> Response {
    Response::ok(json!({"hello": "from a gateway that loads no notebook layer"}))
}

handler_loop!(handle);
"""


def imported(importtime_log: str) -> set[str]:
    """The modules ``python -X importtime`` reported importing."""
    found = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            found.add(line.rsplit("|", 1)[1].strip())
    return found


def loaded_forbidden(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == f or m.startswith(f + ".") for f in NOT_IN_A_GATEWAY))


def test_a_gateway_process_never_loads_the_notebook_layer(tmp_path):
    """`edgebook serve`, a deploy (build included) and a served request, all under
    ``-X importtime``: lazy imports at the package root are invisible to import-linter."""
    import json
    import signal
    import urllib.request

    from edgebook.client import AdminClient
    from edgebook.discovery import read_runtime

    if shutil.which("cargo") is None:
        pytest.skip("needs cargo to build the handler")
    data_dir = tmp_path / ".edgebook"
    log = tmp_path / "importtime.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGEBOOK_DATA_DIR", None)
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "edgebook", "serve",
                                 "--data-dir", str(data_dir), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    try:
        assert "serving" in proc.stdout.readline(), log.read_text()[-2000:]
        info = read_runtime(str(data_dir))
        AdminClient(info.admin_url, info.token).deploy("hello", "GET", "/hello", HELLO)
        with urllib.request.urlopen(f"{info.url}/hello", timeout=30) as response:
            assert json.loads(response.read())["hello"].startswith("from a gateway")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc.stdout.close()
    modules = imported(log.read_text())
    assert "edgebook.gateway.core" in modules and "tornado.httpserver" in modules  # it reads
    assert loaded_forbidden(modules) == []


def test_the_import_log_check_sees_a_notebook_import():
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edgebook.notebook"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "edgebook.notebook" in loaded_forbidden(imported(done.stderr))
