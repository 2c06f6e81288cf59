"""The matching service alone, against the real broker and database: events in, matches out."""
import csv
import io
import json

import requests
from kombu import Connection, Queue
from prometheus_client import REGISTRY

from services.matching.domain import Matcher
from services.matching.service import MatchingService
from services.matching.settings import settings_from
from tacoord import envelope, topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until

NOW = "2026-11-01T00:00:00+00:00"


def need_data(need_id="KEN-9-n1", state="KEN", group="AFRICAN", article=9, chapter=2, forms=("LEGAL_ADVICE",),
              priority=1, status="open", **extra):
    return {"need_id": need_id, "state": state, "regional_group": group, "article": article, "chapter": chapter,
            "paragraph": None, "forms": list(forms), "other_text": None, "priority": priority,
            "description": "procurement reform", "checklist_round": "2026-1", "languages": ["en"],
            "external_ref": None, "status": status, "created_at": NOW, "updated_at": NOW, **extra}


def offer_data(offer_id="GB-1-o1", provider="GB-GOV-1", level="bilateral", scope_states=("KEN",), scope_groups=(),
               articles=(9,), chapters=(), forms=("LEGAL_ADVICE",), capacity=3, status="active", **extra):
    return {"offer_id": offer_id, "provider": provider, "provider_name": provider, "level": level,
            "scope_states": list(scope_states), "scope_groups": list(scope_groups), "articles": list(articles),
            "chapters": list(chapters), "forms": list(forms), "capacity": capacity, "period_start": "2026-01-01",
            "period_end": "2027-12-31", "languages": ["en"], "status": status, "created_at": NOW,
            "updated_at": NOW, **extra}


def emit(sandbox, event_type, data, source="test"):
    """Publish an event on tacoord.events as another service would."""
    event = new_event(event_type, data, source, "test")
    sandbox.publish(event_type, data, exchange=topology.EVENTS, event=event)
    return event


def probe(sandbox, *keys):
    """A queue bound to tacoord.events that collects what the service emits."""
    name = "probe." + "-".join(k.replace("*", "any").replace("#", "all") for k in keys)
    with Connection(sandbox.amqp_uri) as connection:
        with connection.channel() as channel:
            from kombu import binding
            Queue(name, bindings=[binding(topology.EXCHANGES[topology.EVENTS], routing_key=k) for k in keys],
                  durable=True).bind(channel).declare()
    return name


class Collector:
    def __init__(self, sandbox, *keys):
        self.sandbox = sandbox
        self.queue = probe(sandbox, *keys)
        self.events = []

    def take(self):
        for body, _ in self.sandbox.get_messages(self.queue):
            self.events.append(json.loads(body) if isinstance(body, (str, bytes)) else body)
        return self.events

    def of_type(self, event_type):
        return [e for e in self.take() if e["type"] == event_type]

    def wait_for(self, event_type, count=1, timeout=15):
        return wait_until(lambda: len(self.of_type(event_type)) >= count and self.of_type(event_type),
                          timeout=timeout, message=f"{count} {event_type}")


def get(sandbox, path, role="network", subject="AFRICAN", **params):
    return requests.get(sandbox.url("matching", path), params=params, timeout=5,
                        headers=sandbox.headers(role, subject))


def test_an_offer_then_a_need_are_matched_stored_and_emitted_with_an_explanation(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data())
    submitted = emit(sandbox, "need.submitted", need_data())

    proposed = out.wait_for("match.proposed")[0]
    data = proposed["data"]
    assert data["need_id"] == "KEN-9-n1" and data["offer_id"] == "GB-1-o1"
    assert data["provider"] == "GB-GOV-1" and data["level"] == "bilateral"
    assert proposed["causation_id"] == submitted["id"]
    assert proposed["source"] == "matching"
    assert "geography: KEN in scope_states" in data["explanation"]["constraints_met"]
    assert set(data["explanation"]["score_parts"]) == {"priority", "language", "level", "capacity"}
    assert 0 < data["score"] <= 1

    stored = sandbox.db("matching").matches.find_one({"_id": data["match_id"]})
    assert stored["status"] == "proposed" and stored["_outbox_pending"] == 0
    listed = get(sandbox, "/matches", need_id="KEN-9-n1").json()
    assert [m["match_id"] for m in listed["matches"]] == [data["match_id"]]
    for mine in ({"state": "KEN"}, {"provider": "GB-GOV-1"}, {"state": "KEN", "provider": "GB-GOV-1"}):
        assert [m["match_id"] for m in get(sandbox, "/matches", **mine).json()["matches"]] == [data["match_id"]]
    assert get(sandbox, "/matches", state="TZA").json()["count"] == 0
    assert get(sandbox, "/matches", provider="US-GOV-1").json()["count"] == 0


