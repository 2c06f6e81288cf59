"""Two instances of needs, supply, requests and notify on one queue: nothing doubled, nothing lost.

These services are competing consumers: the broker hands each message to one of the
two containers, and a copy of a message (a partner or the broker repeating it) may
reach the other at the same moment. The inbox claim (tacoord/inbox.py) and the ids
derived from the message make each event take effect once; notify's deliveries are
keyed by subscription and event id and leased while in flight.
"""
import json
from collections import Counter

import pytest
import requests
from kombu import Connection, Producer

from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from services.supply.service import SupplyService
from tacoord import reference, topology
from tacoord.envelope import new_event
from tacoord.testing import admin_auth, free_port, management_url, wait_until
from tests.integration.needs_helpers import tap
from tests.integration.test_notify_delivery import FAST, KENYA_MATCH, subscribe
from tests.integration.test_notify_delivery import receivers  # noqa: F401 (a fixture)
from tests.integration.test_requests_service import REGIONAL

EVENTS = 150
COPIES = 50
STATES = sorted(c["iso3"] for c in reference.data()["countries"])


def need(i):
    return {"state": STATES[i // 50], "article": 5 + i % 50, "forms": ["LEGAL_ADVICE"], "priority": 2,
            "description": f"need {i}"}


def offer(i):
    return {"provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
            "articles": [5 + i % 50], "forms": ["LEGAL_ADVICE"], "capacity": 1, "period_start": "2026-01-01",
            "period_end": "2027-12-31", "languages": ["en"], "external_ref": f"offer-{i}"}


def workshop(i):
    return {**REGIONAL, "expected_outcomes": f"workshop {i}"}


INGRESS = {   # service class, its queue, what partners send, what it emits, where it stores
    "needs": (NeedsService, "needs.ingress", "need.submitted", need, "need.submitted", "needs"),
    "supply": (SupplyService, "supply.ingress", "offer.submitted", offer, "offer.published", "offers"),
    "requests": (RequestsService, "requests.ingress", "workshop.submitted", workshop, "workshop.requested",
                 "workshop_requests"),
}


def two_instances(sandbox, container_factory, service_class, queue, **overrides):
    """Two containers of ``service_class`` on the sandbox (the first on the sandbox's HTTP port),
    once both consume ``queue``."""
    containers = []
    for port in (None, free_port()):
        extra = {"WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"} if port else {}
        container = container_factory(service_class, sandbox.config(service_class.name, **extra, **overrides))
        container.start()
        containers.append(container)
    wait_until(lambda: requests.get(management_url(f"queues/{sandbox.vhost}/{queue}"), auth=admin_auth(),
                                    timeout=5).json().get("consumers") == 2, message=f"two consumers on {queue}")
    return containers


def publish_as_partner(sandbox, events, exchange=topology.INGRESS):
    """Publish on one connection like a partner (persistent, confirmed, with the broker-checked user_id)."""
    with Connection(sandbox.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = Producer(connection)
        for event in events:
            producer.publish(json.dumps(event), exchange=topology.EXCHANGES[exchange], routing_key=event["type"],
                             delivery_mode=2, content_type="application/json", user_id=admin_auth()[0])


@pytest.mark.parametrize("service", sorted(INGRESS))
def test_two_instances_take_each_partner_event_into_account_once(sandbox, container_factory, service):
    service_class, queue, sent_type, payload, emitted_type, collection = INGRESS[service]
    emitted = tap(sandbox, name=f"test.{service}-tap", keys=(emitted_type,))
    containers = two_instances(sandbox, container_factory, service_class, queue)
    sent = [new_event(sent_type, payload(i), "partner") for i in range(EVENTS)]
    publish_as_partner(sandbox, sent + sent[:COPIES])   # a third of them twice

    stored = sandbox.db(service)[collection]
    wait_until(lambda: stored.count_documents({}) >= EVENTS, timeout=60, message=f"{EVENTS} {collection}")
    caused = Counter()
    wait_until(lambda: caused.update(e["causation_id"] for e, _ in sandbox.get_messages(emitted, 1000)) or
               sum(caused.values()) >= EVENTS, timeout=30, message=f"{EVENTS} {emitted_type}")
    assert sandbox.left_after_stopping(containers, queue, f"{queue}.retry") == 0
    caused.update(e["causation_id"] for e, _ in sandbox.get_messages(emitted, 1000))
    assert caused == Counter(e["id"] for e in sent)   # each event caused one event, no more
    assert stored.count_documents({}) == EVENTS
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0


def test_two_notify_instances_send_each_notification_once(sandbox, container_factory, receivers):  # noqa: F811
    containers = two_instances(sandbox, container_factory, NotifyService, "notify.events", **FAST)
    hook = receivers()
    subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url, "filter": {"types": ["match.*"]}})
    events = [new_event("match.proposed", {**KENYA_MATCH, "match_id": f"match-{n}"}, "matching")
              for n in range(100)]
    sandbox.publish_events(events + events[:30])

    wait_until(lambda: len(hook.received) >= 100, timeout=60, message="100 notifications")
    assert sandbox.left_after_stopping(containers, "notify.events", "notify.events.retry") == 0
    matches = Counter(json.loads(r["body"])["event"]["data"]["match_id"] for r in hook.received)
    ids = Counter(r["headers"]["X-Tacoord-Notification-Id"] for r in hook.received)
    assert matches == Counter(e["data"]["match_id"] for e in events)   # each match notified once
    assert set(ids.values()) == {1} and len(ids) == 100
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0
