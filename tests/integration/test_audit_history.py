"""An entity's audit history is in the order things happened (an event's occurred_at, a
rejection's parking time, then seq), not in the order the recorder happened to write them:
events and dead letters reach it on two queues, through two consumers."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import requests
from kombu import Connection, Producer

from services.audit.service import AuditService
from tacoord import headers, topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until

NEED_ID = "KEN-9-2026-1-history"


def park(sandbox, body, failed_at):
    """A dead letter as the consumer parks it (on tacoord.dead, with the parking headers)."""
    parking = headers.parking("data.unexpected: unknown field", str(uuid.uuid4()), "needs.ingress",
                              body["type"], topology.INGRESS, failed_at.isoformat(), "invalid")
    with Connection(sandbox.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection).publish(json.dumps(body), exchange=topology.EXCHANGES[topology.DEAD],
                                     routing_key=body["type"], headers=parking, delivery_mode=2,
                                     content_type="application/json")


def history(sandbox, role="operator", subject="*"):
    response = requests.get(sandbox.url("audit", f"/audit/entities/need/{NEED_ID}"),
                            headers=sandbox.headers(role, subject), timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["records"]


def test_a_rejection_recorded_before_the_event_that_came_first_is_listed_after_it(sandbox, start):
    start(AuditService)
    submitted_at = datetime.now(timezone.utc) - timedelta(seconds=30)
    # (an unregistered type: the recorder takes any valid envelope; no payload schema to satisfy)
    submitted = {**new_event("test.noted", {"need_id": NEED_ID, "state": "KEN"}, "needs", "state:KEN"),
                 "occurred_at": submitted_at.isoformat()}
    withdrawal = new_event("need.withdrawn", {"need_id": NEED_ID, "unexpected": 1}, "test", "state:KEN")

    park(sandbox, withdrawal, failed_at=submitted_at + timedelta(seconds=10))  # recorded first…
    wait_until(lambda: history(sandbox), message="the rejection recorded")
    sandbox.publish_events([submitted])  # …the event that happened before it, recorded second
    records = wait_until(lambda: [r for r in history(sandbox) if r["kind"] == "event"] and history(sandbox),
                         message="the event recorded")

    assert [(r["kind"], r["seq"]) for r in records] == [("event", 2), ("rejection", 1)]
    assert [r["type"] for r in history(sandbox, "state", "KEN")] == ["test.noted"]


def test_records_of_the_same_moment_keep_the_order_they_were_recorded_in(sandbox, start):
    start(AuditService)
    moment = datetime.now(timezone.utc).isoformat()
    events = [{**new_event("test.noted", {"need_id": NEED_ID, "n": n}, "needs", "state:KEN"),
               "occurred_at": moment} for n in range(3)]
    sandbox.publish_events(events)
    records = wait_until(lambda: len(history(sandbox)) == 3 and history(sandbox), message="three records")
    assert [(r["kind"], r["seq"]) for r in records] == [("event", 1), ("event", 2), ("event", 3)]
