"""The OpenAPI document: generated from the routes' declarations, valid OpenAPI 3.1, examples that validate.

The shipped ``docs/openapi.json`` must be what the code generates now (as for AsyncAPI), and it must
validate with openapi-spec-validator; each operation states the roles its route allows, and each
request body is the schema ``read_json`` validates with, with an example that schema accepts.
"""
import copy
import json

import pytest
from marshmallow import Schema, fields
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

import services
from tacoord import openapi
from tacoord.routes import JSON, UNDECLARED, Route, listing, routes_of
from tacoord.webserver import CORE_PATHS

APIS = services.http_apis()
ROUTES = [route for routes, _ in APIS.values() for route in routes]


@pytest.fixture(scope="module")
def doc():
    return openapi.document(APIS)


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method.upper(), op


def test_the_shipped_document_is_what_the_routes_generate_now(doc):
    shipped = openapi.DOC_PATH.read_text(encoding="utf-8")
    assert shipped == openapi.render(doc), "docs/openapi.json is stale: run `tacoord openapi`"


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate(copy.deepcopy(doc), cls=OpenAPIV31SpecValidator)
    for name, (routes, summary) in APIS.items():
        validate(openapi.service_document(name, routes, summary))


def test_the_validator_used_above_does_catch_a_broken_document(doc):
    broken = copy.deepcopy(doc)
    del broken["info"]["title"]
    broken["paths"]["/api/needs/needs"]["post"]["operationId"] = 5
    assert len(list(OpenAPIV31SpecValidator(broken).iter_errors())) >= 2


def test_every_route_of_every_service_is_one_operation_under_its_gateway_prefix(doc):
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert documented == {(f"/api/{r.service}{r.path}", r.method) for r in ROUTES}
    assert len({op["operationId"] for _, _, op in operations(doc)}) == len(ROUTES)


def test_each_operation_states_the_roles_its_route_allows(doc):
    roles = {(f"/api/{r.service}{r.path}", r.method): list(r.roles) for r in ROUTES}
    for path, method, op in operations(doc):
        assert op["x-roles"] == roles[(path, method)]
        if op["x-roles"]:
            assert op["security"] == [{"apiKey": op["x-roles"]}]
            assert f"Roles: {', '.join(op['x-roles'])}." in op["description"]
            assert {"401", "403"} <= set(op["responses"])
        else:
            assert op["security"] == [] and "Public" in op["description"]


def test_no_write_route_leaves_its_body_undeclared():
    undeclared = [f"{r.service} {r.method} {r.url}" for r in ROUTES if r.body_undeclared()]
    assert not undeclared, "declare body= on these @api routes (a schema, {media: ...} or None): " + \
        ", ".join(undeclared)


def test_a_json_body_is_the_schema_read_json_validates_with_and_its_example_loads(doc):
    checked = 0
    for route in ROUTES:
        schema = route.json_body_schema()
        if schema is None:
            continue
        op = doc["paths"][f"/api/{route.service}{route.path}"][route.method.lower()]
        content = op["requestBody"]["content"][JSON]
        ref = content["schema"]["$ref"] if not schema.many else content["schema"]["items"]["$ref"]
        assert ref == f"#/components/schemas/{openapi.component_name(schema)}"
        schema.load(copy.deepcopy(content["example"]))
        assert {"413", "415", "422"} <= set(op["responses"])
        checked += 1
    assert checked >= 11  # every JSON-only body: needs 2, supply 5, requests 2, notify 2


def test_every_request_body_has_an_example(doc):
    for path, method, op in operations(doc):
        for media, content in op.get("requestBody", {}).get("content", {}).items():
            assert "example" in content, (path, method, media)


def test_an_example_its_schema_refuses_fails_the_generation(monkeypatch):
    monkeypatch.setitem(openapi.EXAMPLES, "needs.NeedSchema", {**openapi.EXAMPLES["needs.NeedSchema"], "article": 99})
    with pytest.raises(Exception, match="article"):
        openapi.document(APIS)
    monkeypatch.delitem(openapi.EXAMPLES, "needs.NeedSchema")
    with pytest.raises(LookupError, match="no example for the body of needs.file_need"):
        openapi.document(APIS)


def test_the_component_of_a_body_mirrors_its_marshmallow_fields(doc):
    need = doc["components"]["schemas"]["needs.NeedSchema"]
    assert set(need["required"]) == {"state", "article", "forms", "priority"}
    assert need["additionalProperties"] is False  # unknown fields are a 422
    assert need["properties"]["article"] == {"type": "integer", "minimum": 5, "maximum": 62}
    assert need["properties"]["state"]["pattern"] == "^[A-Za-z]{3}$"  # tacoord.fields' own JSON Schema
    assert "Free text" in need["properties"]["description"]["description"]
    assert "other_needs_text" in need["description"]  # the cross-field rule is named


