"""Spec import without cargo: operations, stubs, notebooks (idempotent), bundles."""

import io
import json
import os
import subprocess
import sys
import zipfile

import nbformat
import pytest

from edgebook.openapi.bundle import BundleError, plan, read_bundle
from edgebook.openapi.notebook import import_spec
from edgebook.openapi.rust import operation_block, parse_types
from edgebook.openapi.spec import (SpecError, example_from_schema, load_spec, operations,
                                   parse_spec, snake_case)
from edgebook.openapi.stubs import json_macro, raw_string, stub_source, to_31

HERE = os.path.dirname(os.path.abspath(__file__))
PETSTORE_YAML = os.path.join(HERE, "resources", "openapi", "petstore.yaml")
PETSTORE_JSON = os.path.join(HERE, "resources", "openapi", "petstore-3.1.json")
ROOT = os.path.dirname(HERE)


@pytest.mark.parametrize("name, snake", [
    ("getPetById", "get_pet_by_id"), ("get_pet", "get_pet"), ("get-pet", "get_pet"),
    ("GetPet", "get_pet"), ("listAllPets", "list_all_pets"), ("HTTPStatus", "http_status"),
])
def test_snake_case_names_like_the_original_bundles(name, snake):
    assert snake_case(name) == snake


@pytest.mark.parametrize("path", [PETSTORE_YAML, PETSTORE_JSON])
def test_petstore_operations(path):
    ops = {op.operation_id: op for op in operations(load_spec(path))}
    assert list(ops) == ["listPets", "createPet", "showPetById", "updatePet", "deletePet"]
    show = ops["showPetById"]
    assert (show.method, show.path) == ("GET", "/pets/{petId}")
    assert [(p.name, p.location, p.required) for p in show.parameters] == [
        ("petId", "path", True)]  # from the path item
    assert show.parameters[0].schema["type"] == "integer"
    assert ops["listPets"].example == [{"id": 1, "name": "Rex", "tag": "dog"},
                                       {"id": 2, "name": "Tom", "tag": "cat"}]
    create = ops["createPet"]
    assert create.success_status == 201 and create.example["name"] == "Rex"  # from examples
    assert create.body_name == "NewPet" and create.body_required
    assert ops["deletePet"].success_status == 204 and ops["deletePet"].example is None
    # no example in the spec: one made from the schema
    assert show.example["id"] == 0 and set(show.example) == {"id", "name", "tag", "owner"}


@pytest.mark.parametrize("text, message", [
    ("swagger: '2.0'\npaths: {}\n", "Swagger 2.0"),
    ("openapi: 2.5.0\npaths: {}\n", "only 3.0 and 3.1"),
    ("- a\n- b\n", "not a mapping"),
    ("{not json", "neither JSON nor YAML"),
])
def test_unreadable_specs(text, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(str(tmp_path / "nope.yaml"))


def test_generated_ids_recursive_refs_and_undeclared_path_params():
    spec = parse_spec(json.dumps({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/trees/{treeId}/nodes": {"post": {
            "requestBody": {"content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/Node"}}}},
            "responses": {"default": {"description": "any"}}}}},
        "components": {"schemas": {"Node": {
            "type": "object", "required": ["label"],
            "properties": {"label": {"type": "string"},
                           "children": {"type": "array",
                                        "items": {"$ref": "#/components/schemas/Node"}},
                           "parent": {"$ref": "#/components/schemas/Node"}}}}}}))
    (op,) = operations(spec)
    assert op.operation_id == "post_trees_by_treeId_nodes"
    assert [(p.name, p.location) for p in op.parameters] == [("treeId", "path")]
    source = stub_source(op)
    assert "children: Option<Vec<Box<Node>>>" in source
    assert "parent: Option<Box<Node>>" in source
    assert "let tree_id: String = req.require_path_param(\"treeId\")?;" in source


def test_examples_from_schemas():
    assert example_from_schema({"type": "object", "properties": {
        "a": {"type": "string", "format": "date-time"}, "b": {"enum": ["x", "y"]},
        "c": {"type": "array", "items": {"type": "integer", "minimum": 3}},
        "d": {"allOf": [{"properties": {"e": {"type": "boolean"}}}]}}}) == {
        "a": "2024-01-01T00:00:00Z", "b": "x", "c": [3], "d": {"e": False}}


def test_json_macro_uses_rust_escapes():
    assert json_macro({"a\"b": ["\u0001", "é", None, True, 1.5]}) == \
        '{"a\\"b": ["\\u{1}", "é", null, true, 1.5]}'
    assert raw_string('say "#hi"#') == 'r##"say "#hi"#"##'


def test_to_31_rewrites_nullable_and_exclusive_bounds():
    assert to_31({"type": "number", "nullable": True, "minimum": 0,
                  "exclusiveMinimum": True, "x-component": "N"}) == {
        "type": ["number", "null"], "exclusiveMinimum": 0}
    assert to_31({"type": "integer", "maximum": 5, "exclusiveMaximum": False}) == {
        "type": "integer", "maximum": 5}


