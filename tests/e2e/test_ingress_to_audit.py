"""A partner's need.submitted on the ingress exchange ends as an audit record."""
import requests

from services.audit.service import AuditService
from services.needs.service import NeedsService
from tacoord.testing import wait_until

KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE", "CAPACITY_BUILDING"],
              "priority": 1, "description": "Public procurement reform", "checklist_round": "2026-1"}


def entity_history(sandbox, entity, role="operator", subject="*"):
    return requests.get(sandbox.url("audit", f"/audit/entities/{entity}"),
                        headers=sandbox.headers(role, subject), timeout=5)


def audit_history(sandbox, entity):
    response = entity_history(sandbox, entity)
    assert response.status_code == 200, response.text
    return response.json()["records"]


def with_kinds(records, *kinds):
    """The records once every one of ``kinds`` is among them, else None."""
    return records if set(kinds) <= {r["kind"] for r in records} else None


def test_a_need_submitted_on_ingress_ends_as_an_audit_record(sandbox, start):
    start(AuditService, NeedsService)
    sent = sandbox.publish("need.submitted", KENYA_NEED)

    stored = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")
    records = wait_until(lambda: audit_history(sandbox, f"need/{stored['need_id']}"), message="audit record")

    assert [r["type"] for r in records] == ["need.submitted"]
    record = records[0]
    assert record["causation_id"] == sent["id"]
    assert record["source"] == "needs"
    assert record["actor"] == "partner:tacoord"
    assert record["event"]["data"]["regional_group"] == "AFRICAN"
    assert record["event"]["data"]["forms"] == ["CAPACITY_BUILDING", "LEGAL_ADVICE"]


def test_a_malformed_ingress_message_is_dead_lettered_and_audited(sandbox, start):
    start(AuditService, NeedsService)
    sandbox.publish("need.submitted", {**KENYA_NEED, "state": "XXX", "article": 99})

    rejections = wait_until(lambda: requests.get(
        sandbox.url("audit", "/audit/rejections"), headers=sandbox.headers("operator"),
        timeout=5).json()["records"], message="rejection record")

    reason = rejections[0]["reason"]
    assert "data.state: unknown State 'XXX'" in reason
    assert "data.article" in reason
    assert sandbox.queue_depth("tacoord.dead-letters") == 1
    assert sandbox.db("needs").needs.count_documents({}) == 0


def test_dead_letters_in_an_entity_history_are_shown_to_operators_only(sandbox, start):
    start(AuditService, NeedsService)
    sandbox.publish("need.submitted", KENYA_NEED)
    stored = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")
    sandbox.publish("need.withdrawn", {"need_id": stored["need_id"], "reason": "done", "unexpected": 1})
    # Both records, whichever consumer recorded its own first (events and dead letters come on
    # two queues): the history is in the order things happened, the submission then the rejection.
    history = wait_until(lambda: with_kinds(audit_history(sandbox, f"need/{stored['need_id']}"), "event", "rejection"),
                         message="the event and the rejection in the need's history")
    assert [r["kind"] for r in history] == ["event", "rejection"]
    assert history[0]["occurred_at"] < history[1]["occurred_at"]
    dead_letter = next(e for e in history[1]["entities"] if e.startswith("message:"))

    seen_by_state = entity_history(sandbox, f"need/{stored['need_id']}", "state", "KEN")
    assert seen_by_state.status_code == 200
    assert [r["type"] for r in seen_by_state.json()["records"]] == ["need.submitted"]
    refused = entity_history(sandbox, dead_letter.replace(":", "/", 1), "donor", "GB-GOV-1")
    assert refused.status_code == 403 and "for operators" in refused.json()["error"]
    assert entity_history(sandbox, dead_letter.replace(":", "/", 1)).json()["count"] == 1
