"""Matching rules without any I/O: constraints, scores, retraction, allocation, alerts, the matrix."""
import pytest

from services.matching import alerts
from services.matching.allocation import allocate
from services.matching.domain import Matcher
from services.matching.lifecycle import move
from services.matching.matrix import matrix
from services.matching.read_model import match_id
from services.matching.replay import VIEW_KINDS, StoreReplay, model_from_events
from services.matching.scoring import Settings
from tacoord.envelope import new_event

T0 = "2026-11-01T00:00:00+00:00"


def need(need_id="KEN-9", state="KEN", group="AFRICAN", article=9, chapter=2, forms=("LEGAL_ADVICE",),
         priority=1, status="open", languages=("en",), checklist_round="2026-1"):
    return {"need_id": need_id, "state": state, "regional_group": group, "article": article, "chapter": chapter,
            "forms": list(forms), "priority": priority, "status": status, "languages": list(languages),
            "checklist_round": checklist_round, "created_at": T0, "updated_at": T0}


def offer(offer_id="o1", provider="GB-GOV-1", level="bilateral", states=("KEN",), groups=(), articles=(9,),
          chapters=(), forms=("LEGAL_ADVICE",), capacity=2, status="active", languages=("en",)):
    return {"offer_id": offer_id, "provider": provider, "level": level, "scope_states": list(states),
            "scope_groups": list(groups), "articles": list(articles), "chapters": list(chapters),
            "forms": list(forms), "capacity": capacity, "status": status, "languages": list(languages)}


def expert(expert_id="e1", article=9, level="expert", forms=("LEGAL_ADVICE",), availability="available",
           vetting="active", regions=("AFRICAN",), countries=()):
    return {"expert_id": expert_id, "nationality": "FRA", "expertise": [{"article": article, "level": level}],
            "languages": [{"code": "en", "level": "C2"}], "regions": list(regions), "countries": list(countries),
            "forms": list(forms), "availability": {"status": availability}, "vetting_status": vetting}


def event(event_type, data, at=T0):
    e = new_event(event_type, data, "test")
    e["occurred_at"] = at
    return e


def run(model, *events):
    """Apply events; returns [(type, data)] of everything emitted."""
    emitted = []
    for e in events:
        emitted += [(t, d) for t, d, _ in model.apply(e).events()]
    return emitted


def step(model, mid, to, role="operator", subject="*", reason=None, at=T0):
    """A person's step as the HTTP route takes it (decided on the match as held), as its event."""
    _, ((event_type, data),) = move(dict(model.matches[mid]), to, role, subject, reason, f"{role}:{subject}", at)
    return event(event_type, data, at)


def proposed(emitted):
    return [d for t, d in emitted if t == "match.proposed"]


def types(emitted):
    return [t for t, _ in emitted]


# --- hard constraints --------------------------------------------------------------

@pytest.mark.parametrize("scope, expected", [
    ({"states": ("KEN",)}, "geography: KEN in scope_states"),
    ({"states": (), "groups": ("AFRICAN",), "level": "regional"}, "geography: regional group AFRICAN in scope_groups"),
    ({"states": (), "groups": (), "level": "global"}, "geography: global scope"),
])
def test_an_offer_whose_scope_reaches_the_state_is_matched(scope, expected):
    emitted = run(Matcher(), event("offer.published", offer(**scope)), event("need.submitted", need()))
    assert expected in proposed(emitted)[0]["explanation"]["constraints_met"]


def test_an_offer_outside_the_needs_geography_is_not_matched():
    emitted = run(Matcher(), event("offer.published", offer(states=("FRA",), groups=("GRULAC",))),
                  event("need.submitted", need()))
    assert emitted == []


def test_a_chapter_offer_covers_every_article_of_the_chapter():
    emitted = run(Matcher(), event("offer.published", offer(articles=(), chapters=(2,))),
                  event("need.submitted", need(article=12, chapter=2)))
    assert "coverage: article 12 via chapter 2" in proposed(emitted)[0]["explanation"]["constraints_met"]


def test_an_offer_for_another_article_or_without_a_common_form_is_not_matched():
    model = Matcher()
    assert run(model, event("offer.published", offer(articles=(10,))), event("need.submitted", need())) == []
    assert run(model, event("offer.published", offer(offer_id="o2", forms=("ACTION_PLAN",)))) == []