def test_withdrawing_a_need_retracts_its_matches(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data())
    emit(sandbox, "need.submitted", need_data())
    match_id = out.wait_for("match.proposed")[0]["data"]["match_id"]

    withdrawn = emit(sandbox, "need.withdrawn", need_data(status="withdrawn"))
    retracted = out.wait_for("match.retracted")[0]

    assert retracted["data"] == {"match_id": match_id, "need_id": "KEN-9-n1", "offer_id": "GB-1-o1",
                                 "reason": "need withdrawn"}
    assert retracted["causation_id"] == withdrawn["id"]
    assert get(sandbox, "/matches", need_id="KEN-9-n1").json()["matches"][0]["status"] == "retracted"
    assert get(sandbox, "/matches", need_id="KEN-9-n1", status="active").json()["count"] == 0


def test_the_matrix_shows_the_match_as_json_and_csv(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data())
    emit(sandbox, "need.submitted", need_data())
    emit(sandbox, "need.submitted", need_data(need_id="UGA-9-n1", state="UGA", forms=("ACTION_PLAN",)))
    out.wait_for("match.proposed")
    wait_until(lambda: get(sandbox, "/matrix").json()["count"] == 2, message="two cells")

    matrix = get(sandbox, "/matrix", role="donor", subject="GB-GOV-1").json()
    cells = {(c["row"], c["col"]): c for c in matrix["cells"]}
    # a proposal is not "met": that takes an agreed match (tests/integration/test_matching_lifecycle.py)
    assert cells[(9, "KEN")] == {"row": 9, "col": "KEN", "needs": 1, "offers": 1, "matches": 1,
                                 "proposed_needs": 1, "agreed_needs": 0, "delivered_needs": 0,
                                 "status": "proposed", "coverage": "proposed", "duplicated": False,
                                 "committed": {}, "disbursed": {}}   # the offer carries no transactions
    assert cells[(9, "UGA")]["status"] == "unmet"

    by_group = get(sandbox, "/matrix", rows="chapter", cols="regional_group").json()["cells"]
    assert by_group == [{"row": 2, "col": "AFRICAN", "needs": 2, "offers": 1, "matches": 1,
                         "proposed_needs": 1, "agreed_needs": 0, "delivered_needs": 0, "status": "proposed",
                         "coverage": "proposed", "duplicated": False, "committed": {}, "disbursed": {}}]

    response = get(sandbox, "/matrix.csv", state="KEN")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [{"article": "9", "state": "KEN", "level": "all", "needs": "1", "offers": "1",
                     "matches": "1", "proposed_needs": "1", "agreed_needs": "0", "delivered_needs": "0",
                     "status": "proposed", "coverage": "proposed", "duplicated": "no"}]

    cell = get(sandbox, "/matrix/cell", article=9, state="KEN").json()
    assert [n["need_id"] for n in cell["needs"]] == ["KEN-9-n1"]
    assert [o["offer_id"] for o in cell["offers"]] == ["GB-1-o1"]
    assert cell["matches"][0]["explanation"]["constraints_met"]


