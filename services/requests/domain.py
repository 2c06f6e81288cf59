"""Requests: the lifecycle state machine and the rules for joining (pure, no I/O).

    submitted ─▶ under_review ─▶ approved ─▶ scheduled ─▶ held
                      │              │
                      └──────────────┴─▶ declined            (operator, with a reason)
    submitted / under_review / approved / scheduled ─▶ cancelled   (the requesting State, or an operator)
    offered ─▶ submitted (the State accepts)  |  offered ─▶ cancelled   (the State refuses, the offerer withdraws)

``offered`` is where checklist assistance offered to a State (recommendation 22 of the
2009 Working Group: help non-reporting States parties complete the self-assessment
checklist) waits for the State; accepted, it follows the lifecycle of a request the State
filed. ``held``, ``declined`` and ``cancelled`` are final. Each transition becomes
one ``workshop.<status>`` event. Functions that change a request return the
new state and its events as ``(type, data)`` pairs; the repository
(``dependencies.py``) stores both in one write and relays the events.
"""
import hashlib
import uuid

from services.requests import networks
from tacoord import reference
from tacoord.errors import Conflict, Forbidden, Rejected

TRANSITIONS = {
    "submitted": ("under_review", "cancelled"),
    "under_review": ("approved", "declined", "cancelled"),
    "approved": ("scheduled", "declined", "cancelled"),
    "scheduled": ("held", "cancelled"),
    "held": (),
    "declined": (),
    "cancelled": (),
    "offered": ("submitted", "cancelled"),
}
STATUSES = tuple(TRANSITIONS)
TARGETS = tuple(dict.fromkeys(t for targets in TRANSITIONS.values() for t in targets))
OPEN = tuple(s for s, targets in TRANSITIONS.items() if targets)
FINAL = tuple(s for s, targets in TRANSITIONS.items() if not targets)

OPERATOR = "operator"
REQUESTER = "requesting State"
OFFERER = "offering donor"     # only while the offer waits for the State
# Who may move a request *to* each status.
MAY_MOVE_TO = {
    "submitted": (REQUESTER,),
    "under_review": (OPERATOR,),
    "approved": (OPERATOR,),
    "scheduled": (OPERATOR,),
    "declined": (OPERATOR,),
    "held": (REQUESTER, OPERATOR),
    "cancelled": (REQUESTER, OPERATOR, OFFERER),
}
# What each target status requires (r) or accepts (o); anything else is refused.
PARAMETERS = {
    "submitted": {},
    "under_review": {},
    "approved": {},
    "scheduled": {"scheduled_for": "r"},
    "held": {"outcome_notes": "r"},
    "declined": {"reason": "r"},
    "cancelled": {"reason": "o"},
}
ALL_PARAMETERS = ("reason", "scheduled_for", "outcome_notes")

EVENT_OF = {
    "submitted": "workshop.requested",
    **{status: f"workshop.{status}" for status in STATUSES if status != "submitted"},
}
ACCEPTED = "workshop.accepted"   # offered → submitted: the State took up the offer
JOINED = "workshop.joined"

# The payload of every workshop.* event; the HTTP answers add what matching proposed.
# ``donors``: the donors proposed for the request and the one that offered it, so that every later step
# (the dates of workshop.scheduled above all) reaches them.
EVENT_FIELDS = ("request_id", "kind", "state", "regional_group", "network_id", "network_states", "states",
                "articles", "expected_outcomes", "preferred_dates", "language", "support_received", "status",
                "reason", "outcome_notes", "scheduled_for", "offered_by", "donors", "checklist_round",
                "created_at", "updated_at")
PUBLIC_FIELDS = EVENT_FIELDS + ("proposed_participants",)


def public(request):
    return {k: request.get(k) for k in PUBLIC_FIELDS} if request else None


def emitted(event_type, request):
    """The one event of a change, carrying the request as it is now."""
    return [(event_type, {k: request.get(k) for k in EVENT_FIELDS})]


