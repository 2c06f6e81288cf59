"""Schemathesis over every operation of the shipped docs/openapi.json, against every service on a real socket.

Each service's operations are taken from the merged document (paths under ``/api/<service>``, as the
gateway routes them, with that prefix taken off: the services themselves are called, not the gateway)
and called with a key of each role the operation allows (public ones without a key), with bodies,
query strings and path parameters schemathesis generates from the document: valid ones and ones that
break it (negative cases, which must be refused with a documented 4xx). Every answer must be no
5xx, have a documented status code and content type, and a body that fits the documented schema
(``Error`` for the errors). The seed is fixed, so a run makes the same cases; the number of cases per
service and in all is printed at the end of the module (and quoted in README.md, "HTTP API").
"""
import copy
import importlib
import json
import re
import time
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tacoord import config, openapi
from tacoord.testing import running_services, wait_until

EXAMPLES_PER_ROLE = 12     # the whole module stays within a few minutes on a shared two-core machine
SUBJECTS = {"state": "KEN", "donor": "GB-GOV-1", "network": "AFRICAN", "partner": "acme", "operator": "*"}
SUBSCRIPTION = {"channel": "amqp", "kind": "donor", "subject": SUBJECTS["donor"]}   # a webhook would call out
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=EXAMPLES_PER_ROLE, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
PATH_PARAMETER = re.compile(r"{(\w+)}")
SHIPPED = json.loads(openapi.DOC_PATH.read_text(encoding="utf-8"))


def service_schema(service):
    """The shipped document's operations of one service, at the paths the service itself serves."""
    prefix = f"{openapi.GATEWAY_PREFIX}/{service}"
    doc = copy.deepcopy(SHIPPED)
    doc["paths"] = {path[len(prefix):]: item for path, item in SHIPPED["paths"].items()
                    if path.startswith(prefix + "/")}
    return schemathesis.openapi.from_dict(doc)


SCHEMAS = {service: service_schema(service) for service in config.SERVICES}
RAN = Counter()          # cases run, per service
ANSWERS = Counter()      # their answers, by status (2xx: the handler did it)
STARTED = time.monotonic()
CASES = [(service, operation.label, role)
         for service, schema in SCHEMAS.items()
         for operation in (result.ok() for result in schema.get_all_operations())
         for role in operation.definition.raw.get("x-roles") or [None]]


@pytest.fixture(scope="module")
def world(stack):
    classes = [importlib.import_module(f"services.{name}.service").SERVICE for name in config.SERVICES]
    with running_services(classes) as (sandbox, _):
        keys = {role: sandbox.headers(role, subject) for role, subject in SUBJECTS.items()}
        yield sandbox, keys, seeded(sandbox, keys["operator"])


def example(path, method="post"):
    return SHIPPED["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]


def seeded(sandbox, operator):
    """One entity of each kind, filed with the document's own examples, so that some cases name ones
    that exist (``{service: {path parameter: value}}``); the rest of the path parameters are generated."""
    def filed(service, path, body, id_field):
        answer = requests.post(sandbox.url(service, path), json=body, headers=operator, timeout=30)
        assert answer.status_code in (200, 201), (path, answer.status_code, answer.text)
        return answer.json()[id_field]

    need = filed("needs", "/needs", example("/api/needs/needs"), "need_id")
    ids = {
        "needs": {"need_id": need, "code": "KEN"},
        "supply": {"offer_id": filed("supply", "/offers", example("/api/supply/offers"), "offer_id"),
                   "expert_id": filed("supply", "/experts", example("/api/supply/experts"), "expert_id")},
        "requests": {"request_id": filed("requests", "/requests", example("/api/requests/requests"), "request_id"),
                     "network_id": filed("requests", "/networks", example("/api/requests/networks"), "network_id")},
        "notify": {"network_id": filed("notify", "/networks", example("/api/notify/networks"), "network_id"),
                   "subscription_id": filed("notify", "/subscriptions", SUBSCRIPTION, "subscription_id")},
        "audit": {"entity_type": "need", "entity_id": need},
        "matching": {"name": "matrix.js"},
    }
    subscription = sandbox.db("notify").subscriptions.find_one({"subscription_id": ids["notify"]["subscription_id"]})
    ids["notify"]["token"] = subscription["unsubscribe_token"]
    matches = wait_until(lambda: requests.get(sandbox.url("matching", "/matches"), headers=operator,
                                              timeout=30).json()["matches"], message="a match of the seeded need")
    ids["matching"]["match_id"] = matches[0]["match_id"]
    return ids


def strategy(operation, known, headers):
    """Generated cases, valid and invalid, and valid ones naming the seeded entities where the path has them.

    The key is fixed (``headers``): unfixed, schemathesis's invalid cases would mostly drop it (a 401,
    which tests/integration/test_route_roles.py covers), and each role is here to reach the handler."""
    generated = (operation.as_strategy(headers=headers)
                 | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, headers=headers))
    names = PATH_PARAMETER.findall(operation.path)
    if names and all(name in known for name in names):
        return generated | operation.as_strategy(headers=headers,
                                                 path_parameters={name: known[name] for name in names})
    return generated


@pytest.mark.parametrize("service,label,role", CASES, ids=lambda v: str(v))
def test_every_answer_is_documented_and_no_5xx(world, service, label, role):
    sandbox, keys, known = world
    operation = SCHEMAS[service].find_operation_by_label(label)
    base_url = sandbox.url(service, "")
    headers = keys[role] if role else {}

    with requests.Session() as session:
        @FUZZ
        @given(case=strategy(operation, known[service], headers))
        def fuzz(case):
            RAN[service] += 1
            response = case.call(base_url=base_url, headers=headers, session=session, timeout=30)
            ANSWERS[response.status_code] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

        fuzz()


def test_the_cases_ran_and_how_many(capsys):
    """Last in the module: the count of cases, per service and in all (a CI log line to quote)."""
    summary = ", ".join(f"{service} {RAN[service]}" for service in config.SERVICES)
    with capsys.disabled():
        print(f"\nschemathesis: {sum(RAN.values())} cases over {len(CASES)} operation x role pairs "
              f"({summary}; answers {', '.join(f'{k} {v}' for k, v in sorted(ANSWERS.items()))}) "
              f"in {time.monotonic() - STARTED:.0f}s")
    assert sum(RAN.values()) >= len(CASES)