def test_only_common_forms_are_named_in_the_match():
    emitted = run(Matcher(), event("offer.published", offer(forms=("LEGAL_ADVICE", "ONSITE_EXPERT"))),
                  event("need.submitted", need(forms=("LEGAL_ADVICE", "ACTION_PLAN"))))
    assert proposed(emitted)[0]["forms"] == ["LEGAL_ADVICE"]


def test_closed_and_pipeline_offers():
    model = Matcher()
    assert run(model, event("offer.published", offer(status="closed")), event("need.submitted", need())) == []
    assert len(proposed(run(model, event("offer.published", offer(offer_id="o2", status="pipeline"))))) == 1


# --- scores and explanations -------------------------------------------------------

def test_the_explanation_lists_constraints_and_score_parts():
    match = proposed(run(Matcher(), event("offer.published", offer()), event("need.submitted", need())))[0]
    assert match["explanation"]["score_parts"] == {"priority": 1.0, "language": 1.0, "level": 1.0, "capacity": 1.0}
    assert match["score"] == 1.0
    assert match["match_id"] == match_id("KEN-9", offer_id="o1")


def test_priority_needs_in_chapters_two_and_four_weigh_more():
    model = Matcher()
    assert model.priority_part(need(article=9, chapter=2, priority=1)) == 1.0
    assert model.priority_part(need(article=46, chapter=4, priority=1)) == 1.0
    assert model.priority_part(need(article=20, chapter=3, priority=1)) == 0.7
    assert model.priority_part(need(article=9, chapter=2, priority=3)) == 0.3
    custom = Matcher(Settings(chapter_weights={3: 1.0}, default_chapter_weight=0.5))
    assert custom.priority_part(need(article=20, chapter=3)) == 1.0
    assert custom.priority_part(need(article=9, chapter=2)) == 0.5


def test_language_overlap_raises_the_score():
    model = Matcher()
    run(model, event("offer.published", offer(offer_id="fr", languages=("fr",))),
        event("offer.published", offer(offer_id="en", languages=("en",))))
    matches = {m["offer_id"]: m for m in proposed(run(model, event("need.submitted", need())))}
    assert matches["en"]["explanation"]["score_parts"]["language"] == 1.0
    assert matches["fr"]["explanation"]["score_parts"]["language"] == 0.0
    assert matches["en"]["score"] > matches["fr"]["score"]


def test_bilateral_is_preferred_for_a_national_need_and_regional_when_the_region_shares_it():
    model = Matcher()
    run(model, event("offer.published", offer(offer_id="bi", states=("KEN", "UGA"))),
        event("offer.published", offer(offer_id="re", provider="EU", level="regional", states=(), groups=("AFRICAN",))))
    national = {m["offer_id"]: m["explanation"]["score_parts"]["level"]
                for m in proposed(run(model, event("need.submitted", need())))}
    assert national == {"bi": 1.0, "re": 0.7}
    shared = {m["offer_id"]: m["explanation"]["score_parts"]["level"]
              for m in proposed(run(model, event("need.submitted", need(need_id="UGA-9", state="UGA"))))}
    assert shared == {"bi": 0.7, "re": 1.0}


def test_remaining_capacity_lowers_the_score_of_a_busy_offer():
    # only an agreed match uses capacity (tests/unit/test_matching_lifecycle.py): Kenya's is agreed first
    model = Matcher()
    run(model, event("offer.published", offer(capacity=2, states=("KEN", "UGA"))), event("need.submitted", need()))
    kenya = match_id("KEN-9", offer_id="o1")
    run(model, step(model, kenya, "accepted"))
    run(model, step(model, kenya, "agreed"))
    second = proposed(run(model, event("need.submitted", need(need_id="UGA-9", state="UGA"))))[0]
    assert second["explanation"]["score_parts"]["capacity"] == 0.5


def test_experts_are_matched_on_expertise_and_scored_on_availability():
    model = Matcher()
    run(model, event("expert.registered", expert("busy", availability="unavailable")),
        event("expert.registered", expert("free")),
        event("expert.registered", expert("draft", vetting="draft")),
        event("expert.registered", expert("other", article=10)))
    matches = {m["expert_id"]: m for m in proposed(run(model, event("need.submitted", need())))}
    assert set(matches) == {"busy", "free"}
    assert matches["free"]["score"] > matches["busy"]["score"]
    assert matches["free"]["level"] == "expert" and matches["free"]["provider"] is None
    assert matches["free"]["explanation"]["score_parts"]["availability"] == 1.0


