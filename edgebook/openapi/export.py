"""The OpenAPI 3.1 document of the running endpoints.

One operation per endpoint (an ``ANY`` endpoint gives one per common method not taken by
another endpoint at the same path). What it says comes from three places, and nothing is
invented:

- the route: path, method, path parameters;
- the handler's source (see ``edgebook.openapi.rust``): its ``//! ```openapi`` block
  (summary, tags, parameters, request body, declared responses), the parameters it reads
  with their Rust types, and the struct it deserialises its JSON body into;
- the exchanges the gateway saw (see ``edgebook.openapi.samples``): every status the
  current revision actually answered becomes a response, with the last few real bodies as
  examples; request bodies and parameter values seen become request examples.

Only endpoints with a live revision are listed. Request headers are never copied into
examples (they may carry credentials). The recorded exchanges are real traffic (bodies,
query strings, path values), so only the authenticated admin API publishes them: the data
plane's document is built with ``examples=False``, from the routes and sources alone.
"""

from __future__ import annotations

import copy
import hashlib
import http
import json
from dataclasses import dataclass
from typing import Any, Iterable

from .._version import __version__
from .rust import (OpenAPIBlockError, operation_block, parameter_schema, parse_types,
                   request_body_type, schema_for, used_parameters)
from .samples import Sample, SampleStore

OPENAPI_VERSION = "3.1.0"
#: The methods an ``ANY`` endpoint is documented under.
ANY_METHODS = ("get", "post", "put", "patch", "delete")
_OPERATION_KEYS = ("summary", "description", "tags", "externalDocs", "deprecated", "security",
                   "callbacks", "servers")


@dataclass
class EndpointInfo:
    """What the document needs to know about one endpoint."""

    name: str
    method: str
    path: str
    source: str = ""
    domain: str | None = None
    state: str | None = None
    revision: str | None = None


def gateway_document(gateway: Any, server_url: str | None = None, *,
                     examples: bool = True) -> dict[str, Any]:
    """The document for a running ``Gateway``: its registry's endpoints, and with
    ``examples`` what its samples recorded (statuses seen, real bodies and values)."""
    endpoints = []
    for record in gateway.registry.endpoints():
        if record.live_revision is None:
            continue
        live_source = getattr(gateway, "live_source", None)
        source = live_source(record)[0] if live_source else record.source
        endpoints.append(EndpointInfo(
            name=record.name, method=record.method, path=record.path, source=source,
            domain=record.domain, state=record.state, revision=str(record.live_revision)))
    samples = getattr(gateway, "samples", None) if examples else None
    return build_document(endpoints, samples,
                          server_url=server_url if server_url is not None else gateway.url,
                          examples=examples)


def build_document(endpoints: Iterable[EndpointInfo], samples: SampleStore | None = None, *,
                   server_url: str | None = None,
                   title: str = "edgebook endpoints",
                   examples: bool = True) -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``endpoints`` with examples from ``samples``."""
    endpoints = sorted(endpoints, key=lambda e: (e.path, e.method != "ANY", e.name))
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {}
    omitted: list[dict[str, str]] = []
    operation_ids: set[str] = set()
    # Explicit methods first, so they win over an ANY endpoint at the same path.
    for endpoint in sorted(endpoints, key=lambda e: e.method == "ANY"):
        observed = _observed(endpoint, samples)
        operation, local = describe_endpoint(endpoint, observed)
        renamed = _merge_components(components, local, endpoint.name)
        if renamed:
            operation = _rewrite_refs(operation, renamed)
        item = paths.setdefault(endpoint.path, {})
        methods = ANY_METHODS if endpoint.method == "ANY" else (endpoint.method.lower(),)
        for method in methods:
            if method in item:
                if endpoint.method != "ANY":
                    omitted.append({"endpoint": endpoint.name, "reason":
                                    f"{method.upper()} {endpoint.path} is already described "
                                    f"(another domain's endpoint)"})
                continue
            op = copy.deepcopy(operation)
            op["operationId"] = _unique_id(op["operationId"] if len(methods) == 1
                                           else f"{op['operationId']}_{method}", operation_ids)
            item[method] = op
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": _api_version(endpoints),
                 "description": "The endpoints this edgebook gateway serves. Response "
                                "examples are real responses of the live revisions."
                                if examples else
                                "The endpoints this edgebook gateway serves (schemas only).",
                 "x-edgebook-version": __version__},
        "paths": {path: paths[path] for path in sorted(paths)},
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    if components:
        document["components"] = {"schemas": {k: components[k] for k in sorted(components)}}
    if omitted:
        document["x-edgebook-omitted"] = omitted
    return document


def _observed(endpoint: EndpointInfo, samples: SampleStore | None) -> dict[int, list[Sample]]:
    if samples is None:
        return {}
    if endpoint.revision is not None and samples.revision(endpoint.name) != endpoint.revision:
        return {}  # the samples belong to an older revision
    return samples.examples(endpoint.name)


def describe_endpoint(endpoint: EndpointInfo,
                      observed: dict[int, list[Sample]]) -> tuple[dict, dict]:
    """One endpoint's Operation Object and the component schemas it refers to."""
    components: dict[str, Any] = {}
    problems: list[str] = []
    try:
        block = operation_block(endpoint.source) or {}
    except OpenAPIBlockError as exc:
        block = {}
        problems.append(f"line {exc.line}: {exc.message}" if exc.line else exc.message)
    types = parse_types(endpoint.source)
    operation: dict[str, Any] = {k: copy.deepcopy(block[k]) for k in _OPERATION_KEYS
                                 if k in block}
    operation.setdefault("summary", f"{endpoint.method} {endpoint.path}")
    operation["operationId"] = str(block.get("operationId") or endpoint.name)
    parameters = _parameters(endpoint, block, types, components, observed)
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(endpoint, block, types, components, observed, problems)
    if body:
        operation["requestBody"] = body
    operation["responses"] = _responses(block, types, components, observed, problems)
    operation["x-edgebook-endpoint"] = endpoint.name
    if endpoint.state:
        operation["x-edgebook-state"] = endpoint.state
    if endpoint.revision is not None:
        operation["x-edgebook-revision"] = endpoint.revision
    if endpoint.domain:
        operation["x-edgebook-domain"] = endpoint.domain
    if problems:
        operation["x-edgebook-problems"] = problems
    return operation, components


