"""A match's lifecycle without any I/O: the state machine people move it through, the model following
their steps (capacity, refills, withdrawals, re-scoring), and the model's guarded writes."""
import re

import pytest

from services.matching.domain import Matcher
from services.matching.lifecycle import (EVENT_OF, MOVES, STEP_EVENTS, IllegalMove, allowed_moves, move,
                                         parties)
from services.matching.match_writes import NO_DOCUMENT, Stepped, Write, condition, fold
from services.matching.matrix import matrix
from services.matching.read_model import match_id
from services.matching.replay import StoreReplay
from services.matching.scoring import Settings
from tacoord import topology
from tacoord.errors import Forbidden, Rejected
from tests.unit.test_matching_domain import T0, event, need, offer, run, step, types

KEN = match_id("KEN-9", offer_id="o1")


def stored(status="proposed", provider="GB-GOV-1", state="KEN"):
    return {"match_id": "m-1", "need_id": "KEN-9", "offer_id": "o1", "provider": provider, "state": state,
            "regional_group": "AFRICAN", "article": 9, "chapter": 2, "forms": ["LEGAL_ADVICE"], "priority": 1,
            "level": "bilateral", "score": 0.9, "status": status, "steps": []}


def kenya_matched(capacity=2):
    model = Matcher()
    run(model, event("offer.published", offer(capacity=capacity, states=("KEN", "UGA"))),
        event("need.submitted", need()))
    return model


def take(model, mid, *targets, **who):
    emitted = []
    for target in targets:
        emitted += run(model, step(model, mid, target, **who))
    return emitted


# --- the state machine (what people may do) ---------------------------------------------------

def test_the_provider_accepts_then_the_state_agrees_then_delivery_is_started_and_delivered():
    match = stored()
    for target, role, subject in (("accepted", "donor", "GB-GOV-1"), ("agreed", "state", "KEN"),
                                  ("in_delivery", "donor", "GB-GOV-1"), ("delivered", "state", "KEN")):
        changes, ((event_type, data),) = move(match, target, role, subject, "", f"{role}:{subject}", T0)
        assert event_type == EVENT_OF[target] and data["status"] == target
        assert data["previous_status"] == match["status"] and data["by"] == f"{role}:{subject}"
        match = {**match, **changes}
    assert match["status"] == "delivered"
    assert [(s["from"], s["to"]) for s in match["steps"]] == [
        ("proposed", "accepted"), ("accepted", "agreed"), ("agreed", "in_delivery"), ("in_delivery", "delivered")]


def test_the_step_event_names_are_past_tense_and_bound_to_matchings_queue():
    assert set(STEP_EVENTS) == {"match.accepted", "match.declined", "match.agreed", "match.delivery_started",
                                "match.delivered", "match.cancelled"}
    assert set(STEP_EVENTS) == set(topology.MATCH_STEPS)
    assert set(STEP_EVENTS) <= set(topology.MATCHING_EVENTS.routing_keys)


@pytest.mark.parametrize("status, target", [("proposed", "agreed"), ("proposed", "delivered"),
                                            ("agreed", "accepted"), ("delivered", "cancelled"),
                                            ("declined", "accepted"), ("retracted", "accepted")])
def test_an_illegal_step_names_the_status_and_the_moves_allowed_for_the_caller(status, target):
    with pytest.raises(IllegalMove) as refused:
        move(stored(status), target, "operator", "*", "why", "operator:*", T0)
    body = refused.value.body()
    assert body["status"] == 409 and body["current"] == status
    assert body["allowed"] == allowed_moves(status, ("operator",))
    assert all((status, to) in MOVES for to in body["allowed"])


def test_the_allowed_moves_depend_on_the_side():
    assert allowed_moves("proposed", ("provider",)) == ["accepted", "declined", "cancelled"]
    assert allowed_moves("proposed", ("State",)) == ["cancelled"]
    assert allowed_moves("accepted", ("State",)) == ["declined", "agreed", "cancelled"]
    assert allowed_moves("delivered", ("operator",)) == []
    with pytest.raises(IllegalMove) as refused:
        move(stored("proposed"), "agreed", "state", "KEN", None, "state:KEN", T0)
    assert refused.value.allowed == ["cancelled"]


