"""The package's import rules (docs/architecture.md) hold, and the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

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
    cycles = _strongly_connected(graph)
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(graph) -> list[list[str]]:
    """Tarjan's algorithm over the module graph; the components with more than one module."""
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
        for imported in graph.find_modules_directly_imported_by(module):
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
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found
