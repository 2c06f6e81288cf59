"""Notify is at least once under one notification id: a delivery a dead worker left
``pending`` is sent when its event comes back (once the worker's lease is over), a delivery
still in flight is not sent again by a copy of its event, and a finished one is never sent again."""
import json
import threading
import time

import pytest
from prometheus_client import REGISTRY

from services.notify.service import NotifyService
from tacoord.envelope import new_event, utcnow
from tacoord.testing import free_port, wait_until
from tests.integration.test_notify_delivery import (  # noqa: F401 (receivers is a fixture)
    FAST, KENYA_MATCH, deliveries, handled, listen, publish, receivers, subscribe)
from services.notify import domain


def left_by_a_dead_worker(sandbox, subscription_id, event=None, status="pending", digest_id=None,
                          claimed_at="2026-01-01T00:00:00+00:00"):
    """The delivery a killed worker leaves: of ``event``, or of a digest ``digest_id``."""
    event_id, event_type = (event["id"], event["type"]) if event else (f"digest:{digest_id}", "digest")
    notification_id = f"{subscription_id}:{event_id}"
    sandbox.db("notify").deliveries.insert_one({
        "_id": notification_id, "notification_id": notification_id, "subscription_id": subscription_id,
        "event_id": event_id, "event_type": event_type, "channel": "webhook", "digest": event is None,
        "status": status, "attempts": 0, "last_error": None, "latency_ms": None,
        "created_at": claimed_at, "claimed_at": claimed_at, "finished_at": None})
    return notification_id


def sent_round(event_type="match.proposed"):
    """Events notify sent round its retry queue in this process (a copy waiting for a delivery in flight)."""
    return REGISTRY.get_sample_value("tacoord_notify_events_consumed_total",
                                     {"type": event_type, "outcome": "retried"}) or 0.0


@pytest.mark.parametrize("instances", [1, 2])
def test_a_copy_arriving_while_the_first_delivery_is_in_flight_is_not_sent_again(
        sandbox, start, receivers, instances):
    """The copy may reach the instance sending the first delivery or another one: either way it
    waits (round the retry queue) instead of sending, and finds the delivery finished."""
    slow = {**FAST, "TACOORD_NOTIFY_TIMEOUT": 15}  # the held answer is not a timeout
    start(NotifyService, **slow)
    for _ in range(instances - 1):
        start(NotifyService, WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}", **slow)
    answer = threading.Event()
    hook = receivers(gate=answer)
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    event = new_event("match.proposed", KENYA_MATCH, "matching")
    handled_before, round_before = handled(), sent_round()

    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)
    wait_until(lambda: hook.received, message="the first delivery in flight (the receiver holds its answer)")
    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)  # a copy, while the receiver still holds it
    wait_until(lambda: sent_round() > round_before or len(hook.received) > 1, message="the copy handled")
    assert len(hook.received) == 1

    answer.set()
    wait_until(lambda: handled() >= handled_before + 2, message="the first delivered, the copy back and done")
    assert [(d["status"], d["attempts"]) for d in deliveries(sandbox, donor["subscription_id"])] == [("delivered", 1)]
    assert len(hook.received) == 1


def test_a_delivery_whose_worker_died_moments_ago_is_sent_once_its_lease_is_over(sandbox, start, receivers):
    quick = {**FAST, "TACOORD_NOTIFY_MAX_SECONDS": 0.2, "TACOORD_NOTIFY_MAX_TRIES": 1,
             "TACOORD_NOTIFY_TIMEOUT": 0.3}  # a lease of 1 s
    start(NotifyService, **quick)
    hook = receivers()
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    event = new_event("match.proposed", KENYA_MATCH, "matching")
    claimed = time.monotonic()
    notification_id = left_by_a_dead_worker(sandbox, donor["subscription_id"], event,
                                            claimed_at=utcnow().isoformat())
    round_before = sent_round()

    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)  # the broker redelivers the dead worker's event

    wait_until(lambda: hook.received, timeout=20, message="sent again after the lease")
    assert time.monotonic() - claimed >= 1.0
    assert sent_round() > round_before  # it waited round the retry queue meanwhile
    wait_until(lambda: [d["status"] for d in deliveries(sandbox, donor["subscription_id"])] == ["delivered"],
               message="delivered")
    assert [r["headers"]["X-Tacoord-Notification-Id"] for r in hook.received] == [notification_id]


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
