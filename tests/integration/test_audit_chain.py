"""The audit recorder remembers its chain head between records; when another recorder process
appends meanwhile, the next record still links to the true head and the chain stays intact."""

import requests
from prometheus_client import REGISTRY

from services.audit import domain
from services.audit.service import AuditService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until


def consumed_ok():
    """Events the audit recorder handled in this process (unregistered test types count as "other")."""
    return REGISTRY.get_sample_value("tacoord_audit_events_consumed_total", {"type": "other", "outcome": "ok"}) or 0.0


def record_for(sandbox, event_id):
    return wait_until(lambda: sandbox.db("audit").audit.find_one({"event_id": event_id}),
                      message=f"audit record of {event_id}")


def test_a_record_written_by_another_recorder_is_linked_to_not_overwritten(sandbox, start):
    start(AuditService)
    first = new_event("test.noted", {"n": 1}, "test", "test")
    sandbox.publish(first["type"], None, exchange=topology.EVENTS, event=first)
    mine = record_for(sandbox, first["id"])

    # another audit process appends the next record behind this one's back
    foreign = domain.seal({"kind": "event", "event_id": "elsewhere-1", "type": "test.noted",
                           "entities": [], "event": {}}, mine["hash"], mine["seq"] + 1)
    sandbox.db("audit").audit.insert_one(dict(foreign))

    second = new_event("test.noted", {"n": 2}, "test", "test")
    sandbox.publish(second["type"], None, exchange=topology.EVENTS, event=second)
    after = record_for(sandbox, second["id"])
    assert (after["seq"], after["prev_hash"]) == (foreign["seq"] + 1, foreign["hash"])

    verified = requests.get(sandbox.url("audit", "/audit/verify"), headers=sandbox.headers("operator"),
                            timeout=5).json()
    assert verified == {"intact": True, "records": 3, "first_break": None}


def test_copies_of_one_event_make_one_record_without_the_inbox(sandbox, start):
    """The recorder skips the consumer's inbox (its unique event_id index is the guard)."""
    containers = start(AuditService)
    before = consumed_ok()
    event = new_event("test.noted", {"n": 1}, "test", "test")
    for _ in range(3):
        sandbox.publish(event["type"], None, exchange=topology.EVENTS, event=event)
    record_for(sandbox, event["id"])
    wait_until(lambda: consumed_ok() >= before + 3, message="all three copies handled")
    # every copy settled: none waiting, none unacked, none round the retry queue, none parked
    assert sandbox.left_after_stopping(containers, topology.AUDIT_EVENTS.name, topology.AUDIT_EVENTS.retry_name) == 0
    assert sandbox.db("audit").audit.count_documents({"event_id": event["id"]}) == 1
    assert sandbox.db("audit").processed_events.count_documents({}) == 0
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0
