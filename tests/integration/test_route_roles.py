"""Every HTTP route of every service × every role, over a real socket.

The routes are discovered from the services' ``@api`` entrypoints; ``EXPECTED``
below must equal what they declare, so a change of roles is a visible diff here.
Then each route is called with a key of each role, with no key, an unknown key
and a revoked key: a declared role gets through authorisation (any status but
401 and the role-refusal 403; 404 for a placeholder id counts as through), the
others get 401 (no valid key) or 403 naming the allowed roles. Nothing is a 5xx.
Scope cases (acting for another State or donor) are at the end.
"""
import importlib
import inspect

import pytest
import requests
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from tacoord import auth, config
from tacoord.auth import ROLES
from tacoord.testing import running_services
from tacoord.web import JsonApi

ALL = ROLES                                      # state, donor, network, partner, operator
PUBLIC = ()
SUBSCRIBERS = ("donor", "network", "state", "operator")

EXPECTED = {
    ("needs", "POST", "/needs"): ("state", "operator"),
    ("needs", "POST", "/needs/import"): ("operator", "partner", "state"),                           # + scope per row
    ("needs", "GET", "/whoami"): ALL,
    ("needs", "GET", "/needs"): ALL,
    ("needs", "GET", "/needs/overview"): ALL,
    ("needs", "GET", "/needs/reporting-rate"): ALL,
    ("needs", "GET", "/needs/<string:need_id>"): ALL,
    ("needs", "PATCH", "/needs/<string:need_id>"): ("state", "operator"),
    ("needs", "DELETE", "/needs/<string:need_id>"): ("state", "operator"),
    ("needs", "GET", "/reference/states"): ALL,
    ("needs", "GET", "/parties"): ALL,
    ("needs", "GET", "/parties/<string:code>"): ALL,
    ("needs", "PUT", "/parties/<string:code>"): ("operator",),
    ("supply", "POST", "/offers"): ("donor", "operator"),
    ("supply", "GET", "/offers"): ALL,
    ("supply", "GET", "/offers/<string:offer_id>"): ALL,
    ("supply", "PATCH", "/offers/<string:offer_id>"): ("donor", "operator"),
    ("supply", "DELETE", "/offers/<string:offer_id>"): ("donor", "operator"),
    ("supply", "POST", "/offers/import"): ("donor", "partner", "operator"),
    ("supply", "POST", "/offers/import/iati"): ("donor", "operator"),
    ("supply", "POST", "/experts"): ("donor", "state", "operator"),
    ("supply", "GET", "/experts"): ALL,
    ("supply", "GET", "/experts/balance"): ALL,
    ("supply", "GET", "/experts/template"): ALL,
    ("supply", "POST", "/experts/expire-due"): ("operator",),
    ("supply", "GET", "/experts/<string:expert_id>"): ALL,
    ("supply", "PATCH", "/experts/<string:expert_id>"): ("donor", "state", "operator"),
    ("supply", "POST", "/experts/<string:expert_id>/transition"): ("donor", "state", "operator"),
    ("matching", "GET", "/matrix"): ALL,
    ("matching", "GET", "/matrix.csv"): ALL,
    ("matching", "GET", "/matrix/cell"): ALL,
    ("matching", "GET", "/matrix/reference"): ALL,
    ("matching", "GET", "/matrix/page"): PUBLIC,                     # HTML; its data needs a key
    ("matching", "GET", "/matrix/static/<string:name>"): PUBLIC,     # the page's own HTML, JS and CSS only
    ("matching", "GET", "/matches"): ALL,
    ("matching", "GET", "/matches/<string:match_id>"): ALL,
    ("matching", "POST", "/matches/<string:match_id>/transitions"): ("donor", "state", "operator"),
    ("matching", "GET", "/alerts"): ALL,
    ("matching", "GET", "/allocations"): ALL,
    ("matching", "GET", "/alerts/<string:alert_id>"): ALL,
    ("matching", "POST", "/alerts/<string:alert_id>/acknowledge"): ("operator", "donor", "state"),  # + scope
    ("matching", "POST", "/alerts/<string:alert_id>/resolve"): ("operator", "donor", "state"),      # + scope
    ("matching", "POST", "/gaps/detect"): ("operator",),
    ("matching", "GET", "/worklist"): ALL,
    ("matching", "GET", "/worklist.csv"): ALL,
    ("matching", "GET", "/changes"): ("state", "donor", "network", "operator"),                     # + scope
    ("matching", "GET", "/funding"): ALL,
    ("matching", "GET", "/funding/rates"): ALL,
    ("matching", "PUT", "/funding/rates"): ("operator",),
    ("notify", "POST", "/subscriptions"): SUBSCRIBERS,
    ("notify", "GET", "/subscriptions"): SUBSCRIBERS,
    ("notify", "GET", "/subscriptions/<string:subscription_id>"): SUBSCRIBERS,
    ("notify", "DELETE", "/subscriptions/<string:subscription_id>"): SUBSCRIBERS,
    ("notify", "GET", "/subscriptions/<string:subscription_id>/deliveries"): SUBSCRIBERS,
    ("notify", "PATCH", "/subscriptions/<string:subscription_id>"): SUBSCRIBERS,                     # + scope
    ("notify", "POST", "/subscriptions/<string:subscription_id>/test"): SUBSCRIBERS,                 # + scope
    ("notify", "GET", "/unsubscribe/<string:token>"): PUBLIC,
    ("notify", "GET", "/networks"): ALL,
    ("notify", "GET", "/networks/<string:network_id>"): ALL,
    ("notify", "POST", "/networks"): ("operator",),
    ("requests", "POST", "/requests"): ("state", "operator"),
    ("requests", "POST", "/requests/offers"): ("donor", "operator"),                                # + scope
    ("requests", "GET", "/requests"): ("state", "network", "donor", "operator"),
    ("requests", "GET", "/requests/<string:request_id>"): ("state", "network", "donor", "operator"),
    ("requests", "POST", "/requests/<string:request_id>/transitions"): ("state", "donor", "operator"),
    ("requests", "POST", "/requests/<string:request_id>/join"): ("state",),
    ("requests", "GET", "/networks"): ALL,
    ("requests", "GET", "/networks/<string:network_id>"): ALL,
    ("requests", "POST", "/networks"): ("operator",),
    ("requests", "PATCH", "/networks/<string:network_id>"): ("network", "operator"),                # + scope
    ("requests", "POST", "/networks/<string:network_id>/retire"): ("operator",),
    ("audit", "GET", "/audit/entities/<string:entity_type>/<string:entity_id>"): ALL,
    ("audit", "GET", "/audit/rejections"): ("operator",),
    ("audit", "GET", "/audit/verify"): ("operator",),
    ("audit", "GET", "/audit/events"): ("operator",),
    ("audit", "GET", "/audit/dead-letters"): ("operator",),
    ("audit", "GET", "/audit/dead-letters/<string:dead_letter_id>"): ("operator",),
    ("audit", "POST", "/audit/dead-letters/<string:dead_letter_id>/replay"): ("operator",),
}

