"""Matches become commitments, against the real broker and database: people move a match over HTTP
(provider accepts, State agrees, delivery follows), each step is an event the model consumes, the matrix
and the capacity follow the levels reached, and the model's own writes never overwrite a step."""
import csv
import io

import pytest
import requests

from services.audit.service import AuditService
from services.matching.dependencies import MatchingRepository
from services.matching.lifecycle import IllegalMove
from services.matching.service import MatchingService
from tacoord import topology
from tacoord.auth import Principal
from tacoord.testing import wait_until
from tests.integration.test_matching_service import Collector, emit, get, need_data, offer_data

PROVIDER = ("donor", "GB-GOV-1")
STATE = ("state", "KEN")


def move(sandbox, match_id, to, who=PROVIDER, reason=None):
    body = {"to": to} if reason is None else {"to": to, "reason": reason}
    return requests.post(sandbox.url("matching", f"/matches/{match_id}/transitions"), json=body, timeout=10,
                         headers=sandbox.headers(*who))


def moved(sandbox, match_id, to, who=PROVIDER, reason=None):
    response = move(sandbox, match_id, to, who, reason)
    assert response.status_code == 200, response.text
    return response.json()


def proposed(sandbox, out, count=1, **offer):
    emit(sandbox, "offer.published", offer_data(**offer))
    emit(sandbox, "need.submitted", need_data())
    return out.wait_for("match.proposed", count=count)[-1]["data"]["match_id"]


def held(sandbox, match_id, status):
    """Wait until the model (the matrix's source) holds the match at ``status``."""
    def status_in_model():
        cell = get(sandbox, "/matrix/cell", article=9, state="KEN", role="operator", subject="*").json()
        return {m["match_id"]: m["status"] for m in cell["matches"]}.get(match_id) == status
    wait_until(status_in_model, message=f"the model holds {match_id} as {status}")


def consumed(sandbox, event):
    """Wait until matching has handled ``event``: what it emitted was published before it was marked done."""
    wait_until(lambda: sandbox.db("matching").processed_events.find_one(
        {"_id": f"matching.events:{event['id']}", "state": "done"}), message=f"{event['type']} handled")


def kenya(sandbox):
    cell, = [c for c in get(sandbox, "/matrix").json()["cells"] if c["col"] == "KEN"]
    return cell


def test_a_match_is_accepted_agreed_delivered_and_each_step_is_an_audited_event(sandbox, start):
    start(MatchingService, AuditService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)

    accepted = moved(sandbox, match_id, "accepted", PROVIDER, reason="we can start in March")
    assert accepted["status"] == "accepted" and accepted["reason"] == "we can start in March"
    agreed = moved(sandbox, match_id, "agreed", STATE)
    started = moved(sandbox, match_id, "in_delivery", PROVIDER)
    delivered = moved(sandbox, match_id, "delivered", STATE, reason="workshop held")
    assert [a["status"] for a in (agreed, started, delivered)] == ["agreed", "in_delivery", "delivered"]
    assert [(s["from"], s["to"], s["by"]) for s in delivered["steps"]] == [
        ("proposed", "accepted", "donor:GB-GOV-1"), ("accepted", "agreed", "state:KEN"),
        ("agreed", "in_delivery", "donor:GB-GOV-1"), ("in_delivery", "delivered", "state:KEN")]

    steps = {e["type"]: e for e in out.take() if e["type"] != "match.proposed"}
    assert list(steps) == ["match.accepted", "match.agreed", "match.delivery_started", "match.delivered"]
    assert steps["match.accepted"]["actor"] == "donor:GB-GOV-1"
    assert steps["match.accepted"]["data"]["reason"] == "we can start in March"
    assert steps["match.delivered"]["data"]["by"] == "state:KEN"
    assert (steps["match.delivered"]["data"]["previous_status"], steps["match.delivered"]["data"]["status"]) == \
        ("in_delivery", "delivered")
    assert steps["match.agreed"]["data"]["provider"] == "GB-GOV-1" and steps["match.agreed"]["data"]["state"] == "KEN"

    audit = sandbox.db("audit").audit
    wait_until(lambda: audit.count_documents({"type": {"$regex": "^match\\."}}) == 5, message="steps audited")
    record = audit.find_one({"type": "match.accepted"})
    assert record["actor"] == "donor:GB-GOV-1" and record["event"]["data"]["reason"] == "we can start in March"
    assert f"match:{match_id}" in record["entities"]

    held(sandbox, match_id, "delivered")
    assert get(sandbox, "/matches", status="delivered").json()["count"] == 1
    assert get(sandbox, "/matches", status="proposed").json()["count"] == 0
    assert get(sandbox, "/matches", status="active").json()["count"] == 1   # it stands
    assert get(sandbox, "/matches", status="nonsense").status_code == 422


