"""A handler stub per operation that compiles as generated and answers 501.

The stub reads its inputs typed from the spec (path and query parameters with the SDK's
``require_path_param``/``require_query_param``/``query_param_as``, headers, a JSON body
deserialised into serde structs generated from the body's schema), then answers
``501 Not Implemented`` with the spec's example of its success response. Its leading
``//! ```openapi`` block carries the operation (operationId, summary, parameters, declared
responses; the body by the name of its struct), so a document exported from the running
stub describes the same operation.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .rust import render_block
from .spec import Operation, is_nullable, schema_type, snake_case

_KEYWORDS = {"as", "break", "const", "continue", "else", "enum", "extern", "false", "fn",
             "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
             "ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use",
             "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do",
             "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield",
             "try", "gen"}
_UNRAWABLE = {"self", "Self", "super", "crate", "_"}
#: Names a handler already uses (the SDK's prelude, std's prelude): a schema called
#: ``Response`` becomes the struct ``ResponseSchema``.
_TAKEN_TYPES = {"Request", "Response", "HandlerError", "Storage", "StorageType", "DbPool",
                "DbResult", "RedisPool", "EnvVars", "JsonValue", "Value", "Deserialize",
                "Serialize", "Option", "Result", "Vec", "String", "Box", "HashMap", "Some",
                "None", "Ok", "Err", "Default", "Clone", "Debug", "Send", "Sync", "Sized",
                "Copy", "Drop", "Fn", "Iterator", "ToString", "Into", "From"}
#: Larger examples are embedded as a raw JSON string instead of a ``json!`` literal, which
#: keeps the macro's recursion and the compile time small.
MAX_INLINE_EXAMPLE = 1500


def pascal_case(name: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", snake_case(name))
    out = "".join(w[:1].upper() + w[1:] for w in words if w)
    if not out or out[0].isdigit():
        out = "T" + out
    return out


def type_name(name: str) -> str:
    """A Rust type name for a schema name that does not hide a prelude name."""
    name = pascal_case(name)
    return name + "Schema" if name in _TAKEN_TYPES else name


def rust_ident(name: str) -> str:
    """A Rust identifier for a JSON name: snake_case, keywords as raw identifiers."""
    ident = snake_case(name)
    if ident[0].isdigit():
        ident = "f_" + ident
    if ident in _UNRAWABLE:
        return ident + "_"
    if ident in _KEYWORDS:
        return "r#" + ident
    return ident


class StructWriter:
    """Serde structs for JSON schemas; ``rust_type`` returns a field type and remembers
    the structs it needs, in dependency order."""

    def __init__(self) -> None:
        self.structs: dict[str, str] = {}  # name -> Rust source
        self._shapes: dict[str, str] = {}  # name -> canonical schema (collisions)

    def rust_type(self, schema: Any, hint: str) -> str:
        if not isinstance(schema, dict):
            return "JsonValue"
        if "x-recursive" in schema:
            return f"Box<{type_name(schema['x-recursive'])}>"
        if "allOf" in schema and isinstance(schema["allOf"], list):
            merged = _merge_all_of(schema)
            if merged is not None:
                return self.rust_type(merged, hint)
            return "JsonValue"
        if "oneOf" in schema or "anyOf" in schema:
            return "JsonValue"
        kind = schema_type(schema)
        if kind == "string":
            return "String"
        if kind == "integer":
            return "i32" if schema.get("format") == "int32" else "i64"
        if kind == "number":
            return "f32" if schema.get("format") == "float" else "f64"
        if kind == "boolean":
            return "bool"
        if kind == "array":
            return f"Vec<{self.rust_type(schema.get('items'), hint + 'Item')}>"
        if kind == "object" or "properties" in schema:
            if schema.get("properties"):
                return self.struct(schema, schema.get("x-component") or hint)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                value = self.rust_type(extra, hint + "Value")
                return f"std::collections::HashMap<String, {value}>"
        return "JsonValue"

    def struct(self, schema: dict[str, Any], name: str) -> str:
        name = type_name(name)
        shape = json.dumps(schema, sort_keys=True, default=str)
        base, n = name, 2
        while name in self._shapes and self._shapes[name] != shape:
            name, n = f"{base}{n}", n + 1
        if name in self._shapes:
            return name
        self._shapes[name] = shape
        self.structs[name] = ""  # reserve the name (and the order) before the fields
        required = set(schema.get("required") or [])
        lines = []
        if schema.get("description"):
            lines.append(f"/// {_one_line(schema['description'])}")
        lines += ["#[derive(Debug, Clone, Deserialize, Serialize)]", "#[allow(dead_code)]",
                  f"struct {name} {{"]
        used: set[str] = set()
        for prop, prop_schema in (schema.get("properties") or {}).items():
            ident = rust_ident(prop)
            while ident in used:
                ident += "_"
            used.add(ident)
            field_type = self.rust_type(prop_schema, name + pascal_case(prop))
            optional = prop not in required or (isinstance(prop_schema, dict)
                                                and is_nullable(prop_schema))
            attrs = []
            if ident.removeprefix("r#") != prop:
                attrs.append(f"rename = {_rust_string(prop)}")
            if optional:
                field_type = f"Option<{field_type}>"
                attrs.append('default, skip_serializing_if = "Option::is_none"')
            if isinstance(prop_schema, dict) and prop_schema.get("description"):
                lines.append(f"    /// {_one_line(prop_schema['description'])}")
            if attrs:
                lines.append(f"    #[serde({', '.join(attrs)})]")
            lines.append(f"    {ident}: {field_type},")
        lines.append("}")
        self.structs[name] = "\n".join(lines)
        return name

    def source(self) -> str:
        return "\n\n".join(s for s in self.structs.values() if s)


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any] | None:
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            return None
        if "allOf" in part:
            part = _merge_all_of(part) or {}
        if schema_type(part) not in (None, "object") or (
                "properties" not in part and schema_type(part) != "object"):
            return None
        merged["properties"].update(part.get("properties") or {})
        merged["required"] += list(part.get("required") or [])
    if "x-component" in schema:
        merged["x-component"] = schema["x-component"]
    return merged


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:200]


def _rust_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_macro(value: Any) -> str:
    """``value`` as the argument of ``json!`` (Rust string escapes, not JSON's)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return _rust_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(json_macro(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_rust_string(str(k))}: {json_macro(v)}"
                               for k, v in value.items()) + "}"
    return _rust_string(str(value))


