"""A partner's need.submitted on the ingress exchange ends as an audit record."""
import requests

from services.audit.service import AuditService
from services.needs.service import NeedsService
from tacoord import envelope
from tacoord.testing import admin_auth, wait_until

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


def test_a_partners_own_actor_and_every_step_s_changes_and_reasons_are_kept_in_the_need_s_history(sandbox, start):
    start(AuditService, NeedsService)
    partner = f"partner:{admin_auth()[0]}"   # the broker user sandbox.publish sends as
    sent = envelope.new_event("need.submitted", KENYA_NEED, "anything", actor=f"{partner}/officer-12")
    sandbox.publish("need.submitted", KENYA_NEED, event=sent)
    stored = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")
    need = f"need/{stored['need_id']}"
    sandbox.publish("need.updated", {"need_id": stored["need_id"], "priority": 2},
                    event=envelope.new_event("need.updated", {"need_id": stored["need_id"], "priority": 2},
                                             "x", actor="partner:someone-else/officer-9"))  # not this partner's
    wait_until(lambda: len(audit_history(sandbox, need)) == 2, message="the update recorded")
    sandbox.publish("need.withdrawn", {"need_id": stored["need_id"], "reason": "covered by the national budget"},
                    event=envelope.new_event("need.withdrawn", {"need_id": stored["need_id"],
                                                                "reason": "covered by the national budget"},
                                             "x", actor=f"{partner}/officer-12"))

    records = wait_until(lambda: (lambda r: len(r) == 3 and r)(audit_history(sandbox, need)),
                         message="three records")
    assert [(r["type"], r["source"], r["actor"]) for r in records] == [
        ("need.submitted", "needs", f"{partner}/officer-12"),
        ("need.updated", "needs", partner),                       # a claim outside its prefix: the partner
        ("need.withdrawn", "needs", f"{partner}/officer-12")]
    assert records[0]["changes"] is None
    assert records[1]["changes"] == [{"field": "priority", "old": 1, "new": 2}]
    assert records[2]["changes"] == [{"field": "status", "old": "open", "new": "withdrawn"},
                                     {"field": "withdrawal_reason", "old": None,
                                      "new": "covered by the national budget"}]
    assert records[2]["event"]["data"]["withdrawal_reason"] == "covered by the national budget"
