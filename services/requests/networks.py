"""The directory of coordination networks (the 2009 Working Group's recommendation 31), pure.

A network is a regional network of States, a donor coordination group or a UN body,
with its members (States and/or donors), the articles it focuses on, a website and
contacts. The Secretariat (an operator) registers and retires networks; an operator,
or the network itself, updates it. A regional workshop request that names a registered
network takes its member States from here. Every change is one ``network.*`` event
carrying the whole entry, so other services (notify's subscriptions, matching's "what
changed for a network") can keep their own read model of the directory.

    active ─▶ retired        (final; a retired network is kept, readable, and refused to new requests)
"""
from tacoord import reference
from tacoord.errors import Conflict, Forbidden, Rejected
from tacoord.safety import is_digits

KINDS = ("regional_network", "donor_coordination_group", "un")
STATUSES = ("active", "retired")
TRANSITIONS = {"active": ("retired",), "retired": ()}
EVENT_FIELDS = ("network_id", "name", "kind", "status", "states", "donors", "focus_articles", "website",
                "contacts", "description", "retired_reason", "created_at", "updated_at")
LISTS = ("states", "donors", "focus_articles")


def public(network):
    return {k: network.get(k) for k in EVENT_FIELDS} if network else None


def emitted(event_type, network):
    return [(event_type, public(network))]


def reserved(network_id):
    """The UN regional groups are networks every service knows already: they cannot be registered."""
    return network_id in reference.regional_groups()


def register(filed, now):
    """A new directory entry and its ``network.registered``. Returns ``(network, events)``."""
    if reserved(filed["network_id"]):
        raise Conflict(f"{filed['network_id']} is a UN regional group, known to every service; "
                       f"register a network under another id")
    network = {**filed, **{k: sorted(set(filed.get(k) or [])) for k in LISTS}, "status": "active",
               "retired_reason": None, "created_at": now, "updated_at": now}
    return network, emitted("network.registered", network)


def check_editor(network, role, subject):
    """An operator edits any entry; a network credential its own entry only."""
    if role == "operator" or (role == "network" and subject == network["network_id"]):
        return
    raise Forbidden(f"{role}:{subject} may not change network {network['network_id']}: only an operator "
                    f"or the network itself (network:{network['network_id']}) may")


def _check_open(network, target):
    if target not in TRANSITIONS[network["status"]]:
        allowed = ", ".join(TRANSITIONS[network["status"]]) or f"none ('{network['status']}' is final)"
        raise Conflict(f"network {network['network_id']} is '{network['status']}'; it cannot be {target}; "
                       f"allowed from '{network['status']}': {allowed}")


def update(network, changes, now):
    """Changed fields → ``(changes, events)``; no events when nothing changes."""
    if network["status"] == "retired":
        _check_open(network, "updated")
    changes = {k: sorted(set(v)) if k in LISTS else v for k, v in changes.items()}
    changes = {k: v for k, v in changes.items() if network.get(k) != v}
    if not changes:
        return {}, []
    changes["updated_at"] = now
    after = {**network, **changes}
    check_complete(after)
    return changes, emitted("network.updated", after)


def retire(network, reason, now):
    """``active → retired`` → ``(changes, events)``; 409 when already retired."""
    _check_open(network, "retired")
    changes = {"status": "retired", "retired_reason": reason, "updated_at": now}
    return changes, emitted("network.retired", {**network, **changes})


def check_complete(network):
    """A network of States names at least one State; a donor group at least one donor."""
    if network["kind"] == "regional_network" and not network.get("states"):
        raise Rejected("a regional network names its member States (ISO3)", "states")
    if network["kind"] == "donor_coordination_group" and not network.get("donors"):
        raise Rejected("a donor coordination group names its member donors (IATI organisation ids)", "donors")


def member_states(network):
    """The States a regional workshop of this network is for; ``Rejected`` naming ``network_id`` when
    the network cannot hold one (retired, or no member States)."""
    if network["status"] == "retired":
        raise Rejected(f"network {network['network_id']} is retired ({network.get('retired_reason') or 'no reason'})"
                       f"; name an active network (GET /networks)", "network_id")
    if not network.get("states"):
        raise Rejected(f"network {network['network_id']} ({network['kind']}) has no member States; a regional "
                       f"workshop needs States who may join", "network_id")
    return list(network["states"])


def matches(network, filters):
    """``GET /networks`` filters: kind, status, a member State, a focus article."""
    if "kind" in filters and network["kind"] != filters["kind"]:
        return False
    if "status" in filters and network["status"] != filters["status"]:
        return False
    if "state" in filters and filters["state"] not in network.get("states", []):
        return False
    if "donor" in filters and filters["donor"] not in network.get("donors", []):
        return False
    return "article" not in filters or filters["article"] in network.get("focus_articles", [])


def check_filters(filters):
    for key, allowed in (("kind", KINDS), ("status", STATUSES)):
        if key in filters and filters[key] not in allowed:
            raise Rejected(f"{key} must be one of: {', '.join(allowed)}", key)
    if "state" in filters:
        filters["state"] = filters["state"].upper()
    if "article" in filters:
        if not is_digits(filters["article"]):
            raise Rejected("article must be a number", "article")
        filters["article"] = int(filters["article"])
    return filters
