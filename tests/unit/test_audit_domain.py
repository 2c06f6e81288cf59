"""The audit log's rules without a database: the chain, its head anchor, a history's order."""
import pytest

from services.audit import domain
from tacoord import headers
from tacoord.errors import Rejected


def chain(count):
    records, prev = [], domain.GENESIS
    for n in range(1, count + 1):
        records.append(domain.seal({"kind": "event", "event_id": f"e{n}", "n": n}, prev, n))
        prev = records[-1]["hash"]
    return records


def anchor_of(record):
    return {"seq": record["seq"], "hash": record["hash"]}


def test_an_intact_log_verifies_and_records_after_the_anchor_are_an_append_in_flight():
    records = chain(4)
    assert domain.verify_log(records, anchor_of(records[-1])) is None
    assert domain.verify_log(records, anchor_of(records[1])) is None
    assert domain.verify_log([], None) is None


def test_a_log_cut_short_at_the_end_passes_the_links_but_not_the_anchor():
    records = chain(5)
    assert domain.verify_chain(records[:3]) is None
    assert domain.verify_log(records[:3], anchor_of(records[-1])) == {"seq": 4, "problem": (
        "records 4-5 are missing at the end (deleted; the log ends at seq 3, its chain head anchor is seq 5)")}


def test_a_rewritten_end_and_a_missing_anchor_are_named():
    records = chain(3)
    forged = domain.seal({"kind": "event", "event_id": "forged"}, records[1]["hash"], 3)
    assert domain.verify_log(records[:2] + [forged], anchor_of(records[2]))["problem"].startswith(
        "the record differs from the chain head anchor")
    assert "anchor is missing" in domain.verify_log(records, None)["problem"]


def test_a_gap_and_an_altered_record_are_named_where_they_are():
    records = chain(5)
    assert domain.verify_chain(records[:1] + records[3:]) == {
        "seq": 2, "problem": "records 2-3 are missing (deleted; the next is seq 4)"}
    altered = [*records[:2], {**records[2], "n": 99}, *records[3:]]
    assert domain.verify_chain(altered) == {"seq": 3, "problem": "record content does not match its hash (altered)"}


def test_the_next_record_follows_the_anchor_when_the_end_was_deleted():
    records = chain(5)
    assert domain.next_position(anchor_of(records[2]), anchor_of(records[4])) == (records[4]["hash"], 5)
    assert domain.next_position(anchor_of(records[4]), anchor_of(records[2])) == (records[4]["hash"], 5)
    assert domain.next_position(None, None) == (domain.GENESIS, 0)


def test_a_history_is_in_the_order_things_happened_then_in_the_order_recorded():
    rejection = {"seq": 1, "kind": "rejection", "occurred_at": "2026-12-01T10:00:05+00:00"}
    event = {"seq": 2, "kind": "event", "occurred_at": "2026-12-01T12:00:00+02:00"}  # 10:00 UTC
    same_moment = {"seq": 3, "kind": "event", "occurred_at": "2026-12-01T10:00:00Z"}
    untimed = {"seq": 0, "kind": "event", "recorded_at": None}
    ordered = domain.in_order_of_happening([rejection, untimed, same_moment, event])
    assert [r["seq"] for r in ordered] == [2, 3, 1, 0]


def test_a_dead_letter_record_happened_when_it_was_parked_and_needs_its_id():
    parking = headers.parking("data.state: unknown", "dl-1", "needs.ingress", "need.submitted", "tacoord.ingress",
                              "2026-12-01T10:00:00+00:00", "invalid")
    record = domain.rejection_record(b'{"id": "e1", "data": {"need_id": "KEN-1"}}', parking)
    assert (record["event_id"], record["occurred_at"], record["reason"]) == (
        "dead-letter:dl-1", "2026-12-01T10:00:00+00:00", "data.state: unknown")
    assert record["entities"] == ["event:e1", "message:dl-1", "need:KEN-1"]
    with pytest.raises(Rejected):
        domain.rejection_record(b"{}", {})