def test_an_expert_is_never_proposed_to_a_state_the_roster_marks_as_a_conflict_of_interest():
    model = Matcher()
    run(model, event("expert.registered", {**expert("kenyan"), "nationality": "KEN"}),
        event("expert.registered", {**expert("employed"), "conflict_states": ["FRA", "KEN"]}),   # works for KEN
        event("expert.registered", expert("free")))
    matches = {m["expert_id"] for m in proposed(run(model, event("need.submitted", need())))}
    assert matches == {"free"}
    uganda = {m["expert_id"] for m in proposed(run(model, event("need.submitted", need("UGA-9", state="UGA"))))}
    assert uganda == {"kenyan", "employed", "free"}
    # a conflict declared later retracts the match it makes improper
    emitted = run(model, event("expert.updated", {**expert("free"), "conflict_states": ["FRA", "UGA"]}))
    assert [(t, d["need_id"], d["expert_id"]) for t, d in emitted] == [("match.retracted", "UGA-9", "free")]


def test_only_the_best_offers_are_proposed_and_a_better_offer_supersedes_the_worst():
    model = Matcher(Settings(max_offer_matches_per_need=2))
    run(model, event("need.submitted", need()))
    run(model, event("offer.published", offer("a", languages=("fr",))),
        event("offer.published", offer("b", languages=("fr",), level="global", states=())))
    emitted = run(model, event("offer.published", offer("c")))
    assert types(emitted) == ["match.retracted", "match.proposed"]
    assert emitted[0][1]["offer_id"] == "b" and emitted[0][1]["reason"] == "superseded by a better match"
    assert {m["offer_id"] for m in model.need_matches["KEN-9"].values()} == {"a", "c"}


# --- retraction ----------------------------------------------------------------------

def test_withdrawing_a_need_retracts_its_matches():
    model = Matcher()
    run(model, event("offer.published", offer()), event("expert.registered", expert()),
        event("need.submitted", need()))
    emitted = run(model, event("need.withdrawn", need(status="withdrawn")))
    assert sorted(types(emitted)) == ["match.retracted", "match.retracted"]
    assert {d["reason"] for _, d in emitted} == {"need withdrawn"}
    assert model.matches == {}


@pytest.mark.parametrize("event_type, change, reason", [
    ("offer.withdrawn", {"status": "withdrawn"}, "offer withdrawn"),
    ("offer.updated", {"status": "closed"}, "offer closed"),
    ("offer.updated", {"articles": [10]}, "offer changed"),
])
def test_an_offer_that_stops_fitting_retracts_its_matches(event_type, change, reason):
    model = Matcher()
    run(model, event("offer.published", offer()), event("need.submitted", need()))
    emitted = run(model, event(event_type, {**offer(), **change}))
    assert emitted == [("match.retracted", {"match_id": match_id("KEN-9", offer_id="o1"),
                                            "need_id": "KEN-9", "offer_id": "o1", "reason": reason})]


def test_a_retracted_match_is_refilled_from_the_next_best_offer():
    model = Matcher(Settings(max_offer_matches_per_need=1))
    run(model, event("offer.published", offer("best")), event("offer.published", offer("next", languages=("fr",))),
        event("need.submitted", need()))
    emitted = run(model, event("offer.withdrawn", {**offer("best"), "status": "withdrawn"}))
    assert types(emitted) == ["match.retracted", "match.proposed"]
    assert emitted[1][1]["offer_id"] == "next"


def test_an_expired_expert_is_retracted():
    model = Matcher()
    run(model, event("expert.registered", expert()), event("need.submitted", need()))
    emitted = run(model, event("expert.expired", expert()))
    assert emitted[0][0] == "match.retracted" and emitted[0][1]["reason"] == "expert expired"


def test_replaying_the_same_events_never_doubles_a_match():
    events = [event("offer.published", offer()), event("need.submitted", need())]
    model = Matcher()
    assert len(run(model, *events)) == 1
    assert run(model, *events) == []


def test_a_late_older_update_does_not_reopen_a_withdrawn_need():
    model = Matcher()
    run(model, event("offer.published", offer()), event("need.submitted", need()))
    run(model, event("need.withdrawn", {**need(status="withdrawn"), "updated_at": "2026-11-03T00:00:00+00:00"}))
    late = run(model, event("need.updated", {**need(), "updated_at": "2026-11-02T00:00:00+00:00"}))
    assert late == [] and model.needs["KEN-9"]["status"] == "withdrawn"


