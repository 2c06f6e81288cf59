"""Alerts without any I/O: who may take which step, when matching raises, supersedes and closes an
alert itself, what a person's step does to the model, the worklist's order, and a replay of the steps."""
import pytest

from services.matching import alerts
from services.matching.alert_rules import overlap
from services.matching.domain import Matcher
from services.matching.payloads import parse_time
from services.matching.replay import StoreReplay
from services.matching.scoring import Settings
from services.matching.worklists import unmet_needs
from tacoord.errors import Conflict, Forbidden, Rejected
from tests.unit.test_matching_domain import Store, event, need, offer, run

DUP = {"alert": "duplication", "duplication_id": "dup-1", "state": "KEN", "regional_group": "AFRICAN", "article": 9,
       "form": "LEGAL_ADVICE", "providers": ["DE-1", "GB-1"], "offer_ids": ["a", "b"], "status": "open"}
T1, T2 = "2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00"


def of_type(emitted, event_type):
    return [d for t, d in emitted if t == event_type]


def duplicated_model():
    model = Matcher()
    emitted = run(model, event("need.submitted", need()), event("offer.published", offer("a", provider="GB")),
                  event("offer.published", offer("b", provider="DE")))
    dup, = of_type(emitted, "duplication.detected")
    return model, dup


# --- the lifecycle people take -------------------------------------------------------------

def test_a_provider_named_in_a_duplication_may_acknowledge_it_and_nobody_else_but_an_operator():
    changes, events = alerts.acknowledge(DUP, "donor", "GB-1", "seen", T1)
    assert changes == {"status": "acknowledged", "acknowledged": {"by": "donor:GB-1", "at": T1, "note": "seen"}}
    (event_type, data), = events
    assert event_type == "alert.acknowledged" and (data["actor"], data["reason"], data["providers"]) == (
        "donor:GB-1", "seen", ["DE-1", "GB-1"])
    assert alerts.acknowledge(DUP, "operator", "*", None, T1)[0]["status"] == "acknowledged"
    for role, subject in (("donor", "US-1"), ("state", "KEN"), ("network", "AFRICAN")):
        with pytest.raises(Forbidden, match=rf"{role}:{subject} may not act on duplication alert dup-1; only an "
                                            r"operator or one of the providers it names \(DE-1, GB-1\)"):
            alerts.acknowledge(DUP, role, subject, None, T1)


def test_a_gap_is_the_states_own_to_close_when_it_is_its_need_and_an_operators_when_it_is_regional():
    gap = {"alert": "gap", "gap_id": "gap-1", "kind": "unmatched_priority_need", "need_id": "KEN-9", "state": "KEN",
           "regional_group": "AFRICAN", "article": 9}
    assert alerts.resolve(gap, "state", "KEN", "assistance_arranged", None, T1)[0]["status"] == "resolved"
    with pytest.raises(Forbidden, match=r"the State whose need it is \(KEN\)"):
        alerts.resolve(gap, "state", "UGA", "not_a_gap", None, T1)
    regional = {**gap, "kind": "no_supply", "need_id": None, "state": None}
    with pytest.raises(Forbidden, match="only an operator"):
        alerts.acknowledge(regional, "state", "KEN", None, T1)


def test_each_illegal_move_names_the_allowed_ones():
    acknowledged = {**DUP, "status": "acknowledged"}
    with pytest.raises(Conflict, match="cannot acknowledge alert dup-1: it is 'acknowledged'; allowed from "
                                       "'acknowledged': resolve"):
        alerts.acknowledge(acknowledged, "operator", "*", None, T1)
    resolved = {**DUP, "status": "resolved"}
    for step in (lambda: alerts.acknowledge(resolved, "operator", "*", None, T1),
                 lambda: alerts.resolve(resolved, "operator", "*", "work_split", None, T1)):
        with pytest.raises(Conflict, match=r"allowed from 'resolved': none \('resolved' is final\)"):
            step()
    legacy = {k: v for k, v in DUP.items() if k != "status"}   # stored before alerts had a status: open
    assert alerts.resolve(legacy, "operator", "*", "not_a_duplication", None, T1)[0]["status"] == "resolved"


def test_a_resolution_comes_from_the_closed_list_of_its_kind_and_other_needs_a_note():
    with pytest.raises(Rejected, match="one of: provider_withdrew, work_split, not_a_duplication, other") as bad:
        alerts.resolve(DUP, "operator", "*", "not_a_gap", None, T1)
    assert bad.value.field == "resolution"
    with pytest.raises(Rejected) as bare:
        alerts.resolve(DUP, "operator", "*", "other", None, T1)
    assert bare.value.field == "note"
    changes, ((_, data),) = alerts.resolve(DUP, "operator", "*", "other", "merged programmes", T1)
    assert changes["resolved"]["reason"] == data["reason"] == "other: merged programmes"
    assert data["automatic"] is False and data["resolution"] == "other"


