"""The audit log's rules: what a record says, which entities it concerns, the hash chain
and its head anchor, the order of an entity's history and what changed in each of its steps (no I/O).

Each record carries ``prev_hash`` (the hash of the record before it) and its
own ``hash = sha256(prev_hash + canonical JSON of the record)``. Altering,
removing or reordering any stored record breaks every hash after it, which
:func:`verify_chain` reports. Removing records at the *end* breaks no hash:
the chain head anchor (``seq`` and ``hash`` of the last record, kept apart
from the records) is what :func:`verify_log` checks the end against.
"""
import hashlib
import json
from datetime import datetime, timezone

from tacoord import headers
from tacoord.errors import Rejected

GENESIS = "0" * 64

# Entity types whose history only operators may read: dead letters hold other partners'
# rejected messages, subscriptions' deliveries are their subscribers' business.
OPERATOR_ONLY_ENTITIES = frozenset({"message", "event", "subscription", "notification"})


def entities_of(event):
    """``["need:…", "offer:…"]`` from every ``*_id`` / ``*_ids`` field of the payload."""
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        return []
    found = []
    for key, value in data.items():
        if key.endswith("_id") and isinstance(value, str) and value:
            found.append(f"{key[:-3]}:{value}")
        elif key.endswith("_ids") and isinstance(value, list):
            found.extend(f"{key[:-4]}:{v}" for v in value if isinstance(v, str) and v)
    return sorted(set(found))


# -- records -------------------------------------------------------------------

def event_record(event):
    """The record of one event (an envelope as published)."""
    return {"kind": "event", "event_id": event["id"], "type": event["type"],
            "occurred_at": event["occurred_at"], "source": event["source"], "actor": event["actor"],
            "correlation_id": event["correlation_id"], "causation_id": event["causation_id"],
            "entities": entities_of(event), "event": event}


def rejection_record(body, message_headers):
    """The record of one parked message (a dead letter), keyed by its dead-letter id; it
    happened when it was parked (``occurred_at`` is the parking time)."""
    dead_letter_id = message_headers.get(headers.DEAD_LETTER_ID)
    if not dead_letter_id:
        raise Rejected("dead letter without an id header")
    parsed = body
    if isinstance(body, (bytes, str)):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"unparsed": body if isinstance(body, str) else body.decode("utf-8", "replace")}
    entities = entities_of(parsed) + [f"message:{dead_letter_id}"]
    original_id = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(original_id, str):
        entities.append(f"event:{original_id}")
    correlation_id = parsed.get("correlation_id") if isinstance(parsed, dict) else None
    return {"kind": "rejection", "event_id": f"dead-letter:{dead_letter_id}", "type": "message.rejected",
            "correlation_id": correlation_id if isinstance(correlation_id, str) else None,
            "occurred_at": message_headers.get(headers.FAILED_AT), "source": message_headers.get(headers.QUEUE),
            "actor": message_headers.get(headers.PARTNER), "reason": message_headers.get(headers.REASON),
            "rejected_kind": message_headers.get(headers.KIND), "entities": sorted(set(entities)),
            "routing_key": message_headers.get(headers.ROUTING_KEY), "event": parsed}


# -- the chain -----------------------------------------------------------------

def canonical(record):
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash, record):
    content = {k: v for k, v in record.items() if k not in ("hash", "_id")}
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


def seal(record, prev_hash, seq):
    """The record with its position and hashes."""
    sealed = {**record, "seq": seq, "prev_hash": prev_hash}
    sealed["hash"] = chain_hash(prev_hash, sealed)
    return sealed


def next_position(tip, anchor):
    """``(prev_hash, last_seq)`` to seal the next record after: the last record (``tip``), or
    the head anchor when that is further on (records at the end were deleted: the next record
    follows the anchor, so the gap stays visible instead of being filled with new records)."""
    if anchor is not None and (tip is None or anchor["seq"] > tip["seq"]):
        return anchor["hash"], anchor["seq"]
    return (tip["hash"], tip["seq"]) if tip is not None else (GENESIS, 0)


def _missing(first, last):
    return f"record {first} is" if first == last else f"records {first}-{last} are"


def _link_problem(record, expected_seq, expected_prev):
    if record["seq"] != expected_seq:
        return {"seq": expected_seq, "problem": f"{_missing(expected_seq, record['seq'] - 1)} missing "
                                                f"(deleted; the next is seq {record['seq']})"}
    if record["prev_hash"] != expected_prev:
        return {"seq": record["seq"], "problem": "prev_hash does not match the previous record"}
    if chain_hash(record["prev_hash"], record) != record["hash"]:
        return {"seq": record["seq"], "problem": "record content does not match its hash (altered)"}
    return None


def _walk(records, watch_seq=None):
    """``(first break or None, last record, record at watch_seq)``, walking in ``seq`` order."""
    expected_prev, expected_seq = GENESIS, 1
    last = watched = None
    for record in records:
        problem = _link_problem(record, expected_seq, expected_prev)
        if problem:
            return problem, last, watched
        if record["seq"] == watch_seq:
            watched = record
        last = record
        expected_prev, expected_seq = record["hash"], expected_seq + 1
    return None, last, watched


def verify_chain(records):
    """The links only: walk records in ``seq`` order; return the first break, or None.
    A log cut short at the end passes this; :func:`verify_log` checks the end too."""
    return _walk(records)[0]