def test_a_model_replayed_from_events_equals_the_live_model():
    events = [event("offer.published", offer()), event("offer.published", offer("o2", provider="DE-1")),
              event("need.submitted", need()), event("need.submitted", need("UGA-9", state="UGA")),
              event("offer.withdrawn", {**offer("o2", provider="DE-1"), "status": "withdrawn"}),
              event("match.proposed", {"ignored": True})]
    live = Matcher()
    run(live, *events)
    replayed = model_from_events(events)
    assert replayed.matches == live.matches
    assert replayed.alerts == live.alerts


class Store:
    """What MatchingStore.persist() writes, without a database: views replaced, other documents merged."""

    def __init__(self):
        self.views = {kind: {} for kind in VIEW_KINDS}
        self.docs = {"matches": {}, "alerts": {}, "proposals": {}}
        self.emitted = []

    def persist(self, outcome, at):
        import copy
        for (kind, entity_id), document in outcome.entities.items():
            self.views[kind][entity_id] = copy.deepcopy(document)
        for (collection, doc_id), (document, events) in outcome.docs.items():
            stored = self.docs[collection].setdefault(doc_id, {})
            if collection == "alerts":
                alerts.merged(stored, copy.deepcopy(document))
            else:
                stored.update(copy.deepcopy(document))
            self.emitted += [event(t, d, at) for t, d, _ in events]
        for alert_id, changes, (t, d, _) in outcome.steps:   # guarded: only while unresolved
            if alerts.status_of(self.docs["alerts"][alert_id]) in alerts.UNRESOLVED:
                self.docs["alerts"][alert_id].update(copy.deepcopy(changes))
                self.emitted.append(event(t, d, at))

    def load(self, settings):
        return Matcher(settings).load(
            **{kind: docs.values() for kind, docs in self.views.items()},
            matches=self.docs["matches"].values(), alerts=self.docs["alerts"], proposals=self.docs["proposals"],
            alert_docs=[{**doc, "_id": key} for key, doc in self.docs["alerts"].items()])


def test_a_replay_of_the_audited_events_restores_the_store_so_nothing_is_emitted_again():
    settings = Settings(gap_after_seconds=3600)
    live, store, audit = Matcher(settings), Store(), []
    consumed = [event("offer.published", offer()), event("need.submitted", need()),
                event("offer.published", offer("o2", provider="DE-1", level="regional", states=(), groups=("AFRICAN",))),
                event("need.submitted", need("UGA-9", state="UGA", priority=2)),
                event("need.submitted", need("KEN-5", article=5)),       # nobody offers article 5: gaps
                event("need.withdrawn", {**need("UGA-9", state="UGA", priority=2, status="withdrawn"),
                                         "updated_at": "2026-11-01T00:30:00+00:00"}),
                event("workshop.requested", {"request_id": "r1", "kind": "regional_workshop",
                                             "regional_group": "AFRICAN", "state": "KEN", "states": [],
                                             "status": "requested"})]
    for e in consumed:
        audit.append(e)
        store.persist(live.apply(e), e["occurred_at"])
        audit += store.emitted
        store.emitted = []
    swept_at = "2026-11-01T02:00:00+00:00"
    store.persist(live.sweep(swept_at), swept_at)
    audit += store.emitted
    assert {e["type"] for e in audit} >= {"match.proposed", "match.retracted", "duplication.detected",
                                          "gap.detected", "workshop.participants_proposed"}

    replay = StoreReplay(settings)
    for e in audit:
        replay.apply(e)

    assert replay.views == store.views and replay.docs == store.docs
    assert replay.differences() == {"only_live": [], "only_rebuilt": []}
    assert replay.summary()["active_matches"] == len(live.matches) and replay.summary()["alerts"] == 3
    restarted = Store()
    restarted.views, restarted.docs = replay.views, replay.docs
    model = restarted.load(settings)
    assert model.matches == live.matches
    assert model.sweep("2026-11-02T00:00:00+00:00").events() == []       # the gaps were emitted already
    assert run(model, *consumed) == []                                    # redelivered: nothing new
    assert proposed(run(model, event("need.submitted", need("TZA-9", state="TZA", priority=1)))) != []


