"""The needs service over HTTP, against the real broker and database."""
import json
from datetime import date

import pytest
import requests

from services.needs.service import NeedsService
from tacoord import reference
from tacoord.testing import wait_until
from tests.integration.needs_helpers import KENYA_NEED, collect, emitted, states_parties_on, tap


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
    rate = needs.call("GET", "/needs/reporting-rate?as_of=2009-09-03", "donor", "GB-GOV-1").json()
    parties_then = states_parties_on("2009-09-03")
    assert (rate["reported"], rate["parties"]) == (2, len(parties_then))
    assert rate["text"] == f"2 of {len(parties_then)}" and rate["rate"] == round(2 / len(parties_then), 3)
    assert rate["as_of"] == "2009-09-03"
    by_round = needs.call("GET", "/needs/reporting-rate?checklist_round=2027-1").json()
    assert by_round["reported"] == 1 and by_round["checklist_round"] == "2027-1"


# --- the parties to the Convention and a round's coverage of them ------------------------------

def test_coverage_counts_the_states_parties_at_the_rounds_date_and_names_those_that_did_not_report(needs):
    for state in ("KEN", "AFG", "SOM", "PSE"):
        assert needs.call("POST", "/needs", json={**KENYA_NEED, "state": state}).status_code == 201
    rate = needs.call("GET", "/needs/reporting-rate?checklist_round=2026-1&as_of=2008-12-18", "state", "GHA").json()
    then = states_parties_on("2008-12-18")
    assert {"AFG", "KEN"} <= then and "SOM" not in then and "PSE" not in then
    assert (rate["reported"], rate["parties"]) == (2, len(then))       # Afghanistan: a party since 24 Sep 2008
    assert rate["not_counted"] == ["PSE", "SOM"]                        # not yet parties in 2008
    assert "KEN" not in rate["by_group"]["AFRICAN"]["not_reported"]
    assert "GHA" in rate["by_group"]["AFRICAN"]["not_reported"]
    assert sum(g["parties"] for g in rate["by_group"].values()) == len(then)
    assert {p["party"] for p in rate["not_reported"]} == then - {"AFG", "KEN"}
    assert rate["regional_organizations"][0]["party"] == "EU" and rate["regional_organizations"][0]["reported"] is False
    assert sum(rate["denominator_verification"].values()) == len(then)

    today = needs.call("GET", "/needs/reporting-rate?checklist_round=2026-1").json()
    assert today["as_of"] == date.today().isoformat() and today["not_counted"] == []
    assert today["by_group"]["NONE"]["reported"] == 1                  # the State of Palestine, in no UN group
    assert needs.call("GET", "/needs/reporting-rate?as_of=last-year").json()["fields"] == {
        "as_of": ["as_of must be a date YYYY-MM-DD, not 'last-year'"]}
    assert needs.call("GET", "/needs/reporting-rate?when=2009").status_code == 400


def test_every_role_reads_the_parties_with_how_each_date_was_obtained(needs):
    listed = needs.call("GET", "/parties", "network", "AFRICAN").json()
    assert listed["count"] == len(reference.parties())
    assert set(listed["legend"]["verification_legend"]) >= {"verified", "unverified_recalled", "unknown"}
    holy_see = needs.call("GET", "/parties/vat", "donor", "GB-GOV-1").json()
    assert (holy_see["status"], holy_see["deposited"], holy_see["party_since"]) == ("party", "2016-09-19",
                                                                                   "2016-10-19")
    assert holy_see["verification"] == "verified" and holy_see["regional_group"] is None
    on = needs.call("GET", "/parties?as_of=2009-09-03&regional_group=none").json()
    assert {p["party"] for p in on["parties"]} == {c for c in states_parties_on("2009-09-03")
                                                    if reference.states()[c].get("regional_group") is None}
    unknown = needs.call("GET", "/parties?verification=unknown").json()["parties"]
    assert unknown and all(p["deposited"] is None for p in unknown)
    assert needs.call("GET", "/parties?status=maybe").json()["fields"]["status"][0].startswith("status must be")
    assert needs.call("GET", "/parties/XYZ").status_code == 404


def test_an_operator_corrects_a_party_and_the_correction_is_an_audited_event(sandbox, start):
    from services.audit.service import AuditService
    events = tap(sandbox, "test.parties-tap", ("party.*",))
    start(NeedsService, AuditService)

    def call(method, path, role="operator", subject="*", **kwargs):
        return requests.request(method, sandbox.url("needs", path), headers=sandbox.headers(role, subject),
                                timeout=30, **kwargs)

    body = {"status": "party", "instrument": "accession", "deposited": "2017-03-03",
            "source": "depositary notification C.N.123.2017.TREATIES-XVIII.14"}
    refused = call("PUT", "/parties/NIU", "state", "NIU", json=body)
    assert refused.status_code == 403 and "role 'state' may not PUT" in refused.json()["error"]
    incomplete = call("PUT", "/parties/NIU", json={"status": "party"})
    assert incomplete.status_code == 422
    assert set(incomplete.json()["fields"]) == {"source"}
    undated = call("PUT", "/parties/NIU", json={"status": "party", "source": "a notification"})
    assert undated.status_code == 422 and list(undated.json()["fields"]) == ["deposited"]
    assert call("PUT", "/parties/NIU", json={**body, "deposited": "3 March"}).json()["fields"] == {
        "deposited": ["Not a valid date."]}

    corrected = call("PUT", "/parties/niu", json=body)
    assert corrected.status_code == 200, corrected.text
    entry = corrected.json()
    assert (entry["status"], entry["party_since"], entry["verification"], entry["changed"]) == (
        "party", "2017-04-02", "operator_corrected", True)
    assert entry["corrected_by"] == "operator:*" and entry["shipped"]["status"] == "unknown"
    assert call("PUT", "/parties/NIU", json=body).json()["changed"] is False      # the same again: no event
    assert call("GET", "/parties/NIU", "state", "KEN").json()["deposited"] == "2017-03-03"

    [event] = collect(sandbox, events, 1)
    assert event["type"] == "party.corrected" and event["actor"] == "operator:*" and event["source"] == "needs"
    assert event["data"]["previous"] == {"status": "unknown", "instrument": None, "deposited": None,
                                         "verification": "unknown"}
    history = wait_until(lambda: requests.get(sandbox.url("audit", "/audit/entities/party/NIU"), timeout=10,
                                              headers=sandbox.headers("operator")).json()["records"],
                         message="the correction in the audit log")
    assert [r["type"] for r in history] == ["party.corrected"] and history[0]["actor"] == "operator:*"
    rate = call("GET", "/needs/reporting-rate").json()
    assert "NIU" in rate["by_group"]["NONE"]["not_reported"]
    assert "NIU" not in {u["party"] for u in rate["undetermined"]}


def test_whoami_names_the_keys_role_and_subject(needs, sandbox):
    kenya = needs.call("GET", "/whoami", "state", "KEN").json()
    assert {k: kenya[k] for k in ("role", "subject", "actor", "name")} == {
        "role": "state", "subject": "KEN", "actor": "state:KEN", "name": "Kenya"}
    donor = needs.call("GET", "/whoami", "donor", "GB-GOV-1").json()
    assert (donor["role"], donor["subject"], donor["name"]) == ("donor", "GB-GOV-1", None)
    assert needs.call("GET", "/whoami?as=operator", "state", "KEN").status_code == 400
    assert requests.get(sandbox.url("needs", "/whoami"), timeout=10).status_code == 401
