"""Alerts people can close: the lifecycle of a duplication or gap alert (pure: no I/O).

An alert is ``open`` when matching raises it, ``acknowledged`` when someone has seen it (who,
a note), ``resolved`` when it is closed (how, from a closed list, and a note):

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved
      └───────────────────resolve────────────────────▲

People take the steps over HTTP (:func:`acknowledge`, :func:`resolve`): an operator on any
alert, a provider on a duplication alert that names it, a State on the gap alert of its own
need. Matching resolves an alert itself when its cause goes (:func:`resolved_by_matching`,
resolution ``cause_gone`` or ``superseded``). Each step is one ``alert.acknowledged`` or
``alert.resolved`` event carrying the actor and the reason. :func:`step_from_event` gives
back the change an event stands for, so the read model and a replay learn of a step from the
event alone.
"""
from tacoord.errors import Conflict, Forbidden, Rejected

STATUSES = ("open", "acknowledged", "resolved")
UNRESOLVED = ("open", "acknowledged")
RANK = {status: rank for rank, status in enumerate(STATUSES)}
MOVES = {"open": ("acknowledge", "resolve"), "acknowledged": ("resolve",), "resolved": ()}
STATUS_AFTER = {"acknowledge": "acknowledged", "resolve": "resolved"}
KINDS = ("duplication", "gap")
ID_FIELD = {"duplication": "duplication_id", "gap": "gap_id"}

# How people close an alert (a closed list per kind; "other" needs a note).
RESOLUTIONS = {
    "duplication": {"provider_withdrew": "one provider withdrew",
                    "work_split": "the providers agreed to split the work",
                    "not_a_duplication": "not a duplication",
                    "other": "other"},
    "gap": {"assistance_arranged": "assistance was arranged outside the matches",
            "need_withdrawn": "the need was withdrawn or is no longer a priority",
            "not_a_gap": "not a gap",
            "other": "other"},
}
# How matching closes one itself (never chosen by people).
AUTOMATIC = {"cause_gone": "its cause went", "superseded": "a wider alert replaced it"}


def status_of(alert):
    """An alert's status; one stored before alerts had a status is ``open``."""
    return alert.get("status") or "open"


def public(alert):
    """The alert as the HTTP routes show it: ``alert_id`` and a status always there."""
    return {"alert_id": alert_id_of(alert), **alert, "status": status_of(alert)}


def alert_id_of(alert):
    return alert.get(ID_FIELD[alert["alert"]])


def describe_moves(status):
    moves = MOVES[status]
    return ", ".join(moves) if moves else f"none ('{status}' is final)"


def _check_move(alert, move):
    status = status_of(alert)
    if move not in MOVES[status]:
        raise Conflict(f"cannot {move} alert {alert_id_of(alert)}: it is '{status}'; "
                       f"allowed from '{status}': {describe_moves(status)}")


def parties(alert):
    """Who besides an operator may take an alert's steps: ``[(role, subject)]``."""
    if alert["alert"] == "duplication":
        return [("donor", provider) for provider in alert.get("providers") or ()]
    if alert.get("kind") == "unmatched_priority_need" and alert.get("state"):
        return [("state", alert["state"])]
    return []  # a no_supply gap concerns a whole regional group: operators only


def check_actor(alert, role, subject):
    """Raise ``Forbidden`` (naming the role and the scope) unless this principal may act on the alert."""
    if role == "operator" or (role, subject) in parties(alert):
        return
    named = parties(alert)
    if alert["alert"] == "duplication":
        scope = "an operator or one of the providers it names (" + ", ".join(s for _, s in named) + ")"
    elif named:
        scope = f"an operator or the State whose need it is ({named[0][1]})"
    else:
        scope = "an operator (a no_supply gap concerns a whole regional group)"
    raise Forbidden(f"{role}:{subject} may not act on {alert['alert']} alert {alert_id_of(alert)}; "
                    f"only {scope}")


def _resolution_reason(kind, resolution, note):
    if resolution not in RESOLUTIONS[kind]:
        raise Rejected(f"not a way to resolve a {kind} alert; one of: {', '.join(RESOLUTIONS[kind])}",
                       "resolution")
    if resolution == "other" and not note:
        raise Rejected("required when the resolution is 'other'", "note")
    label = RESOLUTIONS[kind][resolution]
    return f"{label}: {note}" if note else label


