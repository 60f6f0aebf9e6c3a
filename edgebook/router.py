"""Routes a request's method, path and host to one endpoint.

Patterns are paths whose segments are either static text or ``{name}`` parameters, e.g.
``/users/{id}/posts``. The rules, which the data plane documents for users too:

- **Raw paths.** Matching uses the raw request path, before percent-decoding; ``/a%2Fb`` is
  one segment. Parameter values are handed over raw (``{"id": "a%20b"}``), as the worker
  protocol says; the handler decodes them if it wants to.
- **Unroutable patterns are refused.** ``.`` and ``..`` segments (clients resolve them
  away) and raw spaces or control characters (clients percent-encode them).
- **Trailing slashes are significant.** ``/items`` and ``/items/`` are different paths; a
  pattern matches only the form it was written in. Empty segments never match a parameter,
  so ``/users/{id}`` does not match ``/users/``.
- **Static beats parameter.** Where several patterns match, the one whose first differing
  segment is static wins (``/users/me`` over ``/users/{id}``). Only patterns that accept the
  request's method and host compete, so ``GET /users/me`` still reaches ``GET /users/{id}``
  when ``/users/me`` is only routed for ``POST``.
- **Domains.** A route without a domain answers any host. ``api.example.com`` answers that
  host exactly; ``*.example.com`` answers any subdomain of ``example.com`` (one level or
  more) but not ``example.com`` itself. Hosts compare case-insensitively, without the port.
  At one path, an exact domain beats a wildcard, which beats no domain.
- **Any method.** A route whose method is ``ANY`` answers every method at its path; a
  route for the request's own method at the same path wins over it.
- **Errors.** No pattern matches the path (for this host): 404. Patterns match the path but
  none accepts the method: 405 with an ``Allow`` header listing the methods that would.

Lookup walks a trie of segments, so its cost grows with the path's depth, not with the
number of routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import GatewayError


@dataclass(frozen=True)
class Route:
    """Where one endpoint listens: a method, a path pattern and optionally a domain."""

    name: str
    method: str
    path: str
    domain: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "method", self.method.upper())
        if self.domain is not None:
            object.__setattr__(self, "domain", self.domain.lower().rstrip("."))
        parse_pattern(self.path)  # raises ValueError on a bad pattern
        if self.domain is not None and not _valid_domain(self.domain):
            raise ValueError(f"invalid domain {self.domain!r}: use 'host.example.com' "
                             "or '*.example.com'")


class Match(NamedTuple):
    route: Route
    params: dict[str, str]


class RouteConflictError(ValueError):
    """Another endpoint already answers the same method, pattern shape and domain."""


def parse_pattern(path: str) -> list[tuple[bool, str]]:
    """A pattern's segments as (is_param, text) pairs; raises ValueError when invalid."""
    if not path.startswith("/"):
        raise ValueError(f"route path {path!r} must start with '/'")
    if "?" in path or "#" in path:
        raise ValueError(f"route path {path!r} must not contain '?' or '#'")
    segments = []
    names = set()
    for text in path[1:].split("/"):
        if text.startswith("{") and text.endswith("}") and len(text) > 2:
            name = text[1:-1]
            if not name.isidentifier():
                raise ValueError(f"route path {path!r}: parameter name {name!r} is not an "
                                 "identifier")
            if name in names:
                raise ValueError(f"route path {path!r}: parameter {name!r} appears twice")
            names.add(name)
            segments.append((True, name))
        elif text in (".", ".."):
            raise ValueError(f"route path {path!r}: '.' and '..' segments are resolved away "
                             "by clients, so no request could reach this route")
        elif any(ord(c) < 0x21 or c == "\x7f" for c in text):
            raise ValueError(f"route path {path!r}: spaces and control characters must be "
                             "percent-encoded")
        elif "{" in text or "}" in text:
            raise ValueError(f"route path {path!r}: a parameter must be a whole segment, "
                             "like /users/{id}")
        else:
            segments.append((False, text))
    return segments


def _valid_domain(domain: str) -> bool:
    labels = domain[2:].split(".") if domain.startswith("*.") else domain.split(".")
    return all(label and all(c.isalnum() or c == "-" for c in label) for label in labels)


def _strip_port(host: str) -> str:
    host = host.lower()
    if host.startswith("["):  # [::1]:8080
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    colon = host.rfind(":")
    if colon != -1 and host.count(":") == 1:
        host = host[:colon]
    return host.rstrip(".")