# Routes that answer something other than JSON or CSV when they succeed: the matrix page (HTML). Its
# errors are still JSON. (Every service's ``GET /`` is its JSON index, served by the core: tests/integration/
# test_http_core.py.)
PAGES = {("matching", "GET", "/matrix/page"): ("text/html",)}

SUBJECTS = {"state": "KEN", "donor": "GB-GOV-1", "network": "AFRICAN", "partner": "acme", "operator": "*"}
CALLERS = ROLES + ("no key", "unknown key", "revoked key")


def service_classes():
    return {name: importlib.import_module(f"services.{name}.service").SERVICE for name in config.SERVICES}


def discovered_routes():
    """{(service, method, url): roles} from the ``@api`` entrypoints of every service class."""
    routes = {}
    for name, cls in service_classes().items():
        for _, function in inspect.getmembers(cls, inspect.isfunction):
            for entrypoint in getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ()):
                if isinstance(entrypoint, JsonApi):
                    routes[(name, entrypoint.method, entrypoint.url)] = entrypoint.roles
    return routes


ROUTES = discovered_routes()


@pytest.fixture(scope="module")
def world(stack):
    """All six services in one sandbox for the whole module (started once: the machine is shared)."""
    with running_services(service_classes().values()) as (sandbox, _):
        keys = {role: sandbox.api_key(role, SUBJECTS[role]) for role in ROLES}
        revoked = sandbox.api_key("operator", "*")
        auth.revoke(auth.auth_db(sandbox.mongo, sandbox.prefix), revoked.split("_")[1])
        keys.update({"no key": None, "unknown key": "tck_000000000000_" + "x" * 43, "revoked key": revoked})
        yield sandbox, keys


