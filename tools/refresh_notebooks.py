"""Run the demo notebooks and store the outputs nbval compares; clear every other output.

Usage: ``.venv/bin/python tools/refresh_notebooks.py [notebooks/NN-name.ipynb ...]``
(default: every notebook). Cells tagged ``nbval-check-output`` keep their text outputs
(``stream`` and ``text/plain``) and an execution count, which ``make test`` then compares;
every other output and execution count is removed, so the committed notebooks hold nothing machine-specific.
The notebooks run against a throwaway gateway in a temporary data dir, stopped at the end.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from edgebook.discovery import find_live, pid_alive

REPO = Path(__file__).resolve().parent.parent
CHECK = "nbval-check-output"


def keep_text(outputs: list) -> list:
    kept = []
    for out in outputs:
        if out.output_type == "stream":
            kept.append(out)
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.data:
            kept.append(nbformat.v4.new_output(
                out.output_type, data={"text/plain": out.data["text/plain"]},
                **({"execution_count": None} if out.output_type == "execute_result" else {})))
    return kept


def refresh(path: Path, env: dict[str, str]) -> None:
    nb = nbformat.read(path, as_version=4)
    ran = nbformat.read(path, as_version=4)
    client = NotebookClient(ran, timeout=600, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env, cwd=str(path.parent))
    count = 0
    for cell, done in zip(nb.cells, ran.cells):
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = None
        errors = [o for o in done.outputs if o.output_type == "error"]
        if errors and "raises-exception" not in cell.metadata.get("tags", []):
            sys.exit(f"{path.name}: a cell failed:\n{cell.source}\n{errors[0].evalue}")
        cell.outputs = keep_text(done.outputs) if CHECK in cell.metadata.get("tags", []) else []
        if cell.outputs:
            cell.execution_count = count  # nbval compares only cells that were run
    # The kernel's own description of its language, as JupyterLab writes it when the
    # kernel starts: with less (just the name), opening the notebook marks it modified.
    nb.metadata["language_info"] = ran.metadata.get("language_info",
                                                    nb.metadata.get("language_info"))
    nbformat.write(nb, path)
    print(f"{path.name}: refreshed")


def main(argv: list[str]) -> None:
    paths = [Path(a).resolve() for a in argv] or sorted((REPO / "notebooks").glob("*.ipynb"))
    data_dir = Path(tempfile.mkdtemp(prefix="edgebook-notebooks-")) / ".edgebook"
    env = {k: v for k, v in os.environ.items() if k != "EDGEBOOK_WIDGETS"}
    env["EDGEBOOK_DATA_DIR"] = str(data_dir)
    try:
        for path in paths:
            refresh(path, env)
    finally:
        info = find_live(str(data_dir), check_health=False)
        if info is not None and pid_alive(info.pid):
            os.kill(info.pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while pid_alive(info.pid) and time.monotonic() < deadline:
                time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
