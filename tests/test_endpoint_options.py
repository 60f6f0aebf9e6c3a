"""An endpoint's options are declared once (edgebook/endpoint_options.py) and reach the admin
API's schema and checks, the admin client, ``edgebook deploy`` and ``%%rust_handler``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys

import pytest

from control_plane_helpers import start_gateway, stop_gateway

from edgebook import endpoint_options
from edgebook.cli.main import build_parser
from edgebook.client import AdminClient
from edgebook.gateway.spec import DeployRejected, check_options, request_schema


def cli_flags() -> set[str]:
    deploy = build_parser()._subparsers._group_actions[0].choices["deploy"]
    return {flag for action in deploy._actions for flag in action.option_strings}


def test_every_option_reaches_the_schema_the_cli_and_the_cell_magic():
    from edgebook.notebook.magics import RustHandlerMagics
    magic = {flag for action in RustHandlerMagics.rust_handler.parser._actions
             for flag in action.option_strings}
    schema = request_schema()["properties"]
    for option in endpoint_options.OPTIONS:
        assert schema[option.name] == option.schema
        for flag in option.flags:
            assert flag in cli_flags() and flag in magic, flag
    assert "--release" in cli_flags() and "--release" in magic  # the profile's flag


def test_an_option_declared_once_is_a_cli_flag(monkeypatch):
    planted = endpoint_options.Option("limit_planted", {"type": "integer"}, None, "a test",
                                      ("--limit-planted",))
    monkeypatch.setattr(endpoint_options, "OPTIONS", (*endpoint_options.OPTIONS, planted))
    assert "--limit-planted" in cli_flags()


def test_the_checks_are_the_gateways():
    for bad, message in ((dict(workers=0), "workers must be an integer from 1 to 64"),
                         (dict(timeout=0), "timeout must be a number of seconds"),
                         (dict(max_body=-1), "max_body must be a non-negative integer"),
                         (dict(profile="fast"), "profile must be one of dev, release"),
                         (dict(limit_processes=0), "limit_processes must be a positive"),
                         (dict(bogus=1), "unknown option(s): bogus")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            endpoint_options.check(bad)
        if "bogus" not in bad:
            with pytest.raises(DeployRejected, match=message.split("(")[0]):
                check_options({**endpoint_options.DEFAULTS, **bad})
    endpoint_options.check({"workers": None, "limit_processes": 8})


def test_flags_become_options():
    @dataclasses.dataclass
    class Args:
        workers: int | None = 2
        timeout: float | None = None
        limit_open_files: int | None = 100
        release: bool = True

    assert endpoint_options.from_flags(Args()) == {
        "workers": 2, "limit_open_files": 100, "profile": "release"}


def test_the_client_sends_any_option_and_refuses_an_unknown_one(tmp_path):
    async def main():
        gateway, _, server, url = await start_gateway(str(tmp_path), token="t0ken")
        try:
            client = AdminClient(url, "t0ken")
            with pytest.raises(TypeError, match="unknown endpoint option"):
                client.deploy("echo", "GET", "/echo", "tag: a", limit_planted=3)
            result = await asyncio.to_thread(client.deploy, "echo", "GET", "/echo", "tag: a",
                                             limit_open_files=100, workers=None)
            options = result["endpoint"]["options"]
            assert options["limit_open_files"] == 100 and options["workers"] == 1
        finally:
            await stop_gateway(gateway, server)
    asyncio.run(main())


CELL_SCRIPT = r"""
import json
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "edgebook")
result = ip.run_cell('%%rust_handler GET /x --limit-processes 0\nfn handle(r: Request) -> Response { Response::ok(json!({})) }')
error = result.error_in_exec
print(json.dumps([type(error).__name__, str(error)]))
"""


def test_a_cell_flag_out_of_range_is_a_usage_error_naming_the_flag(tmp_path):
    done = subprocess.run([sys.executable, "-c", CELL_SCRIPT], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kind, message = json.loads(done.stdout.strip().splitlines()[-1])
    assert kind == "UsageError"
    assert message == "%%rust_handler: --limit-processes must be a positive integer or null"
