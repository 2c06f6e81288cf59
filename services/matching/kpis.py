"""Matching's coordination KPIs, computed from what matching holds (pure, no I/O).

- unmet priority needs: open priority-1 needs without a match, and how long the oldest has
  waited (since it was last left without one: ``unmatched_since``, else when it was filed),
  from the in-memory model (no query);
- matches by lifecycle state and alerts by kind and state: whatever ``status`` values the
  stored documents carry (an alert stored without one is ``open``), so a new state shows up
  without a code change.

``MatchingKpis`` (``dependencies.py``) sets the gauges from these every ``TACOORD_KPI_SECONDS``.
"""
from services.matching.payloads import parse_time

ALERT_KINDS = ("gap", "duplication")
OPEN_ALERT = "open"


def unmet_priority_needs(model, now):
    """``(count, age in seconds of the oldest)`` of the open priority-1 needs without a match."""
    oldest = None
    count = 0
    for need_id in model.unmatched_p1:
        need = model.needs.get(need_id)
        if need is None or not model._is_unmatched_p1(need):  # the model's own rule, as the gap sweep uses it
            continue
        count += 1
        since = parse_time(need.get("unmatched_since") or need["created_at"])
        oldest = since if oldest is None or since < oldest else oldest
    return count, (max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)


def status_counts(rows, default=None):
    """``{(status,): n}`` from grouped rows ``[{"_id": status, "n": n}]`` (``None`` -> ``default``)."""
    counts = {}
    for row in rows:
        status = row["_id"] if row["_id"] is not None else default
        if status is not None:
            counts[(str(status),)] = counts.get((str(status),), 0) + row["n"]
    return counts


def alert_counts(rows_by_kind):
    """``{(kind, status): n}`` from ``{kind: grouped rows by status}``; every kind has an ``open`` count."""
    counts = {}
    for kind, rows in rows_by_kind.items():
        counts[(kind, OPEN_ALERT)] = 0
        for (status,), n in status_counts(rows, default=OPEN_ALERT).items():
            counts[(kind, status)] = n
    return counts
