"""A match's lifecycle: who may move it where, and what each step stores and emits (pure, no I/O).

    proposed ─▶ accepted ─▶ agreed ─▶ in_delivery ─▶ delivered
       │  (provider)  │ (State)  (provider)   (provider or State)
       └──▶ declined ◀┘                                   people's exits, with a reason:
    proposed / accepted / agreed / in_delivery ─▶ cancelled     (the provider or the State)
    proposed / accepted ─▶ retracted     (matching: the pair no longer fits, or a better one superseded it)
    agreed / in_delivery ─▶ withdrawn    (matching: the need, the offer or the expert was withdrawn)

Matching proposes, retracts and withdraws; people take the other steps over
HTTP, an operator any of them. ``declined``, ``cancelled``, ``retracted``,
``withdrawn`` and ``delivered`` are final; a declined or cancelled pair is
never proposed again. Each step is one event, past tense: ``match.accepted``,
``match.declined``, ``match.agreed``, ``match.delivery_started``,
``match.delivered``, ``match.cancelled`` (people), ``match.proposed``,
``match.retracted``, ``match.withdrawn``, ``match.rescored`` (matching).

:func:`move` checks a person's step and returns the changes to store and
its event; :func:`step_changes` is what a step stores, from the event alone
(the HTTP route, the in-memory model and the replay use it alike).
"""
from tacoord.errors import Conflict, Forbidden, Rejected

PROVIDER, STATE, OPERATOR = "provider", "State", "operator"

# (from, to) -> who may take the step (an operator may take every one).
MOVES = {
    ("proposed", "accepted"): (PROVIDER,),
    ("proposed", "declined"): (PROVIDER,),
    ("proposed", "cancelled"): (PROVIDER, STATE),
    ("accepted", "agreed"): (STATE,),
    ("accepted", "declined"): (STATE,),
    ("accepted", "cancelled"): (PROVIDER, STATE),
    ("agreed", "in_delivery"): (PROVIDER,),
    ("agreed", "cancelled"): (PROVIDER, STATE),
    ("in_delivery", "delivered"): (PROVIDER, STATE),
    ("in_delivery", "cancelled"): (PROVIDER, STATE),
}
TARGETS = ("accepted", "declined", "agreed", "in_delivery", "delivered", "cancelled")   # what people ask for
STATUSES = ("proposed", "accepted", "agreed", "in_delivery", "delivered",
            "declined", "cancelled", "retracted", "withdrawn")
HELD = ("proposed", "accepted", "agreed", "in_delivery", "delivered")   # the model holds them; the matrix counts them
ACTIVE = "active"                       # the query value meaning any held status
COMMITTED = ("agreed", "in_delivery", "delivered")   # "met": they consume the offer's capacity
RETRACTABLE = ("proposed", "accepted")  # matching retracts them when the pair no longer fits
WITHDRAWABLE = ("agreed", "in_delivery")  # matching withdraws them when the need or supply is withdrawn
SUPERSEDABLE = ("proposed",)            # a better candidate may take their place
REFUSED = ("declined", "cancelled")     # people said no: never proposed again
FINAL = tuple(s for s in STATUSES if s not in HELD) + ("delivered",)
NEEDS_REASON = ("declined", "cancelled")

# The level a need reached, from the statuses of its matches that stand (the matrix counts and the
# worklist use these words): "met" means agreed (or in delivery), never only proposed.
LEVELS = ("unmet", "proposed", "met", "delivered")

EVENT_OF = {"accepted": "match.accepted", "declined": "match.declined", "agreed": "match.agreed",
            "in_delivery": "match.delivery_started", "delivered": "match.delivered",
            "cancelled": "match.cancelled"}
STEP_EVENTS = tuple(EVENT_OF.values())
MODEL_EVENTS = ("match.proposed", "match.retracted", "match.withdrawn", "match.rescored")

# What a step event carries about the match: enough for a consumer to know the pair, and for the model to
# hold a match it had let go of (see domain.Matcher._apply_step).
MATCH_FIELDS = ("match_id", "need_id", "offer_id", "expert_id", "provider", "state", "regional_group", "article",
                "chapter", "forms", "priority", "level", "score")


