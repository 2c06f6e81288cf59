"""The gateway: a real nginx (Debian's, as infra.stack runs it) with the generated config, in front of
services started here.

Each nginx gets its own prefix directory and port (the shared stack's gateway is never touched); the
needs and matching services run in this process, supply's address answers nothing (a stopped service).
"""
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager

import pytest
import requests

from infra import gateway
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from tacoord import config, openapi
from tacoord.testing import free_port, running_services
from tests.e2e.test_matrix_page import CHROMIUM, chromium

NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Procurement"}
BODY_LIMIT = 50_000


@pytest.fixture(scope="module")
def world(stack):
    try:
        gateway.nginx_binary()
    except gateway.GatewayError as exc:
        pytest.fail(str(exc.code), pytrace=False)
    with running_services((NeedsService, MatchingService)) as (sandbox, _):
        dead = free_port()
        upstreams = {name: f"127.0.0.1:{sandbox.http_ports.get(name, dead)}" for name in config.SERVICES}
        with started(upstreams, rate=200, burst=200, max_body=BODY_LIMIT) as settings:
            yield sandbox, settings, upstreams


@contextmanager
def started(upstreams, **overrides):
    prefix = tempfile.mkdtemp(prefix="tacoord-gateway-")
    os.chmod(prefix, 0o755)  # nginx's workers (www-data) keep their temporary files under it
    settings = gateway.local_settings(prefix=prefix, listen=f"127.0.0.1:{free_port()}", upstreams=upstreams,
                                      **overrides)
    gateway.start(settings)
    try:
        yield settings
    finally:
        gateway.stop(settings)
        shutil.rmtree(prefix, ignore_errors=True)


def url(settings, path):
    return f"http://{settings.listen}{path}"


def get(world, path, **kwargs):
    _, settings, _ = world
    return requests.get(url(settings, path), timeout=10, **kwargs)


def access_log(settings, request_id, deadline=5.0):
    """The access-log line of one request (nginx writes it once the answer is sent)."""
    path = gateway.paths(settings)["access"]
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        lines = [line for line in path.read_text().splitlines() if f"request_id={request_id} " in line]
        if lines:
            return lines
        time.sleep(0.05)
    return []


def test_each_api_prefix_goes_to_its_service_without_the_prefix(world):
    sandbox, settings, _ = world
    operator = sandbox.headers("operator")
    filed = requests.post(url(settings, "/api/needs/needs"), json=NEED, headers=operator, timeout=10)
    assert filed.status_code == 201, filed.text
    need = filed.json()
    found = get(world, f"/api/needs/needs/{need['need_id']}", headers=operator)
    assert found.status_code == 200 and found.json() == need
    assert get(world, "/api/matching/matches", headers=operator).json()["count"] == 0
    unauthorised = get(world, "/api/needs/needs")
    assert unauthorised.status_code == 401 and "API key" in unauthorised.json()["error"]  # the service's own answer
    for path in ("/api/needs/", "/api/needs"):
        index = get(world, path).json()
        assert index["service"] == "needs" and index["openapi"] == "/api/needs/openapi.json"
    assert get(world, "/api/needs/openapi.json").json()["servers"][0]["url"] == "/api/needs"


def test_the_gateway_serves_the_merged_document_the_docs_page_and_the_workspace(world):
    served = get(world, "/api/openapi.json")
    assert served.status_code == 200 and served.headers["Content-Type"].startswith("application/json")
    assert served.text == openapi.DOC_PATH.read_text(encoding="utf-8")
    assert set(get(world, "/api/").json()["services"]) == set(config.SERVICES)
    docs = get(world, "/docs/")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    for name in gateway.SWAGGER_FILES:
        assert get(world, f"/docs/vendor/{name}").status_code == 200, name
    assert get(world, "/docs/vendor/index.html").status_code == 404  # only the two files the page takes
    assert get(world, "/docs", allow_redirects=False).headers["Location"].endswith("/docs/")
    assert get(world, "/").status_code == 200 and "<title>tacoord</title>" in get(world, "/").text
    page = get(world, "/api/matching/matrix/page")
    assert page.status_code == 200 and 'src="static/matrix.js"' in page.text
    assert get(world, "/api/matching/matrix/static/matrix.js").status_code == 200  # its relative paths work here


@pytest.mark.parametrize("path", ["/", "/api/needs/needs", "/api/matching/matrix/page", "/nowhere", "/api/nowhere"])
def test_every_answer_has_the_security_headers_once(world, path):
    response = get(world, path)
    assert response.headers["Content-Security-Policy"] == gateway.CSP  # once: the service's own is hidden
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "Server" not in response.headers or response.headers["Server"] == "nginx"  # no version


