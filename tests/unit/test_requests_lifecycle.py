"""The request lifecycle as a state machine, and the rules for joining regional workshops (no I/O)."""
import itertools

import pytest

from services.requests import domain, networks
from tacoord.errors import Conflict, Forbidden, Rejected

NOW = "2027-01-10T09:00:00+00:00"

LEGAL = {
    ("submitted", "under_review"), ("submitted", "cancelled"),
    ("under_review", "approved"), ("under_review", "declined"), ("under_review", "cancelled"),
    ("approved", "scheduled"), ("approved", "declined"), ("approved", "cancelled"),
    ("scheduled", "held"), ("scheduled", "cancelled"),
    ("offered", "submitted"), ("offered", "cancelled"),
}
PARAMS = {"scheduled": {"scheduled_for": "2027-03-02"}, "held": {"outcome_notes": "Gap analysis done"},
          "declined": {"reason": "Out of scope"}, "cancelled": {}, "under_review": {}, "approved": {},
          "submitted": {}, "offered": {}}
TARGETS = list(domain.STATUSES)  # "submitted" too: nothing leads back to it
ALL_PAIRS = list(itertools.product(domain.STATUSES, TARGETS))


def a_request(status="submitted", kind="regional_workshop", **overrides):
    request = domain.new_request({
        "kind": kind, "state": "KEN", "regional_group": None, "network_id": None, "network_states": [],
        "articles": [9, 5, 9], "expected_outcomes": "A gap analysis", "language": "en",
        "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "support_received": []},
        NOW, "REQ-KEN-0000000001")
    return {**request, "status": status, **overrides}


def principal_for(target):
    """A principal who may take the step (operators for review steps, the requester otherwise)."""
    return ("state", "KEN") if target in ("held", "cancelled", "submitted") else ("operator", "*")


@pytest.mark.parametrize("current,target", sorted(LEGAL))
def test_every_legal_transition_changes_the_status_and_emits_its_event_with_the_new_state(current, target):
    role, subject = principal_for(target)
    request = a_request(current)
    changes, events = domain.transition(request, target, role, subject, PARAMS[target], NOW)

    assert changes["status"] == target
    assert changes["updated_at"] == NOW
    for name, value in PARAMS[target].items():
        assert changes[name] == value
    [(event_type, data)] = events
    assert event_type == ("workshop.accepted" if (current, target) == ("offered", "submitted") else f"workshop.{target}")
    assert data == {k: {**request, **changes}.get(k) for k in domain.EVENT_FIELDS}


@pytest.mark.parametrize("current,target", [p for p in ALL_PAIRS if p not in LEGAL])
def test_every_illegal_transition_is_refused_naming_the_current_state_and_the_allowed_ones(current, target):
    with pytest.raises(Conflict) as refused:
        domain.transition(a_request(current), target, "operator", "*", PARAMS[target], NOW)

    message = str(refused.value)
    assert f"from '{current}' to '{target}'" in message
    allowed = domain.TRANSITIONS[current]
    if allowed:
        assert f"allowed from '{current}': {', '.join(allowed)}" in message
    else:
        assert f"'{current}' is final" in message


def test_the_machine_covers_every_pair_and_has_three_final_states():
    assert len(ALL_PAIRS) == 8 * 8
    assert set(domain.FINAL) == {"held", "declined", "cancelled"}
    assert {(s, t) for s, targets in domain.TRANSITIONS.items() for t in targets} == LEGAL


@pytest.mark.parametrize("target", ["under_review", "approved", "scheduled", "declined"])
def test_only_an_operator_drives_review_approval_scheduling_and_declining(target):
    current = {"under_review": "submitted", "approved": "under_review", "scheduled": "approved",
               "declined": "under_review"}[target]
    with pytest.raises(Forbidden, match=f"only an operator may move a request to '{target}'"):
        domain.transition(a_request(current), target, "state", "KEN", PARAMS[target], NOW)


@pytest.mark.parametrize("target,current", [("cancelled", "approved"), ("held", "scheduled")])
def test_the_requesting_state_or_an_operator_cancels_and_marks_held(target, current):
    for role, subject in (("state", "KEN"), ("operator", "*")):
        changes, _ = domain.transition(a_request(current), target, role, subject, PARAMS[target], NOW)
        assert changes["status"] == target


@pytest.mark.parametrize("target,current", [("cancelled", "submitted"), ("held", "scheduled")])
def test_a_state_that_only_joined_may_not_cancel_or_mark_held(target, current):
    request = a_request(current, states=["KEN", "UGA"])
    with pytest.raises(Forbidden, match=r"only the requesting State \(KEN\) or an operator"):
        domain.transition(request, target, "state", "UGA", PARAMS[target], NOW)


@pytest.mark.parametrize("target,current,missing", [
    ("declined", "under_review", "reason"), ("scheduled", "approved", "scheduled_for"),
    ("held", "scheduled", "outcome_notes")])
def test_a_step_without_its_required_value_is_rejected_naming_the_field(target, current, missing):
    role, subject = principal_for(target)
    with pytest.raises(Rejected) as rejected:
        domain.transition(a_request(current), target, role, subject, {}, NOW)
    assert rejected.value.field == missing


def test_a_value_that_belongs_to_another_step_is_rejected():
    with pytest.raises(Rejected) as rejected:
        domain.transition(a_request("under_review"), "approved", "operator", "*", {"outcome_notes": "x"}, NOW)
    assert rejected.value.field == "outcome_notes"


def test_a_cancellation_may_give_a_reason():
    changes, _ = domain.transition(a_request("scheduled"), "cancelled", "state", "KEN", {"reason": "Elections"}, NOW)
    assert changes == {"status": "cancelled", "updated_at": NOW, "reason": "Elections"}


def test_a_new_request_is_submitted_by_its_state_alone_in_its_own_regional_group():
    request = a_request()
    assert request["status"] == "submitted"
    assert request["states"] == ["KEN"]
    assert request["regional_group"] == "AFRICAN"
    assert request["articles"] == [5, 9]


def test_filing_a_request_emits_workshop_requested_with_the_event_fields_only():
    request, [(event_type, data)] = domain.file_request(
        {"kind": "national_workshop", "state": "KEN", "articles": [9], "support_received": []}, NOW, "REQ-KEN-1")
    assert event_type == "workshop.requested"
    assert data["request_id"] == "REQ-KEN-1" and data["status"] == "submitted"
    assert set(data) == set(domain.EVENT_FIELDS) and "proposed_participants" not in data
    assert domain.public(request) == {**data, "proposed_participants": None}


def test_an_ingress_seed_gives_the_same_request_id_every_time():
    assert domain.new_request_id("KEN", seed="abc") == domain.new_request_id("KEN", seed="abc")
    assert domain.new_request_id("KEN") != domain.new_request_id("KEN")


def test_a_state_of_the_group_joins_a_regional_workshop_once():
    changes, [(event_type, data)] = domain.join(a_request(), "UGA", NOW)
    assert changes["states"] == ["KEN", "UGA"]
    assert event_type == "workshop.joined" and data["states"] == ["KEN", "UGA"] and data["updated_at"] == NOW
    assert domain.join(a_request(states=["KEN", "UGA"]), "UGA", NOW) == ({}, [])


def test_a_state_outside_the_group_may_not_join():
    with pytest.raises(Forbidden, match="FRA is not in regional group AFRICAN"):
        domain.join(a_request(), "FRA", NOW)


def test_a_network_workshop_is_open_to_the_network_states_whatever_their_group():
    request = a_request(network_id="GlobE-East", network_states=["FRA", "UGA"])
    assert domain.join(request, "FRA", NOW)[0]["states"] == ["KEN", "FRA"]
    with pytest.raises(Forbidden, match="not in network GlobE-East"):
        domain.join(request, "TZA", NOW)


@pytest.mark.parametrize("status", ["held", "declined", "cancelled"])
def test_a_closed_regional_workshop_cannot_be_joined(status):
    with pytest.raises(Conflict, match=f"'{status}'"):
        domain.join(a_request(status), "UGA", NOW)


def test_a_national_workshop_cannot_be_joined():
    with pytest.raises(Conflict, match="only regional workshops"):
        domain.join(a_request(kind="national_workshop"), "UGA", NOW)


def test_who_sees_a_request():
    request = a_request(states=["KEN", "UGA"])
    assert domain.may_view(request, "operator", "*")
    assert domain.may_view(request, "state", "UGA")
    assert domain.may_view(request, "state", "TZA")       # may still join it
    assert not domain.may_view(request, "state", "FRA")
    assert not domain.may_view(a_request(kind="national_workshop"), "state", "UGA")
    assert domain.may_view(request, "network", "AFRICAN")
    assert not domain.may_view(request, "donor", "GB-GOV-1")


# --- checklist assistance offered to a State (recommendation 22) ------------------------------

def an_offer(offered_by="GB-GOV-1"):
    request, events = domain.offer({"state": "TCD", "expected_outcomes": "Complete the self-assessment checklist",
                                    "language": "fr", "checklist_round": "2027-1"}, NOW, "REQ-TCD-0000000001",
                                   offered_by)
    return request, events


def test_an_offer_waits_for_the_state_and_names_the_offering_donor_among_its_donors():
    offer, [(event_type, data)] = an_offer()
    assert (offer["kind"], offer["status"], offer["offered_by"], offer["donors"]) == (
        "checklist_assistance", "offered", "GB-GOV-1", ["GB-GOV-1"])
    assert event_type == "workshop.offered" and data["checklist_round"] == "2027-1" and data["states"] == ["TCD"]
    assert domain.may_view(offer, "state", "TCD") and domain.may_view(offer, "donor", "GB-GOV-1")
    assert not domain.may_view(offer, "donor", "US-GOV-1") and not domain.may_view(offer, "state", "KEN")
    secretariat, _ = an_offer(offered_by=None)
    assert secretariat["offered_by"] is None and secretariat["donors"] == []


def test_only_the_state_accepts_an_offer_and_then_it_follows_the_lifecycle_of_a_filed_request():
    offer, _ = an_offer()
    with pytest.raises(Forbidden, match=r"only the requesting State \(TCD\) may move a request to 'submitted'"):
        domain.transition(offer, "submitted", "operator", "*", {}, NOW)
    with pytest.raises(Forbidden, match="you are donor:GB-GOV-1"):
        domain.transition(offer, "submitted", "donor", "GB-GOV-1", {}, NOW)
    with pytest.raises(Conflict, match="allowed from 'offered': submitted, cancelled"):
        domain.transition(offer, "under_review", "operator", "*", {}, NOW)
    changes, [(event_type, data)] = domain.transition(offer, "submitted", "state", "TCD", {}, NOW)
    assert event_type == "workshop.accepted" and data["status"] == "submitted"
    accepted = {**offer, **changes}
    changes, [(event_type, _)] = domain.transition(accepted, "under_review", "operator", "*", {}, NOW)
    assert event_type == "workshop.under_review"
    with pytest.raises(Forbidden, match="only the requesting State"):   # the offerer withdraws only while offered
        domain.transition(accepted, "cancelled", "donor", "GB-GOV-1", {}, NOW)


def test_the_state_refuses_or_the_offerer_withdraws_an_offer_with_a_reason():
    offer, _ = an_offer()
    refused, [(kind, data)] = domain.transition(offer, "cancelled", "state", "TCD", {"reason": "Done already"}, NOW)
    assert kind == "workshop.cancelled" and data["reason"] == "Done already"
    _, [(kind, _)] = domain.transition(offer, "cancelled", "donor", "GB-GOV-1", {}, NOW)
    assert kind == "workshop.cancelled"
    with pytest.raises(Forbidden, match=r"the offering donor \(GB-GOV-1\)"):
        domain.transition(offer, "cancelled", "donor", "US-GOV-1", {}, NOW)


# --- a regional workshop of a registered network ---------------------------------------------------

NETWORK = {"network_id": "ARINSA", "name": "Asset Recovery Inter-Agency Network of Southern Africa",
           "kind": "regional_network", "states": ["ZAF", "BWA", "NAM"], "donors": [], "focus_articles": [51, 54],
           "website": None, "contacts": [], "description": ""}


def filing(**overrides):
    return {"kind": "regional_workshop", "state": "ZAF", "network_id": "ARINSA", "network_states": [],
            "articles": [54], **overrides}


def test_a_request_naming_a_registered_network_takes_its_members_from_the_directory():
    network, _ = networks.register(NETWORK, NOW)
    assert domain.with_network(filing(), network)["network_states"] == ["BWA", "NAM", "ZAF"]
    assert domain.with_network(filing(network_states=["NAM", "ZAF", "BWA"]), network)["network_states"] == [
        "BWA", "NAM", "ZAF"]
    with pytest.raises(Rejected, match="its members come from the directory") as refused:
        domain.with_network(filing(network_states=["KEN"]), network)
    assert refused.value.field == "network_states"
    retired = {**network, **networks.retire(network, "merged", NOW)[0]}
    with pytest.raises(Rejected, match="ARINSA is retired") as refused:
        domain.with_network(filing(), retired)
    assert refused.value.field == "network_id"
    donors_only = {**network, "kind": "donor_coordination_group", "states": [], "donors": ["GB-GOV-1"]}
    with pytest.raises(Rejected, match="has no member States"):
        domain.with_network(filing(), donors_only)


def test_a_network_outside_the_directory_must_be_given_its_members():
    with pytest.raises(Rejected, match="member States") as refused:
        domain.with_network(filing(network_id="GlobE-East"), None)
    assert refused.value.field == "network_states"
    assert domain.with_network(filing(network_id="GlobE-East", network_states=["KEN"]), None)["network_states"] == [
        "KEN"]
    assert domain.with_network({"kind": "national_workshop", "state": "KEN", "network_id": None}, None)["state"] == \
        "KEN"
