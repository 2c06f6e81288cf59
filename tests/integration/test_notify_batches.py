"""Notify handles what the broker has handed over in batches: one insert for the
deliveries, one confirmed publish for the outcomes, and still one notification per
subscription and event."""
from collections import Counter

from prometheus_client import REGISTRY

from services.notify import domain
from services.notify.service import NotifyService
from tacoord.envelope import new_event
from tacoord.testing import wait_until
from tests.integration.test_notify_delivery import (  # noqa: F401 (receivers is a fixture)
    FAST, KENYA_MATCH, deliveries, listen, publish, receivers, subscribe)


def batches():
    return REGISTRY.get_sample_value("tacoord_notify_consumer_batches_total", {"queue": "notify.events"}) or 0.0


def test_a_backlog_with_copies_is_notified_once_per_subscription_and_event_in_few_batches(
        sandbox, start, receivers):
    [notify] = start(NotifyService, **FAST)
    first_hook, second_hook = receivers(), receivers()
    first = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": first_hook.url})
    second = subscribe(sandbox, "network", "AFRICAN", {"channel": "webhook", "url": second_hook.url})
    outcomes = listen(sandbox, "notification.*")
    notify.stop()  # the events pile up in notify's queue meanwhile
    events = [new_event("match.proposed", {**KENYA_MATCH, "match_id": f"match-{n}"}, "matching")
              for n in range(30)]
    for event in events + events[:5]:  # five of them twice
        publish(sandbox, "match.proposed", event["data"], event=event)
    before = batches()

    start(NotifyService, **FAST)

    wait_until(lambda: len(first_hook.received) >= 30 and len(second_hook.received) >= 30,
               message="every event notified to both subscribers")
    wait_until(lambda: sandbox.queue_depth(outcomes) >= 60, message="every outcome published")
    assert batches() - before <= len(events) // 5  # handled together (one batch here), not one by one
    for hook, subscription in ((first_hook, first), (second_hook, second)):
        ids = Counter(r["headers"]["X-Tacoord-Notification-Id"] for r in hook.received)
        assert set(ids) == {f"{subscription['subscription_id']}:{e['id']}" for e in events}
        assert set(ids.values()) == {1}
        logged = deliveries(sandbox, subscription["subscription_id"])
        assert len(logged) == 30 and {d["status"] for d in logged} == {"delivered"}
    published = sandbox.get_messages(outcomes)
    assert sorted(body["id"] for body, _ in published) == sorted(
        domain.outcome_event_id(f"{s['subscription_id']}:{e['id']}", "delivered")
        for s in (first, second) for e in events)