class IllegalMove(Conflict):
    """A step the lifecycle does not allow from the match's status: the 409 names the status and the moves
    this caller may take from it."""

    def __init__(self, match_id, current, target, allowed):
        self.current, self.target, self.allowed = current, target, list(allowed)
        moves = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(f"match {match_id} is '{current}' and cannot move to '{target}'; "
                         f"allowed for you from '{current}': {moves}")

    def body(self):
        return {"error": str(self), "status": 409, "current": self.current, "target": self.target,
                "allowed": self.allowed}


def need_level(statuses):
    """``unmet`` (no match stands), ``proposed`` (proposed or accepted only), ``met`` (one agreed or in
    delivery), ``delivered`` (one delivered), from the statuses of a need's matches that stand."""
    statuses = set(statuses)
    if "delivered" in statuses:
        return "delivered"
    if statuses & set(COMMITTED):
        return "met"
    return "proposed" if statuses else "unmet"


def parties(match, role, subject):
    """Which sides of the match a principal speaks for: provider, State, operator (none: not a party)."""
    if role == "operator":
        return (OPERATOR,)
    found = []
    if role == "donor" and match.get("provider") and subject == match["provider"]:
        found.append(PROVIDER)
    if role == "state" and subject == match["state"]:
        found.append(STATE)
    return tuple(found)


def allowed_moves(status, sides):
    """The targets these sides may move a match to from ``status``, in lifecycle order."""
    return [to for to in TARGETS
            if (status, to) in MOVES and (OPERATOR in sides or set(sides) & set(MOVES[(status, to)]))]


def _describe(who, match):
    names = {PROVIDER: f"its provider ({match.get('provider') or 'none: an expert match'})",
             STATE: f"its State ({match['state']})"}
    return " or ".join(names[w] for w in who) + " or an operator"


def check_move(match, target, role, subject):
    """Raise ``Forbidden`` (not a party, or not this side's step) or :class:`IllegalMove`."""
    sides = parties(match, role, subject)
    if not sides:
        raise Forbidden(f"{role}:{subject} may not move match {match['match_id']}: only "
                        f"{_describe((PROVIDER, STATE), match)} may")
    if (match["status"], target) not in MOVES:
        raise IllegalMove(match["match_id"], match["status"], target, allowed_moves(match["status"], sides))
    who = MOVES[(match["status"], target)]
    if OPERATOR not in sides and not set(sides) & set(who):
        raise Forbidden(f"{role}:{subject} may not move match {match['match_id']} from '{match['status']}' to "
                        f"'{target}': only {_describe(who, match)} may")


def step_data(match, target, reason, by, at):
    """The payload of a step's event: the match, the step, its reason and who took it."""
    data = {k: match.get(k) for k in MATCH_FIELDS if k in match}
    data.update({"status": target, "previous_status": match["status"], "reason": reason, "by": by, "at": at})
    return data


def step_changes(match, data):
    """What a step stores on the match, from its event's data (the route, the model and the replay agree)."""
    step = {"from": data["previous_status"], "to": data["status"], "by": data["by"], "at": data["at"],
            "reason": data.get("reason")}
    return {"status": data["status"], "reason": data.get("reason"), "updated_at": data["at"],
            "steps": list(match.get("steps") or []) + [step]}


def move(match, target, role, subject, reason, actor, now):
    """A person's step on a stored match: ``(changes, [(event type, data)])``, or raises.

    Checks, in order: the principal is a party of the match (403), the step is legal from the
    match's status (409, naming the moves this principal may take), it is this side's step (403),
    a decline or cancellation says why (422 on ``reason``).
    """
    check_move(match, target, role, subject)
    if target in NEEDS_REASON and not (reason or "").strip():
        raise Rejected(f"a reason is required to move a match to '{target}'", "reason")
    data = step_data(match, target, (reason or "").strip() or None, actor, now)
    return step_changes(match, data), [(EVENT_OF[target], data)]
