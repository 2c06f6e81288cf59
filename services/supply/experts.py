"""Supply: pure rules (no I/O) for the expert roster: the CV's vocabularies, the vetting state
machine, expiry, who sees what of an expert, and the geographic balance.

Functions that change an expert return the new state and the events it causes, as
``[(event type, payload)]``; the repository wraps them in envelopes, stores and relays them.
"""
from datetime import datetime, timedelta

from tacoord import reference
from tacoord.errors import Conflict, Forbidden, Rejected

EXPERT_EVENTS = ("expert.registered", "expert.updated", "expert.expired")
EXPERTISE_LEVELS = ("basic", "advanced", "expert")
LANGUAGE_LEVELS = ("basic", "intermediate", "fluent", "mother_tongue")
AVAILABILITY = ("available", "limited", "unavailable")
TITLES = ("Mr", "Ms", "Mx", "Dr", "Prof", "Judge", "Amb")
GENDERS = ("female", "male", "other", "undisclosed")
EMPLOYER_TYPES = ("government", "judiciary", "prosecution", "ACA", "FIU", "IO", "NGO", "academia",
                  "private", "independent")
LEGAL_SYSTEMS = ("common_law", "civil_law", "islamic_law", "mixed", "customary")
VETTING_STATUSES = ("draft", "submitted", "validated", "active", "expired")
DEFAULT_VALIDITY_DAYS = 4 * 365   # CBD-style: a record lapses 4 years after validation unless renewed

OWNER, OPERATOR = "owner", "operator"
# (from, to) → who may make the move. The operator (secretariat) may make any allowed move.
TRANSITIONS = {
    ("draft", "submitted"): OWNER,        # the nominator submits a complete CV
    ("submitted", "draft"): OWNER,        # recalled by the nominator, or returned as incomplete
    ("submitted", "validated"): OPERATOR, # the secretariat checked it
    ("validated", "active"): OPERATOR,    # activated: searchable (needs consent)
    ("active", "expired"): OPERATOR,      # lapsed (also automatically at expires_at)
    ("expired", "submitted"): OWNER,      # re-nominated
}
EXPERT_EVENT_FIELDS = ("expert_id", "nationality", "expertise", "languages", "regions", "countries",
                       "forms", "availability", "vetting_status", "expires_at", "updated_at", "conflict_states")

# What must be filled in before a CV can be submitted (the required CV fields).
REQUIRED_FOR_SUBMISSION = (
    ("family_name", "family name"), ("given_names", "given names"), ("nationality", "nationality"),
    ("current_position", "current position"), ("employer_type", "employer type"),
    ("expertise", "at least one UNCAC article with a level"), ("forms", "forms of assistance offered"),
    ("languages", "at least one language with a level"), ("years_of_experience", "years of experience"),
    ("availability", "availability"), ("conflict_of_interest_declaration", "a conflict-of-interest declaration"),
    ("education", "education"), ("employment_history", "employment history"),
)


class Incomplete(Rejected):
    """A CV that cannot be submitted yet: every missing field named on its own (HTTP 422 ``fields``)."""

    def __init__(self, problems):
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems), problems[0][0])
        self.problems = problems

    def messages(self):
        found = {}
        for field, message in self.problems:
            found.setdefault(field, []).append(message)
        return found


def conflict_states(expert):
    """The States whose needs this expert is never proposed to: of their nationality, of their current
    employer (``employer_country``), and any they declared (``conflict_states``, e.g. a second nationality
    or a recent government post)."""
    found = set(expert.get("declared_conflicts") or []) | {expert.get("nationality"), expert.get("employer_country")}
    return sorted(s for s in found if s)


def allowed_from(status):
    return sorted(to for (frm, to) in TRANSITIONS if frm == status)


def consented(expert):
    return bool((expert.get("consent") or {}).get("consent_given"))


def completeness_problems(expert):
    """[(field, message)] missing before submission."""
    problems = [(field, f"required before submission: {what}")
                for field, what in REQUIRED_FOR_SUBMISSION if expert.get(field) in (None, "", [], {})]
    if not expert.get("regions") and not expert.get("countries"):
        problems.append(("regions", "required before submission: regions or countries of experience"))
    if not (expert.get("contact") or {}).get("email"):
        problems.append(("contact.email", "required before submission: a contact e-mail"))
    if not consented(expert):
        problems.append(("consent.consent_given", "data-protection consent is required"))
    return problems