def test_matrix_queries_are_validated_and_need_a_key(sandbox, start):
    start(MatchingService)
    bad = get(sandbox, "/matrix", rows="planet", article="x")
    assert bad.status_code == 422
    assert set(bad.json()["fields"]) == {"rows", "article"}
    assert get(sandbox, "/matrix", colour="red").status_code == 400
    assert get(sandbox, "/matrix/cell", article=9).status_code == 422
    assert requests.get(sandbox.url("matching", "/matrix"), timeout=5).status_code == 401


def test_restarting_the_service_keeps_the_read_model(sandbox, start):
    container, = start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data())
    emit(sandbox, "need.submitted", need_data())
    out.wait_for("match.proposed")
    container.stop()

    start(MatchingService)
    cells = get(sandbox, "/matrix").json()["cells"]
    assert cells[0]["needs"] == 1 and cells[0]["offers"] == 1 and cells[0]["matches"] == 1

    # the need loaded from the store is matched by a new offer, and the old match is not proposed again
    emit(sandbox, "offer.published", offer_data(offer_id="FR-1-o1", provider="FR-GOV-1", level="regional",
                                                scope_states=(), scope_groups=("AFRICAN",)))
    second = out.wait_for("match.proposed", count=2)
    assert {e["data"]["offer_id"] for e in second} == {"GB-1-o1", "FR-1-o1"}
    assert len(out.take()) == 2


