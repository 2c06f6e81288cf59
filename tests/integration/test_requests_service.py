"""The requests service alone, against the real broker and database.

Emitted events are read off ``audit.events`` (declared in every sandbox vhost,
bound to ``#``), which nobody consumes here since the audit service is not started.
"""
import json

import pytest
import requests

from services.requests import domain
from services.requests.service import RequestsService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import consumed, wait_until

REGIONAL = {
    "kind": "regional_workshop", "state": "KEN", "articles": [9, 10],
    "expected_outcomes": "A regional gap analysis on public procurement and public reporting",
    "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
    "support_received": [{"provider": "GB-GOV-1", "description": "2025 procurement training"}],
}
NATIONAL = {**REGIONAL, "kind": "national_workshop", "articles": [15, 16], "support_received": []}


class Api:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.keys = {}

    def call(self, method, path, who=("operator", "*"), body=None, raw=None):
        if who not in self.keys:
            self.keys[who] = self.sandbox.headers(*who)
        response = requests.request(method, self.sandbox.url("requests", path), headers=self.keys[who],
                                    data=raw if raw is not None else (json.dumps(body) if body is not None else None),
                                    timeout=10)
        assert response.headers["Content-Type"].startswith("application/json"), response.text
        return response

    def file(self, body, who=("state", "KEN")):
        response = self.call("POST", "/requests", who, body)
        assert response.status_code == 201, response.text
        return response.json()

    def move(self, request_id, who=("operator", "*"), **body):
        return self.call("POST", f"/requests/{request_id}/transitions", who, body)


@pytest.fixture
def api(sandbox, start):
    start(RequestsService)
    return Api(sandbox)


def emitted(sandbox, count):
    """Wait until ``count`` events were emitted; return them all (in publish order)."""
    seen = []

    def enough():
        seen.extend(json.loads(b) if isinstance(b, (bytes, str)) else b
                    for b, _ in sandbox.get_messages(topology.AUDIT_EVENTS.name))
        return len(seen) >= count
    wait_until(enough, message=f"{count} emitted events")
    return seen


def test_a_state_files_a_request_and_each_transition_emits_its_event(sandbox, api):
    filed = api.file(REGIONAL)
    request_id = filed["request_id"]
    assert filed["status"] == "submitted" and filed["states"] == ["KEN"] and filed["regional_group"] == "AFRICAN"

    assert api.move(request_id, to="under_review").json()["status"] == "under_review"
    assert api.move(request_id, to="approved").json()["status"] == "approved"
    scheduled = api.move(request_id, to="scheduled", scheduled_for="2027-03-02").json()
    assert scheduled["scheduled_for"] == "2027-03-02"
    held = api.move(request_id, ("state", "KEN"), to="held", outcome_notes="Roadmap adopted by 4 States")
    assert held.status_code == 200, held.text
    assert api.call("GET", f"/requests/{request_id}").json()["status"] == "held"

    events = emitted(sandbox, 5)
    assert [e["type"] for e in events] == ["workshop.requested", "workshop.under_review", "workshop.approved",
                                           "workshop.scheduled", "workshop.held"]
    assert {e["data"]["request_id"] for e in events} == {request_id}
    assert {e["data"]["kind"] for e in events} == {"regional_workshop"}
    assert [e["actor"] for e in events] == ["state:KEN", "operator:*", "operator:*", "operator:*", "state:KEN"]
    assert events[-1]["data"]["outcome_notes"] == "Roadmap adopted by 4 States"
    assert events[-1]["data"]["scheduled_for"] == "2027-03-02"
    assert events[0]["data"]["support_received"] == REGIONAL["support_received"]
    assert sandbox.db("requests").workshop_requests.find_one({"_id": request_id})["_outbox_pending"] == 0


def test_an_illegal_transition_is_a_409_naming_the_current_state_and_the_allowed_ones(sandbox, api):
    request_id = api.file(NATIONAL)["request_id"]
    refused = api.move(request_id, to="held", outcome_notes="too early")
    assert refused.status_code == 409
    assert refused.json()["error"] == ("cannot move a request from 'submitted' to 'held'; "
                                       "allowed from 'submitted': under_review, cancelled")
    assert api.move(request_id, ("state", "KEN"), to="cancelled", reason="Funded elsewhere").status_code == 200
    final = api.move(request_id, to="under_review")
    assert final.status_code == 409 and "'cancelled' is final" in final.json()["error"]
    assert [e["type"] for e in emitted(sandbox, 2)] == ["workshop.requested", "workshop.cancelled"]


