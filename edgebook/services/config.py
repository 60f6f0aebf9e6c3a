"""Checks on a service's config object; each failure is a ``ServiceConfigError``."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from .errors import ServiceConfigError


def number(config: dict, key: str, default: float, *, integer: bool = False,
           minimum: float = 0, strict: bool = True) -> float:
    """Fill in ``config[key]`` (default if absent) and check it is a number above minimum."""
    value = config.get(key)
    if value is None:
        value = config[key] = default
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) \
        or (integer and not isinstance(value, int)) \
        or (value <= minimum if strict else value < minimum)
    if bad:
        kind = "an integer" if integer else "a number"
        relation = "above" if strict else "at least"
        raise ServiceConfigError(f"'{key}' must be {kind} {relation} {minimum}")
    return value


def text(config: dict, key: str, default: Any = None, *, required: bool = False) -> Any:
    value = config.get(key)
    if value is None or value == "":
        if required:
            raise ServiceConfigError(f"'{key}' is required")
        value = config[key] = default
        return value
    if not isinstance(value, str):
        raise ServiceConfigError(f"'{key}' must be a string")
    return value


def flag(config: dict, key: str, default: bool) -> bool:
    value = config.setdefault(key, default)
    if not isinstance(value, bool):
        raise ServiceConfigError(f"'{key}' must be true or false")
    return value


def only(config: dict, allowed: set[str], kind: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ServiceConfigError(f"unknown {kind} option(s): {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(allowed))}")


def data_dir_path(config: dict, key: str, default: str, kind: str) -> str:
    """Fill in ``config[key]`` and check it is a path inside the data dir: relative, no
    ``..`` segment, no NUL. One rule for every kind that keeps files there."""
    path = text(config, key, default)
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in path:
        raise ServiceConfigError(f"{kind} '{key}' must be a relative path inside the data "
                                 "dir (no '..')")
    return path
