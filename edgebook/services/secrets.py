"""The one rule for showing a config or an error text: secrets become ``****``, passwords are
cut out of URLs. A secret is a key the connector declares secret, or any key whose name looks
like one (password, secret, token, credential, private, api key, access key, session), at
any depth."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "****"
_SECRET_KEY = re.compile(r"(pass(word)?|secret|token|credential|private|api[_-]?key|"
                         r"access[_-]?key|session)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<at>@)")


def mask(value: Any, secret_keys: Iterable[str] = ()) -> Any:
    """A copy of ``value`` (a config) as an API may show it."""
    return _mask(value, "", frozenset(secret_keys))


def _mask(value: Any, key: str, secret_keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k), secret_keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key, secret_keys) for v in value]
    if key and (key in secret_keys or _SECRET_KEY.search(key)) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact(value)
    return value


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (an error message, say) as an API may show it: URL passwords cut out, and
    every known secret value (a password taken from a DSN) replaced."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
