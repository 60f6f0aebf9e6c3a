"""How the gateway's objects read in the admin API: JSON-able values (dataclasses, enums,
objects with ``to_dict``) and log lines."""

from __future__ import annotations

import dataclasses
from typing import Any


def field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    for attr in ("to_dict", "as_dict", "_asdict"):
        method = getattr(value, attr, None)
        if callable(method):
            return jsonable(method())
    if hasattr(value, "value"):  # enums
        return jsonable(value.value)
    return str(value)


def log_line(line: Any) -> dict:
    data = jsonable(line)
    if isinstance(data, str):
        return {"text": data}
    return data