def test_a_step_on_a_request_another_writer_moved_meanwhile_is_decided_again_on_what_is_stored(
        sandbox, api, monkeypatch):
    request_id = api.file(NATIONAL)["request_id"]
    collection = sandbox.db("requests").workshop_requests
    decided = []
    transition = domain.transition

    def cancelled_meanwhile(request, *args):
        if not decided:  # another worker cancels it between this worker's read and its write
            collection.update_one({"_id": request_id}, {"$set": {"status": "cancelled",
                                                                 "updated_at": "2027-01-10T09:00:01+00:00"}})
        decided.append(request["status"])
        return transition(request, *args)
    monkeypatch.setattr(domain, "transition", cancelled_meanwhile)

    refused = api.move(request_id, to="under_review")

    assert decided == ["submitted", "cancelled"]
    assert refused.status_code == 409 and "from 'cancelled' to 'under_review'" in refused.json()["error"]
    assert collection.find_one({"_id": request_id})["status"] == "cancelled"
    assert collection.find_one({"_id": request_id})["_outbox_pending"] == 0
    assert [e["type"] for e in emitted(sandbox, 1)] == ["workshop.requested"]


def test_the_wrong_role_for_a_transition_is_a_403_naming_who_may(api):
    request_id = api.file(NATIONAL)["request_id"]
    approved_by_state = api.move(request_id, ("state", "KEN"), to="under_review")
    assert approved_by_state.status_code == 403
    assert "only an operator may move a request to 'under_review'" in approved_by_state.json()["error"]
    assert api.move(request_id, ("donor", "GB-GOV-1"), to="cancelled").status_code == 403
    other_state = api.move(request_id, ("state", "UGA"), to="cancelled")
    assert other_state.status_code == 404  # another State's national request is not visible to it
    declined = api.move(request_id, to="declined", reason="x")
    assert declined.status_code == 409  # declining needs a review first
    assert api.move(request_id, to="under_review").status_code == 200
    missing = api.move(request_id, to="declined")
    assert missing.status_code == 422 and "reason" in missing.json()["fields"]


def test_a_state_files_only_for_itself(api):
    refused = api.call("POST", "/requests", ("state", "UGA"), REGIONAL)
    assert refused.status_code == 403
    assert api.call("POST", "/requests", ("operator", "*"), REGIONAL).status_code == 201


@pytest.mark.parametrize("change,field", [
    ({"state": "XXX"}, "state"),
    ({"articles": [9, 99]}, "articles"),
    ({"support_received": None}, "support_received"),
    ({"preferred_dates": [{"from": "2027-03-05", "to": "2027-03-01"}]}, "preferred_dates"),
    ({"articles": "nine"}, "articles"),
    ({"language": 5}, "language"),
    ({"support_received": [{"provider": "GB-GOV-1", "$set": {"status": "held"}}]},
     "body.support_received[0].$set"),
])
def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(sandbox, api, change, field):
    body = {**REGIONAL, **change}
    if change.get("support_received", 0) is None:
        del body["support_received"]
    response = api.call("POST", "/requests", ("state", "KEN"), body)
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"], response.json()
    assert sandbox.db("requests").workshop_requests.count_documents({}) == 0


def test_malformed_bodies_are_4xx_json_not_500(api):
    assert api.call("POST", "/requests", ("state", "KEN"), raw="{not json").status_code == 400
    assert api.call("POST", "/requests", ("state", "KEN"), body=[REGIONAL]).status_code == 400
    assert api.call("GET", "/requests/REQ-nope").status_code == 404
    assert api.call("GET", "/requests?colour=blue").status_code == 400
    assert api.call("GET", "/requests?status=done").status_code == 422
    assert api.call("POST", "/requests/REQ-nope/transitions", body={"to": "approved"}).status_code == 404
    assert api.call("POST", "/requests/REQ-nope/transitions", body={"to": "finished"}).status_code == 422


def test_states_of_the_group_join_a_regional_workshop_and_see_it(sandbox, api):
    request_id = api.file(REGIONAL)["request_id"]
    national_id = api.file(NATIONAL)["request_id"]

    assert api.call("GET", "/requests?joinable=true", ("state", "UGA")).json()["count"] == 1
    joined = api.call("POST", f"/requests/{request_id}/join", ("state", "UGA"))
    assert joined.status_code == 201 and joined.json()["states"] == ["KEN", "UGA"]
    assert api.call("POST", f"/requests/{request_id}/join", ("state", "UGA")).status_code == 200  # idempotent
    outsider = api.call("POST", f"/requests/{request_id}/join", ("state", "FRA"))
    assert outsider.status_code == 403 and "FRA is not in regional group AFRICAN" in outsider.json()["error"]
    assert api.call("POST", f"/requests/{national_id}/join", ("state", "UGA")).status_code == 409

    assert [r["request_id"] for r in api.call("GET", "/requests", ("state", "UGA")).json()["requests"]] == [request_id]
    assert api.call("GET", "/requests", ("state", "KEN")).json()["count"] == 2
    assert api.call("GET", "/requests", ("state", "TZA")).json()["count"] == 0
    assert api.call("GET", "/requests?joinable=true", ("state", "UGA")).json()["count"] == 0
    assert api.call("GET", f"/requests/{national_id}", ("state", "UGA")).status_code == 403
    assert api.call("GET", "/requests?kind=national_workshop").json()["count"] == 1
    assert api.call("GET", "/requests", ("network", "AFRICAN")).json()["count"] == 2

    # a State that only joined may not cancel the requester's workshop
    assert api.move(request_id, ("state", "UGA"), to="cancelled").status_code == 403
    events = emitted(sandbox, 3)
    joined_event = next(e for e in events if e["type"] == "workshop.joined")
    assert joined_event["actor"] == "state:UGA" and joined_event["data"]["states"] == ["KEN", "UGA"]


