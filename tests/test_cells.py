"""Cell-level pieces that need no gateway: names, diagnostics at cell lines, progress steps."""

import pytest

from edgebook.notebook.cells import (DIAGNOSTICS_MIME, BuildFailedError, CellSpec, DeployedEndpoint,
                                     build_failure, failure_card,
                                     default_name, example_path, shift_diagnostics)
from edgebook.notebook.progress import step_of, widgets_wanted

SOURCE = 'fn handle(req: Request) -> Response {\n    Response::ok(json!({"p": req.pathx}))\n}\n'
DIAGNOSTIC = {
    "level": "error", "message": "no field `pathx` on type `Request`", "code": "E0609",
    "line": 2, "column": 35, "end_line": 2, "end_column": 40, "rendered": "",
    "labels": [{"line": 2, "column": 35, "end_line": 2, "end_column": 40,
                "label": "unknown field", "primary": True}],
    "children": [{"level": "help", "message": "a field with a similar name exists", "line": 2,
                  "column": 35, "suggestion": "path"}],
    "generated": False,
}


@pytest.mark.parametrize("method, path, name", [
    ("GET", "/hello", "get_hello"),
    ("POST", "/users/{id}/posts", "post_users_id_posts"),
    ("GET", "/", "get_root"),
    ("DELETE", "/a-b/c.d", "delete_a_b_c_d"),
])
def test_default_names(method, path, name):
    assert default_name(method, path) == name
    assert CellSpec(method=method.lower(), path=path, source="x").name == name


def test_example_paths():
    assert example_path("/users/{id}/posts/{post_id}") == "/users/1/posts/1"
    assert example_path("/files/{name}") == "/files/name"


def test_shift_moves_every_line_number():
    [shifted] = shift_diagnostics([DIAGNOSTIC], 1)
    assert shifted["line"] == 3 and shifted["end_line"] == 3
    assert shifted["labels"][0]["line"] == 3 and shifted["children"][0]["line"] == 3
    assert DIAGNOSTIC["line"] == 2  # the input is left alone


def test_build_failure_renders_at_the_cells_lines():
    spec = CellSpec(method="GET", path="/p", source=SOURCE, header="%%rust_handler GET /p\n")
    error = build_failure(spec, {
        "build": {"diagnostics": [DIAGNOSTIC], "status": "failed"},
        "endpoint": {"reason": "build failed: no field; revision 4 keeps serving"}})
    assert isinstance(error, BuildFailedError)
    assert error.message == "the handler 'get_p' did not compile (1 error); revision 4 keeps serving"
    assert "--> cell line 3, column 35" in error.rendered
    assert '3 |     Response::ok(json!({"p": req.pathx}))' in error.rendered
    assert "unknown field" in error.rendered
    lines = error._render_traceback_()
    assert "BuildFailedError" in lines[0] and not any("Traceback" in line for line in lines)


def test_build_failure_without_diagnostics_shows_the_log():
    spec = CellSpec(method="GET", path="/p", source=SOURCE)
    error = build_failure(spec, {"build": {"diagnostics": [], "status": "timeout",
                                           "log": "cargo: build timed out"}})
    assert "(timeout)" in error.message and "timed out" in error.rendered


def test_deployed_endpoint_displays():
    ep = DeployedEndpoint(name="get_users_id", method="GET", path="/users/{id}",
                          url="http://127.0.0.1:9/users/{id}", revision=2,
                          build={"cached": False, "duration": 0.5, "profile": "dev"},
                          proxy_url="/edgebook/proxy/users/1")
    assert ep.curl == "curl -sS -i http://127.0.0.1:9/users/1"
    assert ep.summary() == "endpoint get_users_id | revision 2 | built in 0.50 s (dev)"
    ep.build = {"cached": True, "unchanged": True}
    assert ep.build_note() == "unchanged, cached binary"
    ep.build = {"cached": True, "unchanged": False}  # an older source again: it changes
    assert ep.build_note() == "from the build cache, no compile"
    assert "/edgebook/proxy/users/1" in ep._repr_html_()
    post = DeployedEndpoint(name="p", method="POST", path="/p", url="http://127.0.0.1:9/p",
                            revision=1)
    assert "--data-raw" in post.curl and "-X POST" in post.curl
    assert DeployedEndpoint(name="a", method="ANY", path="/a", url="http://h/a",
                            revision=1).request_method == "GET"