def verify_log(records, anchor):
    """The whole log: its links (:func:`verify_chain`) and its end against the head anchor
    (``{"seq", "hash"}`` of the last record as the recorder wrote it, or None when there is
    none). The first problem as ``{"seq", "problem"}``, or None.

    Records after the anchor's seq are accepted (an append in flight: the records are written
    before the anchor moves); records missing up to it, or a different record at its seq, are not."""
    problem, last, at_anchor = _walk(records, anchor["seq"] if anchor else None)
    if problem:
        return problem
    if anchor is None:
        if last is None:
            return None
        return {"seq": last["seq"], "problem": "the chain head anchor is missing (the log cannot show whether "
                                               "records at its end were deleted)"}
    if last is None or last["seq"] < anchor["seq"]:
        first_missing = last["seq"] + 1 if last else 1
        ends = f"the log ends at seq {last['seq']}" if last else "the log is empty"
        return {"seq": first_missing, "problem": f"{_missing(first_missing, anchor['seq'])} missing at the end "
                                                 f"(deleted; {ends}, "
                                                 f"its chain head anchor is seq {anchor['seq']})"}
    if at_anchor["hash"] != anchor["hash"]:
        return {"seq": anchor["seq"], "problem": "the record differs from the chain head anchor "
                                                 "(the log was rewritten up to here)"}
    return None


# -- histories -----------------------------------------------------------------

LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _instant(value):
    """An ISO 8601 time as an aware UTC datetime (naive = UTC); LATEST when absent or unreadable."""
    if not isinstance(value, str):
        return LATEST
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return LATEST
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def in_order_of_happening(records):
    """An entity's history in the order things happened: by ``occurred_at`` (an event's time;
    a rejection's parking time), then ``seq``. The recorder's order (``seq``) alone is not it:
    events and dead letters arrive on two queues, handled by two consumers, so a rejection
    can be recorded before the event that came first."""
    return sorted(records, key=lambda r: (_instant(r.get("occurred_at") or r.get("recorded_at")), r["seq"]))


# -- what changed in each step -------------------------------------------------

# Bookkeeping that every step moves, or that repeats the old value a change already shows.
UNCOMPARED = frozenset({"updated_at", "at", "previous_status", "previous_score", "previous_priority"})


def subject_of(event):
    """What an event's payload describes, as ``(family, id)``: a ``need.*`` payload is a need
    (``need_id``), a ``match.*`` one a match (``match_id``); a family without a ``<family>_id``
    field (``workshop.*``: ``request_id``) is known by all its scalar ``*_id`` fields. Payloads
    with one subject are states of one thing, so comparing them says what changed."""
    family = event["type"].split(".")[0]
    data = event.get("data") or {}
    own = data.get(f"{family}_id")
    if isinstance(own, str) and own:
        return family, own
    return family, tuple(sorted((k, v) for k, v in data.items() if k.endswith("_id") and isinstance(v, str) and v))


def changes_between(known, data):
    """``[{"field", "old", "new"}]`` for every field of ``data`` whose value differs from what
    was ``known`` of the subject (never said = None), in payload order. A field a payload leaves
    out is not said, not removed: a step's event carries only part of what its subject holds."""
    return [{"field": name, "old": known.get(name), "new": value}
            for name, value in data.items() if name not in UNCOMPARED and known.get(name) != value]


def with_changes(records):
    """An entity's history (in the order things happened) with what changed in each step: every
    event record gets ``changes``, against what the earlier payloads of the same subject
    (:func:`subject_of`) said: None for the first (nothing to compare with), else the fields that
    differ (an empty list: it changed none). Rejections are left as they are."""
    known = {}
    shown = []
    for record in records:
        event = record.get("event")
        if record.get("kind") != "event" or not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            shown.append(record)
            continue
        subject = subject_of(event)
        before = known.get(subject)
        known[subject] = {**(before or {}), **event["data"]}
        shown.append({**record, "changes": None if before is None else changes_between(before, event["data"])})
    return shown


def describe_value(value):
    """A payload value in a line of text: strings as they are, nothing as "—", the rest as compact JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def describe_changes(changes):
    """``["priority: 2 → 1", …]`` for a record's ``changes``."""
    return [f"{c['field']}: {describe_value(c['old'])} → {describe_value(c['new'])}" for c in changes or ()]


def trace(records, log_entries=()):
    """One story's path (its records and the log lines carrying its correlation id) in the order
    things happened: ``[{"at", "what", "service", ...}]``. A record says which event happened,
    from which service and actor (a rejection: which queue parked what, and why); a log line
    what a service noted meanwhile (a retry, a refusal, a delivery that failed)."""
    entries = []
    for record in records:
        entry = {"at": record.get("occurred_at") or record.get("recorded_at"), "what": record["type"],
                 "service": record.get("source"), "actor": record.get("actor"), "event_id": record["event_id"],
                 "causation_id": record.get("causation_id"), "seq": record["seq"], "from": "audit"}
        if record.get("reason"):
            entry["reason"] = record["reason"]
        entries.append(entry)
    for line in log_entries:
        entries.append({"at": line.get("time"), "what": line.get("message"), "service": line.get("service"),
                        "level": line.get("level"), "event_id": line.get("event_id"), "from": "log"})
    return sorted(entries, key=lambda e: (_instant(e["at"]), e["from"] != "audit", e.get("seq") or 0))
