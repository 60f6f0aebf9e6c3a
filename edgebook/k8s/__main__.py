"""``python -m edgebook.k8s --write``: regenerate ``deploy/manifests`` from the chart's
default values (``--check`` exits 1 if it is stale)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .render import REPO_CHART, REPO_MANIFESTS, render, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebook.k8s")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite deploy/manifests")
    group.add_argument("--check", action="store_true", help="exit 1 if deploy/manifests is stale")
    args = parser.parse_args(argv)
    manifests = render(chart=REPO_CHART)
    if args.write:
        for path in write(manifests, REPO_MANIFESTS):
            print(f"wrote {path.relative_to(REPO_MANIFESTS.parent.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        write(manifests, scratch)
        fresh = {p.name: p.read_text() for p in Path(scratch).glob("*.yaml")}
    current = {p.name: p.read_text() for p in REPO_MANIFESTS.glob("*.yaml")}
    if fresh != current:
        print("deploy/manifests is stale: run `python -m edgebook.k8s --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