def concrete(url):
    """``/needs/<string:need_id>`` → ``/needs/placeholder-id``."""
    import re
    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", "placeholder-id", url)


def call(world, service, method, path, caller, **kwargs):
    sandbox, keys = world
    headers = {"Authorization": f"Bearer {keys[caller]}"} if keys[caller] else {}
    return requests.request(method, sandbox.url(service, path), headers=headers, timeout=30, **kwargs)


def test_the_declared_roles_are_exactly_the_expected_table():
    assert {route: tuple(sorted(roles)) for route, roles in ROUTES.items()} == \
        {route: tuple(sorted(roles)) for route, roles in EXPECTED.items()}


def role_refused(response):
    return response.status_code == 403 and "may not" in response.json()["error"] and "allowed:" in \
        response.json()["error"]


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]} {r[2]}")
def test_only_the_declared_roles_get_through(world, route):
    service, method, url = route
    declared = ROUTES[route]
    allowed = set()
    for caller in CALLERS:
        response = call(world, service, method, concrete(url), caller)
        assert response.status_code < 500, (caller, response.status_code, response.text)
        assert response.headers["Content-Type"].startswith(("application/json", "text/csv") + PAGES.get(route, ())), \
            response.headers
        if caller in ROLES and caller not in declared and declared:
            assert role_refused(response), (caller, response.status_code, response.text)
        elif caller not in ROLES and declared:
            assert response.status_code == 401, (caller, response.status_code, response.text)
        if response.status_code != 401 and not role_refused(response):
            allowed.add(caller)
    assert allowed == (set(declared) if declared else set(CALLERS))


# --- scope: nobody acts for another subject -----------------------------------

def test_a_donor_cannot_see_or_delete_another_donors_subscription(world):
    created = call(world, "notify", "POST", "/subscriptions", "donor", json={"channel": "amqp"})
    assert created.status_code == 201, created.text
    path = f"/subscriptions/{created.json()['subscription_id']}"
    sandbox, keys = world
    other = {"Authorization": f"Bearer {sandbox.api_key('donor', 'US-GOV-1')}"}
    for method in ("GET", "DELETE"):
        refused = requests.request(method, sandbox.url("notify", path), headers=other, timeout=10)
        assert refused.status_code == 403, refused.text
    listed = requests.get(sandbox.url("notify", "/subscriptions?kind=donor&subject=GB-GOV-1"), headers=other,
                          timeout=10).json()
    assert listed["count"] == 0
    assert call(world, "notify", "GET", path, "donor").json()["status"] == "active"


def test_a_state_cannot_subscribe_or_read_for_another_state(world):
    created = call(world, "notify", "POST", "/subscriptions", "state", json={"channel": "amqp"})
    assert created.status_code == 201, created.text
    sandbox, _ = world
    ghana = {"Authorization": f"Bearer {sandbox.api_key('state', 'GHA')}"}
    path = f"/subscriptions/{created.json()['subscription_id']}"
    assert requests.get(sandbox.url("notify", path), headers=ghana, timeout=10).status_code == 403
    assert requests.get(sandbox.url("notify", path + "/deliveries"), headers=ghana, timeout=10).status_code == 403
    posted = requests.post(sandbox.url("notify", "/subscriptions"), headers=ghana, timeout=10,
                           json={"channel": "amqp", "subject": "KEN"})
    assert posted.status_code == 403, posted.text


