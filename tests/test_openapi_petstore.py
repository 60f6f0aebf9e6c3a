"""The pet store end to end, with real builds: spec -> notebook -> live stubs -> handlers
filled in -> exported document with real examples -> validator and schemathesis -> bundle.

One ``edgebook serve`` for the module. The notebook runs in a real kernel (nbclient), so
every ``%%rust_handler`` cell is built by the build service (shared cargo target dir; five
stubs and five implementations are the only distinct builds) and deployed. The bundle is
made from the implemented handlers, so deploying it hits the build cache.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from openapi_spec_validator import validate

from edgebook.openapi.notebook import import_spec
from edgebook.openapi.spec import load_spec, operations
from edgebook.discovery import read_runtime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PETSTORE = os.path.join(HERE, "resources", "openapi", "petstore.yaml")

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is needed")

IMPLEMENTATIONS = {
    "listPets": '''
fn handle(req: Request) -> Result<Response, HandlerError> {
    let limit: Option<i32> = req.query_param_as("limit");
    let tag: Option<String> = req.query_param_as("tag");
    let limit = limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Ok(Response::bad_request("limit must be from 1 to 100"));
    }
    let pets = vec![
        Pet { id: 1, name: "Rex".into(), tag: Some("dog".into()), owner: None },
        Pet { id: 2, name: "Tom".into(), tag: Some("cat".into()), owner: None },
    ];
    let found: Vec<Pet> = pets.into_iter()
        .filter(|p| tag.is_none() || p.tag == tag)
        .take(limit as usize)
        .collect();
    Ok(Response::ok(found))
}
''',
    "createPet": '''
fn handle(req: Request) -> Result<Response, HandlerError> {
    let body: NewPet = req.json()?;
    if body.name.trim().is_empty() {
        return Ok(Response::json(400, Error { error: "name must not be empty".into() }));
    }
    Ok(Response::created(Pet { id: 3, name: body.name, tag: body.tag, owner: body.owner }))
}
''',
    "showPetById": '''
fn handle(req: Request) -> Result<Response, HandlerError> {
    let pet_id: i64 = req.require_path_param("petId")?;
    if pet_id != 1 {
        return Ok(Response::json(404, Error { error: format!("no pet {pet_id}") }));
    }
    Ok(Response::ok(Pet { id: 1, name: "Rex".into(), tag: Some("dog".into()), owner: None }))
}
''',
    "updatePet": '''
fn handle(req: Request) -> Result<Response, HandlerError> {
    let pet_id: i64 = req.require_path_param("petId")?;
    let body: NewPet = req.json()?;
    if pet_id != 1 {
        return Ok(Response::not_found_msg(format!("no pet {pet_id}")));
    }
    Ok(Response::ok(Pet { id: pet_id, name: body.name, tag: body.tag, owner: body.owner }))
}
''',
    "deletePet": '''
fn handle(req: Request) -> Result<Response, HandlerError> {
    let pet_id: i64 = req.require_path_param("petId")?;
    Ok(if pet_id == 1 { Response::no_content() } else { Response::not_found() })
}
''',
}


def env(**extra):
    e = {k: v for k, v in os.environ.items()
         if k not in ("EDGEBOOK_DATA_DIR", "JPY_SESSION_NAME", "EDGEBOOK_WIDGETS",
                      "EDGEBOOK_PROXY_BASE")}
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, e.get("PYTHONPATH")]))
    e.update(extra)
    return e


def call(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    headers = dict(headers or {})
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        exc.close()
        return exc.code, json.loads(raw) if raw else None


def handler_cells(nb):
    return {c.metadata["edgebook"]["operationId"]: c for c in nb.cells
            if c.metadata.get("edgebook", {}).get("role") == "handler"}


def execute(path, data_dir):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3")
    client.execute(env=env(EDGEBOOK_DATA_DIR=data_dir), cwd=os.path.dirname(path))
    nbformat.write(nb, path)
    return nb


def edgebook(*args, data_dir, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgebook", *args, "--data-dir", data_dir],
                          capture_output=True, text=True, env=env(), timeout=timeout)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    project = tmp_path_factory.mktemp("petstore")
    data_dir = str(project / ".edgebook")
    process = subprocess.Popen(
        [sys.executable, "-m", "edgebook", "serve", "--data-dir", data_dir, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    banner = process.stdout.readline()
    assert "serving" in banner, process.stderr.read()
    info = read_runtime(data_dir)
    yield {"project": project, "data_dir": data_dir, "url": info.url}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()
    process.stderr.close()


@pytest.fixture(scope="module")
def stubs(served):
    notebook = str(served["project"] / "petstore.ipynb")
    report = import_spec(PETSTORE, notebook)
    assert len(report.created) == 5
    nb = nbformat.read(notebook, as_version=4)
    export = next(c for c in nb.cells if c.metadata["edgebook"]["role"] == "export")
    export.source = "%edgebook openapi --save stubs-openapi.yaml"
    nbformat.write(nb, notebook)
    nb = execute(notebook, served["data_dir"])  # raises CellExecutionError on any failure
    return {**served, "notebook": notebook, "nb": nb}


@pytest.fixture(scope="module")
def filled(stubs):
    notebook = stubs["notebook"]
    nb = nbformat.read(notebook, as_version=4)
    for operation_id, cell in handler_cells(nb).items():
        kept, _, _ = cell.source.partition(f"/// {operation_id}:")
        cell.source = kept.rstrip("\n") + "\n" + IMPLEMENTATIONS[operation_id]
    nbformat.write(nb, notebook)
    nb = execute(notebook, stubs["data_dir"])
    return {**stubs, "nb": nb}


def test_every_stub_compiles_runs_and_answers_501_with_the_example(stubs):
    for cell in handler_cells(stubs["nb"]).values():
        assert not any(o.get("output_type") == "error" for o in cell.outputs)
    url = stubs["url"]
    examples = {op.operation_id: op.example for op in operations(load_spec(PETSTORE))}
    new_pet = {"name": "Rex", "tag": None, "weightKg": 3.5, "owner": {"name": "Ann"}}
    calls = {"listPets": ("GET", "/pets?limit=5", None),
             "createPet": ("POST", "/pets", new_pet),
             "showPetById": ("GET", "/pets/1", None),
             "updatePet": ("PUT", "/pets/1", new_pet),
             "deletePet": ("DELETE", "/pets/1", None)}
    for operation_id, (method, path, body) in calls.items():
        status, answer = call(method, url + path, body)
        assert status == 501, (operation_id, answer)
        expected = examples[operation_id]
        if expected is None:
            assert answer == {"error": f"Not implemented: {operation_id}"}
        else:
            assert answer == expected, operation_id
    # The stubs read typed inputs: a bad id or body is the client's mistake.
    status, answer = call("GET", url + "/pets/abc")
    assert status == 400 and "petId" in answer["error"]
    status, answer = call("POST", url + "/pets", {"tag": "no name"})
    assert status == 400 and "Invalid JSON" in answer["error"]


def test_the_notebook_saved_the_stubs_document(stubs):
    saved = os.path.join(stubs["project"], "stubs-openapi.yaml")
    with open(saved) as handle:
        document = yaml.safe_load(handle)
    validate(document)
    assert set(document["paths"]) == {"/pets", "/pets/{petId}"}
    show = document["paths"]["/pets/{petId}"]["get"]
    assert show["operationId"] == "showPetById" and show["summary"] == "Show one pet"
    petid = show["parameters"][0]
    assert petid["schema"] == {"type": "integer", "format": "int64"}
    create = document["paths"]["/pets"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewPet"}
    new_pet = document["components"]["schemas"]["NewPet"]
    assert new_pet["required"] == ["name"]
    assert set(new_pet["properties"]) == {"name", "tag", "type", "vaccinated", "weightKg",
                                          "owner"}


def test_reimport_after_filling_in_keeps_the_implementations(filled):
    notebook = filled["notebook"]
    before = nbformat.read(notebook, as_version=4)
    report = import_spec(PETSTORE, notebook)
    assert sorted(report.kept) == sorted(IMPLEMENTATIONS) and not report.created
    after = nbformat.read(notebook, as_version=4)
    assert [c.source for c in after.cells] == [c.source for c in before.cells]


def test_export_after_filling_in_has_real_statuses_and_examples(filled):
    url = filled["url"]
    new_pet = {"name": "Kit", "tag": "cat"}
    exchanges = [("GET", "/pets?limit=1", None, 200), ("GET", "/pets?limit=0", None, 400),
                 ("POST", "/pets", new_pet, 201), ("POST", "/pets", {"name": " "}, 400),
                 ("GET", "/pets/1", None, 200), ("GET", "/pets/7", None, 404),
                 ("PUT", "/pets/1", new_pet, 200), ("PUT", "/pets/9", new_pet, 404),
                 ("DELETE", "/pets/1", None, 204), ("DELETE", "/pets/2", None, 404)]
    for method, path, body, expected in exchanges:
        assert call(method, url + path, body)[0] == expected, (method, path)
    saved = os.path.join(filled["project"], "filled.json")
    run = edgebook("openapi", "-o", saved, data_dir=filled["data_dir"])
    assert run.returncode == 0, run.stderr
    with open(saved) as handle:
        document = json.load(handle)
    validate(document)
    assert json.dumps(document).count('"501"') == 0  # the stubs' answers are gone
    show = document["paths"]["/pets/{petId}"]["get"]
    assert set(show["responses"]) == {"200", "404"}
    ok = show["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == {"$ref": "#/components/schemas/Pet"}
    assert [e["value"] for e in ok["examples"].values()] == [
        {"id": 1, "name": "Rex", "tag": "dog"}]
    missing = show["responses"]["404"]["content"]["application/json"]["examples"]
    assert [e["value"] for e in missing.values()] == [{"error": "no pet 7"}]
    assert show["parameters"][0]["example"] == 1
    create = document["paths"]["/pets"]["post"]
    assert set(create["responses"]) == {"201", "400"}
    assert [e["value"] for e in create["requestBody"]["content"]["application/json"][
        "examples"].values()] == [new_pet, {"name": " "}]
    created = create["responses"]["201"]["content"]["application/json"]["examples"]
    assert list(created.values())[0]["value"] == {"id": 3, "name": "Kit", "tag": "cat"}
    listing = document["paths"]["/pets"]["get"]
    assert set(listing["responses"]) == {"200", "400"}  # 400 only because it was seen
    assert {p["name"]: p.get("example") for p in listing["parameters"]} == {
        "limit": 1, "tag": None}
    delete = document["paths"]["/pets/{petId}"]["delete"]
    assert set(delete["responses"]) == {"204", "404"}
    assert "content" not in delete["responses"]["204"]


def test_schemathesis_finds_no_server_errors(filled):
    report = os.path.join(filled["project"], "schemathesis.xml")
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", filled["url"] + "/openapi.json",
         "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
         "--max-examples", "15", "--workers", "1", "--seed", "7", "--request-timeout", "10",
         "--report", "junit", "--report-junit-path", report],
        capture_output=True, text=True, env=env(), timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    with open(report) as handle:
        junit = handle.read()
    assert junit.count("<testcase") == 5  # every operation was exercised


#: A handler as written for the original gateway: a whole program ending in its macro.
ORIGINAL_STYLE_DELETE = """//! Delete a pet (written for the original gateway)
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    match req.path_param("petId").map(String::as_str) {
        Some("1") => Response::no_content(),
        _ => Response::not_found(),
    }
}

