"""What a handler's source says about its API: the ```openapi block, structs, parameters."""

import pytest

from edgebook.openapi.rust import (OpenAPIBlockError, operation_block, parse_types,
                                   render_block, request_body_type, schema_for,
                                   used_parameters)
from edgebook.build.source import frontmatter_dependencies

HANDLER = '''//! The pets endpoint.
//! ```cargo
//! [dependencies]
//! itoa = "1"
//! ```
//! ```openapi
//! operationId: createPet
//! summary: Create a pet
//! tags: [pets]
//! requestBody: NewPet
//! responses:
//!   201: Pet
//!   400: {description: Not a pet}
//! ```
use rust_edge_gateway_sdk::prelude::*;

/// A pet to create.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPet {
    /// What it is called.
    name: String,
    #[serde(rename = "type")]
    kind: Option<Kind>,
    // a comment with a fake field: bogus: u8,
    tags: Vec<String>,
    #[serde(default)]
    age_years: u32,
    #[serde(skip)]
    cache: Option<String>,
    extra: std::collections::HashMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Pet { id: i64, name: String, parent: Option<Box<Pet>>, weight: f64, ok: bool }

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Kind { Cat, Dog, #[serde(rename = "budgie")] Bird }

enum Shape { Circle(f64), Square { side: f64 } }

fn handle(req: Request) -> Result<Response, HandlerError> {
    let id: i64 = req.require_path_param("petId")?;
    let limit: Option<u32> = req.query_param_as("limit");
    let page = req.require_query_param::<u16>("page")?;
    let q = req.query_param("q");
    let tags = req.query_all("tag");
    let body = req.json::<NewPet>()?;
    Ok(Response::ok(json!({"id": id})))
}
'''


def test_block_is_read_beside_a_cargo_block():
    block = operation_block(HANDLER)
    assert block == {"operationId": "createPet", "summary": "Create a pet", "tags": ["pets"],
                     "requestBody": "NewPet",
                     "responses": {"201": "Pet", "400": {"description": "Not a pet"}}}
    # the cargo block still reads the same
    assert frontmatter_dependencies(HANDLER) == {"itoa": {"version": "1"}}


def test_block_after_code_does_not_count_and_absent_block_is_none():
    assert operation_block("fn handle(req: Request) -> Response { todo!() }\n") is None
    late = "use x;\n//! ```openapi\n//! summary: late\n//! ```\n"
    assert operation_block(late) is None


@pytest.mark.parametrize("text, message", [
    ("//! ```openapi\n//! summary: [unclosed\n//! ```\n", "not valid YAML"),
    ("//! ```openapi\n//! - a list\n//! ```\n", "must hold an object"),
    ("//! ```openapi\n//! summary: x\nfn handle() {}\n", "not closed"),
])
def test_bad_blocks_are_reported_with_a_line(text, message):
    with pytest.raises(OpenAPIBlockError, match=message) as info:
        operation_block(text)
    assert info.value.line is not None


def test_render_block_round_trips():
    op = {"operationId": "x", "responses": {"200": {"description": "ok", "schema": "Vec<Pet>"}},
          "parameters": [{"name": "id", "in": "path", "required": True,
                          "schema": {"type": "integer"}}]}
    text = render_block(op)
    assert text.startswith("//! ```openapi\n") and text.endswith("//! ```\n")
    assert operation_block(text + "fn handle() {}\n") == op


def test_structs_fields_renames_and_docs():
    types = parse_types(HANDLER)
    assert set(types) == {"NewPet", "Pet", "Kind"}  # Shape has data-carrying variants
    new_pet = types["NewPet"]
    assert new_pet.deserializable and new_pet.description == "A pet to create."
    fields = {f.name: f for f in new_pet.fields}
    assert list(fields) == ["name", "type", "tags", "ageYears", "extra"]
    assert fields["name"].required and fields["name"].description == "What it is called."
    assert not fields["type"].required and not fields["ageYears"].required
    assert types["Kind"].variants == ["cat", "dog", "budgie"]


def test_schemas_with_components_and_recursion():
    types = parse_types(HANDLER)
    components = {}
    assert schema_for("Vec<NewPet>", types, components) == {
        "type": "array", "items": {"$ref": "#/components/schemas/NewPet"}}
    new_pet = components["NewPet"]
    assert new_pet["required"] == ["name", "tags", "extra"]
    assert new_pet["properties"]["type"] == {"anyOf": [{"$ref": "#/components/schemas/Kind"},
                                                       {"type": "null"}]}
    assert new_pet["properties"]["ageYears"] == {"type": "integer", "format": "int64",
                                                 "minimum": 0}
    assert new_pet["properties"]["extra"] == {"type": "object", "additionalProperties": {}}
    assert components["Kind"] == {"type": "string", "enum": ["cat", "dog", "budgie"]}
    schema_for("Pet", types, components)
    pet = components["Pet"]["properties"]
    assert pet["parent"] == {"anyOf": [{"$ref": "#/components/schemas/Pet"}, {"type": "null"}]}
    assert pet["weight"] == {"type": "number", "format": "double"}
    assert pet["ok"] == {"type": "boolean"}


@pytest.mark.parametrize("rust, schema", [
    ("String", {"type": "string"}), ("&str", {"type": "string"}),
    ("Option<i32>", {"type": ["integer", "null"], "format": "int32"}),
    ("Vec<u8>", {"type": "array", "items": {"type": "integer", "format": "int32",
                                            "minimum": 0}}),
    ("serde_json::Value", {}), ("JsonValue", {}),
    ("BTreeMap<String, bool>", {"type": "object",
                                "additionalProperties": {"type": "boolean"}}),
    ("chrono::DateTime<Utc>", {"description": "Rust type chrono::DateTime<Utc>"}),
])
def test_primitive_schemas(rust, schema):
    assert schema_for(rust, {}, {}) == schema


def test_used_parameters_and_body_type():
    used = {(p.location, p.name): p for p in used_parameters(HANDLER)}
    assert used[("path", "petId")].rust_type == "i64" and used[("path", "petId")].required
    assert used[("query", "limit")].rust_type == "u32" and not used[("query", "limit")].required
    assert used[("query", "page")].rust_type == "u16" and used[("query", "page")].required
    assert used[("query", "q")].rust_type == "String"
    assert used[("query", "tag")].rust_type == "Vec<String>"
    assert request_body_type(HANDLER) == "NewPet"
    assert request_body_type("let p: Pet = req.json()?;") == "Pet"
    assert request_body_type("fn handle(r: Request) -> Response { todo!() }") is None


def test_commented_out_calls_are_not_parameters():
    source = '// req.query_param("ghost")\n/* req.path_param("id") */\nfn handle() {}\n'
    assert used_parameters(source) == []