# -- parameters ----------------------------------------------------------------------------

def _path_names(path: str) -> list[str]:
    return [segment[1:-1] for segment in path.split("/")
            if segment.startswith("{") and segment.endswith("}") and len(segment) > 2]


def _parameters(endpoint: EndpointInfo, block: dict, types, components,
                observed: dict[int, list[Sample]]) -> list[dict]:
    declared: dict[tuple[str, str], dict] = {}
    for param in block.get("parameters") or []:
        if isinstance(param, dict) and "name" in param and "in" in param:
            declared[(str(param["in"]), str(param["name"]))] = copy.deepcopy(param)
    used = {(p.location, p.name): p for p in used_parameters(endpoint.source)}
    out: list[dict] = []
    keys = [("path", name) for name in _path_names(endpoint.path)]
    keys += [key for key in dict.fromkeys(list(declared) + list(used)) if key[0] != "path"]
    for location, name in keys:
        if location == "path" and name not in _path_names(endpoint.path):
            continue
        param = declared.get((location, name)) or {"name": name, "in": location}
        use = used.get((location, name))
        if "schema" not in param and "content" not in param:
            param["schema"] = parameter_schema(use.rust_type if use else None, types,
                                               components)
        if location == "path":
            param["required"] = True
        elif "required" not in param and use is not None and use.required:
            param["required"] = True
        example = _parameter_example(location, name, observed, param.get("schema") or {})
        if example is not None and "example" not in param and "examples" not in param:
            param["example"] = example
        out.append(param)
    return out


def _parameter_example(location: str, name: str, observed: dict[int, list[Sample]],
                       schema: dict) -> Any:
    for status in sorted(observed, key=lambda s: (s >= 400, s)):
        for sample in reversed(observed[status]):
            values = sample.params if location == "path" else sample.query
            if name in values:
                return _typed(values[name], schema)
    return None


def _typed(value: str, schema: dict) -> Any:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    try:
        if "integer" in kinds:
            return int(value)
        if "number" in kinds:
            return float(value)
    except ValueError:
        return value
    if "boolean" in kinds and value in ("true", "false"):
        return value == "true"
    return value


# -- request body --------------------------------------------------------------------------

def _shorthand(value: Any, types, components) -> dict | None:
    """``TypeName`` (or ``Vec<TypeName>``) as a schema; None when ``value`` is no type."""
    if not isinstance(value, str):
        return None
    return schema_for(value, types, components)


def _check_type(name: str, schema: dict, where: str, problems: list[str]) -> None:
    if '"Rust type ' in json.dumps(schema):
        problems.append(f"{where} names {name!r}: no struct or enum of that name in this "
                        "handler, and not a type edgebook knows")


def _with_content(declared: dict, types, components) -> dict:
    """A Request Body or Response Object; the block's ``schema: Type`` shorthand (no
    ``content``) becomes ``content: {application/json: {schema}}``."""
    out = copy.deepcopy(declared)
    if "schema" in out and "content" not in out:
        schema = out.pop("schema")
        if isinstance(schema, str):
            schema = schema_for(schema, types, components)
        out["content"] = {"application/json": {"schema": schema}}
    return out