def test_a_state_cannot_file_a_need_or_nominate_an_expert_for_another_state(world):
    sandbox, _ = world
    ghana = {"Authorization": f"Bearer {sandbox.api_key('state', 'GHA')}"}
    need = requests.post(sandbox.url("needs", "/needs"), headers=ghana, timeout=10,
                         json={"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1})
    assert need.status_code == 403 and "may not act on needs of KEN" in need.json()["error"]
    expert = requests.post(sandbox.url("supply", "/experts"), headers=ghana, timeout=10,
                           json={"family_name": "Doe", "given_names": "Jo", "nationality": "FRA",
                                 "nominated_by": "KEN"})
    assert expert.status_code == 403 and "own name" in expert.json()["error"], expert.text


def test_only_a_matchs_provider_or_state_may_move_it(world):
    """A match is moved by its provider or its State (or an operator): another donor or State is refused
    with a 403 naming who they are, before anything about the step is checked."""
    sandbox, _ = world
    match = {"_id": "m-roles", "match_id": "m-roles", "need_id": "KEN-9-x", "offer_id": "GB-1-x",
             "provider": "GB-GOV-1", "state": "KEN", "regional_group": "AFRICAN", "article": 9, "chapter": 2,
             "forms": ["LEGAL_ADVICE"], "priority": 1, "level": "bilateral", "score": 0.9, "status": "proposed",
             "steps": []}
    sandbox.db("matching").matches.insert_one(match)
    path = sandbox.url("matching", "/matches/m-roles/transitions")
    for role, subject in (("donor", "US-GOV-1"), ("state", "GHA")):
        refused = requests.post(path, json={"to": "accepted"}, timeout=10,
                                headers={"Authorization": f"Bearer {sandbox.api_key(role, subject)}"})
        assert refused.status_code == 403, refused.text
        assert f"{role}:{subject} may not move match m-roles" in refused.json()["error"]
    by_the_state = call(world, "matching", "POST", "/matches/m-roles/transitions", "state", json={"to": "accepted"})
    assert by_the_state.status_code == 403 and "only its provider (GB-GOV-1)" in by_the_state.json()["error"]
    accepted = call(world, "matching", "POST", "/matches/m-roles/transitions", "donor", json={"to": "accepted"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"


def test_a_donor_or_state_acts_only_on_the_alerts_that_name_it_and_sees_only_its_own_changes(world):
    sandbox, keys = world
    sandbox.db("matching").alerts.insert_one({
        "_id": "dup-roles", "duplication_id": "dup-roles", "alert": "duplication", "state": "KEN", "article": 9,
        "form": "LEGAL_ADVICE", "providers": ["DE-BMZ-1", "GB-GOV-1"], "offer_ids": ["a", "b"], "status": "open"})
    other = {"Authorization": f"Bearer {sandbox.api_key('donor', 'US-GOV-1')}"}
    for step, body in (("acknowledge", {}), ("resolve", {"resolution": "work_split"})):
        refused = requests.post(sandbox.url("matching", f"/alerts/dup-roles/{step}"), headers=other, timeout=10,
                                json=body)
        assert refused.status_code == 403 and "donor:US-GOV-1 may not act on duplication alert dup-roles" in \
            refused.json()["error"], refused.text
        assert call(world, "matching", "POST", f"/alerts/dup-roles/{step}", "state", json=body).status_code == 403
    assert call(world, "matching", "POST", "/alerts/dup-roles/acknowledge", "donor", json={}).status_code == 200
    changes = call(world, "matching", "GET", "/changes?since=2026-01-01T00:00:00Z&donor=US-GOV-1", "donor")
    assert changes.status_code == 403 and "donor:GB-GOV-1 may see only" in changes.json()["error"]


def test_a_network_edits_only_its_own_entry_and_a_donor_offers_only_in_its_own_name(world):
    created = call(world, "requests", "POST", "/networks", "operator", json={
        "network_id": "ROLES_NET", "name": "Roles network", "kind": "regional_network", "states": ["KEN"]})
    assert created.status_code == 201, created.text
    refused = call(world, "requests", "PATCH", "/networks/ROLES_NET", "network", json={"description": "x"})
    assert refused.status_code == 403 and "network:AFRICAN may not change network ROLES_NET" in \
        refused.json()["error"], refused.text
    offer = {"state": "TCD", "expected_outcomes": "Checklist", "language": "fr", "offered_by": "US-GOV-1"}
    other = call(world, "requests", "POST", "/requests/offers", "donor", json=offer)
    assert other.status_code == 403 and "donor:GB-GOV-1 may not offer in the name of US-GOV-1" in \
        other.json()["error"], other.text
    sandbox, _ = world
    own = {"Authorization": f"Bearer {sandbox.api_key('network', 'ROLES_NET')}"}
    assert requests.patch(sandbox.url("requests", "/networks/ROLES_NET"), headers=own, timeout=10,
                          json={"description": "ours"}).status_code == 200