def _domain_rank(domain: str | None) -> tuple[int, int]:
    """Sort key: exact domains first, then wildcards (longest suffix first), then none."""
    if domain is None:
        return (2, 0)
    if domain.startswith("*."):
        return (1, -len(domain))
    return (0, 0)


def _domain_accepts(domain: str | None, host: str) -> bool:
    if domain is None:
        return True
    if domain.startswith("*."):
        return host.endswith(domain[1:]) and len(host) > len(domain) - 1
    return host == domain


@dataclass
class _Entry:
    route: Route
    param_positions: tuple[tuple[int, str], ...]


@dataclass
class _Node:
    static: dict[str, "_Node"] = field(default_factory=dict)
    param: "_Node | None" = None
    # method -> entries at this exact path, best domain first
    methods: dict[str, list[_Entry]] = field(default_factory=dict)


class Router:
    """The routing table: ``set`` and ``remove`` routes by endpoint name, ``match`` requests."""

    def __init__(self):
        self._root = _Node()
        self._routes: dict[str, Route] = {}

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def get(self, name: str) -> Route | None:
        return self._routes.get(name)

    def check(self, route: Route) -> None:
        """Raise RouteConflictError if ``route`` would clash with another endpoint's."""
        node = self._node(route.path, create=False)
        for entry in node.methods.get(route.method, ()) if node else ():
            other = entry.route
            if other.name != route.name and other.domain == route.domain:
                raise RouteConflictError(
                    f"{route.method} {route.path} conflicts with endpoint {other.name!r} "
                    f"({other.method} {other.path})")

    def _node(self, path: str, *, create: bool) -> _Node | None:
        node = self._root
        for is_param, text in parse_pattern(path):
            if is_param:
                if node.param is None and create:
                    node.param = _Node()
                node = node.param
            else:
                node = node.static.setdefault(text, _Node()) if create else node.static.get(text)
            if node is None:
                return None
        return node

    def set(self, route: Route) -> None:
        """Add ``route``, replacing any route of the same endpoint name."""
        self.check(route)
        if route.name in self._routes:
            self._unlink(self._routes[route.name])
        segments = parse_pattern(route.path)
        node = self._node(route.path, create=True)
        positions = tuple((i, text) for i, (is_param, text) in enumerate(segments) if is_param)
        entries = node.methods.setdefault(route.method, [])
        entries.append(_Entry(route, positions))
        entries.sort(key=lambda e: _domain_rank(e.route.domain))
        self._routes[route.name] = route

    def remove(self, name: str) -> Route | None:
        route = self._routes.pop(name, None)
        if route is not None:
            self._unlink(route)
        return route

    def _unlink(self, route: Route) -> None:
        node = self._node(route.path, create=False)
        entries = node.methods[route.method]
        entries[:] = [e for e in entries if e.route.name != route.name]
        if not entries:
            del node.methods[route.method]
        # Empty nodes are left in place; they cost a little memory and no correctness.

    def match(self, method: str, path: str, host: str | None = None) -> Match:
        """The route for this request, or GatewayError 404/405 (405 carries ``Allow``)."""
        segments = path[1:].split("/") if path.startswith("/") else None
        host = _strip_port(host) if host else ""
        if segments is not None:
            allowed: set[str] = set()
            entry = self._search(self._root, segments, 0, method, host, allowed)
            if entry is not None:
                params = {name: segments[i] for i, name in entry.param_positions}
                return Match(entry.route, params)
            if allowed:
                allow = ", ".join(sorted(allowed))
                raise GatewayError(
                    405, "method_not_allowed", f"method {method} is not allowed for {path}",
                    headers={"Allow": allow})
        raise GatewayError(404, "not_found", f"no endpoint for {method} {path}")

    def _search(self, node: _Node, segments: list[str], depth: int, method: str, host: str,
                allowed: set[str]) -> _Entry | None:
        if depth == len(segments):
            for entry in node.methods.get(method, ()):
                if _domain_accepts(entry.route.domain, host):
                    return entry
            for entry in node.methods.get("ANY", ()):
                if _domain_accepts(entry.route.domain, host):
                    return entry
            for other, entries in node.methods.items():
                if any(_domain_accepts(e.route.domain, host) for e in entries):
                    allowed.add(other)
            return None
        segment = segments[depth]
        child = node.static.get(segment)
        if child is not None:
            found = self._search(child, segments, depth + 1, method, host, allowed)
            if found is not None:
                return found
        if node.param is not None and segment:
            return self._search(node.param, segments, depth + 1, method, host, allowed)
        return None
