"""Alerts people can close, against the real broker and database: each step and each illegal move,
the alerts closing themselves when their cause goes, and GET /alerts's filters."""
import time

import requests

from services.matching.service import MatchingService
from tacoord.testing import free_port, wait_until
from tests.integration.test_matching_service import Collector, emit, get, need_data, offer_data

GB = dict(offer_id="GB-1-o1", provider="GB-GOV-1", period_start="2026-01-01", period_end="2027-12-31")
DE = dict(offer_id="DE-1-o1", provider="DE-BMZ-1", level="regional", scope_states=(), scope_groups=("AFRICAN",),
          period_start="2026-06-01", period_end="2028-06-30")


def post(sandbox, path, body=None, role="operator", subject="*"):
    return requests.post(sandbox.url("matching", path), json=body, timeout=10, headers=sandbox.headers(role, subject))


def duplicated(sandbox, out):
    """KEN × 9 × LEGAL_ADVICE covered by GB and DE: the duplication alert (its event)."""
    emit(sandbox, "offer.published", offer_data(**GB))
    emit(sandbox, "need.submitted", need_data())
    out.wait_for("match.proposed")
    emit(sandbox, "offer.published", offer_data(**DE))
    return out.wait_for("duplication.detected")[0]


def consumed(sandbox, event):
    """Matching's own queue has consumed an event (its model learnt of it)."""
    return wait_until(lambda: sandbox.db("matching").processed_events.find_one(
        {"_id": f"matching.events:{event['id']}", "state": "done"}), message=f"{event['type']} consumed")


