"""edgebook: Rust HTTP handlers written in Jupyter notebooks, served by a Tornado gateway.

The package root holds entry points only. The notebook API (``edgebook.request``,
``edgebook.bench``, ...) is loaded on first use, so the gateway and the CLI never load
the notebook layer. Where each process lives: ``gateway/`` (the data plane down to the
workers), ``admin/`` (the admin API), ``build/`` (cargo), ``notebook/`` (the kernel side),
``jupyter/`` (the Jupyter server extension), ``cli/``; see docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# name -> (module, attribute): the notebook API, imported on first use (attribute None: the
# module itself, e.g. ``edgebook.session.current().admin``).
_NOTEBOOK_API = {
    "session": ("edgebook.notebook.session", None),
    "request": ("edgebook.notebook.session", "request"),
    "bench": ("edgebook.notebook.bench", "bench"),
    "compare": ("edgebook.notebook.bench", "compare"),
    "connect": ("edgebook.notebook.session", "connect"),
    "history": ("edgebook.notebook.session", "history"),
    "replay": ("edgebook.notebook.session", "replay"),
    "curl": ("edgebook.notebook.session", "curl"),
}

__all__ = ["__version__", *_NOTEBOOK_API]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _NOTEBOOK_API[name]
    except KeyError:
        raise AttributeError(f"module 'edgebook' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NOTEBOOK_API))


def load_ipython_extension(ipython) -> None:
    """``%load_ext edgebook``: the ``%%rust_handler``, ``%edgebook`` and friends magics."""
    importlib.import_module("edgebook.notebook.magics").load_ipython_extension(ipython)


def unload_ipython_extension(ipython) -> None:
    importlib.import_module("edgebook.notebook.magics").unload_ipython_extension(ipython)


def _jupyter_labextension_paths():
    """Where JupyterLab finds the sidebar extension (built into edgebook/labextension)."""
    return [{"src": "labextension", "dest": "@edgebook/labextension"}]


def _jupyter_server_extension_points():
    """Jupyter Server's entry point: the extension lives in ``edgebook.jupyter.extension``."""
    extension = importlib.import_module("edgebook.jupyter.extension")
    return [{"module": "edgebook.jupyter.extension", "app": extension.EdgebookExtension}]


def _load_into_running_ipython() -> None:
    """``import edgebook`` inside IPython or a notebook also loads the magics."""
    import sys
    ipython_mod = sys.modules.get("IPython")
    shell = ipython_mod.get_ipython() if ipython_mod is not None else None
    if shell is not None and "rust_handler" not in shell.magics_manager.magics["cell"]:
        load_ipython_extension(shell)  # registered directly: a later %load_ext is quiet too


_load_into_running_ipython()
