"""The parties to the Convention, operators' corrections of them, and a checklist round's coverage (pure).

A party's entry comes from the reference data (``tacoord/data/uncac_parties.json``, each
with its verification label); an operator's correction, stored by this service, replaces
the fields it names and labels the entry ``operator_corrected``. A party is a party from
the day the Convention entered into force for it: 30 days after its instrument was
deposited, and not before the Convention's own entry into force (art. 68(1)-(2)).

Coverage counts **States** parties: the European Union is a party (a regional economic
integration organization, art. 67(2)-(4)) but not a State, files no self-assessment as
one and belongs to no regional group, so it is reported beside the figure, never in it.
"""
from datetime import date, timedelta

from tacoord import reference
from tacoord.errors import Rejected

IN_FORCE = date(2005, 12, 14)            # the Convention's entry into force (art. 68(1))
DAYS_AFTER_DEPOSIT = 30                  # art. 68(2)
OPENED = date(2003, 10, 31)              # adopted by the General Assembly: no instrument before it
STATUSES = ("party", "not_party", "unknown")
INSTRUMENTS = ("ratification", "acceptance", "approval", "accession", "succession")
CORRECTABLE = ("status", "instrument", "deposited", "note")
CORRECTED = "operator_corrected"
NO_GROUP = "NONE"
EVENT_FIELDS = ("party_id", "name", "kind", "status", "instrument", "deposited", "party_since", "verification",
                "source", "note", "corrected_by", "corrected_at", "previous")


def party_since(deposited):
    """The day the Convention entered into force for a party that deposited on ``deposited`` (ISO date)."""
    if not deposited:
        return None
    return max(date.fromisoformat(deposited) + timedelta(days=DAYS_AFTER_DEPOSIT), IN_FORCE).isoformat()


def _group_of(code):
    state = reference.states().get(code)
    return state.get("regional_group") if state else None


def effective(shipped, correction=None):
    """An entry as it stands: the shipped one with an operator's correction applied."""
    entry = {**shipped}
    if correction:
        entry.update({k: correction[k] for k in CORRECTABLE if k in correction})
        entry.update(verification=CORRECTED, corrected_by=correction["corrected_by"],
                     corrected_at=correction["corrected_at"], correction_source=correction["source"],
                     shipped={k: shipped.get(k) for k in ("status", "instrument", "deposited", "verification")})
    state = reference.states().get(entry["party"], {})
    entry["regional_group"] = _group_of(entry["party"])
    entry["un_member"] = bool(state.get("un_member"))
    entry["party_since"] = party_since(entry.get("deposited")) if entry.get("status") == "party" else None
    return entry


def all_parties(corrections):
    """code -> effective entry, for every shipped entry; ``corrections``: code -> stored correction."""
    return {code: effective(shipped, corrections.get(code)) for code, shipped in reference.parties().items()}


def check_date(value, field="as_of"):
    """An ISO date from a query or body, or ``Rejected`` naming the field."""
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise Rejected(f"{field} must be a date YYYY-MM-DD, not {value!r}", field)


VERIFICATIONS = tuple(reference.parties_data()["_meta"]["verification_legend"]) + (CORRECTED,)


def check_filters(args):
    """``GET /parties`` filters, checked (``Rejected`` naming the filter) and typed."""
    filters = dict(args)
    if "as_of" in filters:
        filters["as_of"] = check_date(filters["as_of"])
    allowed = {"status": STATUSES, "verification": VERIFICATIONS,
               "regional_group": tuple(sorted(reference.regional_groups())) + (NO_GROUP,)}
    for key, values in allowed.items():
        if key in filters:
            filters[key] = filters[key].upper() if key == "regional_group" else filters[key]
            if filters[key] not in values:
                raise Rejected(f"{key} must be one of: {', '.join(values)}", key)
    return filters


def passes(entry, filters):
    if "regional_group" in filters and (entry["regional_group"] or NO_GROUP) != filters["regional_group"]:
        return False
    return all(entry.get(key) == filters[key] for key in ("status", "verification") if key in filters)


# --- corrections ------------------------------------------------------------------------

