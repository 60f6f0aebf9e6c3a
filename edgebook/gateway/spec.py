"""What a client may ask of an endpoint: the request fields (declared once), their checks,
and ``EndpointSpec``, the checked request the deploy flow works from.

The admin API's create (POST/PUT) and change (PATCH) bodies, the OpenAPI schema of those
bodies and the deploy flow's option defaults all come from ``FIELDS``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .. import endpoint_options
from ..errors import GatewayError
from ..router import Route

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of an endpoint request body."""

    name: str
    schema: dict[str, Any]
    #: Where it lands in ``EndpointSpec``: an attribute, or "options" (per-endpoint options).
    target: str
    default: Any = None
    required: bool = False


FIELDS: tuple[Field, ...] = (
    Field("method", {"enum": list(METHODS)}, "method", required=True),
    Field("path", {"type": "string"}, "path", required=True),
    Field("source", {"type": "string"}, "source", required=True),
    Field("deps", {"type": "array", "items": {"type": "string"}}, "deps"),
    Field("domain", {"type": ["string", "null"]}, "domain"),
    Field("services", {"type": "array", "items": {"type": "string"}}, "services"),
    Field("origin", {"type": ["object", "null"]}, "origin"),
    # the endpoint's options, declared in edgebook/endpoint_options.py
    *(Field(o.name, o.schema, "options", o.default) for o in endpoint_options.OPTIONS),
)
FIELD_NAMES = frozenset(f.name for f in FIELDS)
REQUIRED = tuple(f.name for f in FIELDS if f.required)


class DeployRejected(GatewayError):
    """A deploy request that cannot be accepted as sent (400/404/409)."""


@dataclasses.dataclass
class EndpointSpec:
    """What a client asks for when it creates or updates an endpoint."""

    name: str
    method: str
    path: str
    source: str
    deps: list[str] = dataclasses.field(default_factory=list)
    domain: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    services: list[str] = dataclasses.field(default_factory=list)
    origin: dict[str, Any] | None = None

    @classmethod
    def from_body(cls, name: str, body: dict[str, Any]) -> "EndpointSpec":
        """A create (POST/PUT) body as a spec; raises DeployRejected naming the field."""
        missing = [key for key in REQUIRED if key not in body]
        if missing:
            raise DeployRejected(400, "missing_field", f"missing field(s): {', '.join(missing)}")
        check_fields(body, allowed=FIELD_NAMES | {"name"})
        spec = cls(name=name, method=body["method"], path=body["path"], source=body["source"])
        spec.apply(body)
        return spec

    def apply(self, changes: dict[str, Any]) -> None:
        """Take the given fields (already checked by ``check_fields``) into this spec."""
        for field in FIELDS:
            if field.name not in changes:
                continue
            value = changes[field.name]
            if field.target == "options":
                self.options[field.name] = value
            elif field.target in ("deps", "services"):
                setattr(self, field.target, list(value or []))
            else:
                setattr(self, field.target, value)


def check_fields(body: dict[str, Any], *, allowed: frozenset[str] = FIELD_NAMES) -> None:
    """Unknown fields and wrongly typed ones are refused before anything is stored."""
    unknown = set(body) - allowed
    if unknown:
        raise DeployRejected(400, "invalid_field",
                             f"unknown field(s): {', '.join(sorted(unknown))}")
    for key in ("method", "path", "source"):
        if key in body and not isinstance(body[key], str):
            raise DeployRejected(400, "invalid_field", f"{key} must be a string")
    for key, what in (("deps", "a list of strings like 'rand@0.8'"),
                      ("services", "a list of service names")):
        value = body.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DeployRejected(400, "invalid_field", f"{key} must be {what}")
    if body.get("origin") is not None and not isinstance(body["origin"], dict):
        raise DeployRejected(400, "invalid_field", "origin must be an object")


def check_spec(spec: EndpointSpec) -> EndpointSpec:
    """Name, method, route and options of ``spec`` checked, defaults filled in (in place)."""
    if not NAME_RE.match(spec.name):
        raise DeployRejected(400, "invalid_name",
                             f"endpoint name {spec.name!r} must be 1-64 letters, digits, "
                             "'_', '-' or '.', starting with a letter or digit")
    spec.method = spec.method.upper()
    if spec.method not in METHODS:
        raise DeployRejected(400, "invalid_method", f"method must be one of {', '.join(METHODS)}")
    try:
        Route(spec.name, spec.method, spec.path, spec.domain)
    except ValueError as exc:
        raise DeployRejected(400, "invalid_route", str(exc)) from None
    options = dict(endpoint_options.DEFAULTS) | {k: v for k, v in spec.options.items() if v is not None}
    check_options(options)
    spec.options = options
    return spec


def check_options(options: dict[str, Any]) -> None:
    try:
        endpoint_options.check(options)
    except ValueError as exc:
        raise DeployRejected(400, "invalid_option", str(exc)) from None


def route_shape(path: str) -> str:
    """A path pattern with its parameter names blanked: ``/pets/{id}`` and ``/pets/{pet}``
    are the same route."""
    return re.sub(r"\{[^/]*\}", "{}", path)


def request_schema() -> dict[str, Any]:
    """The JSON schema of a create body (the admin API's OpenAPI document uses it)."""
    return {"type": "object", "required": list(REQUIRED),
            "properties": {f.name: f.schema for f in FIELDS}}