def test_a_duplication_alert_names_every_provider_its_offers_and_the_overlapping_period(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*", "duplication.*")
    data = duplicated(sandbox, out)["data"]
    assert data["providers"] == ["DE-BMZ-1", "GB-GOV-1"] and data["form"] == "LEGAL_ADVICE"
    assert data["regional_group"] == "AFRICAN"
    assert [(o["offer_id"], o["provider"], o["level"], o["forms"]) for o in data["offers"]] == [
        ("DE-1-o1", "DE-BMZ-1", "regional", ["LEGAL_ADVICE"]), ("GB-1-o1", "GB-GOV-1", "bilateral", ["LEGAL_ADVICE"])]
    assert data["period"] == {"start": "2026-06-01", "end": "2027-12-31"}

    alert = get(sandbox, f"/alerts/{data['duplication_id']}").json()
    assert alert["alert_id"] == data["duplication_id"] and alert["status"] == "open"
    assert {k: alert[k] for k in data} == data


def test_acknowledging_then_resolving_a_duplication_with_each_illegal_move_refused(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*", "duplication.*", "alert.*")
    alert_id = duplicated(sandbox, out)["data"]["duplication_id"]
    path = f"/alerts/{alert_id}"

    stranger = post(sandbox, path + "/acknowledge", {"note": "seen"}, role="donor", subject="US-GOV-1")
    assert stranger.status_code == 403
    assert "donor:US-GOV-1 may not act on duplication alert" in stranger.json()["error"]
    assert "DE-BMZ-1, GB-GOV-1" in stranger.json()["error"]
    assert post(sandbox, path + "/acknowledge", role="state", subject="KEN").status_code == 403

    acknowledged = post(sandbox, path + "/acknowledge", {"note": "talking to BMZ"}, role="donor", subject="GB-GOV-1")
    assert acknowledged.status_code == 200, acknowledged.text
    body = acknowledged.json()
    assert body["status"] == "acknowledged" and body["acknowledged"]["by"] == "donor:GB-GOV-1"
    assert body["acknowledged"]["note"] == "talking to BMZ"
    step = out.wait_for("alert.acknowledged")[0]
    assert step["actor"] == "donor:GB-GOV-1" and step["source"] == "matching"
    assert (step["data"]["alert_id"], step["data"]["actor"], step["data"]["reason"]) == (
        alert_id, "donor:GB-GOV-1", "talking to BMZ")

    again = post(sandbox, path + "/acknowledge")
    assert again.status_code == 409
    assert again.json()["error"] == (f"cannot acknowledge alert {alert_id}: it is 'acknowledged'; "
                                     "allowed from 'acknowledged': resolve")
    unknown = post(sandbox, path + "/resolve", {"resolution": "settled"})
    assert unknown.status_code == 422 and set(unknown.json()["fields"]) == {"resolution"}
    assert "work_split" in unknown.json()["fields"]["resolution"][0]
    bare_other = post(sandbox, path + "/resolve", {"resolution": "other"})
    assert bare_other.status_code == 422 and set(bare_other.json()["fields"]) == {"note"}
    assert post(sandbox, path + "/resolve", {"note": "x"}).json()["fields"] == {
        "resolution": ["Missing data for required field."]}

    resolved = post(sandbox, path + "/resolve", {"resolution": "work_split", "note": "GB drafts, DE trains"},
                    role="donor", subject="DE-BMZ-1")
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved"] == {
        "by": "donor:DE-BMZ-1", "at": resolved.json()["resolved"]["at"], "resolution": "work_split",
        "note": "GB drafts, DE trains", "reason": "the providers agreed to split the work: GB drafts, DE trains",
        "automatic": False}
    assert resolved.json()["acknowledged"]["by"] == "donor:GB-GOV-1"
    step = out.wait_for("alert.resolved")[0]
    assert step["data"]["resolution"] == "work_split" and step["data"]["automatic"] is False
    assert step["data"]["reason"] == "the providers agreed to split the work: GB drafts, DE trains"

    final = post(sandbox, path + "/resolve", {"resolution": "not_a_duplication"})
    assert final.status_code == 409 and final.json()["error"].endswith("allowed from 'resolved': none "
                                                                         "('resolved' is final)")
    assert post(sandbox, "/alerts/dup-nothing/acknowledge").status_code == 404

    # the model learnt of the step from the event: the same offers are not reported again
    consumed(sandbox, step)
    emit(sandbox, "offer.updated", offer_data(**{**DE, "capacity": 9}, updated_at="2026-11-02T00:00:00+00:00"))
    wait_until(lambda: sandbox.db("matching").offers_view.find_one({"_id": "DE-1-o1", "capacity": 9}),
               message="offer updated")
    time.sleep(0.5)
    assert len(out.of_type("duplication.detected")) == 1
    assert get(sandbox, path).json()["status"] == "resolved"


def test_a_duplication_resolves_itself_when_a_duplicating_offer_is_withdrawn(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*", "duplication.*", "alert.*")
    alert_id = duplicated(sandbox, out)["data"]["duplication_id"]
    assert post(sandbox, f"/alerts/{alert_id}/acknowledge", {"note": "looking"}).status_code == 200

    withdrawn = emit(sandbox, "offer.withdrawn", offer_data(**DE, status="withdrawn",
                                                            updated_at="2026-11-03T00:00:00+00:00"))
    step = wait_until(lambda: [e for e in out.of_type("alert.resolved") if e["data"]["automatic"]],
                      message="resolved by matching")[0]
    assert step["causation_id"] == withdrawn["id"] and step["actor"] == "service:matching"
    assert step["data"]["resolution"] == "cause_gone"
    assert step["data"]["reason"] == ("DE-BMZ-1 no longer matched to KEN × article 9 × LEGAL_ADVICE; "
                                      "only GB-GOV-1 remains")
    stored = get(sandbox, f"/alerts/{alert_id}").json()
    assert stored["status"] == "resolved" and stored["resolved"]["automatic"] is True
    assert stored["acknowledged"]["note"] == "looking"  # what the person said is kept

    # DE commits again with a new offer: a new alert, the closed one stays closed
    emit(sandbox, "offer.published", offer_data(**{**DE, "offer_id": "DE-1-o2"}))
    second = out.wait_for("duplication.detected", count=2)[-1]
    assert second["data"]["duplication_id"] != alert_id and second["data"]["offer_ids"] == ["DE-1-o2", "GB-1-o1"]


def test_matching_never_overwrites_a_resolution_a_person_stored_first(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*", "duplication.*", "alert.*")
    alert_id = duplicated(sandbox, out)["data"]["duplication_id"]
    # another instance stored a person's resolution; its event has not reached this model yet
    person = {"by": "operator:*", "at": "2026-11-02T00:00:00+00:00", "resolution": "not_a_duplication",
              "note": None, "reason": "not a duplication", "automatic": False}
    sandbox.db("matching").alerts.update_one({"_id": alert_id}, {"$set": {"status": "resolved", "resolved": person}})

    emit(sandbox, "offer.withdrawn", offer_data(**DE, status="withdrawn", updated_at="2026-11-03T00:00:00+00:00"))
    out.wait_for("match.retracted")
    wait_until(lambda: sandbox.queue_depth("matching.events") == 0, message="withdrawal consumed")
    time.sleep(0.5)
    assert out.of_type("alert.resolved") == []
    stored = sandbox.db("matching").alerts.find_one({"_id": alert_id})
    assert stored["resolved"] == person and stored["_outbox_pending"] == 0


def test_gaps_are_detected_on_request_and_resolve_themselves_when_matched(sandbox, start):
    start(MatchingService, TACOORD_GAP_AFTER_SECONDS=1, TACOORD_GAP_SWEEP_SECONDS=3600)
    out = Collector(sandbox, "gap.*", "alert.*", "match.*")
    emit(sandbox, "need.submitted", need_data())
    wait_until(lambda: sandbox.db("matching").needs_view.find_one({"_id": "KEN-9-n1"}), message="need")
    time.sleep(1.2)
    assert post(sandbox, "/gaps/detect", role="donor", subject="GB-GOV-1").status_code == 403

    detected = post(sandbox, "/gaps/detect")
    assert detected.status_code == 200, detected.text
    body = detected.json()
    assert body["gap_after_seconds"] == 1
    assert sorted(g["kind"] for g in body["detected"]) == ["no_supply", "unmatched_priority_need"]
    assert body["count"] == 2 and {g["status"] for g in body["gaps"]} == {"open"}
    assert len(out.wait_for("gap.detected", count=2)) == 2
    assert post(sandbox, "/gaps/detect").json()["detected"] == []   # once each
    unmatched = next(g for g in body["gaps"] if g["kind"] == "unmatched_priority_need")
    assert get(sandbox, "/worklist").json()["needs"][0]["open_gap"] == unmatched["alert_id"]

    # the State may acknowledge the gap of its own need, another State may not
    assert post(sandbox, f"/alerts/{unmatched['alert_id']}/acknowledge", role="state", subject="UGA").status_code \
        == 403
    assert post(sandbox, f"/alerts/{unmatched['alert_id']}/acknowledge", role="state", subject="KEN").status_code \
        == 200
    no_supply = next(g for g in body["gaps"] if g["kind"] == "no_supply")
    refused = post(sandbox, f"/alerts/{no_supply['alert_id']}/acknowledge", role="state", subject="KEN")
    assert refused.status_code == 403 and "only an operator" in refused.json()["error"]

    emit(sandbox, "offer.published", offer_data())
    match = out.wait_for("match.proposed")[0]
    closed = wait_until(lambda: len(out.of_type("alert.resolved")) >= 2 and out.of_type("alert.resolved"),
                        message="both gaps resolved")
    reasons = {e["data"]["gap_kind"]: e["data"]["reason"] for e in closed}
    assert reasons == {"unmatched_priority_need": f"the need was matched ({match['data']['match_id']})",
                       "no_supply": "offers or experts reach article 9 in AFRICAN again"}
    assert {e["data"]["resolution"] for e in closed} == {"cause_gone"}
    assert get(sandbox, "/alerts", kind="gap", status="resolved").json()["count"] == 2
    assert get(sandbox, "/alerts", kind="gap", status="open").json()["count"] == 0


def test_alerts_are_listed_by_status_state_article_provider_and_kind(sandbox, start):
    start(MatchingService, TACOORD_GAP_AFTER_SECONDS=1, TACOORD_GAP_SWEEP_SECONDS=3600)
    out = Collector(sandbox, "match.*", "duplication.*", "gap.*")
    dup_id = duplicated(sandbox, out)["data"]["duplication_id"]
    emit(sandbox, "need.submitted", need_data(need_id="MEX-5-n1", state="MEX", group="GRULAC", article=5, chapter=2))
    wait_until(lambda: sandbox.db("matching").needs_view.find_one({"_id": "MEX-5-n1"}), message="need")
    time.sleep(1.2)
    post(sandbox, "/gaps/detect")
    assert post(sandbox, f"/alerts/{dup_id}/acknowledge").status_code == 200

    def ids(**params):
        response = get(sandbox, "/alerts", **params)
        assert response.status_code == 200, response.text
        return sorted((a["alert"], a.get("kind"), a["state"]) for a in response.json()["alerts"])

    assert ids() == [("duplication", None, "KEN"), ("gap", "no_supply", None),
                     ("gap", "unmatched_priority_need", "MEX")]
    assert ids(kind="duplication") == ids(provider="DE-BMZ-1") == ids(status="acknowledged") == \
        ids(state="KEN") == ids(article=9) == [("duplication", None, "KEN")]
    assert ids(status="open") == ids(kind="gap") == ids(article=5) == [("gap", "no_supply", None),
                                                                          ("gap", "unmatched_priority_need", "MEX")]
    assert ids(state="MEX", kind="gap") == [("gap", "unmatched_priority_need", "MEX")]
    assert ids(provider="US-GOV-1") == [] and ids(status="resolved") == []
    bad = get(sandbox, "/alerts", status="closed", state="XXX", provider="nobody")
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"status", "state", "provider"}


def test_a_second_instance_raising_a_gap_again_never_reopens_what_a_person_acknowledged(sandbox, start):
    settings = dict(TACOORD_GAP_AFTER_SECONDS=1, TACOORD_GAP_SWEEP_SECONDS=3600)
    start(MatchingService, **settings)
    emit(sandbox, "need.submitted", need_data(priority=2))   # a no_supply gap only
    wait_until(lambda: sandbox.db("matching").needs_view.find_one({"_id": "KEN-9-n1"}), message="need")
    port = free_port()
    start(MatchingService, WEB_SERVER_ADDRESS=f"127.0.0.1:{port}", **settings)   # loads the need, no gap yet
    time.sleep(1.2)
    gap, = post(sandbox, "/gaps/detect").json()["detected"]
    assert post(sandbox, f"/alerts/{gap['alert_id']}/acknowledge", {"note": "asking donors"}).status_code == 200

    other = requests.post(f"http://127.0.0.1:{port}/gaps/detect", timeout=10, headers=sandbox.headers("operator"))
    assert [g["alert_id"] for g in other.json()["detected"]] == [gap["alert_id"]]   # its model had not seen it
    stored = get(sandbox, f"/alerts/{gap['alert_id']}").json()
    assert stored["status"] == "acknowledged" and stored["acknowledged"]["note"] == "asking donors"