def correct(shipped, stored, changes, actor, now):
    """An operator's correction of one entry. Returns ``(correction, events)``; no events when it
    changes nothing the entry says.

    ``shipped``: the reference entry; ``stored``: the correction already kept, or None;
    ``changes``: validated ``status`` / ``instrument`` / ``deposited`` / ``note`` and the
    ``source`` of the correction (how the operator knows).
    """
    before = effective(shipped, stored)
    correction = {**{k: v for k, v in (stored or {}).items() if k in CORRECTABLE},
                  **{k: v for k, v in changes.items() if k in CORRECTABLE}}
    after = effective(shipped, {**correction, "source": changes["source"], "corrected_by": actor,
                                "corrected_at": now})
    if changes.get("deposited") and not OPENED.isoformat() <= changes["deposited"] <= now[:10]:
        raise Rejected(f"a deposit date lies between {OPENED.isoformat()} (the Convention's adoption) and today",
                       "deposited")
    if after["status"] == "party" and not after.get("deposited"):
        raise Rejected("a party needs the date its instrument was deposited (YYYY-MM-DD)", "deposited")
    if after["status"] != "party" and changes.get("deposited"):
        raise Rejected(f"only a party has a deposit date; this correction makes {shipped['party']} "
                       f"'{after['status']}'", "deposited")
    if after["status"] != "party" and after.get("deposited"):
        correction["deposited"] = after["deposited"] = None
        correction["instrument"] = after["instrument"] = None
    if before["verification"] == CORRECTED and all(
            before.get(k) == after.get(k) for k in CORRECTABLE) and stored.get("source") == changes["source"]:
        return stored, []
    document = {**correction, "party_id": shipped["party"], "source": changes["source"], "corrected_by": actor,
                "corrected_at": now}
    event = {k: after.get(k) for k in EVENT_FIELDS if k not in ("party_id", "source", "previous")}
    event.update(party_id=shipped["party"], source=changes["source"],
                 previous={k: before.get(k) for k in ("status", "instrument", "deposited", "verification")})
    return document, [("party.corrected", event)]


# --- coverage -------------------------------------------------------------------------

def parties_on(entries, as_of):
    """The States parties on ``as_of`` (a date): code -> entry."""
    day = as_of.isoformat()
    return {code: e for code, e in entries.items()
            if e["kind"] == "state" and e["status"] == "party" and e["party_since"] and e["party_since"] <= day}


def _short(entry):
    return {"party": entry["party"], "name": entry["name"], "regional_group": entry["regional_group"]}


def coverage(entries, reporting, as_of):
    """A round's coverage: States parties that reported ÷ States parties on ``as_of``.

    ``entries``: code -> effective entry (:func:`all_parties`); ``reporting``: the States
    with at least one need in the round. Per UN regional group (``NONE`` for parties in
    none, e.g. PSE, COK), with the parties that have not reported. Reporters that were
    not States parties on ``as_of`` are in ``not_counted``; entries whose status or date
    is unknown cannot be counted and are listed in ``undetermined``.
    """
    parties = parties_on(entries, as_of)
    reporting = set(reporting)
    reported = sorted(reporting & set(parties))
    groups = sorted({e["regional_group"] for e in parties.values() if e["regional_group"]})
    if any(e["regional_group"] is None for e in parties.values()):
        groups.append(NO_GROUP)
    by_group = {}
    for group in groups:
        members = sorted(c for c, e in parties.items() if (e["regional_group"] or NO_GROUP) == group)
        done = [c for c in members if c in reporting]
        by_group[group] = {"reported": len(done), "parties": len(members), "rate": _rate(len(done), len(members)),
                           "not_reported": [c for c in members if c not in reporting]}
    labels = {}
    for entry in parties.values():
        labels[entry["verification"]] = labels.get(entry["verification"], 0) + 1
    organizations = [{**_short(e), "party_since": e["party_since"], "reported": c in reporting}
                     for c, e in sorted(entries.items()) if e["kind"] != "state" and e["status"] == "party"]
    return {
        "as_of": as_of.isoformat(),
        "reported": len(reported),
        "parties": len(parties),
        "rate": _rate(len(reported), len(parties)),
        "text": f"{len(reported)} of {len(parties)}",
        "by_group": by_group,
        "not_reported": [_short(parties[c]) for c in sorted(parties) if c not in reporting],
        "not_counted": sorted(reporting - set(parties)),
        "undetermined": [{**_short(e), "status": e["status"], "verification": e["verification"]}
                         for c, e in sorted(entries.items())
                         if e["kind"] == "state" and (e["status"] == "unknown"
                                                      or (e["status"] == "party" and not e["party_since"]))],
        "regional_organizations": organizations,
        "denominator_verification": dict(sorted(labels.items())),
    }


def _rate(part, whole):
    return round(part / whole, 3) if whole else 0.0
