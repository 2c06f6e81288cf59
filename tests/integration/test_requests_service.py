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
    # a donor takes steps only on offers it made; a request it is not part of is not shown to it
    assert api.move(request_id, ("donor", "GB-GOV-1"), to="cancelled").status_code == 404
    assert api.move(request_id, ("network", "AFRICAN"), to="cancelled").status_code == 403
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


# --- a proposed donor reads the request and hears every later step --------------------------------

def test_a_proposed_donor_reads_the_request_and_later_events_name_it(sandbox, api):
    request_id = api.file(REGIONAL)["request_id"]
    assert api.call("GET", f"/requests/{request_id}", ("donor", "GB-GOV-1")).status_code == 403
    proposal = new_event("workshop.participants_proposed", {
        "request_id": request_id, "regional_group": "AFRICAN", "states_completed": [], "states_upcoming": [],
        "donors": ["GB-GOV-1"]}, "matching")
    sandbox.publish("workshop.participants_proposed", None, exchange=topology.EVENTS, event=proposal)
    wait_until(lambda: api.call("GET", f"/requests/{request_id}", ("donor", "GB-GOV-1")).status_code == 200,
               message="the proposed donor reads the request")
    assert api.call("GET", f"/requests/{request_id}", ("donor", "US-GOV-1")).status_code == 403
    assert [r["request_id"] for r in api.call("GET", "/requests", ("donor", "GB-GOV-1")).json()["requests"]] == [
        request_id]
    assert api.call("GET", "/requests", ("donor", "US-GOV-1")).json()["count"] == 0
    refused = api.move(request_id, ("donor", "GB-GOV-1"), to="under_review")
    assert refused.status_code == 403 and "you are donor:GB-GOV-1" in refused.json()["error"]

    api.move(request_id, to="under_review")
    api.move(request_id, to="approved")
    api.move(request_id, to="scheduled", scheduled_for="2027-03-02")
    scheduled = [e for e in emitted(sandbox, 4) if e["type"] == "workshop.scheduled"][0]
    assert scheduled["data"]["donors"] == ["GB-GOV-1"] and scheduled["data"]["scheduled_for"] == "2027-03-02"


# --- checklist assistance offered to a non-reporting State party (recommendation 22) -------------

OFFER = {"state": "TCD", "expected_outcomes": "The self-assessment checklist completed with a national team",
         "language": "fr", "checklist_round": "2027-1"}


def test_a_donor_offers_checklist_assistance_the_state_accepts_and_the_request_follows_its_lifecycle(sandbox, api):
    offered = api.call("POST", "/requests/offers", ("donor", "GB-GOV-1"), OFFER)
    assert offered.status_code == 201, offered.text
    offer = offered.json()
    request_id = offer["request_id"]
    assert (offer["status"], offer["kind"], offer["offered_by"], offer["donors"]) == (
        "offered", "checklist_assistance", "GB-GOV-1", ["GB-GOV-1"])
    assert [r["request_id"] for r in api.call("GET", "/requests", ("state", "TCD")).json()["requests"]] == [
        request_id]
    early = api.move(request_id, to="under_review")
    assert early.status_code == 409 and "allowed from 'offered': submitted, cancelled" in early.json()["error"]
    by_operator = api.move(request_id, to="submitted")
    assert by_operator.status_code == 403 and "only the requesting State (TCD)" in by_operator.json()["error"]

    accepted = api.move(request_id, ("state", "TCD"), to="submitted")
    assert accepted.status_code == 200 and accepted.json()["status"] == "submitted"
    assert api.move(request_id, ("donor", "GB-GOV-1"), to="cancelled").status_code == 403  # the State's now
    assert api.move(request_id, to="under_review").json()["status"] == "under_review"
    assert api.move(request_id, to="approved").json()["status"] == "approved"
    assert api.move(request_id, to="scheduled", scheduled_for="2027-04-12").status_code == 200
    held = api.move(request_id, ("state", "TCD"), to="held", outcome_notes="Checklist submitted on 30 April")
    assert held.json()["status"] == "held"

    events = emitted(sandbox, 6)
    assert [e["type"] for e in events] == ["workshop.offered", "workshop.accepted", "workshop.under_review",
                                           "workshop.approved", "workshop.scheduled", "workshop.held"]
    assert [e["actor"] for e in events[:2]] == ["donor:GB-GOV-1", "state:TCD"]
    assert all(e["data"]["donors"] == ["GB-GOV-1"] and e["data"]["checklist_round"] == "2027-1" for e in events)


def test_an_offer_is_refused_by_the_state_or_withdrawn_and_only_in_ones_own_name(sandbox, api):
    other = api.call("POST", "/requests/offers", ("donor", "GB-GOV-1"), {**OFFER, "offered_by": "US-GOV-1"})
    assert other.status_code == 403 and "may not offer in the name of US-GOV-1" in other.json()["error"]
    assert api.call("POST", "/requests/offers", ("state", "TCD"), OFFER).status_code == 403
    missing = api.call("POST", "/requests/offers", ("donor", "GB-GOV-1"), {"state": "TCD"})
    assert missing.status_code == 422 and set(missing.json()["fields"]) == {"expected_outcomes", "language"}
    assert api.call("POST", "/requests/offers", ("donor", "GB-GOV-1"), {**OFFER, "state": "XXX"}).json()[
        "fields"]["state"][0].startswith("unknown State")

    first = api.call("POST", "/requests/offers", ("donor", "GB-GOV-1"), OFFER).json()["request_id"]
    refused = api.move(first, ("state", "TCD"), to="cancelled", reason="We completed it with UNODC's clinic")
    assert refused.json()["status"] == "cancelled" and refused.json()["reason"].startswith("We completed")
    secretariat = api.call("POST", "/requests/offers", ("operator", "*"), OFFER).json()
    assert secretariat["offered_by"] is None and secretariat["donors"] == []
    named = api.call("POST", "/requests/offers", ("operator", "*"), {**OFFER, "offered_by": "DE-BMZ-1"}).json()
    assert api.move(named["request_id"], ("donor", "GB-GOV-1"), to="cancelled").status_code == 404  # not its offer
    withdrawn = api.move(named["request_id"], ("donor", "DE-BMZ-1"), to="cancelled")
    assert withdrawn.status_code == 200, withdrawn.text