def step_changes(status, actor, at, note=None, resolution=None, reason=None, automatic=False):
    """The fields one step sets on the stored alert."""
    if status == "acknowledged":
        return {"status": status, "acknowledged": {"by": actor, "at": at, "note": note}}
    return {"status": status, "resolved": {"by": actor, "at": at, "resolution": resolution, "note": note,
                                           "reason": reason, "automatic": automatic}}


def event_data(alert, changes):
    """The payload of ``alert.<status>``: what the alert names, and the step (actor, reason)."""
    status = changes["status"]
    step = changes[status]
    kind = alert["alert"]
    data = {"alert_id": alert_id_of(alert), "alert": kind, ID_FIELD[kind]: alert_id_of(alert),
            "gap_kind": alert.get("kind") if kind == "gap" else None,
            "state": alert.get("state"), "regional_group": alert.get("regional_group"),
            "article": alert["article"], "form": alert.get("form"), "providers": list(alert.get("providers") or []),
            "need_id": alert.get("need_id"), "status": status, "actor": step["by"], "at": step["at"],
            "note": step["note"]}
    if status == "resolved":
        data.update(resolution=step["resolution"], reason=step["reason"], automatic=step["automatic"])
    else:
        data["reason"] = step["note"]
    return data


def acknowledge(alert, role, subject, note, now):
    """A person has seen the alert. Returns ``(changes, events)``; 403 before 409."""
    check_actor(alert, role, subject)
    _check_move(alert, "acknowledge")
    changes = step_changes("acknowledged", f"{role}:{subject}", now, note=note)
    return changes, [("alert.acknowledged", event_data(alert, changes))]


def resolve(alert, role, subject, resolution, note, now):
    """A person closes the alert, saying how. Returns ``(changes, events)``; 403, then 409, then 422."""
    check_actor(alert, role, subject)
    _check_move(alert, "resolve")
    reason = _resolution_reason(alert["alert"], resolution, note)
    changes = step_changes("resolved", f"{role}:{subject}", now, note=note, resolution=resolution, reason=reason)
    return changes, [("alert.resolved", event_data(alert, changes))]


def resolved_by_matching(alert, resolution, reason, actor, now):
    """Matching closes an alert whose cause went: ``(changes, (type, data))``."""
    changes = step_changes("resolved", actor, now, resolution=resolution, reason=reason, automatic=True)
    return changes, ("alert.resolved", event_data(alert, changes))


def step_from_event(data):
    """The change an ``alert.*`` event stands for: ``(alert id, changes)``."""
    changes = step_changes(data["status"], data["actor"], data["at"], note=data.get("note"),
                           resolution=data.get("resolution"), reason=data.get("reason"),
                           automatic=bool(data.get("automatic")))
    return data["alert_id"], changes


def moves_forward(alert, changes):
    """A step applies only forward (a late acknowledgement never reopens a resolved alert)."""
    return RANK[changes["status"]] > RANK[status_of(alert)]


def upsert(document):
    """The update that stores a detected alert: its status only when it is inserted, so that
    writing it again never undoes a step people took."""
    fields = {k: v for k, v in document.items() if k != "status"}
    return {"$set": fields, "$setOnInsert": {"status": document.get("status", "open")}}


def merged(stored, document):
    """:func:`upsert` without a database: ``stored`` updated with ``document``, keeping its status."""
    kept = stored.get("status")
    stored.update(document)
    if kept:
        stored["status"] = kept
    return stored


# --- GET /alerts -------------------------------------------------------------------

def alerts_query(filters):
    """The MongoDB query of ``GET /alerts`` (status, kind, State, regional group, article, provider, need)."""
    query = {}
    if "kind" in filters:
        query["alert"] = filters["kind"]
    if "status" in filters:
        # an alert stored before alerts had a status is open
        query["status"] = {"$in": ["open", None]} if filters["status"] == "open" else filters["status"]
    for name in ("state", "regional_group", "article", "need_id"):
        if name in filters:
            query[name] = filters[name]
    if "provider" in filters:
        query["providers"] = filters["provider"]
    return query
