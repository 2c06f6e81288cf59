"""What every service's HTTP side does alike, over a real socket (tacoord.web, tacoord.webserver).

All six services in one sandbox: JSON for paths and methods no route takes (404, 405), ``GET /`` as the
index and ``GET /openapi.json`` as the document of each; on every route that reads a JSON body, a
body in another media type is a 415 and a NUL in a text field a 422 naming the field; tabs and line
breaks only in free text; the request id taken from the caller (or made), sent back and logged; and
the answers of routes that declare a response schema fit the schema the OpenAPI document gives.
"""
import copy
import json
import logging
import re

import pytest
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import services
from tacoord import openapi
from tacoord.routes import routes_of, service_summary
from tacoord.testing import running_services

APIS = services.http_apis()
JSON_BODY_ROUTES = [r for routes, _ in APIS.values() for r in routes if r.json_body_schema() is not None]
NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Procurement"}
OFFER = {"provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
         "articles": [9], "forms": ["LEGAL_ADVICE"], "capacity": 3, "period_start": "2026-01-01",
         "period_end": "2027-12-31", "languages": ["en"]}


@pytest.fixture(scope="module")
def world(stack):
    with running_services([services.service_class(name) for name in services.SERVICES]) as (sandbox, _):
        yield sandbox, sandbox.headers("operator")


def call(world, service, method, path, **kwargs):
    sandbox, operator = world
    headers = {**operator, **kwargs.pop("headers", {})}
    return requests.request(method, sandbox.url(service, path), headers=headers, timeout=30, **kwargs)


def json_error(response, status):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["status"] == status and body["error"], body
    return body


def concrete(url):
    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "placeholder-id", url)


@pytest.mark.parametrize("service", services.SERVICES)
def test_a_path_no_route_has_is_a_json_404(world, service):
    body = json_error(call(world, service, "GET", "/no/such/route"), 404)
    assert "no route GET /no/such/route" in body["error"] and "GET /" in body["error"]
    json_error(call(world, service, "GET", "/no/such/route", headers={"Authorization": ""}), 404)


@pytest.mark.parametrize("service", services.SERVICES)
def test_a_method_the_path_does_not_take_is_a_json_405_naming_the_allowed_ones(world, service):
    routes, _ = APIS[service]
    path = routes[0].url
    methods = {r.method for r in routes if r.url == path}
    response = call(world, service, "PUT", concrete(path))
    body = json_error(response, 405)
    allowed = sorted(methods | ({"HEAD"} if "GET" in methods else set()))
    assert body["allowed"] == allowed and response.headers["Allow"] == ", ".join(allowed)
    assert f"PUT is not allowed on {concrete(path)}" in body["error"]
    options = call(world, service, "OPTIONS", concrete(path))
    assert options.status_code == 204 and set(options.headers["Allow"].split(", ")) == set(allowed) | {"OPTIONS"}


@pytest.mark.parametrize("service", services.SERVICES)
def test_get_slash_is_the_json_index_of_the_services_routes(world, service):
    sandbox, _ = world
    response = requests.get(sandbox.url(service, "/"), timeout=10)  # public
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    index = response.json()
    routes = routes_of(services.service_class(service))
    assert index["service"] == service and index["openapi"] == "/openapi.json"
    assert [(r["method"], r["path"]) for r in index["routes"]] == [(r.method, r.path) for r in routes]
    assert all(r["roles"] == "public" or set(r["roles"]) <= {"state", "donor", "network", "partner", "operator"}
               for r in index["routes"])
    behind = requests.get(sandbox.url(service, "/"), headers={"X-Forwarded-Prefix": f"/api/{service}"}, timeout=10)
    assert behind.json()["openapi"] == f"/api/{service}/openapi.json"
    assert behind.json()["routes"][0]["path"].startswith(f"/api/{service}/")
    json_error(requests.post(sandbox.url(service, "/"), timeout=10), 405)


