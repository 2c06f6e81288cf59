"""Partners file, update and withdraw needs on tacoord.ingress (real broker and database)."""
from services.needs import domain
from services.needs.service import NeedsService
from tacoord.envelope import new_event
from tacoord.testing import consumed, wait_until
from tests.integration.needs_helpers import KENYA_NEED, collect, emitted, tap

NEED_ID = domain.need_id("KEN", 9, KENYA_NEED["forms"])


def stored(sandbox):
    return sandbox.db("needs").needs.find_one({"_id": NEED_ID})


def processed(sandbox, event):
    """Handled and recorded done (a claim is stored as 'processing' before its handler runs)."""
    return sandbox.db("needs").processed_events.find_one({"_id": f"needs.ingress:{event['id']}",
                                                           "state": "done"})


def test_a_partner_files_updates_and_withdraws_a_need(sandbox, start):
    events = tap(sandbox)
    start(NeedsService)
    submitted = sandbox.publish("need.submitted", KENYA_NEED)
    wait_until(lambda: stored(sandbox), message="stored need")
    updated = sandbox.publish("need.updated", {"need_id": NEED_ID, "priority": 3, "status": "in_progress"})
    wait_until(lambda: stored(sandbox)["status"] == "in_progress", message="updated need")
    sandbox.publish("need.withdrawn", {"need_id": NEED_ID, "reason": "met by another programme"})
    need = wait_until(lambda: (stored(sandbox) or {}).get("status") == "withdrawn" and stored(sandbox),
                      message="withdrawn need")
    assert need["priority"] == 3 and need["withdrawal_reason"] == "met by another programme"
    out = collect(sandbox, events, 3)
    assert [e["type"] for e in out] == ["need.submitted", "need.updated", "need.withdrawn"]
    assert out[0]["causation_id"] == submitted["id"] and out[1]["causation_id"] == updated["id"]
    assert {e["actor"] for e in out} == {"partner:tacoord"}
    assert out[1]["data"]["priority"] == 3


def test_the_same_ingress_envelope_delivered_twice_is_one_need_and_one_event(sandbox, start):
    events = tap(sandbox)
    containers = start(NeedsService)
    duplicates = consumed("needs", "duplicate")
    envelope = new_event("need.submitted", KENYA_NEED, "partner-system")
    sandbox.publish("need.submitted", None, event=envelope)
    sandbox.publish("need.submitted", None, event=envelope)
    # acked as a duplicate only once the inbox has the envelope's id done (a copy that finds it
    # still claimed goes round the retry queue, which a ready-only queue depth does not see)
    wait_until(lambda: consumed("needs", "duplicate") - duplicates == 1, message="the copy skipped as done")
    assert sandbox.left_after_stopping(containers, "needs.ingress", "needs.ingress.retry") == 0
    seen = collect(sandbox, events, 1)
    assert sandbox.db("needs").needs.count_documents({}) == 1
    assert [e["type"] for e in seen] == ["need.submitted"]
    assert sandbox.queue_depth("tacoord.dead-letters") == 0


def test_the_same_need_filed_again_in_a_new_envelope_causes_no_second_event(sandbox, start):
    events = tap(sandbox)
    start(NeedsService)
    first = sandbox.publish("need.submitted", KENYA_NEED)
    second = sandbox.publish("need.submitted", dict(KENYA_NEED))
    wait_until(lambda: processed(sandbox, first) and processed(sandbox, second), message="both processed")
    assert [e["type"] for e in emitted(sandbox, events)] == ["need.submitted"]


def test_updating_a_need_that_does_not_exist_is_dead_lettered(sandbox, start):
    start(NeedsService)
    sandbox.publish("need.updated", {"need_id": "KEN-9-0000000000", "priority": 2})
    wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 1, message="dead letter")
    [(_, headers)] = sandbox.get_messages("tacoord.dead-letters")
    assert "no need 'KEN-9-0000000000'" in headers["x-tacoord-reason"]
    assert headers["x-tacoord-kind"] == "rejected"


def test_an_illegal_transition_on_ingress_is_dead_lettered_not_retried(sandbox, start):
    start(NeedsService)
    sandbox.publish("need.submitted", KENYA_NEED)
    wait_until(lambda: stored(sandbox), message="stored need")
    sandbox.publish("need.updated", {"need_id": NEED_ID, "status": "met"})
    wait_until(lambda: stored(sandbox)["status"] == "met", message="met")
    sandbox.publish("need.updated", {"need_id": NEED_ID, "status": "open"})
    wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 1, message="dead letter")
    [(_, headers)] = sandbox.get_messages("tacoord.dead-letters")
    assert "cannot become open" in headers["x-tacoord-reason"]
    assert headers.get("x-tacoord-attempt") is None
