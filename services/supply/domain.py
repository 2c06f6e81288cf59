"""Supply: pure rules (no I/O) for offers: scope, coverage, filing and changing an offer, and the
mapping of an IATI activity onto an offer. The expert roster's rules are in ``experts``.

Functions that change an offer return the new state and the events it causes, as
``[(event type, payload)]``; the repository wraps them in envelopes, stores and relays them.
"""
import hashlib

from marshmallow import ValidationError

from tacoord import reference
from tacoord.errors import Conflict

# --- offers ---------------------------------------------------------------------------------

LEVELS = ("bilateral", "regional", "global")
OFFER_STATUSES = ("pipeline", "active", "closed", "withdrawn")
FILING_STATUSES = ("pipeline", "active", "closed")   # withdrawn only by withdrawing
OFFER_EVENTS = ("offer.published", "offer.updated", "offer.withdrawn")
OFFER_EVENT_FIELDS = ("offer_id", "provider", "provider_name", "level", "scope_states", "scope_groups",
                      "articles", "chapters", "forms", "capacity", "period_start", "period_end",
                      "languages", "status", "iati_identifier", "created_at", "updated_at")


def offer_id(provider, key):
    """A stable offer id: the same provider × key (external ref, IATI id, ingress event) is one offer."""
    return "off-" + hashlib.sha256(f"{provider}|{key}".encode()).hexdigest()[:14]


def iati_offer_id(iati_identifier):
    """IATI identifiers are globally unique and immutable: one offer per identifier, whoever imports it."""
    return "off-" + hashlib.sha256(f"iati|{iati_identifier}".encode()).hexdigest()[:14]


def scope_problems(level, states, groups):
    """[(field, message)] when the geographic scope does not fit the level."""
    states, groups = list(states or ()), list(groups or ())
    if level == "global" and (states or groups):
        return [("scope_states" if states else "scope_groups",
                 "a global offer covers every State: leave scope_states and scope_groups empty")]
    if level == "bilateral":
        problems = []
        if not states:
            problems.append(("scope_states", "a bilateral offer names at least one State"))
        if groups:
            problems.append(("scope_groups", "a bilateral offer names States, not regional groups"))
        return problems
    if level == "regional" and not groups and len(set(states)) < 2:
        return [("scope_groups", "a regional offer names a regional group or at least two States")]
    return []


def offer_problems(offer):
    """[(field, message)] for a whole offer (after a filing or a merged update)."""
    problems = []
    if not offer.get("articles") and not offer.get("chapters"):
        problems.append(("articles", "name the UNCAC articles and/or chapters the offer covers"))
    if "level" in offer:
        problems += scope_problems(offer["level"], offer.get("scope_states"), offer.get("scope_groups"))
    start, end = offer.get("period_start"), offer.get("period_end")
    if start and end and end < start:
        problems.append(("period_end", f"must not be before period_start ({start})"))
    return problems


def normalized(offer):
    """Lists sorted and de-duplicated, so equal offers compare equal."""
    result = dict(offer)
    for key in ("scope_states", "scope_groups", "forms", "languages"):
        if key in result:
            result[key] = sorted(set(result[key]))
    for key in ("articles", "chapters"):
        if key in result:
            result[key] = sorted(set(result[key]))
    return result


def new_offer(filed, the_id, now):
    """An offer document from a validated filing."""
    offer = normalized(filed)
    return {**offer, "offer_id": the_id, "created_at": now, "updated_at": now}


def event_data(offer):
    return {k: offer.get(k) for k in OFFER_EVENT_FIELDS}


def filed_offer_id(filed, key):
    """The id a filing lands on: its IATI activity's when it names one, else provider × key."""
    if filed.get("iati_identifier"):
        return iati_offer_id(filed["iati_identifier"])
    return offer_id(filed["provider"], key)


def file_offer(existing, filed, the_id, now):
    """A validated filing onto the stored offer ``existing`` (None: a new offer) → (offer, events).

    Filing an offer again updates it; filing a withdrawn offer again publishes it anew."""
    offer = new_offer(filed, the_id, now)
    if existing is None:
        return offer, [("offer.published", event_data(offer))]
    offer = {**offer, "created_at": existing["created_at"]}
    kind = "offer.published" if existing["status"] == "withdrawn" else "offer.updated"
    return offer, [(kind, event_data(offer))]


def change_offer(existing, changes, now, kind="offer.updated"):
    """Some fields of a stored offer changed → (the fields to set, events).

    The merged offer is checked whole again; a withdrawn offer only comes back by filing it."""
    if existing["status"] == "withdrawn":
        raise Conflict(f"offer {existing['offer_id']} is withdrawn; file it again to publish it")
    merged = normalized({**existing, **changes})
    problems = offer_problems(merged)
    if problems:
        raise ValidationError({field: [message] for field, message in problems})
    merged["updated_at"] = now
    return {k: merged[k] for k in set(changes) | {"updated_at"}}, [(kind, event_data(merged))]