def allowed_from(status):
    return TRANSITIONS[status]


def describe_allowed(status):
    targets = TRANSITIONS[status]
    return ", ".join(targets) if targets else f"none ('{status}' is final)"


def check_transition(current, target):
    """Raise ``Conflict`` unless ``current → target`` is a legal step."""
    if target not in TRANSITIONS:
        raise Rejected(f"unknown status {target!r}; one of: {', '.join(TARGETS)}", "to")
    if target not in TRANSITIONS[current]:
        raise Conflict(f"cannot move a request from '{current}' to '{target}'; "
                       f"allowed from '{current}': {describe_allowed(current)}")


def check_actor(request, target, role, subject):
    """Raise ``Forbidden`` unless this principal may move the request to ``target``."""
    allowed = [a for a in MAY_MOVE_TO[target] if a != OFFERER or request["status"] == "offered"]
    if role == "operator" and OPERATOR in allowed:
        return
    if role == "state" and REQUESTER in allowed and subject == request["state"]:
        return
    if role == "donor" and OFFERER in allowed and subject == request.get("offered_by"):
        return
    names = {OPERATOR: "an operator", REQUESTER: f"the {REQUESTER} ({request['state']})",
             OFFERER: f"the {OFFERER} ({request.get('offered_by')})"}
    who = " or ".join(names[a] for a in allowed)
    raise Forbidden(f"only {who} may move a request to '{target}'; you are {role}:{subject}")


def check_parameters(target, params):
    """Raise ``Rejected`` naming the field when a required value is missing or a stray one is given."""
    expected = PARAMETERS[target]
    for name in ALL_PARAMETERS:
        given = params.get(name) not in (None, "")
        if expected.get(name) == "r" and not given:
            raise Rejected(f"required to move a request to '{target}'", name)
        if name not in expected and given:
            raise Rejected(f"not accepted when moving to '{target}'"
                           + (f" (accepted: {', '.join(expected)})" if expected else ""), name)


def transition(request, target, role, subject, params, now):
    """Validate one step; return the changes to store and the events to emit.

    ``request`` is the stored request (public fields); ``params`` holds
    JSON-ready ``reason`` / ``scheduled_for`` / ``outcome_notes``. Checks, in
    order: the step is legal (409), the principal may take it (403), the
    step's values are there (422).
    """
    check_transition(request["status"], target)
    check_actor(request, target, role, subject)
    check_parameters(target, params)
    changes = {"status": target, "updated_at": now}
    for name in PARAMETERS[target]:
        if params.get(name) not in (None, ""):
            changes[name] = params[name]
    event_type = ACCEPTED if request["status"] == "offered" and target == "submitted" else EVENT_OF[target]
    return changes, emitted(event_type, {**request, **changes})


# --- filing -------------------------------------------------------------------

def new_request_id(state, seed=None):
    """``REQ-KEN-<10 hex>``; from ``seed`` (an ingress message id) it is deterministic,
    so a redelivered message can never file the same request twice."""
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10] if seed else uuid.uuid4().hex[:10]
    return f"REQ-{state}-{digest}"


def new_request(filed, now, request_id):
    """A request document from a validated, JSON-ready filing."""
    request = {
        **filed,
        "request_id": request_id,
        "articles": sorted(set(filed.get("articles") or [])),
        "network_id": filed.get("network_id"),
        "network_states": sorted(set(filed.get("network_states") or [])),
        "regional_group": filed.get("regional_group") or reference.regional_group_of(filed["state"]),
        "states": [filed["state"]],
        "status": "submitted",
        "reason": None,
        "outcome_notes": None,
        "scheduled_for": None,
        "offered_by": None,
        "donors": [],
        "checklist_round": filed.get("checklist_round"),
        "created_at": now,
        "updated_at": now,
    }
    if request["kind"] != "regional_workshop":
        request["network_id"], request["network_states"] = None, []
    return request


