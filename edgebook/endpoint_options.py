"""The options of an endpoint (workers, timeout, body limit, build profile, resource limits),
declared once: their JSON schema, default, check and command-line flags.

The admin API's request schema and validation (gateway/spec.py), the admin client's
``deploy``, ``edgebook deploy`` and ``%%rust_handler`` all take them from here, so an option
added here reaches every one of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

from .sandbox import Limits

PROFILES = ("dev", "release")
MAX_WORKERS = 64
MAX_TIMEOUT = 3600.0
_LIMIT_HELP = {
    "limit_address_space": "memory (address space) of each worker in bytes",
    "limit_cpu_seconds": "CPU seconds of each worker (default: unlimited)",
    "limit_open_files": "open files of each worker",
    "limit_processes": "processes and threads of the endpoint's workers",
    "limit_file_size": "largest file a worker may write, in bytes",
}


@dataclasses.dataclass(frozen=True)
class Option:
    """One endpoint option: as the admin API takes it, and as a command line spells it."""

    name: str
    schema: dict[str, Any]
    default: Any
    help: str
    #: command-line spellings, the long one first; none for ``profile`` (``--release``)
    flags: tuple[str, ...] = ()
    metavar: str = "N"


def _limit(name: str) -> Option:
    default = getattr(Limits(), Limits.OPTIONS[name])
    shown = "" if default is None else f" (default {default})"
    return Option(name, {"type": ["integer", "null"], "minimum": 1}, None,
                  _LIMIT_HELP[name] + shown, ("--" + name.replace("_", "-"),),
                  "BYTES" if "bytes" in _LIMIT_HELP[name] else "N")


OPTIONS: tuple[Option, ...] = (
    Option("workers", {"type": "integer", "minimum": 1, "maximum": MAX_WORKERS}, 1,
           "worker processes (default 1)", ("--workers", "-w"), "K"),
    Option("timeout", {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT}, 30.0,
           "per-request timeout in seconds (default 30)", ("--timeout", "-t"), "SECONDS"),
    Option("max_body", {"type": "integer", "minimum": 0}, 10 * 1024 * 1024,
           "largest request body in bytes (default 10 MiB)", ("--max-body",), "BYTES"),
    Option("profile", {"enum": list(PROFILES)}, "dev", "build profile"),
    *(_limit(name) for name in Limits.OPTIONS),
)
NAMES = tuple(option.name for option in OPTIONS)
#: The options the gateway fills in when a request leaves them out.
DEFAULTS = {o.name: o.default for o in OPTIONS if o.default is not None}


def check(options: dict[str, Any]) -> None:
    """Raise ValueError naming the first option in ``options`` that is out of its range
    (options not given are not checked; ``None`` means "the default")."""
    unknown = set(options) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if v is not None}
    if "workers" in given:
        workers = given["workers"]
        if not _is_int(workers) or not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be an integer from 1 to {MAX_WORKERS}")
    if "timeout" in given:
        timeout = given["timeout"]
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) \
                or not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be a number of seconds, above 0 and at most "
                             f"{MAX_TIMEOUT:g}")
    if "max_body" in given and (not _is_int(given["max_body"]) or given["max_body"] < 0):
        raise ValueError("max_body must be a non-negative integer (bytes)")
    if "profile" in given and given["profile"] not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}")
    Limits.from_options(given)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def flag_arguments() -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """``(flags, keyword arguments)`` for argparse's ``add_argument`` (and IPython's
    ``@argument``), one per option a command line sets by name."""
    for option in OPTIONS:
        if not option.flags:
            continue
        kind = option.schema["type"]
        number = float if kind == "number" else int
        yield option.flags, {"dest": option.name, "type": number, "help": option.help,
                             "metavar": option.metavar}


def from_flags(args: Any) -> dict[str, Any]:
    """The options a parsed command line gave (``--release`` is the profile)."""
    given = {option.name: getattr(args, option.name, None)
             for option in OPTIONS if option.flags}
    if getattr(args, "release", False):
        given["profile"] = "release"
    return {name: value for name, value in given.items() if value is not None}
