"""Two audit recorders on one queue and one database: every event recorded once, one unbroken chain.

Each container has its own lock and head (as two processes would): they seal after
the head each read, and the unique index on ``seq`` makes the one that lost a place
read the head again (services/audit/dependencies.py), so the chain never forks.
"""
import requests

from services.audit.dependencies import verify
from services.audit.service import AuditService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import admin_auth, free_port, management_url, wait_until


def test_two_recorders_record_each_event_once_in_one_chain(sandbox, container_factory):
    for _ in range(2):
        container = container_factory(AuditService, sandbox.config("audit", WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}"))
        container.start()
    wait_until(lambda: requests.get(management_url(f"queues/{sandbox.vhost}/audit.events"), auth=admin_auth(),
                                    timeout=5).json().get("consumers") == 2, message="both recorders consuming")
    events = [new_event("test.noted", {"n": n}, "test", "test") for n in range(600)]
    sandbox.publish_events(events + events[:150])   # a quarter of them twice: copies race too
    log = sandbox.db("audit").audit
    wait_until(lambda: log.count_documents({}) >= 600, timeout=60, message="600 records")
    wait_until(lambda: sandbox.queue_depth(topology.AUDIT_EVENTS.name) == 0, timeout=30, message="queue drained")
    records = list(log.find({}, {"seq": 1, "event_id": 1}, sort=[("seq", 1)]))
    assert sorted(r["event_id"] for r in records) == sorted(e["id"] for e in events)   # each once
    assert [r["seq"] for r in records] == list(range(1, 601))
    assert verify(sandbox.db("audit")) is None
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0