def transition(expert, to, actor_role, is_owner, now, validity_days=DEFAULT_VALIDITY_DAYS, by=None, note=""):
    """Move ``expert`` to ``to`` → (changes, events); raises when not allowed.

    ``actor_role`` is 'operator' or another role; ``is_owner`` whether the actor nominated it;
    ``by`` (the actor) and ``note`` go into the vetting history.
    """
    current = expert["vetting_status"]
    who = TRANSITIONS.get((current, to))
    if who is None:
        allowed = allowed_from(current)
        raise Conflict(f"expert {expert['expert_id']} is '{current}' and cannot move to '{to}'; "
                       f"allowed from '{current}': {', '.join(allowed) or 'none'}")
    if actor_role != "operator" and not (who == OWNER and is_owner):
        raise Forbidden(f"only {'the nominator or ' if who == OWNER else ''}an operator may move an expert "
                        f"from '{current}' to '{to}'")
    if to == "submitted":
        problems = completeness_problems(expert)
        if problems:
            raise Incomplete(problems)
    if to == "active" and not consented(expert):
        raise Rejected("data-protection consent is required before an expert becomes active",
                       "consent.consent_given")
    stamp = now.isoformat()
    changes = {"vetting_status": to, "updated_at": stamp}
    if to == "validated":
        changes["validated_at"] = stamp
    if to == "active":
        changes["activated_at"] = stamp
        changes["expires_at"] = (now + timedelta(days=validity_days)).isoformat()
    if to == "expired":
        changes["expired_at"] = stamp
    if to == "validated":
        changes["validated_by"] = by
    changes["vetting_history"] = expert.get("vetting_history", []) + [
        {"from": current, "to": to, "by": by, "at": stamp, "note": note}]
    kind = "expert.expired" if to == "expired" else "expert.updated"
    return changes, [(kind, expert_event_data({**expert, **changes}))]


def new_expert(cv, the_id, nominated_by, now):
    return {
        "expertise": [], "languages": [], "regions": [], "countries": [], "forms": [],
        "availability": None, "consent": {"consent_given": False, "date": None, "publish_profile": False},
        "nominated_by": nominated_by,
        **cv,
        "expert_id": the_id, "owner": nominated_by, "vetting_status": "draft", "expires_at": None,
        "created_at": now, "updated_at": now,
    }


def register_expert(cv, the_id, nominated_by, now):
    """A new record in draft → (expert, events)."""
    expert = new_expert(cv, the_id, nominated_by, now)
    return expert, [("expert.registered", expert_event_data(expert))]


def update_consequence(expert, changes):
    """Withdrawing consent takes an active expert off the roster: it expires at once."""
    consent = changes.get("consent")
    if consent is not None and not consent.get("consent_given") and expert["vetting_status"] == "active":
        return "expired"
    return None


def update_expert(expert, changes, now):
    """CV fields changed → (changes, events): ``expert.updated``, or ``expert.expired`` when the
    change takes the expert off the roster."""
    changes = {**changes, "updated_at": now.isoformat()}
    if update_consequence(expert, changes) == "expired":
        expiry, events = expire({**expert, **changes}, now)
        return {**changes, **expiry}, events
    return changes, [("expert.updated", expert_event_data({**expert, **changes}))]


def expire(expert, now):
    """Take an expert off the roster now (its validity lapsed, or consent was withdrawn)
    → (changes, events)."""
    stamp = now.isoformat()
    changes = {"vetting_status": "expired", "expired_at": stamp, "updated_at": stamp}
    return changes, [("expert.expired", expert_event_data({**expert, **changes}))]