@pytest.mark.parametrize("status, target, role, subject, says", [
    ("proposed", "accepted", "state", "KEN", "only its provider (GB-GOV-1) or an operator"),
    ("accepted", "agreed", "donor", "GB-GOV-1", "only its State (KEN) or an operator"),
    ("proposed", "accepted", "donor", "US-GOV-1", "donor:US-GOV-1 may not move match m-1"),
    ("accepted", "agreed", "state", "UGA", "state:UGA may not move match m-1"),
])
def test_only_the_provider_accepts_and_only_the_state_agrees(status, target, role, subject, says):
    with pytest.raises(Forbidden, match=re.escape(says)):
        move(stored(status), target, role, subject, None, f"{role}:{subject}", T0)


def test_an_expert_match_is_moved_on_the_provider_side_by_an_operator_only():
    expert_match = {**stored(provider=None), "offer_id": None, "expert_id": "e1"}
    assert parties(expert_match, "donor", "GB-GOV-1") == ()
    with pytest.raises(Forbidden):
        move(expert_match, "accepted", "donor", "GB-GOV-1", None, "donor:GB-GOV-1", T0)
    assert move(expert_match, "accepted", "operator", "*", None, "operator:*", T0)[0]["status"] == "accepted"


@pytest.mark.parametrize("target", ["declined", "cancelled"])
def test_declining_or_cancelling_needs_a_reason(target):
    with pytest.raises(Rejected) as refused:
        move(stored(), target, "donor", "GB-GOV-1", "  ", "donor:GB-GOV-1", T0)
    assert refused.value.messages() == {"reason": [f"a reason is required to move a match to '{target}'"]}
    changes, ((_, data),) = move(stored(), target, "donor", "GB-GOV-1", "no staff until 2027", "donor:GB-GOV-1", T0)
    assert changes["reason"] == data["reason"] == "no staff until 2027"


# --- the model follows people's steps ------------------------------------------------------------

def test_an_accepted_proposal_is_not_superseded_by_a_better_offer():
    model = Matcher(Settings(max_offer_matches_per_need=1))
    run(model, event("offer.published", offer("o1", languages=("fr",))), event("need.submitted", need()))
    take(model, match_id("KEN-9", offer_id="o1"), "accepted")
    assert types(run(model, event("offer.published", offer("better")))) == []
    assert model.matches[match_id("KEN-9", offer_id="o1")]["status"] == "accepted"


def test_a_declined_proposal_is_refilled_from_the_next_best_and_never_proposed_again():
    model = Matcher(Settings(max_offer_matches_per_need=1))
    run(model, event("offer.published", offer("best")), event("offer.published", offer("next", languages=("fr",))),
        event("need.submitted", need()))
    best = match_id("KEN-9", offer_id="best")
    emitted = run(model, step(model, best, "declined", reason="no budget"))
    assert [(t, d["offer_id"]) for t, d in emitted] == [("match.proposed", "next")]
    assert best not in model.matches and best in model.refused
    assert run(model, event("offer.updated", offer("best", capacity=5))) == []   # never proposed again
    assert run(model, event("need.updated", need(priority=2)))[0][0] == "match.rescored"
    assert best not in model.matches


def test_an_agreed_match_uses_the_offers_capacity_and_a_cancelled_one_frees_it():
    model = kenya_matched(capacity=2)
    run(model, event("need.submitted", need("UGA-9", state="UGA")))
    uganda = match_id("UGA-9", offer_id="o1")
    assert model.matches[uganda]["explanation"]["score_parts"]["capacity"] == 1.0   # proposals use none
    emitted = take(model, KEN, "accepted", "agreed")
    assert ("match.rescored", uganda) in [(t, d["match_id"]) for t, d in emitted]
    assert model.matches[uganda]["explanation"]["score_parts"]["capacity"] == 0.5
    assert model.allocation()["committed"] == {"KEN-9"}
    emitted = run(model, step(model, KEN, "cancelled", reason="elections"))
    assert [d["match_id"] for t, d in emitted if t == "match.rescored"] == [uganda]
    assert model.matches[uganda]["explanation"]["score_parts"]["capacity"] == 1.0
    assert KEN not in model.matches and KEN in model.refused


