"""One need walked from filing to delivered over HTTP, through needs, supply, matching and audit: two
donors are proposed for it (a duplication alert opens), one of them acknowledges, Kenya's donor accepts
and Kenya agrees (met), the other donor declines (the duplication resolves itself), then delivery starts
and ends (delivered). The matrix cell, the worklist and the alert are checked after every step."""
import requests

from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.supply.service import SupplyService
from tacoord.testing import wait_until

NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "languages": ["en"],
        "description": "Public procurement reform", "checklist_round": "2026-1"}
OFFER = {"articles": [9], "forms": ["LEGAL_ADVICE"], "capacity": 2, "period_start": "2026-01-01",
         "period_end": "2027-12-31", "languages": ["en"], "status": "active"}
GB, DE, KEN = ("donor", "GB-GOV-1"), ("donor", "DE-BMZ-1"), ("state", "KEN")
LEVELS = ("coverage", "duplicated", "status", "needs", "proposed_needs", "agreed_needs", "delivered_needs")


def call(sandbox, method, service, path, who, **kwargs):
    response = requests.request(method, sandbox.url(service, path), headers=sandbox.headers(*who), timeout=10,
                                **kwargs)
    assert response.status_code in (200, 201), response.text
    return response.json()


def kenya_cell(sandbox):
    """Kenya × article 9 as the matrix and the cell route both say it."""
    cells = call(sandbox, "GET", "matching", "/matrix", ("network", "AFRICAN"), params={"state": "KEN"})["cells"]
    cell = call(sandbox, "GET", "matching", "/matrix/cell", ("network", "AFRICAN"),
                params={"article": 9, "state": "KEN"})
    assert [c["row"] for c in cells] == [9]
    assert {k: cell[k] for k in ("status", "coverage", "duplicated")} == {k: cells[0][k] for k in
                                                                          ("status", "coverage", "duplicated")}
    return tuple(cells[0][k] for k in LEVELS)


def matrix_is(sandbox, expected, message):
    wait_until(lambda: kenya_cell(sandbox) == expected, timeout=20, message=message)


def held(sandbox, match_id, status):
    """Wait until matching's model (the matrix's source) holds the match at ``status``."""
    def in_model():
        cell = call(sandbox, "GET", "matching", "/matrix/cell", ("operator", "*"), params={"article": 9, "state": "KEN"})
        return {m["match_id"]: m["status"] for m in cell["matches"]}.get(match_id) == status
    wait_until(in_model, message=f"the model holds {match_id} as {status}")


def worklist(sandbox):
    return [(n["need_id"], n["status"]) for n in
            call(sandbox, "GET", "matching", "/worklist", KEN, params={"state": "KEN"})["needs"]]


def step(sandbox, match_id, to, who, reason=None):
    moved = call(sandbox, "POST", "matching", f"/matches/{match_id}/transitions", who,
                 json={"to": to, "reason": reason})
    assert moved["status"] == to
    return moved


def audited(sandbox, event_type):
    return sandbox.db("audit").audit.count_documents({"type": event_type})