def withdraw_offer(existing, reason, now):
    """→ (changes, events); withdrawing a withdrawn offer changes nothing. The event says why."""
    if existing["status"] == "withdrawn":
        return {}, []
    changes, events = change_offer(existing, {"status": "withdrawn", "withdrawal_reason": reason}, now,
                                   "offer.withdrawn")
    return changes, [(kind, {**data, "withdrawal_reason": reason}) for kind, data in events]


def covers_state(offer, iso3):
    """In scope: named, or in a named regional group, or the offer is global."""
    if offer["level"] == "global":
        return True
    if iso3 in offer.get("scope_states", ()):
        return True
    group = reference.states().get(iso3, {}).get("regional_group")
    return group is not None and group in offer.get("scope_groups", ())


def covers_article(offer, article):
    """Named directly, or its chapter is covered (a chapter covers all its articles)."""
    if article in offer.get("articles", ()):
        return True
    chapter = reference.articles().get(article, {}).get("chapter")
    return chapter in offer.get("chapters", ())


def covers_chapter(offer, chapter):
    return chapter in offer.get("chapters", ()) or any(
        reference.articles().get(a, {}).get("chapter") == chapter for a in offer.get("articles", ()))


def offer_matches(offer, filters):
    """The GET /offers filters that need reference data (the store applies the plain ones)."""
    if "state" in filters and not covers_state(offer, filters["state"]):
        return False
    if "article" in filters and not covers_article(offer, filters["article"]):
        return False
    if "chapter" in filters and not covers_chapter(offer, filters["chapter"]):
        return False
    return True


# --- IATI activities → offers ----------------------------------------------------------------

ANTI_CORRUPTION_SECTOR = "15113"   # OECD DAC "Anti-corruption organisations and institutions"

# DAC purpose code → what the offer covers. 15113 is about anti-corruption bodies: UNCAC art. 6
# (preventive bodies) and art. 36 (specialized law-enforcement authorities); IATI says nothing
# about forms of assistance, so institutional support is read as capacity-building. Extend or
# override with the ``TACOORD_IATI_SECTOR_MAP`` setting / ``--map`` (same shape).
DEFAULT_SECTOR_MAP = {
    ANTI_CORRUPTION_SECTOR: {"articles": [6, 36], "chapters": [], "forms": ["CAPACITY_BUILDING"]},
}

# IATI Region codelist (vocabulary 1 = OECD DAC regions) → UN regional groups. An approximation:
# DAC regions are geographic, the UN groups electoral (e.g. DAC "Europe, regional" is read as the
# Eastern European Group, where the DAC recipients in Europe sit, though Türkiye is in WEOG).
# "Developing countries, unspecified" (998) is read as a global offer. Any other region code or
# vocabulary is skipped with a reason, never guessed.
REGION_GROUPS = {
    "88": ["EASTERN_EUROPEAN"],    # States Ex-Yugoslavia unspecified
    "89": ["EASTERN_EUROPEAN"],    # Europe, regional
    "189": ["AFRICAN"],            # North of Sahara, regional
    "289": ["AFRICAN"],            # South of Sahara, regional
    "298": ["AFRICAN"],            # Africa, regional
    "380": ["GRULAC"],             # West Indies, regional
    "389": ["GRULAC"],             # North & Central America, regional
    "489": ["GRULAC"],             # South America, regional
    "498": ["GRULAC"],             # America, regional
    "589": ["ASIA_PACIFIC"],       # Middle East, regional
    "619": ["ASIA_PACIFIC"],       # Central Asia, regional
    "679": ["ASIA_PACIFIC"],       # South Asia, regional
    "689": ["ASIA_PACIFIC"],       # South & Central Asia, regional
    "789": ["ASIA_PACIFIC"],       # Far East Asia, regional
    "798": ["ASIA_PACIFIC"],       # Asia, regional
    "889": ["ASIA_PACIFIC"],       # Oceania, regional
    "998": [],                     # Developing countries, unspecified → global
}
GLOBAL_REGIONS = {"998"}

# IATI ActivityStatus → offer status.
ACTIVITY_STATUS = {"1": "pipeline", "2": "active", "3": "closed", "4": "closed",
                   "5": "withdrawn", "6": "withdrawn"}
START_DATE_TYPES = ("2", "1")   # actual start preferred over planned
END_DATE_TYPES = ("4", "3")     # actual end preferred over planned
UNCAC_TAG_PREFIX = "UNCAC-"     # <tag vocabulary="99" code="UNCAC-46"/> names articles explicitly


def import_summary(results):
    """The report of an IATI import (or dry run) from its per-activity results."""
    imported = sum(1 for r in results if r["outcome"] in ("imported", "would import"))
    return {"activities": len(results), "imported": imported, "skipped": len(results) - imported,
            "results": results}


