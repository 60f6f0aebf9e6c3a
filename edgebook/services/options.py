"""``URL-or-options`` as users type them (CLI, ``%edgebook service add``) -> a config object.

``edgebook service add cache redis redis://127.0.0.1:6379/0`` and
``edgebook service add files3 s3 bucket=pets endpoint_url=http://127.0.0.1:9000`` both end
up as the JSON config the admin API stores. A lone URL becomes the kind's URL field; each
``key=value`` sets one field, with integers, floats, ``true``/``false`` and JSON values
(``{...}``, ``[...]``) read as such.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import ServiceConfigError

#: The config field a lone URL (or path) fills in, per kind.
URL_FIELD = {"postgres": "dsn", "redis": "url", "sqlite": "path", "files": "path",
             "s3": "endpoint_url"}


def parse_options(kind: str, words: list[str]) -> dict[str, Any]:
    """The config for ``kind`` described by ``words`` (a URL and/or ``key=value`` pairs)."""
    config: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key and "://" not in key and "/" not in key:
            config[key] = _value(value)
        elif kind in URL_FIELD and URL_FIELD[kind] not in config:
            config[URL_FIELD[kind]] = word
        else:
            raise ServiceConfigError(
                f"cannot read {word!r}: give a URL once, then options as key=value")
    return config


def _value(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            raise ServiceConfigError(f"{text!r} is not valid JSON") from None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