def test_a_loaded_model_matches_like_the_original():
    live = Matcher()
    run(live, event("offer.published", offer()), event("need.submitted", need()))
    loaded = Matcher().load(needs=live.needs.values(), offers=live.offers.values(),
                              matches=live.matches.values(), alerts=live.alerts)
    assert loaded.matches == live.matches
    assert run(loaded, event("need.updated", need())) == []


# --- allocation ---------------------------------------------------------------------

def test_allocation_respects_capacity_and_prefers_heavier_needs():
    result = allocate({"heavy": 1.0, "light": 0.3}, {"o": 1}, {"heavy": [(0.5, "o")], "light": [(0.9, "o")]})
    assert result["assignments"] == {"heavy": "o"}
    assert result["covered_weight"] == 1.0


def test_allocation_moves_an_assigned_need_to_make_room():
    # n1 (heavier) first takes its best offer A; n2 can only use A: augmenting moves n1 to B
    weights = {"n1": 1.0, "n2": 0.9}
    pairs = {"n1": [(0.9, "A"), (0.5, "B")], "n2": [(0.8, "A")]}
    assert allocate(weights, {"A": 1, "B": 1}, pairs)["assignments"] == {"n1": "B", "n2": "A"}
    assert allocate(weights, {"A": 1, "B": 1}, pairs, augment=False)["assignments"] == {"n1": "A"}


def test_the_model_allocates_its_active_matches():
    model = Matcher()
    run(model, event("offer.published", offer(capacity=1, states=("KEN", "UGA"))),
        event("need.submitted", need()), event("need.submitted", need("UGA-9", state="UGA", priority=2)))
    assert model.allocation()["assignments"] == {"KEN-9": "o1"}


# --- duplication -----------------------------------------------------------------------

def test_two_providers_committed_to_the_same_state_article_form_are_reported_once():
    model = Matcher()
    run(model, event("need.submitted", need()), event("offer.published", offer("a", provider="GB")))
    emitted = run(model, event("offer.published", offer("b", provider="DE", level="global", states=())))
    dup = [d for t, d in emitted if t == "duplication.detected"]
    assert dup == [{"duplication_id": dup[0]["duplication_id"], "state": "KEN", "regional_group": "AFRICAN",
                    "article": 9, "form": "LEGAL_ADVICE", "providers": ["DE", "GB"], "offer_ids": ["a", "b"],
                    "offers": [{"offer_id": "a", "provider": "GB", "provider_name": None, "level": "bilateral",
                                "forms": ["LEGAL_ADVICE"], "period_start": None, "period_end": None},
                               {"offer_id": "b", "provider": "DE", "provider_name": None, "level": "global",
                                "forms": ["LEGAL_ADVICE"], "period_start": None, "period_end": None}],
                    "period": {"start": None, "end": None}}]
    assert "duplication.detected" not in types(run(model, event("offer.updated", offer("b", provider="DE",
                                                                                         level="global", states=()))))
    third = run(model, event("offer.published", offer("c", provider="FR")))
    assert [d["providers"] for t, d in third if t == "duplication.detected"] == [["DE", "FR", "GB"]]


def test_one_provider_with_two_offers_or_a_pipeline_offer_is_no_duplication():
    model = Matcher()
    emitted = run(model, event("need.submitted", need()), event("offer.published", offer("a", provider="GB")),
                  event("offer.published", offer("b", provider="GB")),
                  event("offer.published", offer("c", provider="DE", status="pipeline")))
    assert "duplication.detected" not in types(emitted)
    activated = run(model, event("offer.updated", offer("c", provider="DE", status="active")))
    assert "duplication.detected" in types(activated)


# --- gaps ------------------------------------------------------------------------------

def test_an_unmatched_priority_need_becomes_a_gap_after_the_configured_time_once():
    model = Matcher(Settings(gap_after_seconds=3600))
    run(model, event("need.submitted", need()), event("need.submitted", need("KEN-10", article=10, priority=2)),
        event("offer.published", offer("x", articles=(10,))))
    assert model.sweep("2026-11-01T00:59:00+00:00").events() == []
    gaps = [d for _, d, _ in model.sweep("2026-11-01T01:00:01+00:00").events()]
    assert {(g["kind"], g["article"]) for g in gaps} == {("unmatched_priority_need", 9), ("no_supply", 9)}
    unmatched = next(g for g in gaps if g["kind"] == "unmatched_priority_need")
    assert unmatched["need_id"] == "KEN-9" and unmatched["since"] == T0
    assert model.sweep("2026-11-02T00:00:00+00:00").events() == []


