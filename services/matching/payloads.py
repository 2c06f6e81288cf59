"""What matching reads from the events other services publish (a tolerant reader; pure).

``normalize_*`` take the fields of docs/events.md that matching uses and
ignore the rest, so an additive change upstream does not dead-letter the
queue; a payload missing a needed field raises ``KeyError`` (the consumer
parks it as rejected).
"""
from datetime import datetime, timezone

from services.matching.scoring import chapter_of, group_of

EXPERTISE_LEVELS = {"basic": 0.4, "advanced": 0.7, "expert": 1.0}


def parse_time(value):
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def normalize_need(data, event):
    need = {
        "need_id": data["need_id"], "state": data["state"],
        "regional_group": data.get("regional_group") or group_of(data["state"]),
        "article": int(data["article"]),
        "chapter": data.get("chapter") or chapter_of(int(data["article"])),
        "forms": sorted(set(data.get("forms") or [])), "priority": int(data.get("priority") or 3),
        "languages": sorted(set(data.get("languages") or [])),
        "checklist_round": data.get("checklist_round"), "status": data.get("status") or "open",
        "description": data.get("description") or "",
        "created_at": data.get("created_at") or event["occurred_at"],
        "updated_at": data.get("updated_at") or event["occurred_at"],
        "cause": {"id": event["id"], "correlation_id": event.get("correlation_id")},
    }
    if event["type"] == "need.withdrawn":
        need["status"] = "withdrawn"
    return need


def normalize_offer(data, event):
    offer = {
        "offer_id": data["offer_id"], "provider": data["provider"],
        "provider_name": data.get("provider_name"), "level": data.get("level") or "bilateral",
        "scope_states": sorted(set(data.get("scope_states") or [])),
        "scope_groups": sorted(set(data.get("scope_groups") or [])),
        "articles": sorted(set(int(a) for a in data.get("articles") or [])),
        "chapters": sorted(set(int(c) for c in data.get("chapters") or [])),
        "forms": sorted(set(data.get("forms") or [])), "capacity": max(1, int(data.get("capacity") or 1)),
        "languages": sorted(set(data.get("languages") or [])), "status": data.get("status") or "active",
        "period_start": data.get("period_start"), "period_end": data.get("period_end"),
        "created_at": data.get("created_at"), "updated_at": data.get("updated_at") or event["occurred_at"],
        **normalize_money(data),
    }
    if event["type"] == "offer.withdrawn":
        offer["status"] = "withdrawn"
    return offer


def normalize_money(data):
    """An offer's money as :mod:`services.matching.funding` counts it (events of offers filed
    before offers carried money have none: share 1, no lines)."""
    share = data.get("anti_corruption_share")
    transactions = [{"type": t["type"], "value": float(t["value"]), "currency": t.get("currency") or data.get("currency"),
                     "value_date": t.get("value_date"), "date": t.get("date"), "share": t.get("share"),
                     "state": t.get("state")}
                    for t in data.get("transactions") or () if t.get("currency") or data.get("currency")]
    return {"anti_corruption_share": 1.0 if share is None else float(share), "currency": data.get("currency"),
            "budget": list(data.get("budget") or []), "transactions": transactions}


def normalize_expert(data, event):
    expertise = {}
    for item in data.get("expertise") or []:
        level = EXPERTISE_LEVELS.get(item.get("level"), 0.4)
        expertise[str(int(item["article"]))] = max(level, expertise.get(str(int(item["article"])), 0))
    availability = (data.get("availability") or {}).get("status") or "available"
    expert = {
        "expert_id": data["expert_id"], "nationality": data.get("nationality"),
        "expertise": expertise,  # str(article) -> level score (string keys: storable as a document)
        "languages": sorted({lang["code"] if isinstance(lang, dict) else lang
                             for lang in data.get("languages") or []}),
        "regions": sorted(set(data.get("regions") or [])),
        "countries": sorted(set(data.get("countries") or [])),
        "forms": sorted(set(data.get("forms") or [])), "availability": availability,
        "vetting_status": data.get("vetting_status") or "active",
        "updated_at": data.get("updated_at") or event["occurred_at"],
        # never proposed to these States' needs (supply's experts.conflict_states; nationality at least)
        "conflict_states": sorted(set(data.get("conflict_states") or []) | (
            {data["nationality"]} if data.get("nationality") else set())),
    }
    if event["type"] == "expert.expired":
        expert["vetting_status"] = "expired"
    return expert


def normalize_workshop(data, event):
    return {
        "request_id": data["request_id"], "kind": data.get("kind"), "state": data.get("state"),
        "regional_group": data.get("regional_group") or (group_of(data["state"]) if data.get("state") else None),
        "states": sorted(set(data.get("states") or [])), "articles": sorted(set(data.get("articles") or [])),
        "status": data.get("status") or event["type"].split(".", 1)[1],
        "network_id": data.get("network_id"), "network_states": sorted(set(data.get("network_states") or [])),
    }