# --- the directory of coordination networks (recommendation 31) -----------------------------------

ARINSA = {"network_id": "ARINSA", "name": "Asset Recovery Inter-Agency Network of Southern Africa",
          "kind": "regional_network", "states": ["ZAF", "BWA", "NAM", "ZMB"], "focus_articles": [51, 54, 57],
          "website": "https://www.arinsa.org", "contacts": [{"name": "Secretariat", "email": "info@example.org"}]}


def test_an_operator_registers_updates_and_retires_a_network_every_role_reads_and_each_step_is_an_event(sandbox, api):
    created = api.call("POST", "/networks", ("operator", "*"), ARINSA)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active" and created.json()["states"] == ["BWA", "NAM", "ZAF", "ZMB"]
    assert api.call("POST", "/networks", ("operator", "*"), ARINSA).status_code == 409
    for who in (("state", "KEN"), ("donor", "GB-GOV-1"), ("partner", "acme"), ("network", "AFRICAN")):
        assert api.call("GET", "/networks/ARINSA", who).json()["name"] == ARINSA["name"]
    assert api.call("GET", "/networks?state=bwa&article=54").json()["count"] == 1
    assert api.call("GET", "/networks?kind=un").json()["count"] == 0

    own = api.call("PATCH", "/networks/ARINSA", ("network", "ARINSA"), {"website": "https://arinsa.example.org"})
    assert own.status_code == 200 and own.json()["website"] == "https://arinsa.example.org"
    other = api.call("PATCH", "/networks/ARINSA", ("network", "AFRICAN"), {"website": None})
    assert other.status_code == 403 and "network:AFRICAN may not change network ARINSA" in other.json()["error"]
    retired = api.call("POST", "/networks/ARINSA/retire", ("operator", "*"), {"reason": "Merged into a new network"})
    assert retired.status_code == 200 and retired.json()["status"] == "retired"
    again = api.call("POST", "/networks/ARINSA/retire", ("operator", "*"), {"reason": "again"})
    assert again.status_code == 409 and "allowed from 'retired': none" in again.json()["error"]
    assert api.call("PATCH", "/networks/ARINSA", ("operator", "*"), {"name": "ARINSA"}).status_code == 409

    events = emitted(sandbox, 3)
    assert [e["type"] for e in events] == ["network.registered", "network.updated", "network.retired"]
    assert events[1]["actor"] == "network:ARINSA" and events[2]["data"]["retired_reason"].startswith("Merged")


@pytest.mark.parametrize("change,field", [
    ({"network_id": "arinsa"}, "network_id"),
    ({"kind": "club"}, "kind"),
    ({"states": ["ZAF", "XXX"]}, "states"),
    ({"donors": ["not an org"]}, "donors"),
    ({"focus_articles": [99]}, "focus_articles"),
    ({"website": "ftp://arinsa"}, "website"),
    ({"contacts": [{"email": "x@example.org"}]}, "contacts"),
    ({"states": []}, "states"),
])
def test_a_bad_network_is_a_422_naming_the_field(sandbox, api, change, field):
    response = api.call("POST", "/networks", ("operator", "*"), {**ARINSA, **change})
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"], response.json()
    assert sandbox.db("requests").networks.count_documents({}) == 0


def test_a_regional_workshop_naming_a_registered_network_takes_its_members(sandbox, api):
    api.call("POST", "/networks", ("operator", "*"), ARINSA)
    body = {**REGIONAL, "state": "ZAF", "network_id": "ARINSA", "articles": [54]}
    filed = api.file(body, ("state", "ZAF"))
    assert filed["network_states"] == ["BWA", "NAM", "ZAF", "ZMB"]
    assert api.call("POST", f"/requests/{filed['request_id']}/join", ("state", "ZMB")).status_code == 201
    outsider = api.call("POST", f"/requests/{filed['request_id']}/join", ("state", "KEN"))
    assert outsider.status_code == 403 and "not in network ARINSA" in outsider.json()["error"]
    repeated = api.call("POST", "/requests", ("state", "ZAF"), {**body, "network_states": ["ZAF", "KEN"]})
    assert repeated.status_code == 422 and "come from the directory" in repeated.json()["fields"]["network_states"][0]
    unregistered = api.call("POST", "/requests", ("state", "ZAF"), {**body, "network_id": "SADC-ACC"})
    assert unregistered.status_code == 422 and "not in the directory" in unregistered.json()["fields"][
        "network_states"][0]
    api.call("POST", "/networks/ARINSA/retire", ("operator", "*"), {"reason": "Merged"})
    closed = api.call("POST", "/requests", ("state", "ZAF"), body)
    assert closed.status_code == 422 and "ARINSA is retired" in closed.json()["fields"]["network_id"][0]

    sandbox.publish("workshop.submitted", {**body, "network_id": "NOT-REGISTERED"})
    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, message="dead letter")
    (_, headers), = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    assert "not in the directory" in headers["x-tacoord-reason"]