# --- what matching does itself -------------------------------------------------------------

def test_a_duplicating_offer_withdrawn_resolves_the_alert_with_the_reason_and_the_same_providers_again_are_new():
    model, dup = duplicated_model()
    assert model.alert_book.items[dup["duplication_id"]]["status"] == "open"
    outcome = model.apply(event("offer.withdrawn", {**offer("b", provider="DE"), "status": "withdrawn"}, T1))
    (alert_id, changes, (event_type, data, _)), = outcome.steps
    assert alert_id == dup["duplication_id"] and event_type == "alert.resolved"
    assert changes["resolved"] == {"by": "service:matching", "at": T1, "resolution": "cause_gone", "note": None,
                                   "reason": "DE no longer matched to KEN × article 9 × LEGAL_ADVICE; "
                                             "only GB remains", "automatic": True}
    assert data["automatic"] is True and dup["duplication_id"] not in model.alert_book.items

    again = of_type(run(model, event("offer.updated", {**offer("b", provider="DE"), "updated_at": T2}, T2)),
                    "duplication.detected")
    assert [d["providers"] for d in again] == [["DE", "GB"]] and again[0]["duplication_id"] != dup["duplication_id"]


def test_a_third_provider_raises_a_wider_alert_that_supersedes_the_narrower_one():
    model, dup = duplicated_model()
    emitted = run(model, event("offer.published", offer("c", provider="FR")))
    assert [d["providers"] for d in of_type(emitted, "duplication.detected")] == [["DE", "FR", "GB"]]
    closed, = of_type(emitted, "alert.resolved")
    wider = of_type(emitted, "duplication.detected")[0]["duplication_id"]
    assert closed["alert_id"] == dup["duplication_id"] and closed["resolution"] == "superseded"
    assert closed["reason"] == f"superseded by {wider}, which names DE, FR, GB"
    # one of three leaving keeps the wider alert: two providers still duplicate
    left = run(model, event("offer.withdrawn", {**offer("c", provider="FR"), "status": "withdrawn"}, T1))
    assert of_type(left, "alert.resolved") == [] and of_type(left, "duplication.detected") == []


def test_a_duplication_people_resolved_is_not_reported_again_for_the_same_offers_but_is_for_a_new_one():
    model, dup = duplicated_model()
    _, ((_, step),) = alerts.resolve({**DUP, **dup, "alert": "duplication"}, "operator", "*", "work_split", None, T1)
    assert run(model, event("alert.resolved", step, T1)) == []
    assert model.alert_book.items[dup["duplication_id"]]["status"] == "resolved"
    assert run(model, event("offer.updated", {**offer("b", provider="DE"), "capacity": 5, "updated_at": T1}, T1)) \
        == []
    new = of_type(run(model, event("offer.published", offer("b2", provider="DE"))), "duplication.detected")
    assert [d["offer_ids"] for d in new] == [["a", "b", "b2"]]


def test_a_late_acknowledgement_never_reopens_an_alert_matching_has_resolved():
    model, dup = duplicated_model()
    _, ((_, acknowledged),) = alerts.acknowledge({**dup, "alert": "duplication"}, "operator", "*", None, T1)
    model.apply(event("offer.withdrawn", {**offer("b", provider="DE"), "status": "withdrawn"}, T1))
    model.apply(event("alert.acknowledged", acknowledged, T2))
    assert dup["duplication_id"] not in model.alert_book.items
    model, dup = duplicated_model()
    model.apply(event("alert.resolved", alerts.resolved_by_matching({**dup, "alert": "duplication"}, "cause_gone",
                                                                    "gone", "service:matching", T1)[1][1], T1))
    model.apply(event("alert.acknowledged", acknowledged, T2))
    assert dup["duplication_id"] not in model.alert_book.items
    model, dup = duplicated_model()   # a person resolved it; the acknowledgement arrives after
    _, ((_, resolved),) = alerts.resolve({**dup, "alert": "duplication"}, "operator", "*", "work_split", None, T1)
    model.apply(event("alert.resolved", resolved, T1))
    model.apply(event("alert.acknowledged", acknowledged, T2))
    assert model.alert_book.items[dup["duplication_id"]]["status"] == "resolved"