def merged_sector_map(extra=None):
    mapping = {code: dict(entry) for code, entry in DEFAULT_SECTOR_MAP.items()}
    for code, entry in (extra or {}).items():
        mapping[str(code)] = {"articles": list(entry.get("articles", [])),
                              "chapters": list(entry.get("chapters", [])),
                              "forms": list(entry.get("forms", []))}
    return mapping


def sector_map_problems(mapping):
    """Check a configured sector map; [(code, message)]."""
    problems = []
    forms = reference.assistance_forms()
    for code, entry in (mapping or {}).items():
        if not isinstance(entry, dict) or set(entry) - {"articles", "chapters", "forms"}:
            problems.append((code, "each entry is {articles: [...], chapters: [...], forms: [...]}"))
            continue
        if not entry.get("forms") or any(f not in forms for f in entry["forms"]):
            problems.append((code, "forms must be known form ids (at least one)"))
        if not entry.get("articles") and not entry.get("chapters"):
            problems.append((code, "name articles and/or chapters"))
    return problems


def offer_from_activity(activity, sector_map):
    """One parsed IATI activity (see services.supply.iati) → (filing, None) or (None, reason).

    The filing still goes through OfferSchema; this only translates.
    """
    identifier = activity.get("iati_identifier")
    if not identifier:
        return None, "no iati-identifier"
    covered = {"articles": set(), "chapters": set(), "forms": set()}
    matched = []
    for sector in activity.get("sectors", []):
        if sector.get("vocabulary") not in (None, "", "1"):
            continue
        entry = sector_map.get(sector.get("code"))
        if entry:
            matched.append(sector["code"])
            for key in covered:
                covered[key].update(entry.get(key, ()))
    if not matched:
        codes = ", ".join(f"{s.get('code')}" for s in activity.get("sectors", [])) or "none"
        return None, f"no anti-corruption sector (15113 or a mapped code); sectors: {codes}"
    tagged = set()
    for tag in activity.get("tags", []):
        code = tag.get("code") or ""
        if tag.get("vocabulary") == "99" and code.upper().startswith(UNCAC_TAG_PREFIX):
            number = code[len(UNCAC_TAG_PREFIX):]
            if not number.isdigit():
                return None, f"tag {code!r} does not name an UNCAC article number"
            tagged.add(int(number))
    if tagged:  # explicit article tags are more precise than the sector's default articles
        covered["articles"], covered["chapters"] = tagged, set()

    provider = activity.get("reporting_org_ref")
    if not provider:
        return None, "no reporting-org/@ref"

    status = ACTIVITY_STATUS.get(activity.get("status_code") or "")
    if status is None:
        return None, f"activity-status {activity.get('status_code')!r} is not an IATI ActivityStatus code (1–6)"
    if status == "withdrawn":
        return None, f"activity-status {activity['status_code']} (cancelled/suspended): nothing to offer"

    dates = activity.get("dates", {})
    start = next((dates[t] for t in START_DATE_TYPES if dates.get(t)), None)
    end = next((dates[t] for t in END_DATE_TYPES if dates.get(t)), None)
    if not start or not end:
        return None, "needs an activity-date of type 1 or 2 (start) and of type 3 or 4 (end)"

    states = []
    for code in activity.get("countries", []):
        iso3 = reference.iso3_from_iso2((code or "").upper())
        if iso3 is None:
            return None, f"unknown recipient-country code {code!r} (ISO 3166-1 alpha-2 expected)"
        states.append(iso3)
    groups, is_global = [], activity.get("scope_code") == "1"
    for region in activity.get("regions", []):
        code, vocabulary = region.get("code"), region.get("vocabulary") or "1"
        if vocabulary != "1" or code not in REGION_GROUPS:
            return None, (f"recipient-region {code!r} (vocabulary {vocabulary}) has no mapping to a UN "
                          "regional group")
        if code in GLOBAL_REGIONS:
            is_global = True
        groups.extend(REGION_GROUPS[code])
    if is_global:
        level, states, groups = "global", [], []
    elif groups:
        level = "regional"
    elif len(set(states)) == 1:
        level = "bilateral"
    elif states:
        level = "regional"
    else:
        return None, "no recipient-country or recipient-region, and activity-scope is not global (1)"

    filing = {
        "provider": provider,
        "provider_name": activity.get("reporting_org_name") or "",
        "level": level,
        "scope_states": sorted(set(states)),
        "scope_groups": sorted(set(groups)),
        "articles": sorted(covered["articles"]),
        "chapters": sorted(covered["chapters"]),
        "forms": sorted(covered["forms"]),
        "capacity": 1,
        "period_start": start,
        "period_end": end,
        "languages": [activity["language"]] if activity.get("language") else [],
        "status": status,
        "iati_identifier": identifier,
    }
    return filing, None
