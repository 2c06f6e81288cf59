"""A regional workshop request from filing to 'held', every step in the audit log in order."""
import requests

from services.audit.service import AuditService
from services.requests.service import RequestsService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until

REGIONAL = {
    "kind": "regional_workshop", "state": "KEN", "articles": [9],
    "expected_outcomes": "Gap analysis of public procurement rules against article 9",
    "preferred_dates": [{"from": "2027-05-10", "to": "2027-05-14"}], "language": "en",
    "support_received": [{"provider": "GB-GOV-1", "description": "e-procurement study, 2025"}],
}


def test_a_regional_workshop_request_is_audited_step_by_step_until_held(sandbox, start):
    start(AuditService, RequestsService)
    state, operator = sandbox.headers("state", "KEN"), sandbox.headers("operator")

    def history():
        response = requests.get(sandbox.url("audit", f"/audit/entities/request/{request_id}"), headers=operator,
                                timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["records"]

    def step(action):
        """Take one step and wait until the audit log has one more record for the request."""
        before = len(history())
        response = action()
        assert response.status_code in (200, 201), response.text
        wait_until(lambda: len(history()) == before + 1, message=f"audit record after step {before + 1}")
        return response.json()

    def move(who, **body):
        return lambda: requests.post(sandbox.url("requests", f"/requests/{request_id}/transitions"), json=body,
                                     headers=who, timeout=5)

    filed = requests.post(sandbox.url("requests", "/requests"), json=REGIONAL, headers=state, timeout=5)
    assert filed.status_code == 201, filed.text
    request_id = filed.json()["request_id"]
    requested = wait_until(history, message="workshop.requested in the audit log")[0]["event"]

    # matching, simulated: it proposes participants for the request, caused by workshop.requested
    proposal = new_event("workshop.participants_proposed", {
        "request_id": request_id, "regional_group": "AFRICAN", "states_completed": ["UGA", "RWA"],
        "states_upcoming": ["TZA"], "donors": ["GB-GOV-1", "SE-0-SE-6"]}, "matching", cause=requested)
    sandbox.publish(proposal["type"], None, exchange=topology.EVENTS, event=proposal)
    shown = wait_until(lambda: requests.get(sandbox.url("requests", f"/requests/{request_id}"), headers=state,
                                            timeout=5).json()["proposed_participants"], message="participants")
    assert shown["states_completed"] == ["RWA", "UGA"] and shown["donors"] == ["GB-GOV-1", "SE-0-SE-6"]
    wait_until(lambda: len(history()) == 2, message="participants in the audit log")

    step(lambda: requests.post(sandbox.url("requests", f"/requests/{request_id}/join"),
                               headers=sandbox.headers("state", "UGA"), timeout=5))
    step(move(operator, to="under_review"))
    step(move(operator, to="approved"))
    step(move(operator, to="scheduled", scheduled_for="2027-05-11"))
    held = step(move(state, to="held", outcome_notes="Gap analysis report agreed; two follow-up needs filed"))
    assert held["status"] == "held" and held["states"] == ["KEN", "UGA"]

    records = history()
    assert [r["type"] for r in records] == [
        "workshop.requested", "workshop.participants_proposed", "workshop.joined", "workshop.under_review",
        "workshop.approved", "workshop.scheduled", "workshop.held"]
    assert [r["actor"] for r in records] == ["state:KEN", None, "state:UGA", "operator:*", "operator:*",
                                             "operator:*", "state:KEN"]
    assert [r["event"]["data"].get("status") for r in records] == [
        "submitted", None, "submitted", "under_review", "approved", "scheduled", "held"]
    assert records[1]["causation_id"] == requested["id"]
    assert records[1]["correlation_id"] == requested["correlation_id"]
    assert records[-1]["event"]["data"]["outcome_notes"].startswith("Gap analysis report agreed")
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)

    verified = requests.get(sandbox.url("audit", "/audit/verify"), headers=operator, timeout=5).json()
    assert verified["intact"] is True


def test_a_non_reporting_party_is_offered_checklist_help_accepts_it_and_every_step_is_audited(sandbox, start):
    from services.needs.service import NeedsService
    start(AuditService, NeedsService, RequestsService)
    operator, chad, donor = sandbox.headers("operator"), sandbox.headers("state", "TCD"), sandbox.headers(
        "donor", "GB-GOV-1")
    for state in ("KEN", "NGA"):
        filed = requests.post(sandbox.url("needs", "/needs"), headers=operator, timeout=5, json={
            "state": state, "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "checklist_round": "2027-1"})
        assert filed.status_code == 201, filed.text
    coverage = requests.get(sandbox.url("needs", "/needs/reporting-rate?checklist_round=2027-1"), headers=donor,
                            timeout=5).json()
    assert "TCD" in coverage["by_group"]["AFRICAN"]["not_reported"]     # a party since 2018 that has not reported

    offered = requests.post(sandbox.url("requests", "/requests/offers"), headers=donor, timeout=5, json={
        "state": "TCD", "checklist_round": "2027-1", "language": "fr",
        "expected_outcomes": "Chad's self-assessment checklist completed with a national team"})
    assert offered.status_code == 201, offered.text
    request_id = offered.json()["request_id"]

    def history():
        response = requests.get(sandbox.url("audit", f"/audit/entities/request/{request_id}"), headers=operator,
                                timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["records"]

    def move(who, count, **body):
        response = requests.post(sandbox.url("requests", f"/requests/{request_id}/transitions"), json=body,
                                 headers=who, timeout=5)
        assert response.status_code == 200, response.text
        wait_until(lambda: len(history()) == count, message=f"audit record for {body['to']}")

    wait_until(lambda: len(history()) == 1, message="the offer audited")
    move(chad, 2, to="submitted")
    move(operator, 3, to="under_review")
    move(operator, 4, to="approved")
    move(operator, 5, to="scheduled", scheduled_for="2027-04-12")
    move(chad, 6, to="held", outcome_notes="Checklist submitted to the Secretariat")
    records = history()
    assert [r["type"] for r in records] == ["workshop.offered", "workshop.accepted", "workshop.under_review",
                                            "workshop.approved", "workshop.scheduled", "workshop.held"]
    assert [r["actor"] for r in records] == ["donor:GB-GOV-1", "state:TCD", "operator:*", "operator:*",
                                             "operator:*", "state:TCD"]
    assert all(r["event"]["data"]["offered_by"] == "GB-GOV-1" for r in records)
