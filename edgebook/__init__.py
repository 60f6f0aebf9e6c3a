"""edgebook: Rust HTTP handlers written in Jupyter notebooks, served by a Tornado gateway."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("edgebook")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

# The notebook API. These modules import only the standard library at load time (pandas,
# matplotlib and IPython are imported when first used), so the gateway process stays light.
from .bench import bench, compare  # noqa: E402
from .http import request  # noqa: E402
from .session import connect  # noqa: E402


def history(name: str | None = None):
    """The last requests sent from this kernel (per endpoint) as a DataFrame."""
    from . import session
    current = session.peek()
    if current is None:
        from .history import History
        return History().df()
    return current.history.df(name)


def replay(n: int = -1):
    """Send request ``n`` of :func:`history` again (default: the last one)."""
    return _history().replay(n)


def curl(n: int = -1) -> str:
    """Request ``n`` of :func:`history` as a curl command (default: the last one)."""
    return _history().curl(n)


def _history():
    from . import session
    current = session.peek()
    if current is None:
        raise IndexError("no requests sent yet: the history is empty")
    return current.history


def load_ipython_extension(ipython):
    """``%load_ext edgebook``: the ``%%rust_handler``, ``%edgebook`` and friends magics."""
    from .magics import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as unload
    unload(ipython)


def _jupyter_labextension_paths():
    """Where JupyterLab finds the sidebar extension (built into edgebook/labextension)."""
    return [{"src": "labextension", "dest": "@edgebook/labextension"}]


def _jupyter_server_extension_points():
    from .serverextension import EdgebookExtension
    return [{"module": "edgebook.serverextension", "app": EdgebookExtension}]


def _load_into_running_ipython() -> None:
    """``import edgebook`` inside IPython or a notebook also loads the magics."""
    import sys
    ipython_mod = sys.modules.get("IPython")
    shell = ipython_mod.get_ipython() if ipython_mod is not None else None
    if shell is not None and "rust_handler" not in shell.magics_manager.magics["cell"]:
        from .magics import load_ipython_extension as load
        load(shell)  # registered directly, so a later %load_ext edgebook is quiet too


_load_into_running_ipython()