def test_declining_needs_a_reason_and_the_need_gets_the_next_best_offer(sandbox, start):
    container, = start(MatchingService, TACOORD_MATCH_MAX_PER_NEED=1)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data(offer_id="FR-1-o1", provider="FR-GOV-1", languages=["fr"]))
    match_id = proposed(sandbox, out)
    assert get(sandbox, "/matches/" + match_id).json()["offer_id"] == "GB-1-o1"

    unexplained = move(sandbox, match_id, "declined")
    assert unexplained.status_code == 422 and set(unexplained.json()["fields"]) == {"reason"}
    declined = moved(sandbox, match_id, "declined", reason="no budget left this year")
    assert declined["status"] == "declined" and declined["reason"] == "no budget left this year"

    refill = out.wait_for("match.proposed", count=2)[-1]
    assert refill["data"]["offer_id"] == "FR-1-o1"
    assert out.of_type("match.declined")[0]["data"]["reason"] == "no budget left this year"
    held(sandbox, refill["data"]["match_id"], "proposed")
    container.stop()   # the declined pair is never proposed again, also by a model loaded from the store
    start(MatchingService, TACOORD_MATCH_MAX_PER_NEED=1)
    consumed(sandbox, emit(sandbox, "offer.updated", offer_data(capacity=9)))
    assert len(out.of_type("match.proposed")) == 2 and out.of_type("match.retracted") == []
    assert get(sandbox, "/matches/" + match_id).json()["status"] == "declined"
    assert get(sandbox, "/matches/" + refill["data"]["match_id"]).json()["status"] == "proposed"


def test_an_illegal_step_is_a_409_naming_the_status_and_the_moves_allowed(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)

    early = move(sandbox, match_id, "agreed", ("operator", "*"))
    assert early.status_code == 409
    assert early.json()["current"] == "proposed" and early.json()["allowed"] == ["accepted", "declined", "cancelled"]
    for_the_state = move(sandbox, match_id, "delivered", STATE)
    assert for_the_state.status_code == 409 and for_the_state.json()["allowed"] == ["cancelled"]
    moved(sandbox, match_id, "accepted")
    again = move(sandbox, match_id, "accepted")
    assert again.status_code == 409 and again.json()["current"] == "accepted"
    assert again.json()["allowed"] == ["cancelled"]   # the provider's moves from accepted
    moved(sandbox, match_id, "cancelled", STATE, reason="the law passed without help")
    final = move(sandbox, match_id, "agreed", STATE)
    assert final.status_code == 409 and final.json()["current"] == "cancelled" and final.json()["allowed"] == []

    bad = move(sandbox, match_id, "teleported")
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"to"}
    assert move(sandbox, "m-nosuchmatch", "accepted").status_code == 404


def test_only_the_provider_accepts_and_only_the_state_agrees(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)

    by_the_state = move(sandbox, match_id, "accepted", STATE)
    assert by_the_state.status_code == 403
    assert "state:KEN" in by_the_state.json()["error"] and "provider (GB-GOV-1)" in by_the_state.json()["error"]
    other_donor = move(sandbox, match_id, "accepted", ("donor", "US-GOV-1"))
    assert other_donor.status_code == 403 and "donor:US-GOV-1 may not move match" in other_donor.json()["error"]
    network = move(sandbox, match_id, "accepted", ("network", "AFRICAN"))
    assert network.status_code == 403 and "role 'network'" in network.json()["error"]
    moved(sandbox, match_id, "accepted")
    by_the_donor = move(sandbox, match_id, "agreed", PROVIDER)
    assert by_the_donor.status_code == 403
    assert "donor:GB-GOV-1" in by_the_donor.json()["error"] and "State (KEN)" in by_the_donor.json()["error"]
    other_state = move(sandbox, match_id, "agreed", ("state", "UGA"))
    assert other_state.status_code == 403 and "state:UGA" in other_state.json()["error"]
    assert moved(sandbox, match_id, "agreed", ("operator", "*"))["status"] == "agreed"
    assert [e["actor"] for e in out.take() if e["type"] in ("match.accepted", "match.agreed")] == \
        ["donor:GB-GOV-1", "operator:*"]