@pytest.mark.parametrize("service", services.SERVICES)
def test_each_service_serves_its_own_openapi_document(world, service):
    sandbox, _ = world
    response = requests.get(sandbox.url(service, "/openapi.json"), timeout=10)
    assert response.status_code == 200
    doc = response.json()
    cls = services.service_class(service)
    assert doc == json.loads(json.dumps(openapi.service_document(service, routes_of(cls), service_summary(cls))))
    validate(doc, cls=OpenAPIV31SpecValidator)
    behind = requests.get(sandbox.url(service, "/openapi.json"), headers={"X-Forwarded-Prefix": f"/api/{service}"},
                          timeout=10).json()
    assert behind["servers"] == [{"url": f"/api/{service}", "description": "through the gateway"}]


def example_body(route):
    return copy.deepcopy(openapi.example_for(route, "application/json", route.json_body_schema()))


def first_text(value, path=()):
    """The path to the first string in an example body (where a NUL will go)."""
    if isinstance(value, str):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = first_text(item, path + (key,))
        if found is not None:
            return found
    return None


def put(body, path, text):
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = text
    return body


def named(fields, path):
    """``fields`` (marshmallow's nesting, list indexes as strings in JSON) names ``path``."""
    node = fields
    for key in path:
        node = node[str(key)]
    return bool(node)


@pytest.mark.parametrize("route", JSON_BODY_ROUTES, ids=lambda r: f"{r.service} {r.method} {r.url}")
def test_a_body_in_another_media_type_is_a_415(world, route):
    for media in ("text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"):
        response = call(world, route.service, route.method, concrete(route.url),
                        data=json.dumps(example_body(route)), headers={"Content-Type": media})
        body = json_error(response, 415)
        assert "application/json" in body["error"], body


@pytest.mark.parametrize("route", JSON_BODY_ROUTES, ids=lambda r: f"{r.service} {r.method} {r.url}")
def test_a_nul_in_a_text_field_is_a_422_naming_the_field(world, route):
    example = example_body(route)
    path = first_text(example)
    assert path is not None, f"the example of {route.service}.{route.name} has no text to try"
    sent = put(example, path, "before\x00after")
    body = json_error(call(world, route.service, route.method, concrete(route.url), json=sent), 422)
    assert named(body["fields"], path), body
    assert "U+0000" in json.dumps(body["fields"]), body


def test_line_breaks_are_kept_in_free_text_and_refused_in_one_line_fields(world):
    filed = call(world, "needs", "POST", "/needs", json={**NEED, "article": 12, "description": "Line one\n\tLine two"})
    assert filed.status_code == 201, filed.text
    assert filed.json()["description"] == "Line one\n\tLine two"
    body = json_error(call(world, "needs", "POST", "/needs", json={**NEED, "article": 13, "external_ref": "A\nB"}), 422)
    assert "one line" in body["fields"]["external_ref"][0]
    body = json_error(call(world, "supply", "POST", "/offers", json={**OFFER, "provider_name": "FCDO\r"}), 422)
    assert list(body["fields"]) == ["provider_name"]
    body = json_error(call(world, "requests", "POST", "/requests", json={
        **openapi.EXAMPLES["requests.RequestSchema"],
        "support_received": [{"provider": "GB-GOV-1", "description": "ok\nfine"}, {"provider": "X\u0085"}]}), 422)
    assert list(body["fields"]) == ["support_received"] and list(body["fields"]["support_received"]) == ["1"]
    assert body["details"] == [f"support_received.1.provider: {body['fields']['support_received']['1']['provider'][0]}"]
    assert "U+0085" in body["details"][0]


def test_a_control_character_in_a_query_parameter_is_a_422_naming_it(world):
    body = json_error(call(world, "needs", "GET", "/needs", params={"state": "KEN\x00"}), 422)
    assert list(body["fields"]) == ["state"]
    body = json_error(call(world, "supply", "DELETE", "/offers/placeholder-id", params={"reason": "a\x1bb"}), 422)
    assert list(body["fields"]) == ["reason"]


