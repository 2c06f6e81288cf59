"""The audit chain: the recorder remembers its chain head between records (when another recorder
process appends meanwhile, the next record still links to the true head and the chain stays
intact), and verify names a changed record, a deleted one and a missing end (the chain head
anchor, kept apart from the records)."""

import pytest
import requests
from prometheus_client import REGISTRY

from services.audit import domain
from services.audit.dependencies import HEAD, AuditLog, read_anchor, verify
from services.audit.domain import event_record
from services.audit.service import AuditService
from tacoord import indexes, topology
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
    assert verified == {"intact": True, "records": 3, "first_break": None,
                        "anchor": {"seq": after["seq"], "hash": after["hash"]}}


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


# -- tampering: each kind is named by verify ----------------------------------------------
# (tests/e2e/test_cli_audit.py runs the same through `tacoord audit verify`)

def written_log(sandbox, count=5):
    """A log of ``count`` records written by the recorder's repository, intact and anchored."""
    database = sandbox.db("audit")
    indexes.apply(database, "audit")
    AuditLog.heads.pop(database.name, None)
    AuditLog(database, None).append_many([event_record(noted(n)) for n in range(count)])
    assert verify(database) is None
    return database


def noted(n):
    return new_event("test.noted", {"n": n}, "test", "test")


def alter(database, seq):
    database.audit.update_one({"seq": seq}, {"$set": {"actor": "someone else"}})


def delete(database, *seqs):
    database.audit.delete_many({"seq": {"$in": list(seqs)}})


TAMPERINGS = {
    # name: (what is done to a log of 5 records, the problem verify names)
    "one record changed": (lambda db: alter(db, 3),
                           {"seq": 3, "problem": "record content does not match its hash (altered)"}),
    "a record deleted in the middle": (lambda db: delete(db, 3),
                                       {"seq": 3, "problem": "record 3 is missing (deleted; the next is seq 4)"}),
    "the last record deleted": (lambda db: delete(db, 5), {"seq": 5, "problem": (
        "record 5 is missing at the end (deleted; the log ends at seq 4, its chain head anchor is seq 5)")}),
    "the last two records deleted": (lambda db: delete(db, 4, 5), {"seq": 4, "problem": (
        "records 4-5 are missing at the end (deleted; the log ends at seq 3, its chain head anchor is seq 5)")}),
    "every record deleted": (lambda db: delete(db, 1, 2, 3, 4, 5), {"seq": 1, "problem": (
        "records 1-5 are missing at the end (deleted; the log is empty, its chain head anchor is seq 5)")}),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_verify_names_a_changed_a_deleted_and_a_missing_last_record(sandbox, tampering):
    database = written_log(sandbox)
    tamper, problem = TAMPERINGS[tampering]
    tamper(database)
    assert verify(database) == problem


def test_an_end_rewritten_with_valid_hashes_differs_from_the_anchor(sandbox):
    database = written_log(sandbox)
    third = database.audit.find_one({"seq": 3})
    delete(database, 4, 5)
    forged = domain.seal(event_record(noted(40)), third["hash"], 4)
    database.audit.insert_many([forged, domain.seal(event_record(noted(50)), forged["hash"], 5)])
    assert domain.verify_chain(database.audit.find({}, sort=[("seq", 1)])) is None  # the links hold
    assert verify(database) == {"seq": 5, "problem": "the record differs from the chain head anchor "
                                                     "(the log was rewritten up to here)"}


def test_records_appended_after_a_deleted_end_leave_the_gap_visible(sandbox):
    """A recorder started after the delete (no head in memory) seals after the anchor, not after
    the shortened log: new records cannot fill the gap and carry the anchor past it."""
    database = written_log(sandbox)
    delete(database, 4, 5)
    AuditLog.heads.pop(database.name, None)  # a restarted recorder
    appended = AuditLog(database, None).append_many([event_record(noted(n)) for n in range(10, 13)])
    assert [r["seq"] for r in appended] == [6, 7, 8]
    assert verify(database) == {"seq": 4, "problem": "records 4-5 are missing (deleted; the next is seq 6)"}


def test_the_verify_route_names_a_missing_end(sandbox, start):
    start(AuditService)
    events = [noted(n) for n in range(3)]
    sandbox.publish_events(events)
    wait_until(lambda: sandbox.db("audit").audit.count_documents({}) == 3, message="three records")
    delete(sandbox.db("audit"), 3)
    verified = requests.get(sandbox.url("audit", "/audit/verify"), headers=sandbox.headers("operator"),
                            timeout=5).json()
    assert (verified["intact"], verified["records"], verified["anchor"]["seq"]) == (False, 2, 3)
    assert verified["first_break"]["seq"] == 3 and "missing at the end" in verified["first_break"]["problem"]


def test_a_log_written_before_the_anchor_is_anchored_when_the_recorder_starts(sandbox, start):
    database = written_log(sandbox)
    database[HEAD].delete_many({})
    assert "chain head anchor is missing" in verify(database)["problem"]
    start(AuditService)
    assert read_anchor(database)["seq"] == 5
    assert verify(database) is None