def test_the_matrix_shows_the_level_a_cell_reached(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)
    wait_until(lambda: kenya(sandbox)["status"] == "proposed", message="a proposal")
    assert (kenya(sandbox)["proposed_needs"], kenya(sandbox)["agreed_needs"]) == (1, 0)

    moved(sandbox, match_id, "accepted")
    held(sandbox, match_id, "accepted")
    assert kenya(sandbox)["status"] == "proposed"   # accepted by the provider is not yet met
    moved(sandbox, match_id, "agreed", STATE)
    wait_until(lambda: kenya(sandbox)["status"] == "met", message="met once agreed")
    assert (kenya(sandbox)["agreed_needs"], kenya(sandbox)["delivered_needs"]) == (1, 0)
    moved(sandbox, match_id, "in_delivery")
    moved(sandbox, match_id, "delivered", STATE)
    wait_until(lambda: kenya(sandbox)["status"] == "delivered", message="delivered")
    rows = list(csv.DictReader(io.StringIO(get(sandbox, "/matrix.csv", state="KEN").text)))
    assert [(r["proposed_needs"], r["agreed_needs"], r["delivered_needs"], r["status"]) for r in rows] == \
        [("1", "1", "1", "delivered")]


def test_capacity_is_used_by_agreed_matches_only(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data(capacity=1, scope_states=("KEN", "UGA")))
    emit(sandbox, "need.submitted", need_data())
    emit(sandbox, "need.submitted", need_data(need_id="UGA-9-n1", state="UGA"))
    matches = {e["data"]["need_id"]: e["data"] for e in out.wait_for("match.proposed", count=2)}
    assert {m["explanation"]["score_parts"]["capacity"] for m in matches.values()} == {1.0}   # both would fit
    uganda = matches["UGA-9-n1"]["match_id"]

    kenya_match = matches["KEN-9-n1"]["match_id"]
    moved(sandbox, kenya_match, "accepted")
    moved(sandbox, kenya_match, "agreed", STATE)
    rescored = wait_until(lambda: [e["data"] for e in out.of_type("match.rescored") if e["data"]["match_id"] == uganda],
                          message="Uganda's match re-scored")[0]
    assert rescored["score"] < rescored["previous_score"]
    stored = get(sandbox, "/matches/" + uganda).json()
    assert stored["explanation"]["score_parts"]["capacity"] == 0.0 and stored["status"] == "proposed"
    allocations = get(sandbox, "/allocations").json()
    assert allocations["assignments"] == [{"need_id": "KEN-9-n1", "offer_id": "GB-1-o1", "committed": True}]


def test_a_priority_change_rescores_the_match_and_an_unrelated_change_does_not(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)
    emit(sandbox, "need.updated", need_data(priority=3, updated_at="2026-11-02T00:00:00+00:00"))
    rescored = out.wait_for("match.rescored")[0]["data"]
    assert (rescored["match_id"], rescored["priority"], rescored["previous_priority"]) == (match_id, 3, 1)
    stored = get(sandbox, "/matches/" + match_id).json()
    assert stored["priority"] == 3 and stored["score"] == rescored["score"] < rescored["previous_score"]
    assert stored["explanation"]["score_parts"]["priority"] == 0.3

    consumed(sandbox, emit(sandbox, "need.updated", need_data(priority=3, description="reworded",
                                                              updated_at="2026-11-03T00:00:00+00:00")))
    assert len(out.of_type("match.rescored")) == 1


def test_withdrawing_a_need_withdraws_its_agreed_match_with_the_reason(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)
    moved(sandbox, match_id, "accepted")
    moved(sandbox, match_id, "agreed", STATE)
    held(sandbox, match_id, "agreed")
    emit(sandbox, "need.withdrawn", need_data(status="withdrawn", updated_at="2026-11-02T00:00:00+00:00"))
    withdrawn = out.wait_for("match.withdrawn")[0]["data"]
    assert (withdrawn["previous_status"], withdrawn["reason"]) == ("agreed", "need withdrawn")
    stored = get(sandbox, "/matches/" + match_id).json()
    assert (stored["status"], stored["reason"]) == ("withdrawn", "need withdrawn")
    assert [s["to"] for s in stored["steps"]] == ["accepted", "agreed"]   # what people did is kept
    assert out.of_type("match.retracted") == []