def expert_event_data(expert):
    data = {k: expert.get(k) for k in EXPERT_EVENT_FIELDS}
    data["conflict_states"] = conflict_states(expert)
    data["expertise"] = [{"article": e["article"], "level": e["level"]} for e in expert.get("expertise", [])]
    data["languages"] = [{"code": lang["code"], "level": lang["level"]} for lang in expert.get("languages", [])]
    availability = expert.get("availability")
    data["availability"] = ({"status": availability["status"], "from": availability.get("from"),
                             "to": availability.get("to")} if availability else None)
    return data


def _parse(stamp):
    return datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp


def lapsed(expert, now):
    return expert.get("expires_at") is not None and _parse(expert["expires_at"]) <= now


def due_for_expiry(expert, now):
    return expert.get("vetting_status") == "active" and lapsed(expert, now)


def searchable(expert, now):
    """Visible to non-operators: active, consented, not past its expiry."""
    return expert.get("vetting_status") == "active" and consented(expert) and not lapsed(expert, now)


# What anyone may see of a searchable expert; the nominator and operators see the whole record.
PUBLIC_EXPERT_FIELDS = ("expert_id", "title", "nationality", "country_of_residence", "current_position",
                        "employer_type", "employer_country", "declared_conflicts", "expertise", "thematic_areas",
                        "forms", "legal_systems", "languages", "regions", "countries", "years_of_experience", "years_anti_corruption",
                        "irm_experience", "availability", "vetting_status", "expires_at", "updated_at")
NAMED_FIELDS = ("family_name", "given_names", "display_name", "employer")   # only if publish_profile


def public_expert(expert):
    view = {k: expert.get(k) for k in PUBLIC_EXPERT_FIELDS}
    if (expert.get("consent") or {}).get("publish_profile"):
        view.update({k: expert.get(k) for k in NAMED_FIELDS})
    return view


def expert_view(expert, role, subject, now):
    """What a viewer (``role``, ``subject``) sees of an expert: the whole record (operators, the
    nominator), the restricted view (anyone else, while it is searchable), or None."""
    if role == "operator" or expert["owner"] == subject:
        return expert
    return public_expert(expert) if searchable(expert, now) else None


def visible_experts(experts, filters, role, subject, now, limit):
    """The views of the experts that match ``filters`` and the viewer may see, at most ``limit``."""
    found = []
    for expert in experts:
        view = expert_view(expert, role, subject, now) if expert_matches(expert, filters) else None
        if view is not None:
            found.append(view)
            if len(found) >= limit:
                break
    return found


def expert_matches(expert, filters):
    if "article" in filters and not any(e["article"] == filters["article"] for e in expert.get("expertise", [])):
        return False
    if "language" in filters and not any(lang["code"] == filters["language"] for lang in expert.get("languages", [])):
        return False
    if "region" in filters:
        region = filters["region"]
        countries_there = set(reference.states_in_group(region))
        if region not in expert.get("regions", []) and not countries_there & set(expert.get("countries", [])):
            return False
    if "country" in filters and filters["country"] not in expert.get("countries", []):
        return False
    if "form" in filters and filters["form"] not in expert.get("forms", []):
        return False
    if "vetting_status" in filters and expert.get("vetting_status") != filters["vetting_status"]:
        return False
    return True


def balance(nationalities):
    """Experts per regional group (by nationality) against each group's share of States.

    ``ratio`` = expert share / State share: 1.0 is proportional, below 1 under-represented.
    """
    groups = reference.regional_groups()
    state_counts = {g: len(reference.states_in_group(g)) for g in groups}
    total_states = sum(state_counts.values())
    counts = {g: 0 for g in groups}
    unassigned = 0
    for iso3 in nationalities:
        group = reference.states().get(iso3, {}).get("regional_group")
        if group in counts:
            counts[group] += 1
        else:
            unassigned += 1
    total = len(nationalities)
    rows = []
    for group in sorted(groups):
        state_share = state_counts[group] / total_states
        expert_share = counts[group] / total if total else 0.0
        rows.append({"group": group, "experts": counts[group], "expert_share": round(expert_share, 4),
                     "states": state_counts[group], "state_share": round(state_share, 4),
                     "ratio": round(expert_share / state_share, 3) if total else None})
    return {"total_experts": total, "unassigned": unassigned, "groups": rows,
            "basis": "nationality of active, consented experts; State counts from the reference data"}
