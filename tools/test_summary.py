"""The end of `make test`: every suite that was skipped, and how to run it (or: none)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(path: str) -> int:
    report = Path(path)
    lines = [line for line in (report.read_text().splitlines() if report.exists() else [])
             if line.strip()]
    if not lines:
        print("make test: every suite ran; nothing was skipped.")
        return 0
    bar = "!" * 78
    print(f"\n{bar}\nmake test passed, but these were SKIPPED (install what each names to run "
          f"them;\n.ci/run installs them all and makes each one mandatory):")
    for line in lines:
        print(f"  - {line}")
    print(bar)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