def _request_body(endpoint: EndpointInfo, block: dict, types, components,
                  observed: dict[int, list[Sample]], problems: list[str]) -> dict | None:
    declared = block.get("requestBody")
    body: dict[str, Any] | None = None
    schema = _shorthand(declared, types, components)
    if schema is not None:
        _check_type(declared, schema, "requestBody", problems)
        body = {"required": True, "content": {"application/json": {"schema": schema}}}
    elif isinstance(declared, dict):
        body = _with_content(declared, types, components)
    else:
        inferred = request_body_type(endpoint.source)
        if inferred and inferred.split("::")[-1] in types:
            body = {"required": True, "content": {"application/json": {
                "schema": schema_for(inferred, types, components)}}}
    examples: dict[str, dict] = {}
    seen: set[str] = set()
    for status in sorted(observed):
        for index, sample in enumerate(observed[status], 1):
            if sample.request_body is None:
                continue
            key = json.dumps(sample.request_body, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            media = (sample.request_content_type or "application/json").split(";")[0].strip()
            examples.setdefault(media, {})[f"sent-{status}-{index}"] = {
                "summary": f"a request answered {status}", "value": sample.request_body}
    if not examples:
        return body
    if body is None:
        body = {"content": {}}
    content = body.setdefault("content", {})
    for media, found in examples.items():
        entry = content.setdefault(media, {})
        if "example" not in entry:
            entry.setdefault("examples", {}).update(found)
    return body


# -- responses -----------------------------------------------------------------------------

def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


def _responses(block: dict, types, components, observed: dict[int, list[Sample]],
               problems: list[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    declared = block.get("responses")
    if declared is not None and not isinstance(declared, dict):
        problems.append("responses in the ```openapi block must be a mapping")
        declared = {}
    for status, value in (declared or {}).items():
        schema = _shorthand(value, types, components)
        if schema is not None:
            _check_type(value, schema, f"response {status}", problems)
            responses[status] = {"description": _reason(int(status)) if status.isdigit()
                                 else "Response",
                                 "content": {"application/json": {"schema": schema}}}
        elif isinstance(value, dict):
            response = _with_content(value, types, components)
            response.setdefault("description", _reason(int(status)) if status.isdigit()
                                else "Response")
            responses[status] = response
    for status, found in observed.items():
        response = responses.get(str(status))
        if response is None:
            gateway = next((s.gateway_error for s in found if s.gateway_error), None)
            response = {"description": f"{_reason(status)} (answered by the gateway: "
                                       f"{gateway})" if gateway else _reason(status)}
            responses[str(status)] = response
        response["x-edgebook-observed"] = True
        for index, sample in enumerate(found, 1):
            if sample.response_body is None:
                continue
            # No Content-Type was sent: say so ("*/*") rather than guess one.
            media = (sample.response_content_type or "*/*").split(";")[0].strip()
            entry = response.setdefault("content", {}).setdefault(media, {})
            entry.pop("example", None)
            entry.setdefault("examples", {})[f"observed-{index}"] = {
                "summary": _example_summary(sample), "value": sample.response_body}
    if not responses:
        responses["default"] = {"description": "No response declared or observed yet"}
    return {k: responses[k] for k in sorted(responses)}


def _example_summary(sample: Sample) -> str:
    parts = [f"{k}={v}" for k, v in sample.params.items()]
    parts += [f"?{k}={v}" for k, v in sample.query.items()]
    where = f" ({', '.join(parts)})" if parts else ""
    return f"a real {sample.status} response{where}"[:200]


# -- components ----------------------------------------------------------------------------

def _merge_components(into: dict[str, Any], local: dict[str, Any], owner: str) -> dict[str, str]:
    """Add ``local`` schemas to ``into``; a name already taken by a different schema is
    renamed ``<Name>_<owner>``. Returns the renames."""
    renamed: dict[str, str] = {}
    for name in local:
        if name in into and into[name] != local[name]:
            renamed[name] = f"{name}_{owner}"
    for name, schema in local.items():
        schema = _rewrite_refs(schema, renamed) if renamed else schema
        into[renamed.get(name, name)] = schema
    return renamed


def _rewrite_refs(value: Any, renamed: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                name = item.rsplit("/", 1)[-1]
                if name in renamed:
                    item = f"#/components/schemas/{renamed[name]}"
            out[key] = _rewrite_refs(item, renamed)
        return out
    if isinstance(value, list):
        return [_rewrite_refs(v, renamed) for v in value]
    return value


def _unique_id(candidate: str, taken: set[str]) -> str:
    result, n = candidate, 2
    while result in taken:
        result, n = f"{candidate}_{n}", n + 1
    taken.add(result)
    return result


def _api_version(endpoints: list[EndpointInfo]) -> str:
    """Changes whenever an endpoint or its live revision does."""
    digest = hashlib.sha256(json.dumps(sorted((e.name, e.method, e.path, e.revision or "")
                                              for e in endpoints)).encode()).hexdigest()
    return f"live-{digest[:12]}"
