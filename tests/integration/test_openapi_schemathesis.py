"""Schemathesis over every operation of the shipped docs/openapi.json, against every service on a real socket.

Each service's operations are taken from the merged document (paths under ``/api/<service>``, as the
gateway routes them, with that prefix taken off: the services themselves are called, not the gateway)
and called with a key of each role the operation allows (public ones without a key), with bodies,
query strings and path parameters schemathesis generates from the document: valid ones and ones that
break it (negative cases, which must be refused with a documented 4xx). Every answer must be no
5xx, have a documented status code and content type, and a body that fits the documented schema
(``Error`` for the errors). The seed is fixed, so a run makes the same cases; the number of cases per
service and in all is printed at the end of the module (and quoted in docs/operations.md).
"""
import copy
import importlib
import json
import time
from collections import Counter

import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tacoord import config, openapi
from tacoord.testing import running_services

EXAMPLES_PER_ROLE = 10     # the whole module stays within a few minutes on a shared two-core machine
SUBJECTS = {"state": "KEN", "donor": "GB-GOV-1", "network": "AFRICAN", "partner": "acme", "operator": "*"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ = settings(max_examples=EXAMPLES_PER_ROLE, deadline=None, database=None, derandomize=True,
                phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
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
        yield sandbox, keys, RAN


@pytest.mark.parametrize("service,label,role", CASES, ids=lambda v: str(v))
def test_every_answer_is_documented_and_no_5xx(world, service, label, role):
    sandbox, keys, ran = world
    operation = SCHEMAS[service].find_operation_by_label(label)
    base_url = sandbox.url(service, "")
    headers = keys[role] if role else {}
    session = requests.Session()

    @FUZZ
    @given(case=operation.as_strategy() | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def fuzz(case):
        ran[service] += 1
        response = case.call(base_url=base_url, headers=headers, session=session, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)

    fuzz()


def test_the_cases_ran_and_how_many(capsys):
    """Last in the module: the count of cases, per service and in all (a CI log line to quote)."""
    summary = ", ".join(f"{service} {RAN[service]}" for service in config.SERVICES)
    with capsys.disabled():
        print(f"\nschemathesis: {sum(RAN.values())} cases over {len(CASES)} operation x role pairs "
              f"({summary}) in {time.monotonic() - STARTED:.0f}s")
    assert sum(RAN.values()) >= len(CASES)