handler_loop!(handle);
"""


def make_bundle(nb) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with open(PETSTORE) as handle:
            archive.writestr("petstore/openapi.yaml", handle.read())
        for operation_id, cell in handler_cells(nb).items():
            _, _, source = cell.source.partition("\n")  # the cell without its magic line
            if operation_id == "deletePet":
                source = ORIGINAL_STYLE_DELETE
            file = {"listPets": "list_pets", "createPet": "create_pet",
                    "showPetById": "show_pet_by_id", "updatePet": "update_pet",
                    "deletePet": "delete_pet"}[operation_id]
            archive.writestr(f"petstore/handlers/{file}.rs", source)
    return buffer.getvalue()


def test_bundle_import_deploys_the_handlers(filled):
    bundle = os.path.join(filled["project"], "petstore.zip")
    with open(bundle, "wb") as handle:
        handle.write(make_bundle(filled["nb"]))
    run = edgebook("import-bundle", bundle, "--base-path", "/v2", data_dir=filled["data_dir"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("deployed ") == 5
    url = filled["url"]
    assert call("GET", url + "/v2/pets/1") == (200, {"id": 1, "name": "Rex", "tag": "dog"})
    assert call("POST", url + "/v2/pets", {"name": "Bo"})[0] == 201
    assert call("DELETE", url + "/v2/pets/1") == (204, None)
    assert call("DELETE", url + "/v2/pets/2") == (404, {"error": "Not Found"})
    assert call("GET", url + "/pets/1")[0] == 404  # the same endpoints moved to /v2