def test_a_path_or_method_nothing_takes_is_a_json_error_from_the_gateway(world):
    _, settings, _ = world
    for path in ("/nowhere", "/api/nowhere", "/docs/nothing.js"):
        body = get(world, path).json()
        assert body["status"] == 404 and "GET /api/" in body["error"]
    posted = requests.post(url(settings, "/"), data="x", timeout=10)
    assert posted.status_code == 405 and posted.json()["status"] == 405


def test_a_body_over_the_limit_is_a_json_413_and_never_reaches_the_service(world, caplog):
    sandbox, settings, _ = world
    caplog.set_level(logging.INFO, logger="tacoord.http")
    big = {**NEED, "description": "x" * BODY_LIMIT}
    response = requests.post(url(settings, "/api/needs/needs"), json=big, headers=sandbox.headers("operator"),
                             timeout=10)
    assert response.status_code == 413 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == 413 and f"limit of {BODY_LIMIT} bytes" in body["error"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert not [r for r in caplog.records if body["request_id"] in r.getMessage()]
    under = requests.post(url(settings, "/api/needs/needs"), json={**NEED, "article": 10, "description": "x" * 1000},
                          headers=sandbox.headers("operator"), timeout=10)
    assert under.status_code == 201, under.text


def test_a_client_over_the_rate_limit_gets_a_json_429_with_retry_after(world):
    sandbox, _, upstreams = world
    operator = sandbox.headers("operator")
    with started(upstreams, rate=1, burst=3) as settings:
        answers = [requests.get(url(settings, "/api/needs/needs"), headers=operator, timeout=10) for _ in range(12)]
        statuses = [a.status_code for a in answers]
        assert statuses[:4] == [200] * 4 and 429 in statuses, statuses  # the first one and a burst of 3
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.headers["Content-Type"].startswith("application/json") and refused.headers["Retry-After"] == "1"
        assert refused.json()["status"] == 429 and "at most 1 per second" in refused.json()["error"]
        assert refused.headers["Content-Security-Policy"] == gateway.CSP
        assert requests.get(url(settings, "/"), timeout=10).status_code == 200  # pages are not limited
        time.sleep(1.2)
        assert requests.get(url(settings, "/api/needs/needs"), headers=operator, timeout=10).status_code == 200


def test_the_request_id_goes_to_the_service_and_is_in_both_logs(world, caplog):
    sandbox, settings, _ = world
    caplog.set_level(logging.INFO, logger="tacoord.http")
    given = requests.get(url(settings, "/api/needs/needs?state=KEN"), headers={
        **sandbox.headers("operator"), "X-Request-Id": "portal-7f3e.0001"}, timeout=10)
    assert given.headers["X-Request-Id"] == "portal-7f3e.0001"
    made = get(world, "/api/needs/needs", headers={"X-Request-Id": "not an id!"})
    request_id = made.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id) and made.headers.get("X-Request-Id").count(",") == 0
    for rid, at_gateway, at_service, status in (("portal-7f3e.0001", "/api/needs/needs?state=KEN", "/needs?state=KEN",
                                                  200), (request_id, "/api/needs/needs", "/needs", 401)):
        [line] = access_log(settings, rid)
        assert f'"GET {at_gateway} HTTP/1.1" {status}' in line, line
        logged = [r.getMessage() for r in caplog.records if r.name == "tacoord.http"]
        assert [m for m in logged if m.startswith(f"request_id={rid} GET {at_service} {status} ")], logged


def test_a_service_that_is_down_is_a_json_502_naming_it(world):
    response = get(world, "/api/supply/offers")
    assert response.status_code == 502 and response.headers["Content-Type"].startswith("application/json")
    assert "the supply service is not answering" in response.json()["error"]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (scripts/bootstrap.sh installs chromium)")
def test_the_docs_page_shows_every_service_under_the_strict_policy(world):
    _, settings, _ = world
    problems = []
    with chromium() as browser:
        page = browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("request", lambda r: problems.append(f"left the origin: {r.url}")
                if not r.url.startswith(f"http://{settings.listen}/") and not r.url.startswith("data:") else None)
        page.goto(url(settings, "/docs/"))
        page.wait_for_selector(".opblock-tag", timeout=30_000)
        tags = {t.get_attribute("data-tag") for t in page.locator(".opblock-tag").all()}
        assert tags == set(config.SERVICES)
        assert page.locator(".opblock-summary-path", has_text="/api/needs/needs/{need_id}").count() >= 1
    assert not problems, problems