class Held:
    """An outbox relay that keeps what it is given, so that a step is stored and its event not yet published
    (as when the instance that served the request stops before relaying: then another instance's outbox
    sweeper publishes it a few seconds later; here the test publishes it when it chooses)."""

    def __init__(self, database):
        self.database = database
        self.events = []

    def relay(self, collection, document_id, events):
        self.events.extend(events)
        self.database[collection].update_one({"_id": document_id}, {"$set": {"_outbox": [], "_outbox_pending": 0}})


def test_the_models_writes_never_overwrite_a_step_it_has_not_consumed_yet(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)
    moved(sandbox, match_id, "accepted")
    held(sandbox, match_id, "accepted")
    # Another instance agrees: stored on the match, its event still in the match's outbox.
    in_flight = Held(sandbox.db("matching"))
    other_instance = MatchingRepository(sandbox.db("matching"), in_flight, provider=None)
    other_instance.move(match_id, "agreed", None, Principal("state", "KEN", "k1"))
    matches = sandbox.db("matching").matches

    emit(sandbox, "need.updated", need_data(priority=2, updated_at="2026-11-02T00:00:00+00:00"))
    out.wait_for("match.rescored")
    assert (matches.find_one({"_id": match_id})["status"], matches.find_one({"_id": match_id})["priority"]) == \
        ("agreed", 2)   # the model's fields changed, the person's step stands
    consumed(sandbox, emit(sandbox, "need.withdrawn", need_data(status="withdrawn",
                                                                updated_at="2026-11-03T00:00:00+00:00")))
    assert matches.find_one({"_id": match_id})["status"] == "agreed"   # the retraction missed: nothing written
    assert out.of_type("match.retracted") == []

    # The step's event arrives; the model learns the match was agreed and withdraws it.
    (agreed,) = in_flight.events
    sandbox.publish(agreed["type"], agreed["data"], exchange=topology.EVENTS, event=agreed)
    withdrawn = out.wait_for("match.withdrawn")[0]["data"]
    assert (withdrawn["previous_status"], withdrawn["reason"]) == ("agreed", "need withdrawn")
    assert [e["type"] for e in out.take()].count("match.agreed") == 1
    stored = matches.find_one({"_id": match_id})
    assert stored["status"] == "withdrawn" and [s["to"] for s in stored["steps"]] == ["accepted", "agreed"]
    assert out.of_type("match.retracted") == []


class Racing(MatchingRepository):
    """The repository of an instance that a second person beats to the match: right after it has read the
    match, the other one's step is stored (a decline)."""

    def _load(self, collection, document_id, what):
        document = super()._load(collection, document_id, what)
        if not getattr(self, "raced", False):
            self.raced = True
            self.db[collection].update_one({"_id": document_id}, {"$set": {"status": "declined",
                                                                             "reason": "no budget"}})
        return document


def test_a_step_is_stored_only_on_the_status_it_was_decided_on(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    match_id = proposed(sandbox, out)
    slower = Racing(sandbox.db("matching"), Held(sandbox.db("matching")), provider=None)
    with pytest.raises(IllegalMove) as refused:
        slower.move(match_id, "accepted", None, Principal("donor", "GB-GOV-1", "k1"))
    assert refused.value.current == "declined"   # decided again on what is stored now
    stored = sandbox.db("matching").matches.find_one({"_id": match_id})
    assert (stored["status"], stored["reason"], stored["steps"]) == ("declined", "no budget", [])


def test_a_match_stored_before_the_lifecycle_is_a_proposal(sandbox, start):
    old = {"_id": "m-old", "match_id": "m-old", "need_id": "KEN-9-n1", "offer_id": "GB-1-o1", "provider": "GB-GOV-1",
           "state": "KEN", "regional_group": "AFRICAN", "article": 9, "chapter": 2, "forms": ["LEGAL_ADVICE"],
           "priority": 1, "level": "bilateral", "score": 1.0, "status": "active", "reason": None,
           "explanation": {"constraints_met": [], "score_parts": {}}}
    sandbox.db("matching").matches.insert_one(old)
    start(MatchingService)
    assert get(sandbox, "/matches/m-old").json()["status"] == "proposed"
    assert moved(sandbox, "m-old", "accepted")["status"] == "accepted"
