"""Worklists over the read model (pure): the unmet needs, ranked, as JSON rows or CSV.

:func:`unmet_needs` lists the open needs not met yet, most pressing first: by priority (1
first), then the Conference's emphasis (the chapters the matching settings weigh most, II and
IV by default, as the 2009 Working Group report recommends), then age (oldest filing first).
A need's ``status`` is its level (:func:`services.matching.lifecycle.need_level`, the words the
matrix counts in): ``unmet`` (no match stands) or ``proposed`` (proposed or accepted matches, none
agreed yet) are listed; a need ``met`` (a match agreed or in delivery) or ``delivered`` is not.
"""
import csv
import io

from services.matching.lifecycle import need_level
from services.matching.payloads import parse_time
from services.matching.scoring import OPEN_NEED

NEED_FILTERS = ("regional_group", "state", "article", "chapter", "priority")
LISTED = ("unmet", "proposed")   # the levels of the needs not met yet
CSV_COLUMNS = ("rank", "need_id", "state", "regional_group", "article", "chapter", "priority", "emphasis", "forms",
               "status", "need_status", "matches", "created_at", "age_days", "open_gap")


def need_status(model, need_id):
    """The need's level: ``unmet``, ``proposed``, ``met`` or ``delivered``."""
    return need_level(m["status"] for m in (model.need_matches.get(need_id) or {}).values())


def emphasised(settings, chapter):
    """Whether the matching settings weigh this chapter above the others (II and IV by default)."""
    return settings.chapter_weights.get(chapter, settings.default_chapter_weight) > settings.default_chapter_weight


def rank_key(settings, need):
    weight = settings.chapter_weights.get(need["chapter"], settings.default_chapter_weight)
    return need["priority"], -weight, parse_time(need["created_at"]), need["need_id"]


def unmet_needs(model, filters, now, limit=1000):
    """The ranked rows of the unmet-needs worklist. ``filters``: regional_group, state, article,
    chapter, priority, form, status (``unmet`` or ``proposed``); ``now``: an aware datetime."""
    wanted = []
    for need in model.needs.values():
        if need["status"] not in OPEN_NEED:
            continue
        if any(need.get(k) != filters[k] for k in NEED_FILTERS if k in filters):
            continue
        if "form" in filters and filters["form"] not in need["forms"]:
            continue
        status = need_status(model, need["need_id"])
        if status not in LISTED or filters.get("status", status) != status:
            continue
        wanted.append((rank_key(model.settings, need), need, status))
    wanted.sort(key=lambda item: item[0])
    rows = []
    for rank, (_, need, status) in enumerate(wanted[:limit], start=1):
        age = (now - parse_time(need["created_at"])).total_seconds() / 86400
        rows.append({"rank": rank, "need_id": need["need_id"], "state": need["state"],
                     "regional_group": need["regional_group"], "article": need["article"],
                     "chapter": need["chapter"], "priority": need["priority"],
                     "emphasis": emphasised(model.settings, need["chapter"]), "forms": list(need["forms"]),
                     "status": status, "need_status": need["status"],
                     "matches": len(model.need_matches.get(need["need_id"]) or ()),
                     "created_at": need["created_at"], "age_days": round(max(0.0, age), 1),
                     "open_gap": model.alert_book.open_gap_of(need["need_id"]),
                     "description": need.get("description") or ""})
    return {"count": len(rows), "total": len(wanted), "needs": rows}


def worklist_csv(rows):
    """The rows of :func:`unmet_needs` as CSV (forms joined with ``;``), one header line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = {**row, "forms": ";".join(row["forms"]), "emphasis": "yes" if row["emphasis"] else "no",
                  "open_gap": row["open_gap"] or ""}
        writer.writerow([values[c] for c in CSV_COLUMNS])
    return buffer.getvalue()