def test_gaps_resolve_themselves_when_the_need_is_matched_or_supply_comes_and_a_new_gap_is_raised_later():
    model = Matcher(Settings(gap_after_seconds=3600))
    run(model, event("need.submitted", need()))
    gaps = {d["kind"]: d for _, d, _ in model.sweep("2026-11-01T02:00:00+00:00").events()}
    assert set(gaps) == {"unmatched_priority_need", "no_supply"}
    closed = of_type(run(model, event("offer.published", offer(), T1)), "alert.resolved")
    assert sorted((d["gap_kind"], d["reason"]) for d in closed) == [
        ("no_supply", "offers or experts reach article 9 in AFRICAN again"),
        ("unmatched_priority_need", "the need was matched (" + next(iter(model.matches)) + ")")]

    run(model, event("offer.withdrawn", {**offer(), "status": "withdrawn"}, T2))
    again = {d["kind"]: d for _, d, _ in model.sweep("2026-11-04T00:00:00+00:00").events()}
    assert set(again) == {"unmatched_priority_need", "no_supply"}
    assert again["no_supply"]["gap_id"] != gaps["no_supply"]["gap_id"] and again["no_supply"]["since"] == T2
    assert model.sweep("2026-11-05T00:00:00+00:00").events() == []


def test_a_gap_people_resolved_is_not_raised_again_while_nothing_changed():
    model = Matcher(Settings(gap_after_seconds=3600))
    run(model, event("need.submitted", need(priority=2)))
    (_, gap, _), = model.sweep("2026-11-01T02:00:00+00:00").events()
    _, ((_, step),) = alerts.resolve({**gap, "alert": "gap"}, "operator", "*", "not_a_gap", None, T1)
    run(model, event("alert.resolved", step, T1))
    assert model.sweep("2026-11-09T00:00:00+00:00").events() == []
    closed = of_type(run(model, event("need.withdrawn", {**need(priority=2), "status": "withdrawn",
                                                         "updated_at": T2}, T2)), "alert.resolved")
    assert closed == []   # already resolved by a person: nothing left for matching to close


def test_the_overlapping_period_of_duplicating_offers():
    assert overlap([{"period_start": "2026-01-01", "period_end": "2027-12-31"},
                    {"period_start": "2026-06-01", "period_end": None}]) == {"start": "2026-06-01",
                                                                             "end": "2027-12-31"}
    assert overlap([{"period_start": "2026-01-01", "period_end": "2026-03-31"},
                    {"period_start": "2026-06-01", "period_end": "2026-12-31"}]) is None


# --- worklist ---------------------------------------------------------------------------

def test_the_worklist_follows_the_settings_chapter_emphasis():
    filed = [need("KEN-15", article=15, chapter=3), need("KEN-9", article=9, chapter=2)]
    for n, created in zip(filed, ("2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")):
        n["created_at"] = n["updated_at"] = created
    now = parse_time("2026-11-01T00:00:00+00:00")
    default = Matcher()
    run(default, *(event("need.submitted", n) for n in filed))
    assert [r["need_id"] for r in unmet_needs(default, {}, now)["needs"]] == ["KEN-9", "KEN-15"]
    equal = Matcher(Settings(chapter_weights={}))
    run(equal, *(event("need.submitted", n) for n in filed))
    assert [r["need_id"] for r in unmet_needs(equal, {}, now)["needs"]] == ["KEN-15", "KEN-9"]   # then by age


# --- replay -----------------------------------------------------------------------------

def test_a_replay_of_people_s_steps_and_matching_s_closings_restores_the_same_alerts():
    live, store, audit = Matcher(), Store(), []

    def consume(e):
        audit.append(e)
        store.persist(live.apply(e), e["occurred_at"])
        audit.extend(store.emitted)
        store.emitted = []

    def person(step, *args):   # the HTTP route: a guarded write of the stored alert, then the event
        alert_id = next(iter(store.docs["alerts"]))
        changes, ((event_type, data),) = getattr(alerts, step)({**store.docs["alerts"][alert_id]}, *args)
        store.docs["alerts"][alert_id].update(changes)
        consume(event(event_type, data, args[-1]))

    for e in (event("need.submitted", need()), event("offer.published", offer("a", provider="GB")),
              event("offer.published", offer("b", provider="DE"))):
        consume(e)
    person("acknowledge", "donor", "GB", "on it", T1)
    consume(event("offer.withdrawn", {**offer("b", provider="DE"), "status": "withdrawn"}, T2))
    (doc,) = store.docs["alerts"].values()
    assert doc["status"] == "resolved" and doc["resolved"]["automatic"] and doc["acknowledged"]["note"] == "on it"
    assert [e["type"] for e in audit if e["type"].startswith("alert.")] == ["alert.acknowledged", "alert.resolved"]

    replay = StoreReplay()
    for e in audit:
        replay.apply(e)
    assert replay.docs["alerts"] == store.docs["alerts"]
    assert replay.model.alert_book.items == live.alert_book.items == {}
