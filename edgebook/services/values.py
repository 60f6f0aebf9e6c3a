"""Driver values to JSON-safe values, the one place that decides how each type looks.

- integers, strings, booleans, null: as they are
- floats: as numbers; NaN and infinities (which JSON cannot hold) as the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
- ``Decimal`` (PostgreSQL ``numeric``): a string, so no digit is lost
- dates, times, datetimes: ISO 8601 strings; timedeltas: seconds as a number
- bytes (SQLite blobs, PostgreSQL ``bytea``): standard base64 strings
- UUIDs, IP addresses and anything else unknown: ``str(value)``
- arrays, records and decoded JSON: recursively
"""

from __future__ import annotations

import base64
import datetime
import decimal
import math
from typing import Any


def to_json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return str(value)