def file_request(filed, now, request_id):
    """A new request and its ``workshop.requested``. Returns ``(request, events)``."""
    request = new_request(filed, now, request_id)
    return request, emitted(EVENT_OF["submitted"], request)


def with_network(filed, network):
    """A regional workshop filing that names ``network_id``: its members from the directory entry
    (``network``, or None when the id is not registered), which a filing must then not repeat;
    an unregistered network must be given its members (``network_states``)."""
    if not filed.get("network_id") or filed["kind"] != "regional_workshop":
        return filed
    if network is None:
        if not filed.get("network_states"):
            raise Rejected(f"network {filed['network_id']} is not in the directory (GET /networks): name its "
                           f"member States (ISO3) who may join, or register it (POST /networks)", "network_states")
        return filed
    members = networks.member_states(network)
    if filed.get("network_states") and sorted(set(filed["network_states"])) != members:
        raise Rejected(f"network {network['network_id']} is registered: its members come from the directory "
                       f"({', '.join(members)}); leave network_states out", "network_states")
    return {**filed, "network_states": members}


def offer(filed, now, request_id, offered_by):
    """Checklist assistance offered to a State: a ``checklist_assistance`` request waiting for the State
    (``offered``) and its ``workshop.offered``. ``offered_by``: the donor's organisation id, or None
    when the Secretariat offers it. Returns ``(request, events)``."""
    request = new_request({**filed, "kind": "checklist_assistance", "support_received": [], "articles": [],
                           "preferred_dates": []}, now, request_id)
    request.update(status="offered", offered_by=offered_by, donors=[offered_by] if offered_by else [])
    return request, emitted(EVENT_OF["offered"], request)


# --- regional workshops: who may join -------------------------------------------

def eligible_states(request):
    """The States who may join a regional workshop: the network's, else the group's."""
    if request["kind"] != "regional_workshop":
        return ()
    if request.get("network_id"):
        return tuple(sorted(set(request["network_states"]) | {request["state"]}))
    return reference.states_in_group(request["regional_group"])


def join(request, state, now):
    """``state`` joining: ``(changes, events)``, both empty when it already takes part."""
    if request["kind"] != "regional_workshop":
        raise Conflict(f"request {request['request_id']} is a {request['kind']}; only regional workshops "
                       f"can be joined")
    if request["status"] not in OPEN:
        raise Conflict(f"request {request['request_id']} is '{request['status']}'; States can join only while it "
                       f"is one of: {', '.join(OPEN)}")
    if state not in eligible_states(request):
        where = (f"network {request['network_id']}" if request.get("network_id")
                 else f"regional group {request['regional_group']}")
        raise Forbidden(f"{state} is not in {where}; only its States may join request {request['request_id']}")
    if state in request["states"]:
        return {}, []
    changes = {"states": request["states"] + [state], "updated_at": now}
    return changes, emitted(JOINED, {**request, **changes})


def may_view(request, role, subject):
    """Operators see everything; a State its own requests (and offers made to it), those it joined, and
    regional ones it may join; a network the requests of its network or regional group; a donor those it
    was proposed for or offered."""
    if role == "operator":
        return True
    if role == "state":
        return subject in request["states"] or (
            request["status"] in OPEN and subject in eligible_states(request))
    if role == "network":
        return subject in (request.get("network_id"), request.get("regional_group"))
    if role == "donor":
        return subject in (request.get("donors") or []) or subject == request.get("offered_by")
    return False


def proposed_participants(request, proposal, event_id, now):
    """What matching proposed, as stored on the request: ``(changes)``; the proposed donors join the
    request's ``donors``, so they read it and every later step reaches them."""
    participants = {
        "states_completed": sorted(set(proposal["states_completed"])),
        "states_upcoming": sorted(set(proposal["states_upcoming"])),
        "donors": sorted(set(proposal["donors"])),
        "proposed_at": now,
        "event_id": event_id,
    }
    return {"proposed_participants": participants,
            "donors": sorted(set(request.get("donors") or []) | set(participants["donors"]))}
