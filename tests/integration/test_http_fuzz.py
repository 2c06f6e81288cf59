"""Hypothesis-generated bodies over a real socket: never a 5xx, always a JSON error body.

A sample of the write routes (POST/PATCH) of needs, supply, requests and notify,
called as an operator (so the body reaches the handler, past scope checks) with
arbitrary JSON, mutated valid bodies, ``$``-prefixed and dotted keys, huge
strings, deep nesting, NaN/Infinity, wrong content types and oversized bodies.
"""
import copy
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from services.supply.service import SupplyService
from tacoord.testing import running_services

MAX_BODY = 200_000   # a smaller limit than the default, so the 413 cases stay cheap
HTTP_FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))

KEYS = st.text(max_size=8) | st.sampled_from(["$where", "$set", "a.b", "_id", "\x00", "", "__proto__"])
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 63, max_value=10 ** 40)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(["x" * 5000, "2026-02-30", "KEN", "GB-GOV-1", "\ud800", "<script>"]))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                       max_leaves=20)

NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Procurement"}
OFFER = {"provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
         "articles": [9], "forms": ["LEGAL_ADVICE"], "capacity": 3, "period_start": "2026-01-01",
         "period_end": "2027-12-31", "languages": ["en"]}
REQUEST = {"kind": "national_workshop", "state": "KEN", "articles": [9, 10],
           "expected_outcomes": "A gap analysis on public procurement",
           "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
           "support_received": [{"provider": "GB-GOV-1", "description": "2025 training"}]}
EXPERT = {"family_name": "Doe", "given_names": "Jo", "nationality": "FRA",
          "expertise": [{"article": 9, "level": "expert"}], "languages": [{"code": "en", "level": "fluent"}]}
SUBSCRIPTION = {"channel": "amqp", "kind": "donor", "subject": "GB-GOV-1", "filter": {}}
NETWORK = {"network_id": "EAST_AFRICA_X", "name": "East Africa", "states": ["KEN", "UGA"]}

# (service, method, path, a valid body): path "{need}" etc. are filled from the fixture.
ROUTES = [
    ("needs", "POST", "/needs", NEED),
    ("needs", "PATCH", "/needs/{need}", {"priority": 2, "description": "changed"}),
    ("needs", "POST", "/needs/import", [NEED]),
    ("supply", "POST", "/offers", OFFER),
    ("supply", "POST", "/offers/import", [OFFER]),
    ("supply", "POST", "/experts", EXPERT),
    ("requests", "POST", "/requests", REQUEST),
    ("requests", "POST", "/requests/{request}/transitions", {"to": "under_review"}),
    ("notify", "POST", "/subscriptions", SUBSCRIPTION),
    ("notify", "POST", "/networks", NETWORK),
    ("needs", "PUT", "/parties/NIU", {"status": "party", "deposited": "2017-03-03", "source": "a notification"}),
    ("requests", "POST", "/requests/offers", {"state": "TCD", "expected_outcomes": "Checklist", "language": "fr"}),
    ("requests", "POST", "/networks", {**NETWORK, "kind": "regional_network"}),
    ("requests", "PATCH", "/networks/FUZZ_NET", {"description": "changed"}),
]


@pytest.fixture(scope="module")
def world(stack):
    with running_services((NeedsService, SupplyService, RequestsService, NotifyService),
                          TACOORD_MAX_BODY_BYTES=MAX_BODY) as (sandbox, _):
        headers = {"Authorization": f"Bearer {sandbox.api_key('operator', '*')}"}
        need = requests.post(sandbox.url("needs", "/needs"), json=NEED, headers=headers, timeout=10).json()
        filed = requests.post(sandbox.url("requests", "/requests"), json=REQUEST, headers=headers, timeout=10).json()
        requests.post(sandbox.url("requests", "/networks"), headers=headers, timeout=10, json={
            "network_id": "FUZZ_NET", "name": "Fuzz network", "kind": "regional_network", "states": ["KEN"]})
        yield sandbox, headers, {"need": need["need_id"], "request": filed["request_id"]}


def send(world, service, method, path, data, content_type="application/json"):
    sandbox, headers, ids = world
    url = sandbox.url(service, path.format(**ids))
    return requests.request(method, url, data=data, timeout=30,
                            headers={**headers, "Content-Type": content_type})


