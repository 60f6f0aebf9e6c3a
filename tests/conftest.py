"""Shared test helpers: the fake worker's command line."""

import os
import sys

import pytest

from worker_script import FAKE_WORKER


def fake_worker_argv() -> list[str]:
    """A worker command that needs no cargo: the Python fake worker."""
    return [sys.executable, FAKE_WORKER]


@pytest.fixture
def fake_worker():
    return fake_worker_argv()