def test_a_regional_workshop_request_gets_proposed_participants(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "workshop.participants_proposed")
    emit(sandbox, "need.submitted", need_data())  # KEN completed its checklist round
    emit(sandbox, "offer.published", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1", scope_states=("UGA",)))
    emit(sandbox, "offer.published", offer_data(offer_id="US-1-o1", provider="US-GOV-1", scope_states=("MEX",)))
    wait_until(lambda: len(sandbox.db("matching").offers_view.find_one({"_id": "US-1-o1"}) or {}), message="offers")
    requested = emit(sandbox, "workshop.requested", {
        "request_id": "req-1", "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN",
        "network_id": None, "states": ["KEN", "UGA"], "articles": [9], "expected_outcomes": "gap analysis",
        "preferred_dates": [], "language": "en", "support_received": [], "status": "submitted",
        "created_at": NOW, "updated_at": NOW})

    proposal = out.wait_for("workshop.participants_proposed")[0]
    data = proposal["data"]
    assert proposal["causation_id"] == requested["id"]
    assert data["request_id"] == "req-1" and data["regional_group"] == "AFRICAN"
    assert data["states_completed"] == ["KEN"]
    assert data["states_upcoming"] == ["UGA"]  # named in the request, no checklist round yet
    assert data["donors"] == ["DE-BMZ-1"]


def test_a_network_workshop_proposes_its_members_and_the_donors_covering_its_articles(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "workshop.participants_proposed")
    emit(sandbox, "need.submitted", need_data())                                         # KEN: not a member
    emit(sandbox, "need.submitted", need_data("ZAF-54-n1", state="ZAF", article=54, chapter=5))
    emit(sandbox, "offer.published", offer_data(offer_id="CH-1-o1", provider="CH-FDFA-1", scope_states=(),
                                                scope_groups=("AFRICAN",), level="regional", articles=(54,)))
    emit(sandbox, "offer.published", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1", scope_states=("BWA",)))
    wait_until(lambda: sandbox.db("matching").offers_view.count_documents({}) == 2
               and sandbox.db("matching").needs_view.count_documents({}) == 2, message="read model")
    emit(sandbox, "workshop.requested", {
        "request_id": "req-arinsa", "kind": "regional_workshop", "state": "ZAF", "regional_group": "AFRICAN",
        "network_id": "ARINSA", "network_states": ["BWA", "NAM", "ZAF"], "states": ["ZAF"], "articles": [54],
        "expected_outcomes": "asset recovery", "preferred_dates": [], "language": "en", "support_received": [],
        "status": "submitted", "created_at": NOW, "updated_at": NOW})
    data = out.wait_for("workshop.participants_proposed")[0]["data"]
    assert (data["states_completed"], data["states_upcoming"]) == (["ZAF"], [])
    assert data["donors"] == ["CH-FDFA-1"]          # DE's offer reaches Botswana but covers article 9 only


def test_an_expert_is_not_proposed_to_a_need_of_a_state_where_the_roster_marks_a_conflict(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    base = {"expertise": [{"article": 9, "level": "expert"}], "languages": [{"code": "en", "level": "fluent"}],
            "regions": ["AFRICAN"], "countries": [], "forms": ["LEGAL_ADVICE"],
            "availability": {"status": "available", "from": None, "to": None}, "vetting_status": "active",
            "expires_at": None, "updated_at": NOW}
    emit(sandbox, "expert.registered", {**base, "expert_id": "exp-ken", "nationality": "KEN",
                                        "conflict_states": ["KEN"]})
    emit(sandbox, "expert.registered", {**base, "expert_id": "exp-emp", "nationality": "FRA",
                                        "conflict_states": ["FRA", "UGA"]})         # employed by Uganda
    wait_until(lambda: sandbox.db("matching").experts_view.count_documents({}) == 2, message="experts")
    emit(sandbox, "need.submitted", need_data())
    emit(sandbox, "need.submitted", need_data("UGA-9-n1", state="UGA"))
    emit(sandbox, "need.submitted", need_data("TZA-9-n1", state="TZA"))
    proposed = out.wait_for("match.proposed", count=4)
    wait_until(lambda: sandbox.db("matching").needs_view.count_documents({}) == 3, message="needs")
    pairs = {(e["data"]["need_id"], e["data"]["expert_id"]) for e in out.of_type("match.proposed")}
    assert pairs == {("KEN-9-n1", "exp-emp"), ("UGA-9-n1", "exp-ken"), ("TZA-9-n1", "exp-ken"),
                     ("TZA-9-n1", "exp-emp")}, proposed


def test_an_offer_event_missing_what_matching_needs_is_dead_lettered(sandbox, start):
    start(MatchingService)
    emit(sandbox, "offer.published", {"offer_id": "broken"})
    wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 1, message="dead letter")
    (body, headers), = sandbox.get_messages("tacoord.dead-letters")
    # the producer's schema (registered in this process) names the gap; matching's own process,
    # which does not load supply's schemas, says "cannot read offer.published payload: KeyError…"
    assert "provider" in headers["x-tacoord-reason"]
    emit(sandbox, "offer.published", offer_data())  # the model is intact and still consuming
    wait_until(lambda: sandbox.db("matching").offers_view.find_one({"_id": "GB-1-o1"}), message="next offer")
    assert sandbox.db("matching").offers_view.find_one({"_id": "broken"}) is None


def matching_batches():
    return REGISTRY.get_sample_value("tacoord_matching_consumer_batches_total", {"queue": "matching.events"}) or 0.0


def backlog_events(capacity=2, withdrawals=2):
    """Offers and needs across a few states and articles, some needs withdrawn again (as envelopes)."""
    offers = [offer_data(offer_id=f"GB-{n}-o1", provider=f"GB-GOV-{n}", scope_states=states, articles=articles,
                         capacity=capacity)
              for n, (states, articles) in enumerate([(("KEN",), (9,)), (("KEN", "UGA"), (9, 10)),
                                                      (("UGA",), (10,)), (("MEX",), (9,)), (("KEN",), (10,))])]
    needs = [need_data(need_id=f"{state}-{article}-n{n}", state=state, article=article,
                       group="GRULAC" if state == "MEX" else "AFRICAN", priority=1 + n % 3)
             for n in range(4) for state in ("KEN", "UGA", "MEX") for article in (9, 10)]
    events = []
    for n, need in enumerate(needs):
        if n < len(offers):
            events.append(new_event("offer.published", offers[n], "supply", "test"))
        events.append(new_event("need.submitted", need, "needs", "test"))
    for need in needs[:withdrawals]:
        events.append(new_event("need.withdrawn", {**need, "status": "withdrawn"}, "needs", "test"))
    return events


def one_by_one(container, events):
    """What the same events produce applied one at a time (pure domain): active match ids, and the
    event that proposed each match."""
    model = Matcher(settings_from(container.config))
    proposed_by = {}
    for event in events:
        for event_type, data, _ in model.apply(event).events():
            if event_type == "match.proposed":
                proposed_by[data["match_id"]] = event["id"]
    return set(model.matches), proposed_by


def test_a_backlog_is_handled_in_batches_with_the_matches_one_by_one_handling_gives(sandbox, start):
    container, = start(MatchingService)
    out = Collector(sandbox, "match.*")
    container.stop()  # the events pile up in matching's queue meanwhile
    events = backlog_events()
    for event in events:
        sandbox.publish(event["type"], event["data"], exchange=topology.EVENTS, event=event)
    active, proposed_by = one_by_one(container, events)
    assert len(active) > 5 and len(proposed_by) > len(active)  # some matches proposed, then retracted
    before = matching_batches()

    start(MatchingService)
    proposed = out.wait_for("match.proposed", count=len(proposed_by))
    wait_until(lambda: sandbox.queue_depth("matching.events") == 0, message="backlog acked")
    assert matching_batches() - before <= len(events) // 5  # handled together (one batch here), not one by one

    assert sorted(e["data"]["match_id"] for e in proposed) == sorted(proposed_by)  # each proposed once
    assert {e["data"]["match_id"]: e["causation_id"] for e in proposed} == proposed_by  # by its own event
    retracted = {e["data"]["match_id"] for e in out.of_type("match.retracted")}
    assert set(proposed_by) - retracted == active
    stored = sandbox.db("matching").matches
    assert {d["_id"] for d in stored.find({"status": "proposed"})} == active
    assert stored.count_documents({"_outbox_pending": {"$gt": 0}}) == 0
    assert {d["match_id"] for d in get(sandbox, "/matches", status="active").json()["matches"]} == active


def test_a_malformed_event_in_a_backlog_is_parked_with_its_reason_and_the_rest_applied(sandbox, start,
                                                                                       monkeypatch):
    # As in matching's own process, which does not load supply's schemas: the envelope is valid,
    # applying its payload fails.
    monkeypatch.delitem(envelope._PAYLOADS, (envelope.EVENTS, "offer.published"), raising=False)
    container, = start(MatchingService, TACOORD_RETRY_BASE_MS=50)
    out = Collector(sandbox, "match.*")
    container.stop()
    # The failed batch's events come back each on its own, after later ones: without competition
    # for capacity and without withdrawals, the outcome does not depend on the order.
    events = backlog_events(capacity=20, withdrawals=0)
    broken = new_event("offer.published", {"offer_id": "broken"}, "supply", "test")
    events.insert(len(events) // 2, broken)
    for event in events:
        sandbox.publish(event["type"], event["data"], exchange=topology.EVENTS, event=event)
    active, proposed_by = one_by_one(container, [e for e in events if e is not broken])

    start(MatchingService, TACOORD_RETRY_BASE_MS=50)
    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, timeout=30, message="parked")
    proposed = out.wait_for("match.proposed", count=len(proposed_by))
    wait_until(lambda: sandbox.queue_depth("matching.events") == 0
               and sandbox.queue_depth("matching.events.retry") == 0, message="settled")

    (body, headers), = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    assert body["id"] == broken["id"]
    assert headers["x-tacoord-reason"] == "cannot read offer.published payload: KeyError: 'provider'"
    assert headers["x-tacoord-kind"] == "rejected"
    assert headers["x-tacoord-alone"] == 1  # it failed a batch first, then was parked on its own
    assert sorted(e["data"]["match_id"] for e in proposed) == sorted(proposed_by) == sorted(active)  # once each
    assert out.of_type("match.retracted") == []
    assert {d["_id"] for d in sandbox.db("matching").matches.find({"status": "proposed"})} == active
    assert sandbox.db("matching").offers_view.find_one({"_id": "broken"}) is None
    done = {d["_id"].split(":", 1)[1] for d in sandbox.db("matching").processed_events.find({"state": "done"})}
    assert done == {e["id"] for e in events if e is not broken}
