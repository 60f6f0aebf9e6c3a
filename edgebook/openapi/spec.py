"""Reading an OpenAPI 3.0 or 3.1 spec (YAML or JSON) into the operations to implement.

``load_spec`` parses and checks the version; ``operations`` lists one :class:`Operation`
per path and method with path-level parameters merged in, local ``$ref``s resolved
(recursion is cut, not followed forever), a generated ``operationId`` where the spec has
none, and an example for the main success response: the spec's own example if it has one,
else one made from the schema.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


class SpecError(ValueError):
    """The file is not an OpenAPI 3.0/3.1 spec we can read; the message says why."""


@dataclass
class Parameter:
    name: str
    location: str  # path, query, header, cookie
    required: bool
    schema: dict[str, Any]
    description: str | None = None
    declared: dict[str, Any] = field(default_factory=dict)  # the Parameter Object, resolved


@dataclass
class Operation:
    """One operation of a spec, ready to become a handler."""

    operation_id: str
    method: str  # upper case
    path: str
    summary: str | None
    description: str | None
    tags: list[str]
    parameters: list[Parameter]
    body_schema: dict[str, Any] | None  # JSON request body, resolved
    body_required: bool
    body_name: str | None  # the component name of the body schema, if it was a $ref
    success_status: int
    example: Any  # the success response's example body (None: no body)
    example_media: str | None
    responses: dict[str, Any]  # status -> Response Object, resolved

    @property
    def snake_name(self) -> str:
        return snake_case(self.operation_id)


def snake_case(name: str) -> str:
    """``getPetById`` -> ``get_pet_by_id``; ``get-pet`` -> ``get_pet`` (as the original's
    bundles name handler files)."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    name = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return name or "operation"


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """The spec in the file at ``path``; ``SpecError`` if it is not OpenAPI 3.0/3.1."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_spec(text, str(path))


def parse_spec(text: str, where: str = "the spec") -> dict[str, Any]:
    """A spec from its YAML or JSON text; ``SpecError`` if it is not OpenAPI 3.0/3.1."""
    try:
        spec = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"{where} is neither JSON nor YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{where} is not an OpenAPI document (not a mapping)")
    if "swagger" in spec:
        raise SpecError(f"{where} is Swagger {spec['swagger']}; only OpenAPI 3.0 and 3.1 "
                        "are supported (convert it first, e.g. with swagger2openapi)")
    version = str(spec.get("openapi", ""))
    if not re.match(r"3\.[01]\.", version + "."):
        raise SpecError(f"{where} has openapi: {version or '(missing)'}; only 3.0 and 3.1 "
                        "are supported")
    if not isinstance(spec.get("paths") or {}, dict):
        raise SpecError(f"{where}: paths must be a mapping")
    return _string_keys(spec)


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


class Resolver:
    """Resolves local ``$ref``s (``#/...``) of one spec."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise SpecError(f"only local $refs are supported, not {ref!r}")
        node: Any = self.spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise SpecError(f"$ref {ref!r} points at nothing")
            node = node[part]
        return node

    def deref(self, value: Any) -> Any:
        """One level: a ``$ref`` object replaced by what it points at."""
        seen = set()
        while isinstance(value, dict) and "$ref" in value and value["$ref"] not in seen:
            seen.add(value["$ref"])
            value = self.lookup(value["$ref"])
        return value

    def resolve(self, value: Any, depth: int = 0, stack: tuple[str, ...] = ()) -> Any:
        """Every ``$ref`` inside ``value`` replaced, recursion cut at a repeated ref.

        A resolved schema keeps its component name as ``x-component`` so generated code
        can name its types after it."""
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str):
                if ref in stack or depth > 32:
                    return {"x-recursive": ref.rsplit("/", 1)[-1]}
                target = self.resolve(self.lookup(ref), depth + 1, stack + (ref,))
                if isinstance(target, dict) and ref.startswith("#/components/schemas/"):
                    target = {**target, "x-component": ref.rsplit("/", 1)[-1]}
                return target
            return {k: self.resolve(v, depth + 1, stack) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, depth + 1, stack) for v in value]
        return value


def operations(spec: dict[str, Any]) -> list[Operation]:
    """The spec's operations in document order, operationIds made unique."""
    resolver = Resolver(spec)
    out: list[Operation] = []
    taken: set[str] = set()
    for path, item in (spec.get("paths") or {}).items():
        item = resolver.deref(item) or {}
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            out.append(_operation(resolver, path, method, op, shared, taken))
    return out


