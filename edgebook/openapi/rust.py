"""What a handler's Rust source says about its API, as OpenAPI pieces.

Three sources of truth, cheapest first:

* an ``//! ```openapi`` block among the leading inner doc comments (beside the
  ``//! ```cargo`` block, before any code), holding an OpenAPI Operation Object in YAML or
  JSON. Shorthands: ``requestBody: TypeName`` and ``responses: {"200": TypeName}`` name
  a type instead of spelling out a schema (``Vec<Pet>`` and ``Option<Pet>`` work; a named
  type is looked up among the structs and enums of the same source), and a request body
  or response with ``schema`` (a type name or a JSON Schema) instead of ``content``
  means ``content: {application/json: {schema: ...}}``, e.g.
  ``responses: {"200": {description: The pets, schema: Vec<Pet>}}``.
* the parameter accessors the handler calls: ``path_param_as::<i64>("id")``,
  ``require_query_param::<u32>("page")``, ``query_param("q")`` and friends give the
  parameter's name, place, type and whether it is required.
* ``req.json::<T>()`` (or ``let x: T = req.json()``) with ``T`` a struct of the source
  gives the request body's schema when the block does not declare one.

The struct parser reads ``struct Name { field: Type, ... }`` with primitive, ``String``,
``Option<T>``, ``Vec<T>``, ``HashMap<String, T>``, ``serde_json::Value`` and other structs
of the source as field types, honours ``#[serde(rename = "..")]``, ``#[serde(default)]``,
``#[serde(skip)]`` and ``#[serde(rename_all = "..")]``, and reads enums of unit variants as
string enums. Anything else becomes an unconstrained schema rather than a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..rustsource import blank_rust


class OpenAPIBlockError(ValueError):
    """The ``//! ```openapi`` block is not valid YAML/JSON or not an object."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


# -- the //! ```openapi block --------------------------------------------------------------

_BLOCK_OPEN = re.compile(r"^//!\s?```\s*openapi\s*$")
_BLOCK_CLOSE = re.compile(r"^//!\s?```\s*$")
_ANY_FENCE = re.compile(r"^//!\s?```")


def operation_block(source: str) -> dict[str, Any] | None:
    """The Operation Object of the source's leading ``//! ```openapi`` block, if any."""
    lines = source.splitlines()
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if not stripped or (stripped.startswith("//") and not stripped.startswith("//!")):
            index += 1
            continue
        if not stripped.startswith("//!"):
            return None  # code: inner doc comments are over
        if _BLOCK_OPEN.match(stripped):
            return _parse_block(lines, index + 1)
        if _ANY_FENCE.match(stripped):  # another fenced block (e.g. ```cargo): skip it
            index += 1
            while index < len(lines) and not _BLOCK_CLOSE.match(lines[index].strip()):
                index += 1
        index += 1
    return None