def assert_no_5xx_and_json(response, sent=None):
    assert response.status_code < 500, (response.status_code, response.text[:500], str(sent)[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = json.loads(response.text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in body"))
    if response.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"], body
    return body


def mutations(valid):
    """The valid body with one field set to anything (or removed, or a junk key added)."""
    if isinstance(valid, list):
        return mutations(valid[0]).map(lambda item: [item])
    names = sorted(valid) + ["unknown", "$where", "a.b"]
    return st.builds(_mutate, st.just(valid), st.sampled_from(names), JSONISH, st.booleans())


def _mutate(valid, field, value, drop):
    body = copy.deepcopy(valid)
    if drop:
        body.pop(field, None)
    else:
        body[field] = value
    return body


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[1]} {r[2]}")
def test_generated_bodies_never_cause_a_5xx_or_a_non_json_error(world, route):
    service, method, path, valid = route

    @HTTP_FUZZ
    @given(body=JSONISH | mutations(valid))
    def fuzz(body):
        raw = json.dumps(body)
        assert_no_5xx_and_json(send(world, service, method, path, raw.encode("utf-8", "surrogatepass")), raw)

    fuzz()


DEEP = "[" * 50_000 + "]" * 50_000
RAW_CASES = {
    "deep nesting (arrays)": (DEEP, "application/json"),
    "deep nesting (objects)": ('{"a":' * 20_000 + "1" + "}" * 20_000, "application/json"),
    "NaN and Infinity": ('{"state": "KEN", "article": NaN, "priority": Infinity, "forms": [-Infinity]}',
                         "application/json"),
    "a 4301-digit number": ('{"article": ' + "9" * 4301 + "}", "application/json"),
    "a 30-digit number": ('{"article": 9, "priority": 1, "capacity": ' + "9" * 30 + "}", "application/json"),
    "not UTF-8": (b"\xff\xfe{\x00}", "application/json"),
    "lone surrogate escape": ('{"description": "\\ud800"}', "application/json"),
    "empty": (b"", "application/json"),
    "whitespace": (b"   \n", "application/json"),
    "a JSON string": ('"hello"', "application/json"),
    "a JSON null": ("null", "application/json"),
    "form-encoded": ("state=KEN&article=9", "application/x-www-form-urlencoded"),
    "text/plain JSON": (json.dumps(NEED), "text/plain"),
    "multipart": ("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
                  "multipart/form-data; boundary=b"),
    "csv to a JSON route": ("state,article\nKEN,9\n", "text/csv"),
    "xml": ("<need><state>KEN</state></need>", "application/xml"),
    "huge string field": (json.dumps({**NEED, "description": "x" * 150_000}), "application/json"),
    "many keys": (json.dumps({f"k{i}": i for i in range(5000)}), "application/json"),
}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[1]} {r[2]}")
@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_hostile_raw_bodies_are_4xx_json(world, route, case):
    service, method, path, _ = route
    data, content_type = RAW_CASES[case]
    response = send(world, service, method, path, data, content_type)
    assert_no_5xx_and_json(response, case)
    if case in ("deep nesting (arrays)", "deep nesting (objects)", "empty", "whitespace"):
        assert 400 <= response.status_code < 500


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[1]} {r[2]}")
def test_oversized_bodies_are_413(world, route):
    service, method, path, _ = route
    declared = send(world, service, method, path, b"[" + b"1," * MAX_BODY + b"1]")
    assert declared.status_code == 413, declared.text[:300]
    assert_no_5xx_and_json(declared)

    def chunks():  # no Content-Length: the limit holds on the stream too
        for _ in range(MAX_BODY // 10_000 + 2):
            yield b" " * 10_000
    chunked = send(world, service, method, path, chunks())
    assert chunked.status_code == 413, chunked.text[:300]
    assert_no_5xx_and_json(chunked)


def test_a_chunked_body_under_the_limit_is_read(world):
    def chunks():
        body = json.dumps({**NEED, "article": 10}).encode()
        yield body[:10]
        yield body[10:]
    response = send(world, "needs", "POST", "/needs", chunks())
    assert response.status_code == 201, response.text
