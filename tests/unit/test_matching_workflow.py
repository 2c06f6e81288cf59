"""The match lifecycle and the alerts together, without any I/O: one meaning of "met" (agreed or later),
of "duplicated" (two providers matched: proposed to delivered) and of a gap (no match at all), across the
matrix, the worklist, the alerts and a replay of the audit log."""
from copy import deepcopy
from datetime import timedelta

from services.matching import alerts
from services.matching.domain import Matcher
from services.matching.lifecycle import LEVELS, move, need_level
from services.matching.matrix import COVERAGES, matrix
from services.matching.payloads import parse_time
from services.matching.read_model import match_id
from services.matching.replay import StoreReplay
from services.matching.scoring import Settings
from services.matching.worklists import unmet_needs
from tests.unit.test_matching_domain import T0, event, need, offer, run, step

T1, T2 = "2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00"
GB, DE = match_id("KEN-9", offer_id="a"), match_id("KEN-9", offer_id="b")


def duplicated():
    """Kenya's need proposed to GB (offer a) and DE (offer b)."""
    model = Matcher()
    emitted = run(model, event("need.submitted", need()), event("offer.published", offer("a", provider="GB")),
                  event("offer.published", offer("b", provider="DE")))
    assert [d["providers"] for t, d in emitted if t == "duplication.detected"] == [["DE", "GB"]]
    return model


def take(model, mid, *steps, at=T0):
    emitted = []
    for to, role, subject in steps:
        emitted += run(model, step(model, mid, to, role=role, subject=subject, reason="why", at=at))
    return emitted


AGREE = (("accepted", "donor", "GB"), ("agreed", "state", "KEN"))


def kenya(model, **filters):
    return [(c["status"], c["coverage"], c["duplicated"], c["needs"], c["proposed_needs"], c["agreed_needs"],
             c["delivered_needs"]) for c in matrix(model, filters=filters) if c["col"] == "KEN"]


def test_a_need_level_is_met_only_when_agreed_or_later():
    assert [need_level(s) for s in ((), ("proposed",), ("proposed", "accepted"), ("accepted", "agreed"),
                                    ("in_delivery",), ("delivered", "proposed"))] == [
        "unmet", "proposed", "proposed", "met", "met", "delivered"]
    assert set(LEVELS) <= set(COVERAGES)   # the matrix counts in the same words


def test_a_provider_declining_its_match_resolves_the_duplication_with_who_left():
    model = duplicated()
    emitted = take(model, DE, ("declined", "donor", "DE"))
    (resolved,) = [d for t, d in emitted if t == "alert.resolved"]
    assert (resolved["resolution"], resolved["automatic"]) == ("cause_gone", True)
    assert resolved["reason"] == "DE no longer matched to KEN × article 9 × LEGAL_ADVICE; only GB remains"
    assert kenya(model) == [("proposed", "proposed", False, 1, 1, 0, 0)]


def test_the_state_cancelling_one_provider_s_agreed_match_resolves_the_duplication_too():
    model = duplicated()
    take(model, GB, *AGREE)
    assert kenya(model) == [("duplicated", "met", True, 1, 1, 1, 0)]   # DE's proposal duplicates GB's commitment
    emitted = take(model, GB, ("cancelled", "state", "KEN"))
    assert [d["reason"] for t, d in emitted if t == "alert.resolved"] == [
        "GB no longer matched to KEN × article 9 × LEGAL_ADVICE; only DE remains"]
    assert kenya(model) == [("proposed", "proposed", False, 1, 1, 0, 0)]


def test_a_cell_partly_met_and_duplicated_shows_both_and_each_status_filter_finds_it():
    model = duplicated()
    run(model, event("need.submitted", need("KEN-9b", forms=("ACTION_PLAN",))))   # nobody offers it
    assert kenya(model) == [("duplicated", "proposed", True, 2, 1, 0, 0)]
    take(model, GB, *AGREE)
    assert kenya(model) == [("duplicated", "partly_met", True, 2, 1, 1, 0)]
    assert kenya(model, status="partly_met") == kenya(model, status="duplicated") == kenya(model)
    assert kenya(model, status="proposed") == kenya(model, status="met") == []
    assert kenya(model, priority=1, form="ACTION_PLAN") == [("unmet", "unmet", False, 1, 0, 0, 0)]