def test_a_partner_request_on_ingress_is_filed_once_even_when_redelivered(sandbox, api):
    sent = sandbox.publish("workshop.submitted", REGIONAL)
    collection = sandbox.db("requests").workshop_requests
    stored = wait_until(lambda: collection.find_one({"state": "KEN"}), message="stored request")
    assert stored["_id"] == stored["request_id"]

    inbox = sandbox.db("requests").processed_events
    wait_until(lambda: inbox.count_documents({"state": "done"}) == 1, message="inbox record")

    # the same message again: skipped by the inbox; then with the inbox record lost (as if the
    # worker had died before recording it): the id derived from the message id files nothing new
    duplicates = consumed("requests", "duplicate")
    sandbox.publish("workshop.submitted", None, event=sent)
    wait_until(lambda: consumed("requests", "duplicate") - duplicates == 1, message="the copy skipped as done")
    inbox.delete_many({})
    sandbox.publish("workshop.submitted", None, event=sent)
    wait_until(lambda: inbox.count_documents({}) == 1, message="reprocessed")
    checklist = sandbox.publish("checklist_assistance.submitted", {
        "state": "KEN", "expected_outcomes": "Checklist on chapter II completed", "language": "en",
        "support_received": []})
    wait_until(lambda: collection.count_documents({}) == 2, message="checklist request")

    events = emitted(sandbox, 2)
    assert [e["type"] for e in events] == ["workshop.requested", "workshop.requested"]
    assert events[0]["causation_id"] == sent["id"] and events[0]["actor"] == "partner:tacoord"
    assert events[1]["causation_id"] == checklist["id"] and events[1]["data"]["kind"] == "checklist_assistance"
    assert collection.count_documents({"kind": "regional_workshop"}) == 1
    assert sandbox.queue_depth(topology.AUDIT_EVENTS.name) == 0


def test_bad_ingress_messages_go_to_the_dead_letter_queue_with_the_reason(sandbox, api):
    missing_support = {k: v for k, v in REGIONAL.items() if k != "support_received"}
    sandbox.publish("workshop.submitted", missing_support)
    sandbox.publish("workshop.submitted", {**REGIONAL, "articles": [77]})
    sandbox.publish("workshop.submitted", {**REGIONAL, "preferred_dates": [{"from": "2027-03-05", "to": "2027-03-01"}]})
    sandbox.publish("workshop.submitted", {**REGIONAL, "state": 404, "language": ["en"]})
    sandbox.publish("workshop.approved", REGIONAL)  # not an ingress command

    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 5, message="5 dead letters")
    reasons = [h["x-tacoord-reason"] for _, h in sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)]
    assert any("data.support_received: required" in r for r in reasons)
    assert any("unknown UNCAC article 77" in r for r in reasons)
    assert any("before 'from'" in r for r in reasons)
    assert any("data.state: Not a valid string" in r and "data.language" in r for r in reasons)
    assert any("unknown message type 'workshop.approved'" in r for r in reasons)
    assert sandbox.db("requests").workshop_requests.count_documents({}) == 0


def test_participants_proposed_by_matching_are_shown_on_the_request(sandbox, api):
    request_id = api.file(REGIONAL)["request_id"]
    proposal = new_event("workshop.participants_proposed", {
        "request_id": request_id, "regional_group": "AFRICAN", "states_completed": ["UGA", "TZA"],
        "states_upcoming": ["RWA"], "donors": ["GB-GOV-1"]}, "matching")
    sandbox.publish("workshop.participants_proposed", None, exchange=topology.EVENTS, event=proposal)
    sandbox.publish("workshop.participants_proposed", None, exchange=topology.EVENTS, event=proposal)

    shown = wait_until(lambda: api.call("GET", f"/requests/{request_id}").json()["proposed_participants"],
                       message="proposed participants")
    assert shown["states_completed"] == ["TZA", "UGA"]
    assert shown["states_upcoming"] == ["RWA"]
    assert shown["donors"] == ["GB-GOV-1"]
    assert shown["event_id"] == proposal["id"]

    sandbox.publish("workshop.participants_proposed", {"request_id": "REQ-KEN-unknown", "states_completed": []},
                    exchange=topology.EVENTS)
    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, message="dead letter")