@pytest.mark.parametrize("held, emitted", [
    (("accepted",), ("match.retracted", "need withdrawn")),
    (("accepted", "agreed"), ("match.withdrawn", "need withdrawn")),
    (("accepted", "agreed", "in_delivery"), ("match.withdrawn", "need withdrawn")),
    (("accepted", "agreed", "in_delivery", "delivered"), None),
])
def test_withdrawing_a_need_retracts_open_matches_withdraws_commitments_and_keeps_deliveries(held, emitted):
    model = kenya_matched()
    take(model, KEN, *held)
    events = run(model, event("need.withdrawn", need(status="withdrawn")))
    if emitted is None:
        assert events == [] and model.matches[KEN]["status"] == "delivered"
        return
    (event_type, data), = events
    assert (event_type, data["reason"]) == emitted
    if event_type == "match.withdrawn":
        assert data["previous_status"] == held[-1] and data["provider"] == "GB-GOV-1" and data["state"] == "KEN"
    assert KEN not in model.matches


def test_a_withdrawn_offer_withdraws_its_agreed_match_and_a_changed_one_keeps_it():
    model = kenya_matched()
    take(model, KEN, "accepted", "agreed")
    assert run(model, event("offer.updated", offer(capacity=2, states=("KEN", "UGA"), articles=(10,)))) == []
    assert model.matches[KEN]["status"] == "agreed"
    emitted = run(model, event("offer.withdrawn", {**offer(capacity=2, states=("KEN", "UGA")), "status": "withdrawn"}))
    assert [(t, d["reason"]) for t, d in emitted] == [("match.withdrawn", "offer withdrawn")]


def test_a_need_met_keeps_its_commitment_and_retracts_its_proposals():
    model = Matcher()
    run(model, event("offer.published", offer("o1")), event("offer.published", offer("o2", provider="DE-1")),
        event("need.submitted", need()))
    take(model, KEN, "accepted", "agreed")
    emitted = run(model, event("need.updated", need(status="met")))
    assert [(t, d["offer_id"], d["reason"]) for t, d in emitted if t.startswith("match.")] == [
        ("match.retracted", "o2", "need met")]
    assert model.matches[KEN]["status"] == "agreed"
    # GB and DE were both matched to Kenya × 9: with DE's proposal retracted the duplication is gone
    assert [(d["alert"], d["resolution"], d["reason"]) for t, d in emitted if t == "alert.resolved"] == [
        ("duplication", "cause_gone", "DE-1 no longer matched to KEN × article 9 × LEGAL_ADVICE; only GB-GOV-1 remains")]


# --- re-scoring ----------------------------------------------------------------------------------

def test_a_priority_change_rescores_the_needs_matches():
    model = kenya_matched()
    take(model, KEN, "accepted")
    (event_type, data), = run(model, event("need.updated", need(priority=2)))
    assert event_type == "match.rescored"
    assert (data["priority"], data["previous_priority"], data["status"]) == (2, 1, "accepted")
    assert data["score"] < data["previous_score"] == 1.0
    assert model.matches[KEN]["priority"] == 2 and model.matches[KEN]["score"] == data["score"]
    assert model.matches[KEN]["explanation"]["score_parts"]["priority"] == 0.6


def test_an_update_that_changes_no_score_emits_nothing():
    model = kenya_matched()
    assert run(model, event("need.updated", {**need(), "description": "new words"})) == []
    assert run(model, event("offer.updated", offer(capacity=2, states=("KEN", "UGA")))) == []
    outcome = model.apply(event("need.updated", need(status="in_progress")))   # a new explanation, same score
    assert outcome.events() == []
    assert "status: need in_progress, offer active" in outcome.docs[("matches", KEN)][0]["explanation"][
        "constraints_met"]


def test_an_offer_change_rescores_its_matches():
    model = kenya_matched()
    (event_type, data), = run(model, event("offer.updated", offer(capacity=2, states=("KEN", "UGA"),
                                                                  languages=("fr",))))
    assert event_type == "match.rescored" and data["score"] < data["previous_score"]


# --- the matrix's levels -------------------------------------------------------------------------

def test_the_matrix_says_which_level_a_cell_reached():
    model = kenya_matched()

    def kenya():
        cell, = [c for c in matrix(model) if c["col"] == "KEN"]
        return cell["status"], cell["proposed_needs"], cell["agreed_needs"], cell["delivered_needs"]

    assert kenya() == ("proposed", 1, 0, 0)
    take(model, KEN, "accepted")
    assert kenya() == ("proposed", 1, 0, 0)
    take(model, KEN, "agreed")
    assert kenya() == ("met", 1, 1, 0)
    take(model, KEN, "in_delivery")
    assert kenya() == ("met", 1, 1, 0)
    take(model, KEN, "delivered")
    assert kenya() == ("delivered", 1, 1, 1)
    run(model, event("need.submitted", need("KEN-9b")))
    assert kenya()[0] == "partly_met"


