"""An OpenAPI document as a file: JSON, or YAML for ``.yaml``/``.yml`` paths (the CLI's
``edgebook openapi -o`` and the notebook's ``%edgebook openapi`` both write through here)."""

from __future__ import annotations

import json
import os

import yaml

#: Where the admin API serves the running endpoints' document.
ADMIN_DOCUMENT_PATH = "/api/openapi/endpoints.json"


def dump_document(document: dict, path: str | None = None) -> str:
    """The document as text: YAML for ``.yaml``/``.yml`` paths, JSON otherwise."""
    if path and path.lower().endswith((".yaml", ".yml")):
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def save_document(document: dict, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(dump_document(document, path))
