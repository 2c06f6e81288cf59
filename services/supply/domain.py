"""Supply: pure rules (no I/O) for offers: scope, coverage, filing and changing an offer. The
mapping of an IATI activity onto an offer is ``iati_mapping``'s, the expert roster's rules are
``experts``', the arithmetic of an offer's money is ``money``'s.

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
                      "languages", "status", "iati_identifier", "anti_corruption_share", "currency",
                      "budget", "planned_disbursements", "transactions", "created_at", "updated_at")
# What an offer stored before offers carried money stands for in its events.
MONEY_DEFAULTS = {"anti_corruption_share": 1.0, "currency": None, "budget": [], "planned_disbursements": [],
                  "transactions": []}


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
    return {k: offer.get(k, MONEY_DEFAULTS.get(k)) for k in OFFER_EVENT_FIELDS}


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