def test_the_worklist_lists_unmet_and_proposed_needs_and_drops_a_need_once_agreed():
    model = duplicated()
    run(model, event("need.submitted", need("KEN-15", article=15, chapter=3)))
    now = parse_time(T1)

    def listed(**filters):
        return [(r["need_id"], r["status"]) for r in unmet_needs(model, filters, now)["needs"]]

    assert listed() == [("KEN-9", "proposed"), ("KEN-15", "unmet")]
    take(model, GB, ("accepted", "donor", "GB"))
    assert listed(status="proposed") == [("KEN-9", "proposed")]   # accepted is not met
    take(model, GB, ("agreed", "state", "KEN"))
    assert listed() == [("KEN-15", "unmet")]
    take(model, GB, ("cancelled", "donor", "GB"))
    assert listed() == [("KEN-9", "proposed"), ("KEN-15", "unmet")]   # DE's proposal is left


def test_a_proposal_resolves_a_gap_and_a_need_whose_only_match_is_declined_is_unmatched_from_then():
    model = Matcher(Settings(gap_after_seconds=3600))
    run(model, event("need.submitted", need()))
    gap, = [d for _, d, _ in model.sweep(parse_time(T0) + timedelta(hours=2)).events()
            if d.get("kind") == "unmatched_priority_need"]
    emitted = run(model, event("offer.published", offer("a", provider="GB"), T1))
    assert [d["reason"] for t, d in emitted if t == "alert.resolved" and d["gap_kind"] == "unmatched_priority_need"] \
        == [f"the need was matched ({GB})"]

    take(model, GB, ("declined", "donor", "GB"), at=T2)
    assert model.sweep(parse_time(T2) + timedelta(minutes=30)).events() == []
    again, = [d for _, d, _ in model.sweep(parse_time(T2) + timedelta(hours=1, seconds=1)).events()]
    assert (again["kind"], again["since"]) == ("unmatched_priority_need", T2) and again["gap_id"] != gap["gap_id"]


def test_a_replay_of_match_steps_and_alert_steps_together_restores_what_was_stored():
    live, audit = Matcher(), []
    docs = {"matches": {}, "alerts": {}}

    def consume(e):   # what MatchingStore.persist stores and relays (guarded closings of alerts included)
        audit.append(e)
        outcome = live.apply(e)
        for (collection, doc_id), (document, events) in outcome.docs.items():
            stored = docs[collection].setdefault(doc_id, {})
            alerts.merged(stored, deepcopy(document)) if collection == "alerts" else stored.update(deepcopy(document))
            audit.extend(event(t, d, e["occurred_at"]) for t, d, _ in events)
        for alert_id, changes, (t, d, _) in outcome.steps:
            if alerts.status_of(docs["alerts"][alert_id]) in alerts.UNRESOLVED:
                docs["alerts"][alert_id].update(deepcopy(changes))
                audit.append(event(t, d, e["occurred_at"]))

    def on_match(mid, to, role, subject, at):   # the HTTP route: a guarded write of the match, then its event
        e = step(live, mid, to, role=role, subject=subject, reason="why", at=at)
        docs["matches"][mid].update(move(docs["matches"][mid], to, role, subject, "why", f"{role}:{subject}", at)[0])
        consume(e)

    def on_alert(name, *args):   # the HTTP route on an alert
        alert_id, = docs["alerts"]
        changes, ((event_type, data),) = getattr(alerts, name)({**docs["alerts"][alert_id]}, *args)
        docs["alerts"][alert_id].update(changes)
        consume(event(event_type, data, args[-1]))

    for e in (event("need.submitted", need()), event("offer.published", offer("a", provider="GB")),
              event("offer.published", offer("b", provider="DE"))):
        consume(e)
    on_alert("acknowledge", "donor", "GB", "asking DE to step back", T1)
    on_match(GB, "accepted", "donor", "GB", T1)
    on_match(GB, "agreed", "state", "KEN", T1)
    on_match(DE, "declined", "donor", "DE", T2)
    on_match(GB, "in_delivery", "donor", "GB", T2)
    on_match(GB, "delivered", "state", "KEN", T2)
    (alert,) = docs["alerts"].values()
    assert (alert["status"], alert["resolved"]["automatic"], alert["acknowledged"]["by"]) == (
        "resolved", True, "donor:GB")
    assert {mid: m["status"] for mid, m in docs["matches"].items()} == {GB: "delivered", DE: "declined"}

    replay = StoreReplay()
    for e in audit:
        replay.apply(e)
    assert replay.docs["matches"] == docs["matches"] and replay.docs["alerts"] == docs["alerts"]
    assert replay.model.matches == live.matches and replay.model.refused == live.refused == {DE}
    assert replay.model.alert_book.items == live.alert_book.items
    assert replay.differences() == {"only_live": [], "only_rebuilt": []}
    assert kenya(replay.model) == kenya(live) == [("delivered", "delivered", False, 1, 1, 1, 1)]
