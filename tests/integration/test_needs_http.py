"""The needs service over HTTP, against the real broker and database."""
import json

import pytest
import requests

from services.needs.service import NeedsService
from tests.integration.needs_helpers import KENYA_NEED, emitted, tap


@pytest.fixture
def needs(sandbox, start):
    events = tap(sandbox)
    start(NeedsService)

    class Client:
        def call(self, method, path, role="operator", subject="*", **kwargs):
            return requests.request(method, sandbox.url("needs", path), timeout=30,
                                    headers={**sandbox.headers(role, subject), **kwargs.pop("headers", {})},
                                    **kwargs)

        def events(self):
            return emitted(sandbox, events)
    return Client()


def test_a_state_files_its_own_need_and_the_event_carries_it(needs):
    response = needs.call("POST", "/needs", "state", "KEN", json=KENYA_NEED)
    assert response.status_code == 201, response.text
    need = response.json()
    assert need["status"] == "open" and need["regional_group"] == "AFRICAN" and need["chapter"] == 2
    [event] = needs.events()
    assert event["type"] == "need.submitted" and event["actor"] == "state:KEN"
    assert event["data"] == need


def test_a_state_may_not_file_for_another_state(needs):
    response = needs.call("POST", "/needs", "state", "GHA", json=KENYA_NEED)
    assert response.status_code == 403
    assert "state:GHA may not act on needs of KEN" in response.json()["error"]
    assert needs.events() == []


def test_filing_the_same_need_twice_updates_it_instead_of_duplicating_it(needs):
    first = needs.call("POST", "/needs", "state", "KEN", json=KENYA_NEED).json()
    again = needs.call("POST", "/needs", "state", "KEN", json={**KENYA_NEED, "forms": KENYA_NEED["forms"][::-1]})
    changed = needs.call("POST", "/needs", "state", "KEN", json={**KENYA_NEED, "priority": 2})
    assert again.status_code == 200 and again.json()["need_id"] == first["need_id"]
    assert changed.status_code == 200 and changed.json()["priority"] == 2
    assert needs.call("GET", "/needs?state=KEN").json()["count"] == 1
    assert [e["type"] for e in needs.events()] == ["need.submitted", "need.updated"]


def test_a_state_updates_then_withdraws_its_need_and_another_state_may_not(needs):
    need = needs.call("POST", "/needs", "state", "KEN", json=KENYA_NEED).json()
    path = f"/needs/{need['need_id']}"
    assert needs.call("PATCH", path, "state", "GHA", json={"priority": 3}).status_code == 403
    assert needs.call("DELETE", path, "state", "GHA").status_code == 403
    updated = needs.call("PATCH", path, "state", "KEN", json={"status": "in_progress", "priority": 3})
    assert updated.status_code == 200 and updated.json()["status"] == "in_progress"
    withdrawn = needs.call("DELETE", path + "?reason=covered", "state", "KEN")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    conflict = needs.call("PATCH", path, "state", "KEN", json={"priority": 1})
    assert conflict.status_code == 409 and "withdrawn" in conflict.json()["error"]
    events = needs.events()
    assert [e["type"] for e in events] == ["need.submitted", "need.updated", "need.withdrawn"]
    assert [e["data"]["withdrawal_reason"] for e in events] == [None, None, "covered"]   # the State's reason, kept
    assert withdrawn.json()["withdrawal_reason"] == "covered"
    assert needs.call("DELETE", path, "operator").status_code == 200  # twice: no new event
    assert needs.events() == []


@pytest.mark.parametrize("change, field, message", [
    ({"article": 99}, "article", "UNCAC article must be between 5 and 62"),
    ({"article": "9"}, "article", "Not a valid integer."),
    ({"priority": 1.5}, "priority", "Not a valid integer."),
    ({"state": "XXX"}, "state", "unknown State 'XXX'"),
    ({"forms": "LEGAL_ADVICE"}, "forms", "Not a valid list."),
    ({"forms": ["OTHER"]}, "other_text", "required when forms include OTHER"),
    ({"$where": "sleep(1000)"}, "body.$where", "keys may not start with '$'"),
    ({"languages": ["english"]}, "languages", "ISO 639-1"),
])
def test_bad_input_is_a_422_naming_the_field(needs, change, field, message):
    response = needs.call("POST", "/needs", json={**KENYA_NEED, **change})
    assert response.status_code == 422, response.text
    body = response.json()
    assert field in body["fields"], body
    assert message in json.dumps(body["fields"][field])
    assert needs.events() == []


def test_a_body_that_is_not_json_is_a_400(needs):
    response = needs.call("POST", "/needs", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


def test_a_need_without_credentials_is_a_401_and_a_donor_may_not_file(needs, sandbox):
    assert requests.post(sandbox.url("needs", "/needs"), json=KENYA_NEED, timeout=5).status_code == 401
    assert needs.call("POST", "/needs", "donor", "GB-GOV-1", json=KENYA_NEED).status_code == 403


def test_an_oversized_body_is_a_413(sandbox, start):
    start(NeedsService, TACOORD_MAX_BODY_BYTES=2000)
    headers = sandbox.headers("operator")
    big = {**KENYA_NEED, "description": "x" * 3000}
    response = requests.post(sandbox.url("needs", "/needs"), json=big, headers=headers, timeout=10)
    assert response.status_code == 413 and "limit is 2000" in response.json()["error"]
    csv_body = "state,article,forms,priority,description\n" + "KEN,9,LEGAL_ADVICE,1,xxxxxxxxxx\n" * 100
    response = requests.post(sandbox.url("needs", "/needs/import"), data=csv_body, timeout=10,
                             headers={**headers, "Content-Type": "text/csv"})
    assert response.status_code == 413
    assert sandbox.db("needs").needs.find_one() is None


def test_needs_are_listed_by_filters_and_bad_filters_are_refused(needs):
    needs.call("POST", "/needs", json=KENYA_NEED)
    needs.call("POST", "/needs", json={**KENYA_NEED, "state": "FRA", "article": 46, "forms": ["ONSITE_EXPERT"]})
    assert needs.call("GET", "/needs?regional_group=weog").json()["needs"][0]["state"] == "FRA"
    assert needs.call("GET", "/needs?chapter=4&form=onsite_expert").json()["count"] == 1
    assert needs.call("GET", "/needs?article=9&status=open&priority=1").json()["count"] == 1
    assert needs.call("GET", "/needs?article=nine").status_code == 422
    assert needs.call("GET", "/needs?colour=red").status_code == 400
    assert needs.call("GET", "/needs?regional_group=MARS").status_code == 422


def test_the_overview_and_reporting_rate_reflect_filed_needs(needs):
    needs.call("POST", "/needs", json=KENYA_NEED)
    needs.call("POST", "/needs", json={**KENYA_NEED, "forms": ["ONSITE_EXPERT"]})
    needs.call("POST", "/needs", json={**KENYA_NEED, "state": "FRA", "checklist_round": "2027-1"})
    overview = needs.call("GET", "/needs/overview", "network", "AFRICAN").json()
    assert overview["counts"]["9"]["AFRICAN"] == 2 and overview["counts"]["9"]["WEOG"] == 1
    rate = needs.call("GET", "/needs/reporting-rate", "donor", "GB-GOV-1").json()
    assert (rate["reported"], rate["parties"], rate["text"]) == (2, 193, "2 of 193")
    assert rate["rate"] == round(2 / 193, 3)
    by_round = needs.call("GET", "/needs/reporting-rate?checklist_round=2027-1").json()
    assert by_round["reported"] == 1 and by_round["checklist_round"] == "2027-1"
