"""Where the Python fake worker lives for the tests: somewhere its user can read it.

Workers drop to an unprivileged user when the tests run as root, and the checkout may sit in
a directory that user cannot enter (a clone into ``mktemp -d`` is 0700); so the script is
copied once into a world-readable temporary directory, removed at exit.
"""

import atexit
import os
import shutil
import sys
import tempfile

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources", "fake_worker.py")
_DIR = tempfile.mkdtemp(prefix="edgebook-fake-worker-")
os.chmod(_DIR, 0o755)
FAKE_WORKER = shutil.copy(_SOURCE, _DIR)
os.chmod(FAKE_WORKER, 0o644)
atexit.register(shutil.rmtree, _DIR, True)

#: argv of a fake worker
FAKE = [sys.executable, FAKE_WORKER]


_READABLE: str | None = None


def readable_tree() -> str:
    """A directory another user can read, holding a copy of the ``edgebook`` package and of
    ``tests/resources``: tests that run Python as ``nobody`` put it on PYTHONPATH (the
    checkout itself may be in a 0700 directory). Made once, removed at exit."""
    global _READABLE
    if _READABLE is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        target = tempfile.mkdtemp(prefix="edgebook-readable-")
        atexit.register(shutil.rmtree, target, True)
        ignore = shutil.ignore_patterns("labextension", "__pycache__")
        shutil.copytree(os.path.join(root, "edgebook"), os.path.join(target, "edgebook"),
                        ignore=ignore)
        shutil.copytree(os.path.join(root, "tests", "resources"),
                        os.path.join(target, "resources"), ignore=ignore)
        for dirpath, dirnames, filenames in os.walk(target):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        _READABLE = target
    return _READABLE
