"""Notify is at least once under one notification id: a delivery a dead worker left
``pending`` is sent when its event comes back, and a finished one is never sent again."""
import json

from services.notify.service import NotifyService
from tacoord.envelope import new_event
from tacoord.testing import wait_until
from tests.integration.test_notify_delivery import (  # noqa: F401 (receivers is a fixture)
    FAST, KENYA_MATCH, deliveries, handled, listen, publish, receivers, subscribe)
from services.notify import domain


def left_by_a_dead_worker(sandbox, subscription_id, event=None, status="pending", digest_id=None):
    """The delivery a killed worker leaves: of ``event``, or of a digest ``digest_id``."""
    event_id, event_type = (event["id"], event["type"]) if event else (f"digest:{digest_id}", "digest")
    notification_id = f"{subscription_id}:{event_id}"
    sandbox.db("notify").deliveries.insert_one({
        "_id": notification_id, "notification_id": notification_id, "subscription_id": subscription_id,
        "event_id": event_id, "event_type": event_type, "channel": "webhook", "digest": event is None,
        "status": status, "attempts": 0, "last_error": None, "latency_ms": None,
        "created_at": "2026-01-01T00:00:00+00:00", "finished_at": None})
    return notification_id


def test_a_delivery_a_crashed_worker_left_pending_is_sent_once_under_the_same_id(sandbox, start, receivers):
    start(NotifyService, **FAST)
    hook = receivers()
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    event = new_event("match.proposed", KENYA_MATCH, "matching")
    notification_id = left_by_a_dead_worker(sandbox, donor["subscription_id"], event)

    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)  # the broker redelivers the event

    logged = wait_until(lambda: [d for d in deliveries(sandbox, donor["subscription_id"])
                                 if d["status"] != "pending"], message="delivery finished")
    assert [(d["notification_id"], d["status"]) for d in logged] == [(notification_id, "delivered")]
    assert [r["headers"]["X-Tacoord-Notification-Id"] for r in hook.received] == [notification_id]


def test_a_finished_delivery_is_not_sent_again_when_its_event_comes_back(sandbox, start, receivers):
    start(NotifyService, **FAST)
    hook = receivers()
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    event = new_event("match.proposed", KENYA_MATCH, "matching")
    left_by_a_dead_worker(sandbox, donor["subscription_id"], event, status="delivered")

    before = handled()
    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)

    wait_until(lambda: handled() >= before + 1, message="event handled")
    assert hook.received == []


def test_a_resent_notification_publishes_its_outcome_under_the_same_event_id(sandbox, start, receivers):
    # a worker died after publishing notification.delivered and before storing the outcome:
    # the resend publishes the same event id again, which the audit log and others skip
    start(NotifyService, **FAST)
    hook = receivers()
    outcomes = listen(sandbox, "notification.*")
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    event = new_event("match.proposed", KENYA_MATCH, "matching")
    notification_id = left_by_a_dead_worker(sandbox, donor["subscription_id"], event)

    before = handled()
    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)
    wait_until(lambda: handled() >= before + 1, message="event handled")
    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)  # redelivered once more: nothing new
    wait_until(lambda: handled() >= before + 2, message="copy handled")

    [(body, _)] = sandbox.get_messages(outcomes)
    assert body["type"] == "notification.delivered"
    assert body["id"] == domain.outcome_event_id(notification_id, "delivered")
    assert body["causation_id"] == event["id"] and body["data"]["notification_id"] == notification_id
    assert len(hook.received) == 1


def test_a_digest_a_dead_worker_left_pending_is_sent_again_under_its_id_and_an_empty_one_dropped(
        sandbox, start, receivers):
    quick = {**FAST, "TACOORD_NOTIFY_DIGEST_SECONDS": 1, "TACOORD_NOTIFY_MAX_SECONDS": 0.2,
             "TACOORD_NOTIFY_MAX_TRIES": 1, "TACOORD_NOTIFY_TIMEOUT": 0.3}  # stale after 1 s
    start(NotifyService, **quick)
    hook = receivers()
    sub = subscribe(sandbox, "state", "KEN", {"channel": "webhook", "url": hook.url, "digest": True})
    event = new_event("match.proposed", KENYA_MATCH, "matching")
    db = sandbox.db("notify")
    # what a worker killed after claim_digest leaves
    claimed, empty = (left_by_a_dead_worker(sandbox, sub["subscription_id"], digest_id=name)
                      for name in ("dead0001", "dead0002"))
    db.digest_items.insert_one({"_id": f"{sub['subscription_id']}:{event['id']}", "subscription_id": sub["subscription_id"],
                                "event": event, "digest_id": claimed, "queued_at": "2026-01-01T00:00:00+00:00"})

    wait_until(lambda: hook.received, timeout=10, message="the digest sent again")
    wait_until(lambda: db.deliveries.find_one({"_id": empty}) is None, message="the empty one dropped")
    [sent] = hook.received
    assert sent["headers"]["X-Tacoord-Notification-Id"] == claimed
    assert [e["id"] for e in json.loads(sent["body"])["events"]] == [event["id"]]
    assert db.deliveries.find_one({"_id": claimed})["status"] == "delivered"
