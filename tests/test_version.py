"""One version for the Python package, the Rust SDK and the labextension."""

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_version():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_sdk_version_matches_pyproject():
    cargo = tomllib.loads((ROOT / "sdk" / "Cargo.toml").read_text())
    assert cargo["package"]["version"] == python_version()


def test_sdk_compat_version_matches_pyproject():
    cargo = tomllib.loads((ROOT / "sdk" / "compat" / "Cargo.toml").read_text())
    assert cargo["package"]["version"] == python_version()


def test_labextension_version_matches_pyproject():
    package = ROOT / "labextension" / "package.json"
    if not package.exists():
        return  # the labextension has not been started yet
    assert json.loads(package.read_text())["version"] == python_version()


def test_protocol_doc_names_the_current_sdk_version_in_its_example():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    assert re.search(r'"sdk_version":"%s"' % re.escape(python_version()), doc)


def test_installed_package_reports_the_same_version():
    import edgebook
    assert edgebook.__version__ == python_version()