def test_progress_steps_from_gateway_events():
    assert step_of({"type": "build", "phase": "started", "profile": "dev"}) == (1, "building (dev)")
    assert step_of({"type": "build", "phase": "progress", "stage": "compiling",
                    "crate": "serde"}) == (3, "compiling serde")
    assert step_of({"type": "build", "phase": "finished", "ok": True, "cached": True,
                    "unchanged": True})[1] == "unchanged: using the cached binary"
    assert step_of({"type": "build", "phase": "finished", "ok": True, "cached": True,
                    "unchanged": False})[1] == "from the build cache: no compile needed"
    assert step_of({"type": "build", "phase": "finished", "ok": False})[1] == "build failed"
    assert step_of({"type": "state", "state": "running"}) == (7, "running")
    assert step_of({"type": "runtime"}) is None


class FakeShell:
    def __init__(self, kernel=None, parent_header=None):
        self.kernel = kernel
        self.parent_header = parent_header or {}


def test_widgets_only_with_a_live_frontend(monkeypatch):
    monkeypatch.delenv("EDGEBOOK_WIDGETS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert not widgets_wanted(None)
    assert not widgets_wanted(FakeShell())  # terminal IPython
    assert not widgets_wanted(FakeShell(kernel=object()))  # nbclient / nbval
    assert widgets_wanted(FakeShell(kernel=object(),
                                    parent_header={"metadata": {"cellId": "c1"}}))
    monkeypatch.setenv("JPY_SESSION_NAME", "/x/y.ipynb")
    assert widgets_wanted(FakeShell(kernel=object()))
    monkeypatch.setenv("EDGEBOOK_WIDGETS", "0")
    assert not widgets_wanted(FakeShell(kernel=object()))


def test_bench_progress_appears_only_for_long_runs(monkeypatch):
    from edgebook.notebook.progress import BenchProgress
    shown = []
    class Handle:
        def update(self, data, raw=False):
            shown.append(("update", data))

    monkeypatch.setattr("IPython.display.display",
                        lambda obj, display_id=False: shown.append(obj) or Handle())
    progress = BenchProgress(total=1000, duration=None)
    progress.update(100, 0.2)
    assert progress.box is None and not shown
    progress.update(400, 1.0)
    assert shown and progress.bar.value == 0.4
    assert progress.label.value == "400 requests in 1.0 s (400 req/s)"
    timed = BenchProgress(total=None, duration=4.0)
    timed.update(10, 3.0)
    assert timed.bar.value == 0.75
    progress.close()
    assert shown[-1] == ("update", {"text/plain": ""})
    timed.close()


def test_failure_card_while_an_older_revision_serves():
    spec = CellSpec(method="GET", path="/p", source=SOURCE, header="%%rust_handler GET /p\n")
    error = build_failure(spec, {
        "build": {"diagnostics": [DIAGNOSTIC], "status": "failed"},
        "endpoint": {"state": "running_build_failed", "live_revision": 4,
                     "reason": "build failed; revision 4 keeps serving"}})
    card = failure_card(error, spec)
    assert card["text/plain"] == ("GET /p: running, latest build failed (revision 4 keeps "
                                  "serving); marked at line 3 of the cell")
    assert "--jp-success-color1" in card["text/html"]  # green: it still serves
    assert error.message not in card["text/html"]  # the traceback says it, once
    [mark] = card[DIAGNOSTICS_MIME]["diagnostics"]
    assert mark == {"line": 3, "column": 35, "end_line": 3, "end_column": 40, "level": "error",
                    "code": "E0609", "message": "no field `pathx` on type `Request`: unknown field"}


def test_failure_card_of_a_first_build():
    spec = CellSpec(method="GET", path="/p", source=SOURCE)
    error = build_failure(spec, {"build": {"diagnostics": [], "status": "timeout"},
                                 "endpoint": {"state": "build_failed"}})
    card = failure_card(error, spec)
    assert card["text/plain"] == "GET /p: build failed"
    assert "--jp-error-color1" in card["text/html"]
    assert card[DIAGNOSTICS_MIME]["diagnostics"] == []
