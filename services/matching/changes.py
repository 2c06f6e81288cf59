"""What changed since a moment, for a State, a donor or a network (pure: scopes, filters, queries).

``GET /changes?since=T`` answers the needs, offers, matches and alerts that are new or changed
since ``T``, within a scope (:func:`scope_of`):

- a State: its needs, the offers that reach it, the matches of its needs, the alerts about it
  (its duplications and gaps, and the no_supply gaps of its regional group);
- a donor: its offers, their matches, the needs those matches name, the duplication alerts naming it;
- a network: its members' needs, the offers reaching any of them, their matches and alerts.
  Matching knows the members of the five UN regional groups (reference data) and of the
  networks named in workshop requests (their ``network_states``, from ``workshop.*`` events);
  notify's network registry emits no events, so matching cannot see it (see the README);
- an operator: any one of those scopes, or everything.

Needs and offers come from the read model (:func:`needs_changed`, :func:`offers_changed`),
matches and alerts from their collections (:func:`matches_query`, :func:`alerts_query`), where
times are compared as the UTC ISO 8601 strings matching stores.
"""
from services.matching.payloads import parse_time
from services.matching.scoring import group_of
from tacoord import reference
from tacoord.errors import Forbidden, NotFound

OWN_SCOPE = {"state": "state", "donor": "donor", "network": "network"}


def scope_of(role, subject, asked):
    """The scope a principal gets: ``{"state"|"donor"|"network": id}``, or ``{}`` (an operator,
    everything). Others see only their own; asking for another is a 403 naming role and scope."""
    if role == "operator":
        return dict(asked)
    own = OWN_SCOPE[role]
    for name, value in asked.items():
        if name != own or value != subject:
            raise Forbidden(f"{role}:{subject} may see only the changes of its own {own} ({own}={subject}); "
                            f"asked {name}={value}")
    return {own: subject}


def members(model, network):
    """The States of a network: a UN regional group's, or those workshop requests named for it."""
    if network in reference.regional_groups():
        return sorted(reference.states_in_group(network))
    named = set()
    for workshop in model.workshops.values():
        if workshop.get("network_id") == network:
            named.update(workshop.get("network_states") or ())
            if workshop.get("state"):
                named.add(workshop["state"])
    if not named:
        raise NotFound(f"matching knows no members of network {network!r}: it knows the UN regional groups and "
                       "the networks named in workshop requests")
    return sorted(named)


def states_of(model, scope):
    """The States a scope covers (None: every State; a donor's scope is its offers, not States)."""
    if "state" in scope:
        return [scope["state"]]
    if "network" in scope:
        return members(model, scope["network"])
    return None


def _since(value, since):
    return bool(value) and parse_time(value) >= since


def reaches(offer, states):
    """Whether an offer's scope reaches any of these States."""
    if not offer["scope_states"] and not offer["scope_groups"]:
        return True
    return any(s in offer["scope_states"] or group_of(s) in offer["scope_groups"] for s in states)


def needs_changed(model, scope, states, since, need_ids=()):
    """Needs filed or changed since ``since``; for a donor, the needs its new or changed matches
    name (new to the donor, however old they are). ``new``: filed since then."""
    if "donor" in scope:
        found = [model.needs[n] for n in sorted(need_ids) if n in model.needs]
    else:
        found = [n for n in model.needs.values() if (states is None or n["state"] in states)
                 and (_since(n.get("updated_at"), since) or _since(n.get("created_at"), since))]
    return sorted(({**n, "new": _since(n.get("created_at"), since)} for n in found),
                  key=lambda n: (n["updated_at"], n["need_id"]))


def offers_changed(model, scope, states, since):
    """Offers published or changed since ``since``: a donor's own, or those reaching the scope's States."""
    found = []
    for offer in model.offers.values():
        if "donor" in scope and offer["provider"] != scope["donor"]:
            continue
        if states is not None and not reaches(offer, states):
            continue
        if _since(offer.get("updated_at"), since) or _since(offer.get("created_at"), since):
            found.append({**offer, "new": _since(offer.get("created_at"), since)})
    return sorted(found, key=lambda o: (o["updated_at"], o["offer_id"]))


def _and(*parts):
    parts = [p for p in parts if p]
    return {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})


# updated_at: a person's step or a re-score (services/matching/lifecycle.py, commitments.py)
MATCH_TIMES = ("proposed_at", "retracted_at", "withdrawn_at", "updated_at")
ALERT_TIMES = ("detected_at", "acknowledged.at", "resolved.at")


def lower_bound(since):
    """The text the store's times are compared with: ``since`` to the second. Stored times are ISO 8601
    texts whose fraction of a second may be absent, and ``…:21+00:00`` sorts before ``…:21.4+00:00``
    and ``…:21Z``, so this bound keeps every time of that second and :func:`changed` decides exactly."""
    return since.replace(microsecond=0).isoformat()


def _at(document, path):
    for key in path.split("."):
        document = document.get(key) if isinstance(document, dict) else None
    return document


def changed(document, times, since):
    """Whether any of the document's ``times`` (dotted paths) is at or after ``since`` (exactly)."""
    return any(_since(_at(document, path), since) for path in times)


def matches_query(scope, states, since_text):
    """``since_text``: :func:`lower_bound` of the moment."""
    when = {"$or": [{field: {"$gte": since_text}} for field in MATCH_TIMES]}
    if "donor" in scope:
        return _and({"provider": scope["donor"]}, when)
    return _and({"state": {"$in": states}} if states is not None else None, when)


def alerts_query(scope, states, since_text):
    when = {"$or": [{field: {"$gte": since_text}} for field in ALERT_TIMES]}
    if "donor" in scope:
        return _and({"providers": scope["donor"]}, when)
    if states is None:
        return when
    groups = sorted({group_of(s) for s in states} - {None})
    # no null inside $or: nx-27017 does not match it there
    where = {"$or": [{"state": {"$in": states}}, {"kind": "no_supply", "regional_group": {"$in": groups}}]}
    return _and(where, when)
