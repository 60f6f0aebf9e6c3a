"""Which event loop a gateway process runs on: uvloop when installed, unless turned off."""

import asyncio
import importlib.util

import pytest

from edgebook.gateway.eventloop import UVLOOP_ENV, event_loop_name, run_event_loop, uvloop_wanted

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def which() -> str:
    await asyncio.sleep(0)
    return event_loop_name()


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_env_turns_uvloop_off(monkeypatch, value):
    monkeypatch.setenv(UVLOOP_ENV, value)
    assert not uvloop_wanted()
    assert run_event_loop(which()) == "asyncio"


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop not installed")
def test_uvloop_by_default_when_installed(monkeypatch):
    monkeypatch.delenv(UVLOOP_ENV, raising=False)
    assert uvloop_wanted()
    assert run_event_loop(which()) == "uvloop"