def test_stub_reads_typed_inputs_and_declares_the_operation():
    ops = {op.operation_id: op for op in operations(load_spec(PETSTORE_YAML))}
    source = stub_source(ops["updatePet"])
    assert "let pet_id: i64 = req.require_path_param(\"petId\")?;" in source
    assert "let x_request_reason: Option<String> = req.header(\"X-Request-Reason\")" in source
    assert "let body: NewPet = req.json()?;" in source
    assert "#[serde(rename = \"weightKg\", default" in source and "r#type: Option<String>" \
        in source
    block = operation_block(source)
    assert block["operationId"] == "updatePet" and block["requestBody"] == "NewPet"
    assert block["responses"]["200"] == {"description": "The pet as stored", "schema": "Pet"}
    types = parse_types(source)  # what the exporter will read back
    assert {"NewPet", "Pet", "Owner"} <= set(types)
    list_source = stub_source(ops["listPets"])
    assert "let limit: Option<i32> = req.query_param_as(\"limit\");" in list_source
    assert "Response::json(501, json!([{\"id\": 1" in list_source
    assert operation_block(list_source)["responses"]["200"]["schema"] == "Vec<Pet>"
    assert "Not implemented: deletePet" in stub_source(ops["deletePet"])


def test_prelude_names_are_not_shadowed():
    spec = parse_spec(json.dumps({
        "openapi": "3.0.0", "info": {"title": "t", "version": "1"},
        "paths": {"/r": {"post": {"operationId": "r", "requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Response"}}}},
            "responses": {"200": {"description": "ok"}}}}},
        "components": {"schemas": {"Response": {"type": "object",
                                                "properties": {"ok": {"type": "boolean"}}}}}}))
    source = stub_source(operations(spec)[0])
    assert "struct ResponseSchema" in source and "let body: Option<ResponseSchema>" in source


# -- notebooks --------------------------------------------------------------------------------

def _handler_cells(nb):
    return {c.metadata["edgebook"]["operationId"]: c for c in nb.cells
            if c.metadata.get("edgebook", {}).get("role") == "handler"}


def test_notebook_from_petstore(tmp_path):
    out = str(tmp_path / "pets.ipynb")
    report = import_spec(PETSTORE_YAML, out)
    assert report.created == ["listPets", "createPet", "showPetById", "updatePet", "deletePet"]
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    roles = [c.metadata["edgebook"]["role"] for c in nb.cells]
    assert roles[:2] == ["intro", "setup"] and roles[-1] == "export"
    assert roles[2:-1] == ["summary", "handler"] * 5
    cells = _handler_cells(nb)
    assert cells["showPetById"].source.startswith(
        "%%rust_handler GET /pets/{petId} --name show_pet_by_id\n//! ```openapi")
    summary = nb.cells[roles.index("summary")]
    assert summary.source.startswith("## `GET /pets`: List pets")
    assert "filtered by tag" in summary.source


def test_reimport_is_idempotent_and_keeps_edits(tmp_path):
    out = str(tmp_path / "pets.ipynb")
    import_spec(PETSTORE_YAML, out)
    first = nbformat.read(out, as_version=4)
    again = import_spec(PETSTORE_YAML, out)
    assert again.created == [] and len(again.unchanged) == 5
    second = nbformat.read(out, as_version=4)
    assert [c.source for c in second.cells] == [c.source for c in first.cells]
    assert [c.id for c in second.cells] == [c.id for c in first.cells]

    # The user implements one handler; the spec then moves that operation's path.
    cells = _handler_cells(second)
    header, _, _ = cells["showPetById"].source.partition("\n")
    cells["showPetById"].source = header + "\nfn handle(req: Request) -> Response { todo!() }"
    nbformat.write(second, out)
    spec = load_spec(PETSTORE_YAML)
    spec["paths"]["/animals/{petId}"] = spec["paths"].pop("/pets/{petId}")
    spec["paths"]["/pets"]["get"]["summary"] = "List every pet"
    del spec["paths"]["/pets"]["post"]
    spec["paths"]["/pets/count"] = {"get": {"operationId": "countPets",
                                            "responses": {"200": {"description": "n"}}}}
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(spec))
    report = import_spec(str(moved), out)
    assert report.kept == ["showPetById"]
    assert report.created == ["countPets"]
    assert report.orphaned == ["createPet"]
    assert "listPets" in report.updated
    nb = nbformat.read(out, as_version=4)
    cells = _handler_cells(nb)
    assert cells["showPetById"].source == (
        "%%rust_handler GET /animals/{petId} --name show_pet_by_id\n"
        "fn handle(req: Request) -> Response { todo!() }")
    assert "/animals/{petId}" in cells["updatePet"].source  # unedited: regenerated
    assert len(cells) == 6  # nothing duplicated, nothing deleted
    assert nb.cells[-1].metadata["edgebook"]["role"] == "export"
    assert nb.cells[-2] is cells["countPets"]

    forced = import_spec(str(moved), out, overwrite=True)
    assert "showPetById" in forced.updated
    assert "todo!()" not in _handler_cells(nbformat.read(out, as_version=4))[
        "showPetById"].source


