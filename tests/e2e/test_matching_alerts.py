"""Needs filed on ingress flow through the needs service into matching: duplications and gaps."""
import time

import requests
from prometheus_client import REGISTRY

from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from tacoord.testing import wait_until
from tests.integration.test_matching_service import Collector, emit, get, offer_data

KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
              "description": "Public procurement reform", "checklist_round": "2026-1", "languages": ["en"]}


def test_two_donors_committed_to_the_same_need_raise_one_duplication_alert(sandbox, start):
    start(NeedsService, MatchingService, AuditService)
    out = Collector(sandbox, "match.*", "duplication.*")
    filed = sandbox.publish("need.submitted", KENYA_NEED)
    emit(sandbox, "offer.published", offer_data(offer_id="GB-1-o1", provider="GB-GOV-1"), source="supply")
    stored = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")
    out.wait_for("match.proposed")
    second = emit(sandbox, "offer.published", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1", level="regional",
                                                         scope_states=(), scope_groups=("AFRICAN",)), source="supply")
    emit(sandbox, "offer.updated", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1", level="regional",
                                              scope_states=(), scope_groups=("AFRICAN",), capacity=5),
         source="supply")

    out.wait_for("match.proposed", count=2)
    alert = out.wait_for("duplication.detected")[0]
    assert alert["data"]["providers"] == ["DE-BMZ-1", "GB-GOV-1"]
    assert alert["data"]["offer_ids"] == ["DE-1-o1", "GB-1-o1"]
    assert (alert["data"]["state"], alert["data"]["article"], alert["data"]["form"]) == ("KEN", 9, "LEGAL_ADVICE")
    assert alert["causation_id"] == second["id"]
    assert {m["data"]["need_id"] for m in out.of_type("match.proposed")} == {stored["need_id"]}
    time.sleep(1)
    assert len(out.of_type("duplication.detected")) == 1

    cell = get(sandbox, "/matrix", state="KEN").json()["cells"][0]
    assert cell["status"] == "duplicated" and cell["offers"] == 2
    assert get(sandbox, "/alerts", kind="duplication").json()["count"] == 1
    audited = wait_until(lambda: sandbox.db("audit").audit.find_one({"type": "duplication.detected"}),
                         message="audited duplication")
    assert audited["source"] == "matching"


def test_an_unmatched_priority_need_and_an_unsupplied_article_raise_gap_alerts_once(sandbox, start):
    start(NeedsService, MatchingService, TACOORD_GAP_AFTER_SECONDS=1)
    counted_before = {kind: gaps_counted(kind) for kind in ("unmatched_priority_need", "no_supply")}
    out = Collector(sandbox, "gap.*")
    sandbox.publish("need.submitted", KENYA_NEED)
    stored = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")

    gaps = wait_until(lambda: len(out.of_type("gap.detected")) >= 2 and out.of_type("gap.detected"),
                      message="two gaps")
    by_kind = {g["data"]["kind"]: g for g in gaps}
    assert by_kind["unmatched_priority_need"]["data"]["need_id"] == stored["need_id"]
    assert by_kind["no_supply"]["data"] == {**by_kind["no_supply"]["data"], "article": 9,
                                            "regional_group": "AFRICAN", "need_id": None}
    need_event = by_kind["unmatched_priority_need"]
    assert need_event["correlation_id"] is not None and need_event["causation_id"] is not None
    time.sleep(1.5)
    assert len(out.of_type("gap.detected")) == 2
    assert get(sandbox, "/alerts", kind="gap").json()["count"] == 2
    assert {kind: gaps_counted(kind) - before for kind, before in counted_before.items()} == {
        "unmatched_priority_need": 1, "no_supply": 1}


def gaps_counted(kind):
    """What operators see: the counter behind infra/alerts.yml's 'gaps keep rising' rule."""
    return REGISTRY.get_sample_value("tacoord_matching_gaps_detected_total", {"kind": kind}) or 0.0


def test_a_duplication_acknowledged_then_resolved_is_audited_with_who_and_why(sandbox, start):
    start(NeedsService, MatchingService, AuditService)
    out = Collector(sandbox, "duplication.*", "alert.*")
    sandbox.publish("need.submitted", KENYA_NEED)
    emit(sandbox, "offer.published", offer_data(offer_id="GB-1-o1", provider="GB-GOV-1"), source="supply")
    emit(sandbox, "offer.published", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1"), source="supply")
    alert_id = out.wait_for("duplication.detected")[0]["data"]["duplication_id"]

    def step(name, body, role, subject):
        response = requests.post(sandbox.url("matching", f"/alerts/{alert_id}/{name}"), json=body, timeout=10,
                                 headers=sandbox.headers(role, subject))
        assert response.status_code == 200, response.text
        return response.json()

    step("acknowledge", {"note": "we will call BMZ"}, "donor", "GB-GOV-1")
    step("resolve", {"resolution": "provider_withdrew", "note": "BMZ moves to article 10"}, "operator", "*")
    out.wait_for("alert.resolved")

    history = wait_until(lambda: (lambda records: len(records) == 3 and records)(requests.get(
        sandbox.url("audit", f"/audit/entities/duplication/{alert_id}"), timeout=10,
        headers=sandbox.headers("donor", "GB-GOV-1")).json()["records"]), message="three audited steps")
    by_type = {r["type"]: r for r in history}
    assert set(by_type) == {"duplication.detected", "alert.acknowledged", "alert.resolved"}
    assert by_type["alert.acknowledged"]["actor"] == "donor:GB-GOV-1"
    assert by_type["alert.acknowledged"]["event"]["data"]["reason"] == "we will call BMZ"
    resolved = by_type["alert.resolved"]
    assert resolved["actor"] == "operator:*" and resolved["source"] == "matching"
    assert resolved["event"]["data"]["reason"] == "one provider withdrew: BMZ moves to article 10"
    assert get(sandbox, "/alerts", status="resolved", provider="DE-BMZ-1").json()["count"] == 1
