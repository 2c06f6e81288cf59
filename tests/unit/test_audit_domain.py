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


def recorded(seq, event_type, data):
    event = {"id": f"e{seq}", "type": event_type, "occurred_at": f"2026-12-01T10:00:0{seq}+00:00", "source": "needs",
             "actor": "state:KEN", "correlation_id": None, "causation_id": None, "data": data}
    return {**domain.event_record(event), "seq": seq}


NEED = {"need_id": "KEN-9-x", "state": "KEN", "article": 9, "priority": 2, "status": "open",
        "withdrawal_reason": None, "updated_at": "2026-12-01T10:00:01+00:00"}


def test_each_step_of_a_history_says_which_fields_changed_from_what_to_what():
    history = domain.with_changes([
        recorded(1, "need.submitted", NEED),
        recorded(2, "need.updated", {**NEED, "priority": 1, "updated_at": "2026-12-01T10:00:02+00:00"}),
        recorded(3, "match.proposed", {"match_id": "m1", "need_id": "KEN-9-x", "priority": 1, "score": 0.8}),
        {"seq": 4, "kind": "rejection", "type": "message.rejected", "event": {"data": {"need_id": "KEN-9-x"}}},
        recorded(5, "match.accepted", {"match_id": "m1", "need_id": "KEN-9-x", "status": "accepted",
                                       "previous_status": "proposed", "by": "donor:GB-GOV-1", "at": "t"}),
        recorded(6, "need.withdrawn", {**NEED, "priority": 1, "status": "withdrawn",
                                       "withdrawal_reason": "covered by the budget"}),
        recorded(7, "need.updated", {**NEED, "priority": 1, "status": "withdrawn",
                                     "withdrawal_reason": "covered by the budget"}),
    ])
    changes = [r.get("changes", "rejection") for r in history]
    assert changes[0] is None and changes[2] is None          # the first of a need, the first of a match
    assert changes[1] == [{"field": "priority", "old": 2, "new": 1}]   # updated_at is bookkeeping
    assert changes[3] == "rejection"
    assert changes[4] == [{"field": "status", "old": None, "new": "accepted"},
                          {"field": "by", "old": None, "new": "donor:GB-GOV-1"}]   # the match's, not the need's
    assert changes[5] == [{"field": "status", "old": "open", "new": "withdrawn"},
                          {"field": "withdrawal_reason", "old": None, "new": "covered by the budget"}]
    assert changes[6] == []
    assert domain.describe_changes(changes[5]) == ["status: open → withdrawn",
                                                   "withdrawal_reason: — → covered by the budget"]
    listed = [{"field": "forms", "old": ["A"], "new": ["A", "B"]}]
    assert domain.describe_changes(listed) == ['forms: ["A"] → ["A","B"]']


def test_a_payload_without_an_id_of_its_family_is_known_by_its_ids():
    workshop = {"type": "workshop.approved", "data": {"request_id": "r1", "network_id": None, "status": "approved"}}
    assert domain.subject_of(workshop) == ("workshop", (("request_id", "r1"),))
    assert domain.subject_of({"type": "need.updated", "data": {"need_id": "n1"}}) == ("need", "n1")