# --- guarded writes, and a step the model learns late ----------------------------------------------

def write(fields, *allowed):
    return Write(fields, frozenset(allowed), fields.get("status", "score"))


def test_a_step_drops_the_status_writes_decided_before_it_and_keeps_the_scores():
    retract = write({"status": "retracted", "reason": "need withdrawn"}, "accepted")
    rescore = write({"score": 0.5}, "proposed", "accepted", "agreed")
    withdraw = write({"status": "withdrawn"}, "agreed")
    fields, allowed, kept, dropped = fold([rescore, retract, Stepped("agreed"), withdraw])
    assert fields == {"score": 0.5, "status": "withdrawn"} and allowed == {"agreed"}
    assert kept == ["score", "withdrawn"] and dropped == ["retracted"]
    assert condition("m-1", allowed) == {"_id": "m-1", "status": "agreed"}


def test_a_write_is_guarded_by_its_first_status_change_narrowed_by_what_came_before():
    propose = write({"status": "proposed", "score": 1.0}, NO_DOCUMENT, "retracted", "withdrawn")
    rescore = write({"score": 0.5}, "proposed", "accepted")
    fields, allowed, kept, _ = fold([propose, rescore])
    assert allowed == {NO_DOCUMENT, "retracted", "withdrawn"} and fields == {"status": "proposed", "score": 0.5}
    assert condition("m-1", allowed) == {"_id": "m-1", "status": {"$in": ["retracted", "withdrawn"]}}
    _, allowed, kept, dropped = fold([write({"score": 0.5}, "proposed"), Stepped("declined")])
    assert allowed == frozenset() and kept == [] and dropped == ["score"]


def test_a_step_on_a_match_the_model_had_retracted_meanwhile_settles_it():
    # The person agreed while the model, not knowing, retracted it for the withdrawn need: that write
    # missed the stored document; the step's event arrives after, and the match is withdrawn instead.
    model = kenya_matched()
    take(model, KEN, "accepted")
    late = step(model, KEN, "agreed")
    run(model, event("need.withdrawn", need(status="withdrawn")))
    assert KEN not in model.matches
    outcome = model.apply(late)
    assert [(t, d["reason"], d["previous_status"]) for t, d, _ in outcome.events()] == [
        ("match.withdrawn", "need withdrawn", "agreed")]
    fields, allowed, _, _ = fold(outcome.writes[KEN])
    assert fields["status"] == "withdrawn" and allowed == {"agreed"}


def test_a_step_already_held_changes_nothing():
    model = kenya_matched()
    accepted = step(model, KEN, "accepted")
    run(model, accepted)
    assert run(model, accepted) == [] and len(model.matches[KEN]["steps"]) == 1


# --- the replay stores what the route and the model stored ------------------------------------------

def test_a_replay_of_steps_restores_what_the_route_and_the_model_stored():
    live, audit, docs = Matcher(), [], {}

    def consume(e):
        audit.append(e)
        outcome = live.apply(e)
        for (collection, doc_id), (document, events) in outcome.docs.items():
            if collection == "matches":
                docs.setdefault(doc_id, {}).update(document)
            audit.extend(event(t, d) for t, d, _ in events)

    def person(to, **who):
        e = step(live, KEN, to, **who)
        docs[KEN].update({k: v for k, v in move(docs[KEN], to, who.get("role", "operator"), who.get("subject", "*"),
                                                  who.get("reason"), e["data"]["by"], e["data"]["at"])[0].items()})
        consume(e)

    consume(event("offer.published", offer(capacity=2, states=("KEN", "UGA"))))
    consume(event("need.submitted", need()))
    consume(event("need.submitted", need("UGA-9", state="UGA")))
    person("accepted", role="donor", subject="GB-GOV-1")
    person("agreed", role="state", subject="KEN")
    consume(event("need.withdrawn", need(status="withdrawn")))
    assert docs[KEN]["status"] == "withdrawn" and [s["to"] for s in docs[KEN]["steps"]] == ["accepted", "agreed"]

    replay = StoreReplay()
    for e in audit:
        replay.apply(e)
    assert replay.docs["matches"] == docs
    assert replay.differences() == {"only_live": [], "only_rebuilt": []}
    assert replay.model.matches == live.matches
