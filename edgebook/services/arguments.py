"""Checks on the ``args`` object of a service call; each failure is a ``bad_request``."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .errors import ServiceError

_MISSING = object()


def bad_request(message: str) -> ServiceError:
    return ServiceError("bad_request", message)


def _given(args: dict, name: str, default: Any) -> Any:
    """``args[name]``; None when absent or null and a default exists, else bad_request."""
    value = args.get(name)
    if value is None and default is _MISSING:
        raise bad_request(f"missing argument '{name}'")
    return value


def text(args: dict, name: str, *, default: Any = _MISSING, allow_empty: bool = False,
         max_length: int | None = None) -> str:
    """``args[name]`` as a string (or ``default`` when absent or null)."""
    value = _given(args, name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise bad_request(f"argument '{name}' must be a string")
    if not value and not allow_empty:
        raise bad_request(f"argument '{name}' must not be empty")
    if max_length is not None and len(value) > max_length:
        raise bad_request(f"argument '{name}' is longer than {max_length} characters")
    return value


def integer(args: dict, name: str, *, default: Any = _MISSING, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """``args[name]`` as an integer; a string of digits is accepted too."""
    value = _given(args, name, default)
    if value is None:
        return default
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise bad_request(f"argument '{name}' must be an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"argument '{name}' must be an integer")
    if minimum is not None and value < minimum:
        raise bad_request(f"argument '{name}' must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise bad_request(f"argument '{name}' must be at most {maximum}")
    return value


def string_or_json(args: dict, name: str, *, default: Any = _MISSING) -> str:
    """A value to store as text: strings as they are, numbers and booleans as JSON."""
    value = _given(args, name, default)
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise bad_request(f"argument '{name}' must be a string or a number")


def json_list(args: dict, name: str) -> list:
    """``args[name]`` as a list; absent or null gives an empty list."""
    value = args.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"argument '{name}' must be an array")
    return value


def json_object(args: dict, name: str, *, default: Any = _MISSING) -> dict:
    value = _given(args, name, default)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise bad_request(f"argument '{name}' must be an object")
    return value


def base64_bytes(args: dict, name: str) -> bytes:
    """``args[name]`` decoded from standard base64 (with padding)."""
    value = text(args, name, allow_empty=True)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"argument '{name}' is not valid base64") from None


def present(args: dict, name: str) -> Any:
    """``args[name]``, which must be present (it may be any JSON value, even null)."""
    if name not in args:
        raise bad_request(f"missing argument '{name}'")
    return args[name]