def test_a_matched_need_or_a_supplied_article_is_no_gap():
    model = Matcher(Settings(gap_after_seconds=1))
    run(model, event("need.submitted", need()), event("offer.published", offer()))
    assert model.sweep("2027-01-01T00:00:00+00:00").events() == []


def test_a_need_that_loses_its_last_match_is_unmatched_from_then():
    model = Matcher(Settings(gap_after_seconds=3600))
    run(model, event("offer.published", offer()), event("need.submitted", need()))
    run(model, event("offer.withdrawn", {**offer(), "status": "withdrawn"}, at="2026-11-05T00:00:00+00:00"))
    assert [d["kind"] for _, d, _ in model.sweep("2026-11-05T00:30:00+00:00").events()] == []
    gaps = [d for _, d, _ in model.sweep("2026-11-05T01:00:01+00:00").events()]
    assert {g["kind"] for g in gaps} == {"unmatched_priority_need", "no_supply"}
    assert next(g for g in gaps if g["need_id"])["since"] == "2026-11-05T00:00:00+00:00"


# --- the matrix --------------------------------------------------------------------------

def test_matrix_cell_statuses():
    model = Matcher()
    run(model,
        event("need.submitted", need()),                                                 # met (one provider)
        event("offer.published", offer("gb", provider="GB", states=("KEN",))),
        event("need.submitted", need("UGA-9", state="UGA")),                             # unmet
        event("need.submitted", need("TZA-9", state="TZA")),                             # partly met
        event("need.submitted", need("TZA-9b", state="TZA", forms=("ACTION_PLAN",))),
        event("offer.published", offer("tz", provider="GB", states=("TZA",))),
        event("need.submitted", need("MEX-9", state="MEX", group="GRULAC")),             # duplicated
        event("offer.published", offer("m1", provider="US", states=("MEX",))),
        event("offer.published", offer("m2", provider="ES", states=("MEX",))),
        event("offer.published", offer("fr", provider="FR", states=("FRA",))))           # supply only
    assert {c["col"]: c["status"] for c in matrix(model)}["KEN"] == "proposed"   # met only once agreed
    for need_id, offer_id in (("KEN-9", "gb"), ("TZA-9", "tz")):
        mid = match_id(need_id, offer_id=offer_id)
        run(model, step(model, mid, "accepted"))
        run(model, step(model, mid, "agreed"))
    cells = {c["col"]: c for c in matrix(model)}
    assert {col: c["status"] for col, c in cells.items()} == {
        "KEN": "met", "UGA": "unmet", "TZA": "partly_met", "MEX": "duplicated", "FRA": "no_need"}
    assert (cells["TZA"]["needs"], cells["TZA"]["offers"], cells["TZA"]["matches"]) == (2, 1, 1)
    groups = {c["col"]: c for c in matrix(model, rows="chapter", cols="regional_group")}
    assert groups["AFRICAN"]["needs"] == 4 and groups["AFRICAN"]["status"] == "partly_met"
    assert groups["GRULAC"]["status"] == "duplicated"
    assert [c["col"] for c in matrix(model, filters={"regional_group": "GRULAC"})] == ["MEX"]
    assert matrix(model, level="global", filters={"state": "KEN"})[0]["status"] == "unmet"


def test_regional_and_global_offers_appear_where_there_are_needs():
    model = Matcher()
    run(model, event("need.submitted", need()), event("need.submitted", need("FRA-9", state="FRA", group="WEOG")),
        event("offer.published", offer("eu", provider="EU", level="regional", states=(), groups=("AFRICAN",))))
    cells = {c["col"]: c["offers"] for c in matrix(model)}
    assert cells == {"KEN": 1, "FRA": 0}


# --- workshops ----------------------------------------------------------------------------