def test_a_body_without_a_content_type_is_read_as_json(world):
    sandbox, operator = world
    response = requests.post(sandbox.url("needs", "/needs"), data=json.dumps({**NEED, "article": 14}),
                             headers=operator, timeout=10)
    assert response.status_code == 201, response.text


def test_the_request_id_is_kept_or_made_sent_back_and_logged(world, caplog):
    caplog.set_level(logging.INFO, logger="tacoord.http")
    kept = call(world, "needs", "GET", "/needs?state=KEN", headers={"X-Request-Id": "partner-42.req:0007"})
    assert kept.status_code == 200 and kept.headers["X-Request-Id"] == "partner-42.req:0007"
    made = call(world, "supply", "GET", "/nowhere", headers={"X-Request-Id": "bad id; forged=line"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"]), made.headers
    lines = [r.getMessage() for r in caplog.records if r.name == "tacoord.http"]
    assert any(line.startswith("request_id=partner-42.req:0007 GET /needs?state=KEN 200 ") for line in lines), lines
    assert any(line.startswith(f"request_id={made.headers['X-Request-Id']} GET /nowhere 404 ") for line in lines)
    assert not any("forged" in line for line in lines)


def _validator(doc, schema):
    """A JSON Schema validator for one schema of the document (its $refs resolved in the document)."""
    registry = Registry().with_resource("urn:tacoord:openapi", DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": "urn:tacoord:openapi" + schema["$ref"]}, registry=registry)


def documented_answer(doc, path, method):
    return doc["paths"][path][method.lower()]["responses"]["2XX"]["content"]["application/json"]["schema"]


def test_answers_fit_the_schemas_their_routes_document(world):
    """What the document says a route answers is what it answers (fields it names, with their types)."""
    doc = openapi.document(APIS)
    need = call(world, "needs", "POST", "/needs", json={**NEED, "article": 15}).json()
    offer = call(world, "supply", "POST", "/offers", json=OFFER).json()
    answers = {
        ("/api/needs/needs", "POST"): need,
        ("/api/needs/needs/{need_id}", "GET"): call(world, "needs", "GET", f"/needs/{need['need_id']}").json(),
        ("/api/needs/needs/{need_id}", "PATCH"): call(world, "needs", "PATCH", f"/needs/{need['need_id']}",
                                                      json={"priority": 2}).json(),
        ("/api/needs/needs", "GET"): call(world, "needs", "GET", "/needs").json(),
        ("/api/needs/needs/{need_id}", "DELETE"): call(world, "needs", "DELETE", f"/needs/{need['need_id']}",
                                                       params={"reason": "covered"}).json(),
        ("/api/supply/offers", "POST"): offer,
        ("/api/supply/offers/{offer_id}", "GET"): call(world, "supply", "GET", f"/offers/{offer['offer_id']}").json(),
        ("/api/supply/offers/{offer_id}", "PATCH"): call(world, "supply", "PATCH", f"/offers/{offer['offer_id']}",
                                                         json={"capacity": 4}).json(),
        ("/api/supply/offers", "GET"): call(world, "supply", "GET", "/offers").json(),
        ("/api/supply/offers/{offer_id}", "DELETE"): call(world, "supply", "DELETE", f"/offers/{offer['offer_id']}",
                                                          params={"reason": "programme closed"}).json(),
    }
    declared = {(f"/api/{r.service}{r.path}", r.method) for r in APIS["needs"][0] + APIS["supply"][0]
                if r.response_contents().get("application/json") is not None}
    assert declared == set(answers)
    for (path, method), answer in answers.items():
        errors = list(_validator(doc, documented_answer(doc, path, method)).iter_errors(answer))
        assert not errors, (path, method, [e.message for e in errors][:3])
    wrong = {**answers[("/api/needs/needs", "POST")], "article": "nine"}
    assert list(_validator(doc, documented_answer(doc, "/api/needs/needs", "POST")).iter_errors(wrong))