def raw_string(text: str) -> str:
    hashes = "#"
    while f'"{hashes}' in text:
        hashes += "#"
    return f'r{hashes}"{text}"{hashes}'


# -- 3.0 schemas as 3.1 (for the block of a generated handler) -----------------------------

def to_31(value: Any) -> Any:
    """A schema (or any spec fragment) with 3.0-only keywords rewritten for 3.1, and the
    resolver's markers removed."""
    if isinstance(value, list):
        return [to_31(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "x-recursive" in value:
        return {}
    out = {k: to_31(v) for k, v in value.items() if k not in ("x-component", "nullable")}
    if value.get("nullable") is True and "type" in out and not isinstance(out["type"], list):
        out["type"] = [out["type"], "null"]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(value.get(bound), bool):
            if value[bound] and limit in value:
                out[bound] = out.pop(limit)
            else:
                out.pop(bound)
    return out


# -- the handler ---------------------------------------------------------------------------

def _param_type(schema: dict[str, Any]) -> str:
    kind = schema_type(schema)
    if kind == "integer":
        return "i32" if schema.get("format") == "int32" else "i64"
    if kind == "number":
        return "f64"
    if kind == "boolean":
        return "bool"
    return "String"


def stub_source(op: Operation) -> str:
    """The whole Rust source of ``op``'s stub handler."""
    writer = StructWriter()
    body_type = None
    if op.body_schema is not None:
        body_type = writer.rust_type(op.body_schema, op.body_name or f"{op.operation_id}Body")
    block = _block(op, body_type, writer)
    lines: list[str] = [render_block(block).rstrip("\n"),
                        "use rust_edge_gateway_sdk::prelude::*;", ""]
    if writer.structs:
        lines += [writer.source(), ""]
    summary = _one_line(op.summary or op.description or f"{op.method} {op.path}")
    lines += [f"/// {op.operation_id}: {summary}",
              "/// Generated from the spec: it reads the typed inputs and answers 501 with the",
              "/// spec's example response. Replace the body to implement the operation.",
              "fn handle(req: Request) -> Result<Response, HandlerError> {"]
    names: list[str] = []
    for param in op.parameters:
        line = _param_line(param, names)
        if line:
            lines.append(f"    {line}")
    if body_type is not None:
        names.append("body")
        if op.body_required:
            lines.append(f"    let body: {body_type} = req.json()?;")
        else:
            lines.append(f"    let body: Option<{body_type}> = "
                         "if req.body.is_some() { Some(req.json()?) } else { None };")
    if names:
        joined = ", ".join(f"&{n}" for n in names)
        lines.append(f"    let _ = ({joined}{',' if len(names) == 1 else ''});")
    lines += [f"    // The spec's example of the {op.success_status} response, with 501 until "
              "this is written.", f"    {_response_expr(op)}", "}", ""]
    return "\n".join(lines)


def _param_line(param, names: list[str]) -> str | None:
    ident = rust_ident(param.name)
    while ident in names or ident in ("req", "body"):
        ident += "_"
    key = _rust_string(param.name)
    if param.location == "path":
        rust_type = _param_type(param.schema)
        names.append(ident)
        return f"let {ident}: {rust_type} = req.require_path_param({key})?;"
    if param.location == "query":
        if schema_type(param.schema) == "array":
            names.append(ident)
            return f"let {ident}: Vec<String> = req.query_all({key});"
        rust_type = _param_type(param.schema)
        names.append(ident)
        if param.required:
            return f"let {ident}: {rust_type} = req.require_query_param({key})?;"
        return f"let {ident}: Option<{rust_type}> = req.query_param_as({key});"
    if param.location == "header":
        names.append(ident)
        if param.required:
            return f"let {ident}: String = req.require_header({key})?.clone();"
        return f"let {ident}: Option<String> = req.header({key}).cloned();"
    return None  # cookies: read them from the Cookie header when implementing


def _response_expr(op: Operation) -> str:
    example = op.example
    media = (op.example_media or "").split(";")[0].strip().lower()
    if example is None:
        message = _rust_string(f"Not implemented: {op.operation_id}")
        return f"Ok(Response::json(501, json!({{\"error\": {message}}})))"
    if media and not (media == "application/json" or media.endswith("+json")):
        text = example if isinstance(example, str) else json.dumps(example)
        return (f"Ok(Response::text(501, {_rust_string(text)})"
                f".with_header(\"Content-Type\", {_rust_string(op.example_media)}))")
    literal = json_macro(example)
    if len(literal) <= MAX_INLINE_EXAMPLE:
        return f"Ok(Response::json(501, json!({literal})))"
    text = json.dumps(example, ensure_ascii=False)
    return ("Ok(Response::json(501, serde_json::from_str::<JsonValue>("
            f"{raw_string(text)}).map_err(HandlerError::SerializationError)?))")


def _block(op: Operation, body_type: str | None, writer: StructWriter) -> dict[str, Any]:
    block: dict[str, Any] = {"operationId": op.operation_id}
    if op.summary:
        block["summary"] = _one_line(op.summary)
    if op.tags:
        block["tags"] = list(op.tags)
    params = []
    for param in op.parameters:
        declared = copy.deepcopy(param.declared) or {"name": param.name, "in": param.location,
                                                     "schema": param.schema}
        declared.pop("example", None)
        declared.pop("examples", None)
        if declared.get("description"):
            declared["description"] = _one_line(declared["description"])
        if param.location == "path":
            declared["required"] = True
        params.append(to_31(declared))
    if params:
        block["parameters"] = params
    if body_type is not None:
        block["requestBody"] = body_type if op.body_required else {"required": False,
                                                                  "schema": body_type}
    responses = {}
    for status, response in op.responses.items():
        if not isinstance(response, dict):
            continue
        entry: dict[str, Any] = {"description": _one_line(response.get("description") or
                                                          "Response")}
        content = response.get("content") or {}
        json_media = next((m for m in content if m.split(";")[0].strip() == "application/json"),
                          None)
        if json_media is not None and isinstance(content[json_media], dict) \
                and "schema" in content[json_media]:
            schema = content[json_media]["schema"]
            entry["schema"] = writer.rust_type(schema, f"{op.operation_id}{status}Response")
        elif content:
            entry["content"] = {media: {"schema": to_31(obj["schema"])}
                                for media, obj in content.items()
                                if isinstance(obj, dict) and "schema" in obj}
        responses[status] = entry
    if responses:
        block["responses"] = responses
    return block