def _operation(resolver: Resolver, path: str, method: str, op: dict, shared: list,
               taken: set[str]) -> Operation:
    operation_id = str(op.get("operationId") or "") or _generated_id(method, path)
    base, n = operation_id, 2
    while snake_case(operation_id) in taken:
        operation_id, n = f"{base}{n}", n + 1
    taken.add(snake_case(operation_id))
    params: dict[tuple[str, str], Parameter] = {}
    for raw in list(shared) + list(op.get("parameters") or []):
        declared = resolver.resolve(raw)
        if not isinstance(declared, dict) or "name" not in declared:
            continue
        schema = declared.get("schema")
        if schema is None and isinstance(declared.get("content"), dict):
            first = next(iter(declared["content"].values()), {}) or {}
            schema = first.get("schema")
        location = str(declared.get("in", "query"))
        params[(location, str(declared["name"]))] = Parameter(
            name=str(declared["name"]), location=location,
            required=bool(declared.get("required")) or location == "path",
            schema=schema if isinstance(schema, dict) else {},
            description=declared.get("description"), declared=declared)
    for name in re.findall(r"\{([^}/]+)\}", path):  # a spec that forgot to declare one
        params.setdefault(("path", name), Parameter(name, "path", True, {"type": "string"}))
    body_schema, body_required, body_name = _request_body(resolver, op.get("requestBody"))
    responses = {str(k): resolver.resolve(v) for k, v in (op.get("responses") or {}).items()}
    status, example, media = _success_example(responses)
    return Operation(
        operation_id=operation_id, method=method.upper(), path=path,
        summary=op.get("summary"), description=op.get("description"),
        tags=[str(t) for t in op.get("tags") or []], parameters=list(params.values()),
        body_schema=body_schema, body_required=body_required, body_name=body_name,
        success_status=status, example=example, example_media=media, responses=responses)


def _generated_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path.replace("{", "by_")) if w]
    return "_".join([method.lower(), *words]) if words else f"{method.lower()}_root"


def _request_body(resolver: Resolver, raw: Any) -> tuple[dict | None, bool, str | None]:
    if raw is None:
        return None, False, None
    name = None
    body = resolver.deref(raw)
    if not isinstance(body, dict):
        return None, False, None
    content = body.get("content") or {}
    media = _json_media(content)
    if media is None:
        return None, bool(body.get("required")), None
    raw_schema = (content[media] or {}).get("schema")
    if isinstance(raw_schema, dict) and isinstance(raw_schema.get("$ref"), str):
        name = raw_schema["$ref"].rsplit("/", 1)[-1]
    schema = resolver.resolve(raw_schema) if raw_schema is not None else {}
    return schema if isinstance(schema, dict) else {}, bool(body.get("required")), name


def _json_media(content: dict) -> str | None:
    for media in content:
        base = media.split(";")[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return media
    return None


def _success_example(responses: dict[str, Any]) -> tuple[int, Any, str | None]:
    """The status, example body and media type of the main success response."""
    statuses = sorted(k for k in responses if k.isdigit() and k.startswith("2"))
    if not statuses:
        statuses = [k for k in responses if k.upper() == "2XX" or k == "default"]
    if not statuses:
        return 200, None, None
    key = statuses[0]
    status = int(key) if key.isdigit() else 200
    response = responses.get(key) or {}
    content = response.get("content") or {}
    if not content:
        return status, None, None
    media = _json_media(content) or next(iter(content))
    entry = content.get(media) or {}
    example = media_example(entry)
    return status, example, media


def media_example(entry: dict[str, Any]) -> Any:
    """A Media Type Object's example: ``example``, the first of ``examples``, the
    schema's own example, or one made from the schema."""
    if "example" in entry:
        return entry["example"]
    examples = entry.get("examples")
    if isinstance(examples, dict):
        for value in examples.values():
            if isinstance(value, dict) and "value" in value:
                return value["value"]
    return example_from_schema(entry.get("schema") or {})


def example_from_schema(schema: Any, depth: int = 0) -> Any:
    """A plausible value for ``schema`` (examples, defaults and enums first)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    for key in ("example", "default", "const"):
        if key in schema:
            return copy.deepcopy(schema[key])
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return copy.deepcopy(schema["examples"][0])
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_from_schema(schema[key][0], depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example_from_schema(part, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema_type(schema)
    if kind == "object" or "properties" in schema:
        return {name: example_from_schema(prop, depth + 1)
                for name, prop in (schema.get("properties") or {}).items()}
    if kind == "array":
        item = example_from_schema(schema.get("items") or {}, depth + 1)
        return [] if item is None else [item]
    if kind == "integer":
        return schema.get("minimum", 0) if isinstance(schema.get("minimum"), int) else 0
    if kind == "number":
        return 0.0
    if kind == "boolean":
        return False
    if kind == "string":
        return {"date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01",
                "uuid": "00000000-0000-0000-0000-000000000000", "email": "user@example.com",
                "uri": "https://example.com/"}.get(str(schema.get("format")), "string")
    return None


def schema_type(schema: dict[str, Any]) -> str | None:
    """The schema's one non-null type (3.1 type lists and 3.0 ``nullable`` alike)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if len(kinds) == 1 else None
    return kind


def is_nullable(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    return bool(schema.get("nullable")) or (isinstance(kind, list) and "null" in kind)
