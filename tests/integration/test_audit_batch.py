"""The audit recorder writes a batch of events with one insert: each event recorded once,
seqs contiguous, the chain intact, whatever copies and foreign writers get in the way."""
from collections import Counter

import requests
from prometheus_client import REGISTRY

from services.audit import domain
from services.audit.dependencies import AuditLog, verify as verify_log
from services.audit.domain import event_record
from services.audit.service import AuditService
from tacoord import indexes, topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until


def noted(n):
    return new_event("test.noted", {"n": n}, "test", "test")


def batches_so_far():
    return REGISTRY.get_sample_value("tacoord_audit_consumer_batches_total",
                                     {"queue": topology.AUDIT_EVENTS.name}) or 0


def verify(sandbox):
    return requests.get(sandbox.url("audit", "/audit/verify"), headers=sandbox.headers("operator"),
                        timeout=10).json()


def settled(sandbox):
    wait_until(lambda: sandbox.queue_depth(topology.AUDIT_EVENTS.name) == 0, timeout=30, message="queue drained")
    assert sandbox.queue_depth(topology.AUDIT_EVENTS.retry_name) == 0
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0


def test_a_burst_of_events_is_recorded_once_each_in_few_round_trips(sandbox, start):
    events = [noted(n) for n in range(300)]
    sandbox.publish_events(events)  # waiting in the queue: the recorder finds a burst
    batches_before = batches_so_far()
    start(AuditService)
    audit = sandbox.db("audit").audit
    wait_until(lambda: audit.count_documents({}) >= len(events), timeout=60, message="all recorded")
    settled(sandbox)

    records = list(audit.find({}, sort=[("seq", 1)]))
    assert sorted(r["event_id"] for r in records) == sorted(e["id"] for e in events)
    assert [r["seq"] for r in records] == list(range(1, len(events) + 1))
    assert verify(sandbox) == {"intact": True, "records": len(events), "first_break": None,
                               "anchor": {"seq": len(events), "hash": records[-1]["hash"]}}
    # one insert_many per batch: its records share their recorded_at, and batches fill past
    # nameko's default prefetch (max_workers = 10)
    per_insert = Counter(r["recorded_at"] for r in records)
    assert len(per_insert) < len(events) / 5
    assert max(per_insert.values()) > 10
    assert batches_so_far() - batches_before == len(per_insert)


def test_copies_of_events_in_a_burst_and_later_make_one_record_each(sandbox, start):
    events = [noted(n) for n in range(40)]
    sandbox.publish_events(events + events[:20] + events[::3])  # copies in the same burst
    start(AuditService)
    audit = sandbox.db("audit").audit
    wait_until(lambda: audit.count_documents({}) >= len(events), timeout=30, message="all recorded")
    settled(sandbox)
    sandbox.publish_events(events[5:15] + [noted(99)] + events[30:])  # copies long after
    wait_until(lambda: audit.count_documents({}) >= len(events) + 1, timeout=30, message="the new one recorded")
    settled(sandbox)

    records = list(audit.find({}, sort=[("seq", 1)]))
    assert len(records) == len(events) + 1
    assert len({r["event_id"] for r in records}) == len(records)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert verify(sandbox)["intact"] is True


# -- AuditLog.append_many against the real database --------------------------

def audit_log(sandbox):
    database = sandbox.db("audit")
    indexes.apply(database, "audit")
    return AuditLog(database, None)


def stored(log):
    records = list(log.db["audit"].find({}, sort=[("seq", 1)]))
    assert domain.verify_chain(records) is None and verify_log(log.db) is None
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    return [r["event_id"] for r in records]


def test_copies_inside_one_batch_are_recorded_once(sandbox):
    log = audit_log(sandbox)
    a, b, c = noted(1), noted(2), noted(3)
    written = log.append_many([event_record(e) for e in (a, b, a, c, b)])
    assert [r["event_id"] for r in written] == [a["id"], b["id"], c["id"]]
    assert stored(log) == [a["id"], b["id"], c["id"]]


def test_an_event_already_recorded_in_the_middle_of_a_batch_is_skipped(sandbox):
    log = audit_log(sandbox)
    events = [noted(n) for n in range(6)]
    log.append_many([event_record(events[2]), event_record(events[4])])
    written = log.append_many([event_record(e) for e in events])
    assert [r["event_id"] for r in written] == [events[i]["id"] for i in (0, 1, 3, 5)]
    assert stored(log) == [events[i]["id"] for i in (2, 4, 0, 1, 3, 5)]
    assert log.append_many([event_record(e) for e in events]) == []  # all of them again: nothing new


def test_a_seq_taken_by_another_recorder_is_linked_to_and_the_batch_follows_it(sandbox):
    log = audit_log(sandbox)
    first = noted(0)
    [head] = log.append_many([event_record(first)])
    # another audit process appends the next record behind this one's back
    foreign = domain.seal({"kind": "event", "event_id": "elsewhere-1", "type": "test.noted",
                           "entities": [], "event": {}}, head["hash"], head["seq"] + 1)
    log.db["audit"].insert_one(dict(foreign))
    events = [noted(n) for n in range(1, 5)]
    written = log.append_many([event_record(e) for e in events])
    assert [r["seq"] for r in written] == [3, 4, 5, 6]
    assert written[0]["prev_hash"] == foreign["hash"]
    assert stored(log) == [first["id"], "elsewhere-1"] + [e["id"] for e in events]