def test_one_need_from_filing_to_delivered_with_a_duplication_opened_and_resolved(sandbox, start):
    start(NeedsService, SupplyService, MatchingService, AuditService)
    call(sandbox, "POST", "supply", "/offers", GB, json={**OFFER, "provider": "GB-GOV-1", "level": "bilateral",
                                                         "scope_states": ["KEN"]})
    call(sandbox, "POST", "supply", "/offers", DE, json={**OFFER, "provider": "DE-BMZ-1", "level": "regional",
                                                         "scope_groups": ["AFRICAN"]})
    need_id = call(sandbox, "POST", "needs", "/needs", KEN, json=NEED)["need_id"]

    # filed and proposed to both donors: not met, and duplicated
    matches = wait_until(lambda: (lambda found: len(found) == 2 and found)(call(
        sandbox, "GET", "matching", "/matches", KEN, params={"need_id": need_id})["matches"]), message="two proposals")
    by_provider = {m["provider"]: m["match_id"] for m in matches}
    assert {m["status"] for m in matches} == {"proposed"}
    matrix_is(sandbox, ("proposed", True, "duplicated", 1, 1, 0, 0), "proposed and duplicated")
    assert worklist(sandbox) == [(need_id, "proposed")]
    alerts = wait_until(lambda: call(sandbox, "GET", "matching", "/alerts", GB,
                                     params={"kind": "duplication", "state": "KEN"})["alerts"], message="the alert")
    alert, = alerts
    assert (alert["status"], alert["providers"]) == ("open", ["DE-BMZ-1", "GB-GOV-1"])
    alert_id = alert["alert_id"]

    # GB has seen the alert
    acknowledged = call(sandbox, "POST", "matching", f"/alerts/{alert_id}/acknowledge", GB,
                        json={"note": "we take it; asking BMZ to step back"})
    assert acknowledged["status"] == "acknowledged"

    # GB accepts: still only proposed in the matrix (accepted is not met)
    step(sandbox, by_provider["GB-GOV-1"], "accepted", GB)
    held(sandbox, by_provider["GB-GOV-1"], "accepted")
    matrix_is(sandbox, ("proposed", True, "duplicated", 1, 1, 0, 0), "accepted is still proposed")
    assert worklist(sandbox) == [(need_id, "proposed")]

    # Kenya agrees: met; DE's proposal still duplicates GB's commitment, the alert stays
    step(sandbox, by_provider["GB-GOV-1"], "agreed", KEN)
    matrix_is(sandbox, ("met", True, "duplicated", 1, 1, 1, 0), "agreed is met, still duplicated")
    wait_until(lambda: worklist(sandbox) == [], message="a met need leaves the worklist")
    assert call(sandbox, "GET", "matching", f"/alerts/{alert_id}", GB)["status"] == "acknowledged"

    # DE declines: the duplication's cause is gone, matching resolves the alert itself
    step(sandbox, by_provider["DE-BMZ-1"], "declined", DE, reason="GB covers Kenya; we move to article 10")
    resolved = wait_until(lambda: (lambda a: a["status"] == "resolved" and a)(
        call(sandbox, "GET", "matching", f"/alerts/{alert_id}", GB)), message="the duplication resolved")
    assert (resolved["resolved"]["resolution"], resolved["resolved"]["automatic"]) == ("cause_gone", True)
    assert resolved["resolved"]["reason"] == \
        "DE-BMZ-1 no longer matched to KEN × article 9 × LEGAL_ADVICE; only GB-GOV-1 remains"
    assert resolved["acknowledged"]["by"] == "donor:GB-GOV-1"
    matrix_is(sandbox, ("met", False, "met", 1, 1, 1, 0), "met, no longer duplicated")

    # delivery: in delivery is still met, then delivered
    step(sandbox, by_provider["GB-GOV-1"], "in_delivery", GB)
    held(sandbox, by_provider["GB-GOV-1"], "in_delivery")
    matrix_is(sandbox, ("met", False, "met", 1, 1, 1, 0), "in delivery is met")
    delivered = step(sandbox, by_provider["GB-GOV-1"], "delivered", KEN)
    assert [s["to"] for s in delivered["steps"]] == ["accepted", "agreed", "in_delivery", "delivered"]
    matrix_is(sandbox, ("delivered", False, "delivered", 1, 1, 1, 1), "delivered")
    assert worklist(sandbox) == []
    assert call(sandbox, "GET", "matching", "/matches", KEN, params={"need_id": need_id, "status": "declined"}
                )["matches"][0]["reason"] == "GB covers Kenya; we move to article 10"

    # every step is in the audit log, with who took it
    wait_until(lambda: [audited(sandbox, t) for t in (
        "match.proposed", "duplication.detected", "alert.acknowledged", "match.accepted", "match.agreed",
        "match.declined", "alert.resolved", "match.delivery_started", "match.delivered")] == [2] + [1] * 8,
        message="the walk audited")
    history = call(sandbox, "GET", "audit", f"/audit/entities/duplication/{alert_id}", GB)["records"]
    assert [(r["type"], r["actor"]) for r in history] == [
        ("duplication.detected", "service:matching"), ("alert.acknowledged", "donor:GB-GOV-1"),
        ("alert.resolved", "service:matching")]
