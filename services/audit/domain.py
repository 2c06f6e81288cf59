"""The audit log's rules: which entities an event concerns, and the hash chain.

Each record carries ``prev_hash`` (the hash of the record before it) and its
own ``hash = sha256(prev_hash + canonical JSON of the record)``. Altering,
removing or reordering any stored record breaks every hash after it, which
:func:`verify_chain` reports.
"""
import hashlib
import json

GENESIS = "0" * 64


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


def canonical(record):
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash, record):
    content = {k: v for k, v in record.items() if k not in ("hash", "_id")}
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


def seal(record, prev_hash, seq):
    """The record with its position and hashes (no I/O)."""
    sealed = {**record, "seq": seq, "prev_hash": prev_hash}
    sealed["hash"] = chain_hash(prev_hash, sealed)
    return sealed


def verify_chain(records):
    """Walk records in ``seq`` order; return the first break, or None."""
    expected_prev = GENESIS
    expected_seq = 1
    for record in records:
        if record["seq"] != expected_seq:
            return {"seq": record["seq"], "problem": f"expected seq {expected_seq} (a record is missing)"}
        if record["prev_hash"] != expected_prev:
            return {"seq": record["seq"], "problem": "prev_hash does not match the previous record"}
        if chain_hash(record["prev_hash"], record) != record["hash"]:
            return {"seq": record["seq"], "problem": "record content does not match its hash (altered)"}
        expected_prev = record["hash"]
        expected_seq += 1
    return None
