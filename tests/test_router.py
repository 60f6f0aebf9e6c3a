"""Routing table: patterns, precedence, domains, 404 and 405."""

import pytest
from hypothesis import given, strategies as st

from edgebook.errors import GatewayError
from edgebook.router import Route, RouteConflictError, Router, parse_pattern


def make_router(*routes):
    router = Router()
    for route in routes:
        router.set(route)
    return router


def error_of(router, method, path, host=None):
    with pytest.raises(GatewayError) as info:
        router.match(method, path, host)
    return info.value


def test_static_and_params():
    router = make_router(Route("item", "GET", "/items/{id}"),
                         Route("comment", "GET", "/items/{id}/comments/{cid}"))
    match = router.match("GET", "/items/42/comments/7")
    assert match.route.name == "comment"
    assert match.params == {"id": "42", "cid": "7"}
    assert router.match("GET", "/items/42").params == {"id": "42"}


def test_static_segment_beats_param_regardless_of_order():
    for order in (1, -1):
        routes = [Route("by_id", "GET", "/users/{id}"), Route("me", "GET", "/users/me")]
        router = make_router(*routes[::order])
        assert router.match("GET", "/users/me").route.name == "me"
        assert router.match("GET", "/users/you").route.name == "by_id"


def test_leftmost_static_wins_and_backtracks():
    router = make_router(Route("a", "GET", "/x/{p}/z"), Route("b", "GET", "/{q}/y/z"),
                         Route("c", "GET", "/x/y/{r}"))
    assert router.match("GET", "/x/y/z").route.name == "c"
    assert router.match("GET", "/x/w/z").route.name == "a"
    assert router.match("GET", "/w/y/z").route.name == "b"


def test_param_reached_when_static_route_lacks_method():
    router = make_router(Route("me", "POST", "/users/me"), Route("by_id", "GET", "/users/{id}"))
    assert router.match("GET", "/users/me").route.name == "by_id"


def test_no_route_is_404_json():
    router = make_router(Route("a", "GET", "/a"))
    error = error_of(router, "GET", "/b")
    assert error.status == 404 and error.error_type == "not_found"
    assert b'"error_type": "not_found"' in error.body("rid")


def test_wrong_method_is_405_with_allow():
    router = make_router(Route("get", "GET", "/things/{id}"), Route("put", "PUT", "/things/{x}"),
                         Route("del", "DELETE", "/things/all"))
    error = error_of(router, "POST", "/things/all")
    assert error.status == 405
    assert error.headers["Allow"] == "DELETE, GET, PUT"


def test_trailing_slash_is_significant():
    router = make_router(Route("a", "GET", "/a"), Route("b", "GET", "/b/"))
    assert router.match("GET", "/a").route.name == "a"
    assert error_of(router, "GET", "/a/").status == 404
    assert router.match("GET", "/b/").route.name == "b"
    assert error_of(router, "GET", "/b").status == 404


def test_empty_segment_never_matches_param():
    router = make_router(Route("a", "GET", "/users/{id}"))
    assert error_of(router, "GET", "/users/").status == 404


def test_root_route():
    router = make_router(Route("root", "GET", "/"))
    assert router.match("GET", "/").route.name == "root"
    assert error_of(router, "GET", "/x").status == 404


def test_raw_path_and_raw_params():
    router = make_router(Route("a", "GET", "/files/{name}"), Route("b", "GET", "/a%20b"))
    assert router.match("GET", "/files/a%2Fb").params == {"name": "a%2Fb"}
    assert error_of(router, "GET", "/files/a/b").status == 404
    assert router.match("GET", "/a%20b").route.name == "b"  # patterns match raw paths
    for unroutable in ("/a b", "/x/../y", "/./x", "/tab\there"):
        with pytest.raises(ValueError):
            Route("c", "GET", unroutable)


def test_exact_domain():
    router = make_router(Route("api", "GET", "/x", domain="api.example.com"))
    assert router.match("GET", "/x", "API.example.com:8080").route.name == "api"
    assert error_of(router, "GET", "/x", "other.example.com").status == 404
    assert error_of(router, "GET", "/x", None).status == 404


def test_wildcard_domain():
    router = make_router(Route("any", "GET", "/x", domain="*.example.com"))
    assert router.match("GET", "/x", "a.example.com").route.name == "any"
    assert router.match("GET", "/x", "a.b.example.com").route.name == "any"
    assert error_of(router, "GET", "/x", "example.com").status == 404
    assert error_of(router, "GET", "/x", "badexample.com").status == 404


def test_domain_precedence_exact_wildcard_none():
    router = make_router(Route("none", "GET", "/x"),
                         Route("wild", "GET", "/x", domain="*.example.com"),
                         Route("exact", "GET", "/x", domain="api.example.com"))
    assert router.match("GET", "/x", "api.example.com").route.name == "exact"
    assert router.match("GET", "/x", "www.example.com").route.name == "wild"
    assert router.match("GET", "/x", "localhost:8080").route.name == "none"


def test_405_only_counts_routes_for_this_host():
    router = make_router(Route("a", "POST", "/x", domain="a.test"))
    assert error_of(router, "GET", "/x", "b.test").status == 404
    assert error_of(router, "GET", "/x", "a.test").status == 405


def test_set_replaces_by_name_and_remove():
    router = make_router(Route("a", "GET", "/old"))
    router.set(Route("a", "POST", "/new/{id}"))
    assert error_of(router, "GET", "/old").status == 404
    assert router.match("POST", "/new/1").route.name == "a"
    router.remove("a")
    assert error_of(router, "POST", "/new/1").status == 404
    assert router.routes() == []


def test_conflicting_routes_refused():
    router = make_router(Route("a", "GET", "/users/{id}"))
    with pytest.raises(RouteConflictError):
        router.set(Route("b", "GET", "/users/{user}"))
    router.set(Route("c", "GET", "/users/{id}", domain="x.test"))  # other domain: fine
    router.set(Route("d", "POST", "/users/{id}"))  # other method: fine


@pytest.mark.parametrize("path", ["users", "/a/{b", "/a/{1x}", "/a/x{y}", "/a/{b}/{b}", "/a?b"])
def test_invalid_patterns(path):
    with pytest.raises(ValueError):
        parse_pattern(path)


def test_invalid_domain():
    with pytest.raises(ValueError):
        Route("a", "GET", "/", domain="exa mple.com")


def test_many_routes_match_by_depth_not_count():
    router = Router()
    for i in range(5000):
        router.set(Route(f"r{i}", "GET", f"/svc{i}/items/{{id}}"))
    assert router.match("GET", "/svc4999/items/9").route.name == "r4999"
    assert router.match("GET", "/svc0/items/9").params == {"id": "9"}


segment = st.text(alphabet="abc%20", min_size=1, max_size=4)


@given(st.lists(segment, min_size=1, max_size=5))
def test_param_pattern_matches_any_nonempty_segments(segments):
    pattern = "/" + "/".join(f"{{p{i}}}" for i in range(len(segments)))
    router = make_router(Route("r", "GET", pattern))
    match = router.match("GET", "/" + "/".join(segments))
    assert list(match.params.values()) == segments


def test_any_method_route_answers_every_method_and_a_specific_one_wins():
    router = Router()
    router.set(Route("any", "ANY", "/things/{id}"))
    router.set(Route("get", "GET", "/things/{id}"))
    assert router.match("DELETE", "/things/1").route.name == "any"
    assert router.match("POST", "/things/1").params == {"id": "1"}
    assert router.match("GET", "/things/1").route.name == "get"
    with pytest.raises(GatewayError) as info:
        router.match("GET", "/other")
    assert info.value.status == 404
