"""Needs: pure rules (no I/O).

A need is one State's request for help with one UNCAC article, in one or more
forms of assistance. The same State × article × forms is one need: filing it
again updates it (or reopens it once met or withdrawn), never duplicates it.
Every function here returns the new state and the events it causes, as
``(type, data)`` pairs; the repository (``dependencies.py``) stores both in one
write (the outbox) and relays the events.
"""
import hashlib
import re
from collections import defaultdict

from tacoord import reference
from tacoord.errors import Conflict, Rejected
from tacoord.safety import is_digits

OPEN = ("open", "in_progress")
STATUSES = ("open", "in_progress", "met", "withdrawn")
PRIORITIES = (1, 2, 3)  # 1 highest

# What a status may become through an update (withdrawal has its own command;
# a met or withdrawn need is reopened by filing it again).
TRANSITIONS = {
    "open": {"open", "in_progress", "met"},
    "in_progress": {"open", "in_progress", "met"},
    "met": {"met"},
    "withdrawn": set(),
}

# The fields of a filing that a State chooses; a refiling that changes none of
# them is a no-op (a redelivered message or a re-imported file).
CONTENT_FIELDS = ("paragraph", "other_text", "priority", "description", "checklist_round",
                  "languages", "external_ref")

# What a need shows: the HTTP answers and the payload of every need.* event.
PUBLIC_FIELDS = ("need_id", "state", "regional_group", "article", "chapter", "paragraph", "forms",
                 "other_text", "priority", "description", "checklist_round", "languages",
                 "external_ref", "status", "withdrawal_reason", "created_at", "updated_at")


def public(need):
    return {k: need.get(k) for k in PUBLIC_FIELDS} if need else None


def emitted(event_type, need):
    """The one event of a change, carrying the need as it is now."""
    return [(event_type, public(need))]


def need_key(state, article, forms):
    """The duplicate key: the same State × article × forms is one need, updated in place."""
    return f"{state}:{article}:{'+'.join(sorted(set(forms)))}"


def need_id(state, article, forms):
    """``<ISO3>-<article>-<first 10 hex of sha256(need_key)>``: partners can derive it."""
    digest = hashlib.sha256(need_key(state, article, forms).encode()).hexdigest()[:10]
    return f"{state}-{article}-{digest}"


def new_need(filed, now):
    """A need document from a validated filing."""
    forms = sorted(set(filed["forms"]))
    return {
        **filed,
        "forms": forms,
        "need_id": need_id(filed["state"], filed["article"], forms),
        "status": "open",
        "regional_group": reference.regional_group_of(filed["state"]),
        "withdrawal_reason": None,  # filed (again): any earlier withdrawal's reason no longer stands
        "chapter": reference.chapter_of(filed["article"]),
        "created_at": now,
        "updated_at": now,
    }


def same_content(existing, filed):
    return all(_norm(existing.get(k)) == _norm(filed.get(k)) for k in CONTENT_FIELDS)


def _norm(value):
    if value in (None, "", []):
        return None
    return value


def refile(existing, filed, now):
    """Filing a need that exists already. Returns ``(need, events)``.

    - open/in progress, same content → unchanged, no event (idempotent);
    - open/in progress, new content → ``need.updated``, status kept;
    - met or withdrawn → reopened as ``need.submitted``.
    """
    need = new_need(filed, now)
    need["created_at"] = existing["created_at"]
    if existing["status"] in OPEN:
        if same_content(existing, need):
            return {**need, **{k: existing.get(k) for k in CONTENT_FIELDS},
                    "status": existing["status"], "updated_at": existing["updated_at"]}, []
        need = {**need, "status": existing["status"]}
        return need, emitted("need.updated", need)
    return need, emitted("need.submitted", need)


def file_need(existing, filed, now):
    """A filing, new or not. Returns ``(need, events)``."""
    if existing is None:
        need = new_need(filed, now)
        return need, emitted("need.submitted", need)
    return refile(existing, filed, now)


def change(existing, changes, now):
    """An update of an existing need's priority, text or status. Returns ``(changes, events)``.

    Raises ``Conflict`` on a withdrawn need or an illegal status transition.
    """
    status = existing["status"]
    if status == "withdrawn":
        raise Conflict(f"need {existing['need_id']} is withdrawn; file it again to reopen it")
    wanted = changes.get("status", status)
    if wanted not in TRANSITIONS[status]:
        raise Conflict(f"need {existing['need_id']} is {status}; it cannot become {wanted} "
                       f"(file it again to reopen it)")
    if status == "met" and set(changes) - {"status"}:
        raise Conflict(f"need {existing['need_id']} is met; file it again to reopen it")
    changes = {**changes, "updated_at": now}
    return changes, emitted("need.updated", {**existing, **changes})