def test_responses_are_documented_tolerantly_and_errors_share_one_schema(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["needs.NeedEventSchema"]["additionalProperties"] is True
    listed = schemas["needs.NeedsListing"]
    assert listed["required"] == ["count", "needs"]
    assert listed["properties"]["needs"]["items"] == {"$ref": "#/components/schemas/needs.NeedEventSchema"}
    assert set(schemas["Error"]["required"]) == {"error", "status"}
    op = doc["paths"]["/api/needs/needs/{need_id}"]["get"]
    assert op["responses"]["2XX"]["content"][JSON]["schema"] == {"$ref": "#/components/schemas/needs.NeedEventSchema"}
    assert op["responses"]["404"] == {"$ref": "#/components/responses/NotFound"}
    assert op["responses"]["429"] == {"$ref": "#/components/responses/TooManyRequests"}  # the gateway's


def test_a_schema_cannot_be_both_a_strict_body_and_a_tolerant_response(monkeypatch):
    class Thing(Schema):
        name = fields.String()
    monkeypatch.setitem(openapi.EXAMPLES, openapi.component_name(Thing), {"name": "x"})
    route = Route("svc", "POST", "/things", "make", ("operator",), body=Thing, response=Thing)
    with pytest.raises(ValueError, match="both a request body and a response"):
        openapi.service_document("svc", [route])


def test_query_parameters_come_from_the_declared_names_or_schema(doc):
    names = [p["name"] for p in doc["paths"]["/api/needs/needs"]["get"]["parameters"]]
    assert names == ["state", "regional_group", "article", "chapter", "form", "status", "priority",
                     "checklist_round"]
    matches = {p["name"]: p for p in doc["paths"]["/api/matching/matches"]["get"]["parameters"]}
    assert matches["status"]["schema"]["enum"] == ["active", "proposed", "accepted", "agreed", "in_delivery",
                                                   "delivered", "declined", "cancelled", "retracted", "withdrawn"]
    cell = doc["paths"]["/api/supply/offers/{offer_id}"]["get"]["parameters"]
    assert cell == [{"in": "path", "name": "offer_id", "required": True, "schema": {"type": "string"}}]


def test_non_json_bodies_and_answers_say_their_media_type(doc):
    imports = doc["paths"]["/api/needs/needs/import"]["post"]["requestBody"]["content"]
    assert set(imports) == {"text/csv", JSON} and imports["text/csv"]["example"].startswith("state,article")
    assert imports[JSON]["schema"]["type"] == "array"
    page = doc["paths"]["/api/matching/matrix/page"]["get"]
    assert list(page["responses"]["2XX"]["content"]) == ["text/html"] and page["security"] == []


def test_the_core_serves_the_index_and_the_document_no_service_declares_them():
    assert not [r for r in ROUTES if r.url in CORE_PATHS]


def test_the_service_index_lists_routes_and_links_the_document():
    routes, _ = APIS["matching"]
    index = openapi.service_index("matching", routes, prefix="/api/matching")
    assert index["openapi"] == "/api/matching/openapi.json"
    assert index["pages"] == ["/api/matching/matrix/page"]
    assert {"method": "GET", "path": "/api/matching/matches/{match_id}",
            "roles": ["state", "donor", "network", "partner", "operator"], "summary": "Get match"} in index["routes"]


def test_routes_are_read_from_the_class_without_running_it():
    found = {(r.method, r.url): r for r in routes_of(services.service_class("needs"))}
    filing = found[("POST", "/needs")]
    assert filing.roles == ("state", "operator") and filing.json_body_schema().__class__.__name__ == "NeedSchema"
    assert found[("GET", "/needs")].query_names()[0] == "state"
    assert Route("s", "POST", "/x", "x", ()).body == UNDECLARED


def test_a_listing_names_its_items_and_its_count():
    from services.needs.schemas import NeedEventSchema
    schema = listing("needs", NeedEventSchema)()
    assert schema.__class__.__name__ == "NeedsListing" and set(schema.fields) == {"count", "needs"}
    assert openapi.component_name(schema) == "needs.NeedsListing"


def test_the_rendering_is_stable_json():
    text = openapi.render({"b": 1, "a": "é"})
    assert json.loads(text) == {"b": 1, "a": "é"} and text.endswith("\n") and "é" in text