def _parse_block(lines: list[str], start: int) -> dict[str, Any]:
    body = []
    for number in range(start, len(lines)):
        stripped = lines[number].strip()
        if _BLOCK_CLOSE.match(stripped):
            text = "\n".join(body)
            try:
                data = yaml.safe_load(text) if text.strip() else {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = start + 1 + mark.line if mark is not None else start
                raise OpenAPIBlockError(f"the ```openapi block is not valid YAML: "
                                        f"{getattr(exc, 'problem', None) or exc}",
                                        line) from None
            if not isinstance(data, dict):
                raise OpenAPIBlockError("the ```openapi block must hold an object (an "
                                        "OpenAPI Operation Object)", start)
            return _stringify_keys(data)
        if not stripped.startswith("//!"):
            break
        text = stripped[3:]
        body.append(text[1:] if text.startswith(" ") else text)
    raise OpenAPIBlockError("the ```openapi block is not closed with //! ```", start)


def _stringify_keys(value: Any) -> Any:
    """YAML reads ``200:`` as an int key; OpenAPI wants strings."""
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


def render_block(operation: dict[str, Any]) -> str:
    """An ``//! ```openapi`` block (with a trailing newline) holding ``operation``."""
    text = yaml.safe_dump(operation, sort_keys=False, default_flow_style=None, width=88,
                          allow_unicode=True)
    lines = ["//! ```openapi"] + [f"//! {line}".rstrip() for line in text.splitlines()]
    lines.append("//! ```")
    return "\n".join(lines) + "\n"


# -- comments out, offsets kept ------------------------------------------------------------

def strip_comments(source: str) -> str:
    """The source with comments blanked (newlines and string literals kept, offsets too)."""
    return blank_rust(source, literals=False)


# -- structs and enums ---------------------------------------------------------------------

@dataclass
class RustField:
    name: str  # the JSON name (after serde renames)
    rust_type: str
    required: bool
    description: str | None = None


@dataclass
class RustType:
    """A struct (``fields``) or a unit-variant enum (``variants``) of the source."""

    name: str
    derives: set[str] = field(default_factory=set)
    fields: list[RustField] | None = None
    variants: list[str] | None = None
    description: str | None = None

    @property
    def deserializable(self) -> bool:
        return "Deserialize" in self.derives


_ITEM = re.compile(r"(?P<attrs>(?:\s*#\[[^\]]*(?:\[[^\]]*\][^\]]*)*\])*)\s*"
                   r"(?:pub(?:\s*\([^)]*\))?\s+)?(?P<kind>struct|enum)\s+(?P<name>[A-Za-z_]\w*)"
                   r"\s*(?:<[^>{]*>)?\s*\{")
_ATTR = re.compile(r"#\[\s*(\w+)\s*\((.*?)\)\s*\]", re.S)
_SERDE_KV = re.compile(r"(\w+)\s*=\s*\"([^\"]*)\"")


def parse_types(source: str) -> dict[str, RustType]:
    """The structs with named fields and unit-variant enums of ``source``, by name."""
    code = strip_comments(source)
    types: dict[str, RustType] = {}
    for match in _ITEM.finditer(code):
        body_start = match.end()
        body_end = _matching_brace(code, body_start - 1)
        if body_end < 0:
            continue
        attrs = match.group("attrs") or ""
        derives, serde = _attributes(attrs)
        doc = _doc_before(source, match.start("kind"))
        body = code[body_start:body_end]
        name = match.group("name")
        if match.group("kind") == "struct":
            fields = _fields(body, serde.get("rename_all"), source[body_start:body_end])
            types[name] = RustType(name, derives, fields=fields, description=doc)
        else:
            variants = _unit_variants(body, serde.get("rename_all"))
            if variants is not None:
                types[name] = RustType(name, derives, variants=variants, description=doc)
    return types


def _matching_brace(code: str, open_at: int) -> int:
    depth = 0
    for index in range(open_at, len(code)):
        ch = code[index]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _attributes(attrs: str) -> tuple[set[str], dict[str, str]]:
    derives: set[str] = set()
    serde: dict[str, str] = {}
    for kind, inner in _ATTR.findall(attrs):
        if kind == "derive":
            derives |= {part.strip().split("::")[-1] for part in inner.split(",") if part.strip()}
        elif kind == "serde":
            serde.update(_SERDE_KV.findall(inner))
            for flag in re.findall(r"(?<![\w\"])(default|skip|flatten)(?![\w\"=])", inner):
                serde[flag] = "true"
    return derives, serde


def _doc_before(source: str, at: int) -> str | None:
    """The ``///`` lines right above an item (attributes may sit between)."""
    lines = source[:at].splitlines()
    docs: list[str] = []
    for line in reversed(lines[:-1] if lines and not lines[-1].strip().startswith("#")
                         and lines[-1].strip() else lines):
        stripped = line.strip()
        if stripped.startswith("///"):
            docs.append(stripped[3:].strip())
        elif stripped.startswith("#[") or not stripped:
            if docs and not stripped:
                break
            continue
        else:
            break
    return " ".join(reversed(docs)) or None


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside <>, (), [] and {}."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "<([{":
            depth += 1
        elif ch in ">)]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts


_FIELD = re.compile(r"^\s*(?P<attrs>(?:#\[.*?\]\s*)*)(?:pub(?:\s*\([^)]*\))?\s+)?"
                    r"(?P<name>(?:r#)?[A-Za-z_]\w*)\s*:\s*(?P<type>.+?)\s*$", re.S)


def _fields(body: str, rename_all: str | None, original: str) -> list[RustField]:
    fields = []
    offset = 0
    for part in _split_top(body):
        start = body.find(part, offset)
        offset = start + len(part)
        match = _FIELD.match(part)
        if match is None:
            continue
        _, serde = _attributes(match.group("attrs"))
        if "skip" in serde or "skip_deserializing" in serde:
            continue
        rust_name = match.group("name").removeprefix("r#")
        json_name = serde.get("rename") or _rename(rust_name, rename_all)
        rust_type = re.sub(r"\s+", "", match.group("type"))
        optional = rust_type.startswith(("Option<", "std::option::Option<"))
        doc_lines = re.findall(r"^\s*///(.*)$", original[start:start + len(part)], re.M)
        fields.append(RustField(json_name, rust_type,
                                required=not optional and "default" not in serde,
                                description=" ".join(d.strip() for d in doc_lines) or None))
    return fields


def _unit_variants(body: str, rename_all: str | None) -> list[str] | None:
    variants = []
    for part in _split_top(body):
        text = re.sub(r"#\[.*?\]", " ", part, flags=re.S).strip()
        if not text:
            continue
        if not re.fullmatch(r"[A-Za-z_]\w*", text):
            return None  # a variant with data: not a plain string enum
        rename = re.search(r"#\[\s*serde\s*\(.*?rename\s*=\s*\"([^\"]*)\"", part, re.S)
        variants.append(rename.group(1) if rename else _rename(text, rename_all))
    return variants


def _rename(name: str, rule: str | None) -> str:
    if not rule:
        return name
    words = [w for w in re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", name) if w]
    lower = [w.lower() for w in words]
    return {
        "lowercase": name.lower(),
        "UPPERCASE": name.upper(),
        "snake_case": "_".join(lower),
        "SCREAMING_SNAKE_CASE": "_".join(lower).upper(),
        "kebab-case": "-".join(lower),
        "SCREAMING-KEBAB-CASE": "-".join(lower).upper(),
        "camelCase": lower[0] + "".join(w.capitalize() for w in lower[1:]) if lower else name,
        "PascalCase": "".join(w.capitalize() for w in lower),
    }.get(rule, name)


# -- Rust types as JSON Schema -------------------------------------------------------------

_INTEGERS = {"i8": "int32", "i16": "int32", "i32": "int32", "i64": "int64", "i128": None,
             "isize": "int64", "u8": "int32", "u16": "int32", "u32": "int64", "u64": "int64",
             "u128": None, "usize": "int64"}
_NUMBERS = {"f32": "float", "f64": "double"}
_STRINGS = {"String", "str", "&str", "&'staticstr", "char", "Cow<str>", "Cow<'static,str>"}
_VALUE = {"Value", "JsonValue", "serde_json::Value"}
_MAPS = ("HashMap<", "BTreeMap<", "std::collections::HashMap<", "std::collections::BTreeMap<",
         "IndexMap<", "serde_json::Map<", "Map<")


def _generic(rust_type: str, prefix: str) -> str | None:
    for candidate in (prefix, f"std::vec::{prefix}", f"std::option::{prefix}",
                      f"std::boxed::{prefix}"):
        if rust_type.startswith(candidate + "<") and rust_type.endswith(">"):
            return rust_type[len(candidate) + 1:-1]
    return None


def schema_for(rust_type: str, types: dict[str, RustType], components: dict[str, Any]) -> dict:
    """The JSON Schema of ``rust_type``; named types of ``types`` land in ``components``
    (as ``#/components/schemas/<Name>``) and are referenced from the result."""
    rust_type = re.sub(r"\s+", "", rust_type)
    if rust_type in _STRINGS or rust_type.startswith("&"):
        inner = rust_type.lstrip("&").removeprefix("'static")
        if inner in _STRINGS or inner == "str":
            return {"type": "string"}
    if rust_type == "bool":
        return {"type": "boolean"}
    if rust_type in _INTEGERS:
        fmt = _INTEGERS[rust_type]
        schema: dict[str, Any] = {"type": "integer"}
        if fmt:
            schema["format"] = fmt
        if rust_type.startswith("u"):
            schema["minimum"] = 0
        return schema
    if rust_type in _NUMBERS:
        return {"type": "number", "format": _NUMBERS[rust_type]}
    if rust_type in _VALUE or rust_type == "()":
        return {}
    for wrapper in ("Option", "Box", "Rc", "Arc"):
        inner = _generic(rust_type, wrapper)
        if inner is not None:
            schema = schema_for(inner, types, components)
            return _nullable(schema) if wrapper == "Option" else schema
    for wrapper in ("Vec", "VecDeque", "HashSet", "BTreeSet"):
        inner = _generic(rust_type, wrapper)
        if inner is not None:
            out = {"type": "array", "items": schema_for(inner, types, components)}
            if wrapper.endswith("Set"):
                out["uniqueItems"] = True
            return out
    if rust_type.startswith("[") and rust_type.endswith("]"):
        inner = rust_type[1:-1].split(";")[0]
        return {"type": "array", "items": schema_for(inner, types, components)}
    for prefix in _MAPS:
        if rust_type.startswith(prefix) and rust_type.endswith(">"):
            args = _split_top(rust_type[len(prefix):-1])
            value = schema_for(args[1], types, components) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": value}
    name = rust_type.split("::")[-1]
    if name in types:
        if name not in components:
            components[name] = {}  # placeholder: a recursive type refers to itself
            components[name] = _type_schema(types[name], types, components)
        return {"$ref": f"#/components/schemas/{name}"}
    return {"description": f"Rust type {rust_type}"}


def _nullable(schema: dict) -> dict:
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]} if schema else {}
    kind = schema["type"]
    kinds = kind if isinstance(kind, list) else [kind]
    return {**schema, "type": kinds + ["null"] if "null" not in kinds else kinds}


def _type_schema(rust: RustType, types: dict[str, RustType], components: dict) -> dict:
    if rust.variants is not None:
        schema: dict[str, Any] = {"type": "string", "enum": list(rust.variants)}
    else:
        properties = {}
        required = []
        for item in rust.fields or []:
            prop = schema_for(item.rust_type, types, components)
            if item.description:
                prop = {**prop, "description": item.description}
            properties[item.name] = prop
            if item.required:
                required.append(item.name)
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
    if rust.description:
        schema["description"] = rust.description
    return schema


# -- parameters and bodies the handler reads -----------------------------------------------

@dataclass
class UsedParameter:
    name: str
    location: str  # "path" or "query"
    rust_type: str | None
    required: bool


_PARAM_CALL = re.compile(
    r"\.(?P<call>require_path_param|path_param_as|path_param|require_query_param|"
    r"query_param_as|query_param|query_all)\s*(?:::\s*<(?P<turbofish>[^>]+)>)?\s*"
    r"\(\s*\"(?P<name>[^\"]+)\"\s*\)")
_LET_TYPED = re.compile(r"let\s+(?:mut\s+)?\w+\s*:\s*(?P<type>[^=;]+?)\s*=\s*$")
_JSON_TURBOFISH = re.compile(r"\.json\s*::\s*<\s*(?P<type>[A-Za-z_][\w:<>, ]*?)\s*>\s*\(")
_JSON_LET = re.compile(r"let\s+(?:mut\s+)?\w+\s*:\s*(?P<type>[A-Za-z_][\w:<>, ]*?)\s*=\s*"
                       r"\w+\s*\.\s*json\s*\(\s*\)")


def used_parameters(source: str) -> list[UsedParameter]:
    """The path and query parameters the handler reads, in order of first use."""
    code = strip_comments(source)
    found: dict[tuple[str, str], UsedParameter] = {}
    for match in _PARAM_CALL.finditer(code):
        call = match.group("call")
        location = "path" if "path" in call else "query"
        rust_type = match.group("turbofish")
        if rust_type is None and call in ("require_path_param", "require_query_param",
                                          "path_param_as", "query_param_as"):
            line_start = code.rfind("\n", 0, match.start()) + 1
            prefix = code[line_start:match.start()]
            prefix = re.sub(r"\b(?:match|if\s+let\s+Some\(\w+\)\s*=)?\s*\w+\s*$", "", prefix)
            let = _LET_TYPED.search(prefix)
            if let:
                rust_type = let.group("type").strip()
                inner = _generic(re.sub(r"\s+", "", rust_type), "Option")
                rust_type = inner or rust_type
        if call == "query_all":
            rust_type = "Vec<String>"
        elif call in ("path_param", "query_param") and rust_type is None:
            rust_type = "String"
        key = (location, match.group("name"))
        required = call.startswith("require_") or location == "path"
        if key in found:
            found[key].required = found[key].required or required
            if found[key].rust_type in (None, "String") and rust_type:
                found[key].rust_type = rust_type
        else:
            found[key] = UsedParameter(match.group("name"), location, rust_type, required)
    return list(found.values())


def parameter_schema(rust_type: str | None, types: dict[str, RustType],
                     components: dict) -> dict:
    if not rust_type:
        return {"type": "string"}
    schema = schema_for(rust_type, types, components)
    return schema if schema.get("type") or "$ref" in schema else {"type": "string"}


def request_body_type(source: str) -> str | None:
    """The type the handler deserialises its JSON body into, if it says so."""
    code = strip_comments(source)
    for pattern in (_JSON_TURBOFISH, _JSON_LET):
        match = pattern.search(code)
        if match:
            return re.sub(r"\s+", "", match.group("type"))
    return None