def test_a_regional_workshop_request_proposes_states_and_donors():
    model = Matcher()
    run(model, event("need.submitted", need()),
        event("need.submitted", need("UGA-9", state="UGA", checklist_round=None)),
        event("workshop.requested", {"request_id": "c1", "kind": "checklist_assistance", "state": "RWA",
                                     "status": "submitted"}),
        event("workshop.requested", {"request_id": "c2", "kind": "checklist_assistance", "state": "BDI",
                                     "status": "submitted"}),
        event("workshop.declined", {"request_id": "c2", "kind": "checklist_assistance", "state": "BDI",
                                    "status": "declined"}),
        event("offer.published", offer("a", provider="DE", states=("TZA",))),
        event("offer.published", offer("b", provider="UN", level="global", states=())),
        event("offer.published", offer("c", provider="US", states=("MEX",))))
    request = {"request_id": "r1", "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN",
               "states": ["KEN"], "articles": [9], "status": "submitted"}
    emitted = run(model, event("workshop.requested", request))
    assert types(emitted) == ["workshop.participants_proposed"]
    data = emitted[0][1]
    assert data["states_completed"] == ["KEN"]
    # under way: needs filed outside a checklist round, or checklist help requested (not declined)
    assert data["states_upcoming"] == ["RWA", "UGA"]
    assert data["donors"] == ["DE", "UN"]
    assert run(model, event("workshop.requested", request)) == []
    assert run(model, event("workshop.participants_proposed", data)) == []


def test_a_network_workshop_proposes_its_members_only_and_donors_whose_offers_cover_its_articles():
    model = Matcher()
    run(model, event("need.submitted", need()),                                     # KEN: outside the network
        event("need.submitted", need("ZAF-54", state="ZAF", article=54, chapter=5)),
        event("need.submitted", need("BWA-54", state="BWA", article=54, chapter=5, checklist_round=None)),
        event("offer.published", offer("ar", provider="CH-FDFA", states=(), groups=("AFRICAN",), articles=(54,))),
        event("offer.published", offer("ch5", provider="GB-GOV-1", states=("NAM",), articles=(), chapters=(5,))),
        event("offer.published", offer("pro", provider="DE", states=(), groups=("AFRICAN",), articles=(9,))),
        event("offer.published", offer("far", provider="US", states=("MEX",), articles=(54,))),
        event("offer.published", offer("any", provider="UN", level="global", states=(), articles=(54,))))
    request = {"request_id": "arinsa-1", "kind": "regional_workshop", "state": "ZAF", "regional_group": "AFRICAN",
               "network_id": "ARINSA", "network_states": ["BWA", "NAM", "ZAF"], "states": ["ZAF"],
               "articles": [54], "status": "submitted"}
    [(kind, data)] = run(model, event("workshop.requested", request))
    assert kind == "workshop.participants_proposed"
    assert data["states_completed"] == ["ZAF"] and data["states_upcoming"] == ["BWA"]   # KEN is not a member
    # the group's asset-recovery offer, the chapter V offer reaching Namibia and the global one; not the
    # procurement offer (article 9) nor the one reaching Mexico only
    assert data["donors"] == ["CH-FDFA", "GB-GOV-1", "UN"]


def test_a_regional_workshop_proposes_only_donors_covering_its_articles():
    model = Matcher()
    run(model, event("offer.published", offer("proc", provider="DE", states=("UGA",), articles=(9,))),
        event("offer.published", offer("mla", provider="FR", states=(), groups=("AFRICAN",), articles=(46,))))
    request = {"request_id": "r9", "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN",
               "states": ["KEN"], "articles": [9, 10], "status": "submitted"}
    [(_, data)] = run(model, event("workshop.requested", request))
    assert data["donors"] == ["DE"]


def test_checklist_assistance_offered_but_not_accepted_does_not_make_a_state_upcoming():
    model = Matcher()
    run(model, event("workshop.offered", {"request_id": "o1", "kind": "checklist_assistance", "state": "TCD",
                                          "status": "offered"}))
    request = {"request_id": "r1", "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN",
               "states": ["KEN"], "articles": [9], "status": "submitted"}
    [(_, data)] = run(model, event("workshop.requested", request))
    assert "TCD" not in data["states_upcoming"]
    run(model, event("workshop.accepted", {"request_id": "o1", "kind": "checklist_assistance", "state": "TCD",
                                           "status": "submitted"}))
    [(_, data)] = run(model, event("workshop.requested", {**request, "request_id": "r2"}))
    assert "TCD" in data["states_upcoming"]


def test_checklist_assistance_requests_get_no_participants():
    request = {"request_id": "r2", "kind": "checklist_assistance", "state": "KEN", "regional_group": "AFRICAN"}
    assert run(Matcher(), event("workshop.requested", request)) == []
