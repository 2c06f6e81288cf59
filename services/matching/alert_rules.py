"""When matching raises a duplication alert, and when it closes an alert itself (pure).

Called by :class:`services.matching.domain.Matcher` as events change the model:

- :func:`settle_duplications` on every State × article × form whose matches an event may have
  changed. A duplication is two providers or more matched there
  (:meth:`~services.matching.read_model.ReadModel.matched_providers`: an active offer with a
  match that stands, proposed to delivered): assistance is duplicated as soon as two providers
  are proposed for the same need combination, before anyone agrees, and stays so while they
  deliver. An unresolved duplication alert with fewer than two of its providers still matched
  (a match declined, cancelled, retracted or withdrawn, an offer withdrawn or back in the
  pipeline) is resolved (``cause_gone``); two or more providers matched and not yet reported
  raise ``duplication.detected``, naming every provider, their offers, the form and the
  overlapping period, and close the narrower alerts it replaces (``superseded``);
- :func:`settle_gaps` after every consumed event: a gap on a need is resolved (``cause_gone``)
  when the need has a match that stands (a proposal is enough: a gap is a need no provider is
  matched to; whether the match is agreed is the worklist's and the matrix's concern) or is no
  longer an open priority-1 need; a no_supply gap when its article × group has supply again
  (or no open need left).

Each closing is a guarded step (``Outcome.alert_step``): it is stored only while the alert is
still unresolved, so it never overwrites what a person decided meanwhile.
"""
from services.matching import alerts
from services.matching.read_model import stable_id
from services.matching.scoring import OPEN_NEED, group_of

MATCHING = "service:matching"


def close(model, out, alert_id, resolution, reason, now, cause=None):
    """Matching resolves an alert: a guarded step, and the book forgets the alert."""
    item = model.alert_book.items[alert_id]
    changes, (event_type, data) = alerts.resolved_by_matching(item, resolution, reason, MATCHING, now)
    out.alert_step(alert_id, changes, event_type, data, cause)
    model.alert_book.drop(alert_id)


def overlap(offers):
    """The period every offer covers (``None`` ends are open); ``None`` when they do not overlap."""
    start = max((o["period_start"] for o in offers if o.get("period_start")), default=None)
    end = min((o["period_end"] for o in offers if o.get("period_end")), default=None)
    if start and end and start[:10] > end[:10]:
        return None
    return {"start": start, "end": end}


def duplication_data(model, dup_id, combo, providers):
    state, article, form = combo
    offer_ids = sorted(o for p in providers for o in providers[p])
    offers = [model.offers[o] for o in offer_ids]
    return {"duplication_id": dup_id, "state": state, "regional_group": group_of(state), "article": article,
            "form": form, "providers": sorted(providers), "offer_ids": offer_ids,
            "offers": [{"offer_id": o["offer_id"], "provider": o["provider"], "provider_name": o.get("provider_name"),
                        "level": o["level"], "forms": list(o["forms"]), "period_start": o.get("period_start"),
                        "period_end": o.get("period_end")} for o in offers],
            "period": overlap(offers)}


def settle_duplications(model, out, combo, now, cause=None):
    """Close what no longer holds on one State × article × form, then report what is new."""
    book = model.alert_book
    providers = model.matched_providers(combo)
    committed = set(providers)
    state, article, form = combo
    for alert_id in book.unresolved(book.by_combo.get(combo, ())):
        named = book.items[alert_id]["providers"]
        left = [p for p in named if p in committed]
        if len(left) < 2:
            gone = ", ".join(p for p in named if p not in committed)
            rest = f"only {left[0]} remains" if left else "no provider remains"
            close(model, out, alert_id, "cause_gone",
                  f"{gone} no longer matched to {state} × article {article} × {form}; {rest}", now, cause)
    if len(committed) < 2:
        return
    offer_ids = {o for p in committed for o in providers[p]}
    for alert_id in book.by_combo.get(combo, ()):
        item = book.items[alert_id]
        if item["status"] in alerts.UNRESOLVED and committed <= set(item["providers"]):
            return  # reported, and still open
        if item["status"] == "resolved" and offer_ids <= set(item["offer_ids"]):
            return  # people closed it for these very offers
    names = sorted(committed)
    dup_id = stable_id("dup", state, article, form, *names)
    if dup_id in model.alerts:  # the same providers again, after their alert was closed
        dup_id = stable_id("dup", state, article, form, *names, now)
        if dup_id in model.alerts:
            return
    model.alerts.add(dup_id)
    data = duplication_data(model, dup_id, combo, providers)
    out.alert(dup_id, "duplication", "duplication.detected", data, now, cause)
    narrower = [a for a in book.unresolved(book.by_combo.get(combo, ())) if set(book.items[a]["providers"]) < committed]
    book.add(dup_id, {**data, "alert": "duplication", "status": "open"})
    for alert_id in narrower:
        close(model, out, alert_id, "superseded", f"superseded by {dup_id}, which names {', '.join(names)}",
              now, cause)


def _need_gap_gone(model, need_id):
    need = model.needs.get(need_id)
    if need is None or need["status"] not in OPEN_NEED:
        return f"the need is {need['status'] if need else 'gone'}"
    if need["priority"] != 1:
        return f"the need is priority {need['priority']} now"
    matched = model.need_matches.get(need_id)
    if matched:
        return "the need was matched (" + ", ".join(sorted(matched)) + ")"
    return None


def touched_needs(model, out):
    """The needs an outcome changed, matched or whose matches it wrote or saw a person step on (a write
    names only the fields it sets: the need of a match the model no longer holds is in its document)."""
    found = {entity_id for kind, entity_id in out.entities if kind == "needs"}
    found.update(doc["need_id"] for (collection, _), (doc, _) in out.docs.items()
                 if collection == "matches" and "need_id" in doc)
    found.update(model.matches[mid]["need_id"] for mid in out.writes if mid in model.matches)
    return found


def settle_gaps(model, out, now, need_ids):
    """Resolve the gaps whose cause went: the needs given, and every unresolved no_supply gap."""
    book = model.alert_book
    for need_id in sorted(need_ids):
        reason = _need_gap_gone(model, need_id) if book.by_need.get(need_id) else None
        if reason:
            for alert_id in sorted(book.by_need[need_id]):
                close(model, out, alert_id, "cause_gone", reason, now)
    for key in sorted(book.no_supply, key=lambda k: (k[0], str(k[1]))):
        article, group = key
        if model.supply.get(key, 0) > 0:
            reason = f"offers or experts reach article {article} in {group} again"
        elif not model.open_by_group.get(key):
            reason = f"no open need on article {article} is left in {group}"
        else:
            continue
        for alert_id in sorted(book.no_supply.get(key, ())):
            close(model, out, alert_id, "cause_gone", reason, now)
