"""The model's writes of a match document, each guarded by the status it believes is stored (pure).

People move a match over HTTP (a conditional update on its stored status);
the model learns of the step later, when it consumes the step's event. Until
then what it believes is stored may be behind, so every write the model makes
names the stored statuses it may apply to (:class:`Write`), and a step the
model consumes says what is stored now (:class:`Stepped`). :func:`fold` makes
one conditional write of a match's writes and steps in a batch, in order:

- a step drops the writes before it that changed the status (they were decided
  on a status that is no longer stored: they would have missed) and what they
  emit; writes of fields only the model owns (score, priority...) stay;
- the condition is that of the first write that changes the status, narrowed by
  those before it (which did not change it), or the step's status after a step.

The store writes it with ``upsert``: a miss (the document holds another status)
is then a duplicate key, and its events are not relayed. The model is not
wrong for long: what made the write miss was a person's step, whose event is on
its way, and consuming it settles the match (``domain.Matcher._apply_step``).
"""
from dataclasses import dataclass

NO_DOCUMENT = None   # in ``allowed``: the match was never stored


@dataclass(frozen=True)
class Write:
    """``fields`` to set, on a stored match whose status is in ``allowed``; ``event`` is what it emits."""
    fields: dict
    allowed: frozenset
    event: object


@dataclass(frozen=True)
class Stepped:
    """A person's step, already stored: the match's stored status is now ``status``."""
    status: str


def fold(entries):
    """``(fields, allowed, kept events, dropped events)`` of a match's writes and steps in order, or None
    when there is nothing to write. ``allowed`` empty: the write can never apply (nothing is written)."""
    pending, dropped, base = [], [], None
    for entry in entries:
        if isinstance(entry, Stepped):
            dropped += [w.event for w in pending if "status" in w.fields]
            pending = [w for w in pending if "status" not in w.fields]
            base = frozenset({entry.status})
        else:
            pending.append(entry)
    if not pending:
        return None if not dropped else ({}, frozenset(), [], dropped)
    allowed = base
    for write in pending:
        allowed = write.allowed if allowed is None else allowed & write.allowed
        if "status" in write.fields:
            break
    fields = {}
    for write in pending:
        fields.update(write.fields)
    events = [w.event for w in pending]
    if not allowed:
        return fields, allowed, [], dropped + events
    return fields, allowed, events, dropped


def condition(match_id, allowed):
    """The filter of a folded write: the match, with one of the ``allowed`` stored statuses."""
    statuses = sorted(s for s in allowed if s is not NO_DOCUMENT)
    if len(statuses) == 1:
        return {"_id": match_id, "status": statuses[0]}
    return {"_id": match_id, "status": {"$in": statuses}}