def withdraw(existing, reason, now):
    """Withdrawing a need. Returns ``(changes, events)``: withdrawing twice changes nothing."""
    if existing["status"] == "withdrawn":
        return {}, []
    changes = {"status": "withdrawn", "withdrawal_reason": reason or "", "updated_at": now}
    return changes, emitted("need.withdrawn", {**existing, **changes})


# --- bulk import ----------------------------------------------------------------


def plan_import(rows, existing, now):
    """Split validated rows into inserts and updates, against the stored needs.

    ``rows``: [filed] in file order; ``existing``: need_id -> stored need.
    A key seen twice in one file is one need: the later row wins and counts
    as an update (or as unchanged when it repeats the earlier row).
    Returns ``(inserts, updates, counts)``: inserts [(need, events)] (each a
    ``need.submitted``), updates [(need, events)] of stored needs, counts
    {accepted, updated, unchanged} with one count per row.
    """
    latest = {}
    counts = {"accepted": 0, "updated": 0, "unchanged": 0}
    for filed in rows:
        need = new_need(filed, now)
        nid = need["need_id"]
        if nid in latest:
            counts["unchanged" if same_content(latest[nid][1], need) else "updated"] += 1
        latest[nid] = (filed, need)
    inserts, updates = [], []
    for nid, (filed, need) in latest.items():
        if nid not in existing:
            inserts.append((need, emitted("need.submitted", need)))
            counts["accepted"] += 1
            continue
        need, events = refile(existing[nid], filed, now)
        if events:
            updates.append((need, events))
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    return inserts, updates, counts


# --- the Secretariat's views ---------------------------------------------------------


def check_filters(filters, statuses=STATUSES):
    """Query filters of the list and overview views, checked (``Rejected`` naming the filter)
    and normalised (codes upper-case)."""
    for key in ("article", "chapter", "priority"):
        if key in filters and not is_digits(filters[key]):
            raise Rejected(f"{key} must be a number", key)
    if "status" in filters and filters["status"] not in statuses:
        raise Rejected(f"status must be one of {', '.join(statuses)}", "status")
    if "state" in filters:
        filters["state"] = filters["state"].upper()
    if "form" in filters:
        filters["form"] = filters["form"].upper()
        if filters["form"] not in reference.assistance_forms():
            raise Rejected(f"unknown form; one of {', '.join(reference.assistance_forms())}", "form")
    if "regional_group" in filters:
        filters["regional_group"] = filters["regional_group"].upper()
        if filters["regional_group"] not in reference.regional_groups():
            raise Rejected(f"unknown regional group; one of {', '.join(reference.regional_groups())}",
                           "regional_group")
    return filters


def overview(needs):
    """Counts of needs per article × regional group.

    ``needs``: iterable of {article, regional_group}. States with no regional
    group (non-member parties) count under ``NONE``.
    """
    counts = defaultdict(lambda: defaultdict(int))
    groups = set(reference.regional_groups())
    for need in needs:
        group = need.get("regional_group") or "NONE"
        groups.add(group)
        counts[need["article"]][group] += 1
    articles = sorted(counts)
    group_list = sorted(groups - {"NONE"}) + (["NONE"] if "NONE" in groups else [])
    rows = {str(a): {g: counts[a].get(g, 0) for g in group_list} for a in articles}
    by_group = {g: sum(rows[str(a)][g] for a in articles) for g in group_list}
    return {
        "groups": group_list,
        "articles": articles,
        "counts": rows,
        "article_totals": {str(a): sum(rows[str(a)].values()) for a in articles},
        "group_totals": by_group,
        "total": sum(by_group.values()),
    }


def current_round(rounds):
    """The latest checklist round of those named (``"2026-10"`` after ``"2026-9"``), or None."""
    named = [r for r in rounds if isinstance(r, str) and r]
    return max(named, key=_round_key) if named else None


def _round_key(name):
    return [(0, int(part), "") if is_digits(part) else (1, 0, part) for part in re.split(r"([0-9]+)", name) if part]


def open_needs_counts(counts_by_priority):
    """``{(priority, chapter): open needs}`` from ``{priority: {chapter: n}}`` (label values as text)."""
    return {(str(priority), str(chapter)): n for priority, chapters in counts_by_priority.items()
            for chapter, n in chapters.items() if chapter is not None}
