"""edgebook: Rust HTTP handlers written in Jupyter notebooks, served by a Tornado gateway."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("edgebook")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