def test_cli_import_openapi(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-m", "edgebook", "import-openapi", PETSTORE_JSON,
                          "-o", str(tmp_path / "nb" / "pets.ipynb"), "--base-path", "/v1"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "5 created" in run.stdout
    nb = nbformat.read(str(tmp_path / "nb" / "pets.ipynb"), as_version=4)
    assert _handler_cells(nb)["deletePet"].source.startswith(
        "%%rust_handler DELETE /v1/pets/{petId} --name delete_pet")
    bad = subprocess.run([sys.executable, "-m", "edgebook", "import-openapi",
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 1 and "cannot read" in bad.stderr


# -- bundles ----------------------------------------------------------------------------------

def make_bundle(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_bundle_matching_and_manifest():
    with open(PETSTORE_YAML) as handle:
        spec = handle.read()
    data = make_bundle({
        "petstore/openapi.yaml": spec,
        "petstore/bundle.yaml": "bundle: {name: pets, version: 1.0.0}\n"
                                "dependencies:\n  itoa: '1'\n"
                                "  chrono: {version: '0.4', features: [serde]}\n",
        "petstore/handlers/list_pets.rs": "fn handle(req: Request) -> Response { todo!() }",
        "petstore/handlers/createPet.rs": "fn handle(req: Request) -> Response { todo!() }",
        "petstore/src/showpetbyid.rs": "fn handle(req: Request) -> Response { todo!() }",
        "petstore/handlers/feed_pets.rs": "fn handle(req: Request) -> Response { todo!() }",
        "petstore/src/main.rs": "fn main() {}",
        "petstore/README.md": "ignored",
    })
    bundle = read_bundle(data)
    assert bundle.spec_name == "petstore/openapi.yaml"
    assert bundle.deps == ["itoa@1", "chrono@0.4+serde"]
    planned, missing, unmatched = plan(bundle)
    assert [(p.name, p.file) for p in planned] == [
        ("list_pets", "petstore/handlers/list_pets.rs"),
        ("create_pet", "petstore/handlers/createPet.rs"),
        ("show_pet_by_id", "petstore/src/showpetbyid.rs")]
    assert missing == ["updatePet", "deletePet"]
    assert unmatched == ["petstore/handlers/feed_pets.rs"]
    with_stubs, _, _ = plan(bundle, stubs=True)
    assert [p.file for p in with_stubs][-2:] == [None, None]
    assert "501" in with_stubs[-1].source


@pytest.mark.parametrize("files, message", [
    ({"handlers/a.rs": "fn handle() {}"}, "no spec"),
    ({"openapi.yaml": "swagger: '2.0'\n"}, "Swagger"),
    ({"openapi.json": "{}", "a/x.rs": "", "b/x.rs": ""}, "two handler files"),
])
def test_bad_bundles(files, message):
    if "openapi.json" in files:
        files["openapi.json"] = json.dumps({"openapi": "3.0.0", "paths": {}})
    with pytest.raises(BundleError, match=message):
        read_bundle(make_bundle(files))


def test_not_a_zip():
    with pytest.raises(BundleError, match="not a ZIP"):
        read_bundle(b"plain text")


MAGIC_SCRIPT = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "edgebook")
out = []
for line in sys.argv[1:]:
    with capture_output() as cap:
        result = ip.run_cell(line)
    error = result.error_in_exec or result.error_before_exec
    out.append({"stdout": cap.stdout, "error": type(error).__name__ if error else None,
                "message": str(error) if error else ""})
print(json.dumps(out))
"""


def test_import_magic(tmp_path):
    target = tmp_path / "magic.ipynb"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("EDGEBOOK_DATA_DIR", None)
    run = subprocess.run(
        [sys.executable, "-c", MAGIC_SCRIPT,
         f"%edgebook import-openapi {PETSTORE_YAML} -o {target}",
         f"%edgebook import-openapi {PETSTORE_YAML} -o {target}",
         "%edgebook import-openapi",
         f"%edgebook import-openapi {tmp_path / 'nope.yaml'}"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    first, second, no_spec, missing = json.loads(run.stdout.strip().splitlines()[-1])
    assert "5 created" in first["stdout"] and first["error"] is None
    assert "5 unchanged" in second["stdout"]
    assert no_spec["error"] == "UsageError" and "SPEC" in no_spec["message"]
    assert missing["error"] == "UsageError" and "cannot read" in missing["message"]
    assert len(_handler_cells(nbformat.read(str(target), as_version=4))) == 5
