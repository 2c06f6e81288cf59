"""What a notification says (pure: no I/O).

For people, an e-mail in plain text and in HTML: what happened in a sentence (and why, in the
words of whoever did it), the need and the offer in brief (the State's name, the article's
number and title, the forms of assistance, the priority, the provider), why a match was made
(its score parts, their weights, in words) and a link to the item in the workspace. The HTML
escapes every value and loads nothing from elsewhere (no images, styles or scripts). For
machines, the JSON body of a webhook or AMQP notification (the event as it was published).

Both parts are made from one list of blocks per event (:func:`describe`), so they say the same.
"""
import html

from tacoord import reference, workspace

PRIORITY_WORDS = {1: "1 (highest)", 2: "2", 3: "3 (lowest)"}

# What each score part of a match stands for (services/matching: scoring.py, read_model.py).
PART_WORDS = {
    "priority": "the need's priority",
    "language": "a language both sides work in",
    "level": "how well the offer's level (bilateral, regional, global) suits the need",
    "capacity": "the capacity the offer has left",
    "availability": "the expert's availability",
    "experience": "the expert's experience of the State or its region",
}

# What happened, in a sentence, by event type (``family.*`` for the rest of a family); the
# placeholders are filled by :func:`_words`.
SENTENCES = {
    "notification.test": "A test notification from tacoord: this channel works. Nothing happened.",
    "match.proposed": "A match was proposed: {supplier}'s offer for {states} need on {article}.",
    "match.accepted": "{by} accepted the match of {supplier}'s offer with {states} need on {article}; "
                      "it is for {state} to agree it.",
    "match.declined": "{by} declined the match of {supplier}'s offer with {states} need on {article}.",
    "match.agreed": "{by} agreed the match: {supplier} is to assist {state} on {article}.",
    "match.delivery_started": "{by} started delivering {supplier}'s assistance to {state} on {article}.",
    "match.delivered": "{by} recorded {supplier}'s assistance to {state} on {article} as delivered.",
    "match.cancelled": "{by} cancelled the match of {supplier}'s offer with {states} need on {article}.",
    "match.withdrawn": "The match of {supplier}'s offer with {states} need on {article} was withdrawn "
                       "({previous_status}: its need or supply was withdrawn).",
    "match.retracted": "The match of {supplier}'s offer with {states} need on {article} was retracted "
                       "(it no longer fits, or a better one took its place).",
    "match.rescored": "The match of {supplier}'s offer with {states} need on {article} was scored again: "
                      "{previous_score} → {score}.",
    "duplication.detected": "Possible duplication: {providers} each offer {form} to {state} on {article}, "
                            "{period}.",
    "alert.acknowledged": "{by} acknowledged the {alert} alert on {state} and {article}.",
    "alert.resolved": "{by} resolved the {alert} alert on {state} and {article}.",
    "gap.detected": "{gap}",
    "need.submitted": "{state} asked for assistance on {article}, priority {priority}.",
    "need.updated": "{states} need on {article} was updated.",
    "need.withdrawn": "{state} withdrew its need on {article}.",
    "offer.published": "{supplier} published an offer of assistance ({level}).",
    "offer.updated": "{supplier}'s offer of assistance was updated.",
    "offer.withdrawn": "{supplier} withdrew its offer of assistance.",
    "workshop.*": "{states} request ({kind}) is now {status}.",
}
# The fields that say why, in the words of whoever took the step, first found first.
REASON_FIELDS = ("reason", "withdrawal_reason", "note")


# -- words for values ------------------------------------------------------------

def state_words(iso3):
    """``Kenya (KEN)``; the code alone when the reference data does not know it."""
    if not iso3:
        return "the State"
    known = reference.states().get(iso3)
    return f"{known['name']} ({iso3})" if known else str(iso3)


def state_possessive(iso3):
    """``Kenya's`` (``the State's`` when unnamed)."""
    known = reference.states().get(iso3) if iso3 else None
    name = known["name"] if known else (iso3 or "the State")
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def article_words(article):
    """``article 9 (Public procurement and management of public finances)``."""
    if not isinstance(article, int):
        return "the article"
    known = reference.articles().get(article)
    return f"article {article} ({known['title']})" if known else f"article {article}"


def form_words(forms):
    labels = reference.assistance_forms()
    forms = [forms] if isinstance(forms, str) else list(forms or ())
    return ", ".join(labels[f]["label"] if f in labels else str(f) for f in forms) or "—"


def listed(items):
    """``A``, ``A and B``, ``A, B and C``."""
    items = [str(i) for i in items]
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def supplier_words(data):
    """The provider (with its name when known) or the expert a payload names."""
    provider = data.get("provider")
    if provider:
        return f"{data['provider_name']} ({provider})" if data.get("provider_name") else str(provider)
    if data.get("expert_id"):
        return f"expert {data['expert_id']}"
    return "the provider"


def actor_words(actor):
    """Who took a step: ``donor:GB-GOV-1`` → GB-GOV-1, ``state:KEN`` → Kenya (KEN)."""
    if not isinstance(actor, str) or ":" not in actor:
        return "Someone"
    role, _, subject = actor.partition(":")
    if role == "state":
        return state_words(subject)
    if role == "operator":
        return "An operator"
    if role == "service":
        return "tacoord itself"
    return subject or role


def period_words(period):
    if not isinstance(period, dict) or not (period.get("start") or period.get("end")):
        return "though their periods do not overlap"
    return f"over the same period, {period.get('start') or '…'} to {period.get('end') or '…'}"


def gap_words(data):
    if data.get("kind") == "unmatched_priority_need":
        return (f"Gap: {state_words(data.get('state'))}'s priority need on {article_words(data.get('article'))} "
                f"has had no match since {data.get('since')}.")
    group = reference.regional_groups().get(data.get("regional_group"), {}).get("official_name")
    where = state_words(data["state"]) if data.get("state") else (group or "the region")
    return f"Gap: no offer of assistance on {article_words(data.get('article'))} reaches {where}."


def _words(event):
    data = event.get("data") or {}
    by = data.get("by") or data.get("actor") or event.get("actor")
    return {
        "state": state_words(data.get("state")), "states": state_possessive(data.get("state")),
        "article": article_words(data.get("article")),
        "supplier": supplier_words(data), "by": actor_words(by),
        "providers": listed(data.get("providers") or ()) or "several providers",
        "form": form_words(data.get("form") or data.get("forms")),
        "period": period_words(data.get("period")), "gap": gap_words(data),
        "alert": data.get("alert") or "", "priority": PRIORITY_WORDS.get(data.get("priority"), "—"),
        "level": data.get("level") or "—", "kind": str(data.get("kind") or "").replace("_", " "),
        "status": str(data.get("status") or "").replace("_", " "),
        "previous_status": str(data.get("previous_status") or "agreed").replace("_", " "),
        "score": _number(data.get("score")), "previous_score": _number(data.get("previous_score")),
    }


def _number(value):
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def sentence(event):
    """What happened, in one sentence."""
    event_type = event.get("type") or ""
    template = SENTENCES.get(event_type) or SENTENCES.get(event_type.split(".")[0] + ".*")
    if template is None:
        return f"{event_type} happened."
    text = template.format_map(_words(event))
    return text[0].upper() + text[1:]


# -- the blocks of one event -------------------------------------------------------

def _need_lines(data):
    if not data.get("state") or not isinstance(data.get("article"), int):
        return []
    group = reference.regional_groups().get(data.get("regional_group"), {}).get("official_name")
    chapter = reference.articles().get(data["article"], {}).get("chapter_roman")
    lines = [f"{state_words(data['state'])}{', ' + group if group else ''}: UNCAC "
             f"{article_words(data['article'])}{f', chapter {chapter}' if chapter else ''}"]
    details = []
    if data.get("priority") in PRIORITY_WORDS:
        details.append(f"priority {PRIORITY_WORDS[data['priority']]}")
    if data.get("forms") or data.get("form"):
        details.append(f"forms of assistance: {form_words(data.get('forms') or data.get('form'))}")
    return lines + (["; ".join(details)] if details else [])


def _supply_lines(data):
    if not (data.get("provider") or data.get("expert_id")):
        return []
    line = supplier_words(data)
    if data.get("level") and data["level"] != "expert":
        line += f", {data['level']}"
    return [line]


def _duplicating_offers(data):
    lines = []
    for offer in data.get("offers") or ():
        who = supplier_words(offer)
        lines.append(f"{who}, {offer.get('level') or '—'}: {form_words(offer.get('forms'))}; "
                     f"{offer.get('period_start') or '…'} to {offer.get('period_end') or '…'}")
    return lines


def _why_lines(data):
    explanation = data.get("explanation") or {}
    parts, weights = explanation.get("score_parts") or {}, explanation.get("weights") or {}
    lines = []
    for name, value in parts.items():
        words = PART_WORDS.get(name, name.replace("_", " "))
        weight = f" × weight {weights[name]:.2f}" if isinstance(weights.get(name), (int, float)) else ""
        lines.append(f"{words}: {_number(value)} of 1{weight}")
    if explanation.get("constraints_met"):
        lines.append("conditions met: " + "; ".join(str(c) for c in explanation["constraints_met"]))
    return lines


def describe(event, workspace_url):
    """``{"sentence", "reason", "sections": [(title, [lines])], "link"}`` of one event."""
    data = event.get("data") or {}
    reason = next((str(data[f]) for f in REASON_FIELDS if data.get(f)), None)
    sections = []
    family = (event.get("type") or "").split(".")[0]
    if family == "duplication":
        sections.append(("The offers", _duplicating_offers(data)))
    elif family == "alert":
        sections.append(("What it is about", _need_lines(data)))
        providers = data.get("providers") or ()
        sections.append(("The providers it names", [listed(providers)] if providers else []))
    else:
        sections.append(("The need", _need_lines(data)))
        sections.append(("The offer" if data.get("provider") else "The supplier", _supply_lines(data)))
    if data.get("explanation"):
        score = _number(data.get("score"))
        sections.append((f"Why it matched (score {score} of 1: the weighted mean of these parts)", _why_lines(data)))
    return {"sentence": sentence(event), "reason": reason,
            "sections": [(title, lines) for title, lines in sections if lines],
            "link": workspace.event_link(workspace_url, event)}


def headline(event):
    """A subject line's words after the event type: ``KEN (Kenya), article 9, GB-GOV-1``."""
    data = event.get("data") or {}
    bits = []
    if data.get("state"):
        name = reference.states().get(data["state"], {}).get("name")
        bits.append(f"{data['state']} ({name})" if name else str(data["state"]))
    elif data.get("regional_group"):
        bits.append(str(data["regional_group"]))
    if isinstance(data.get("article"), int):
        bits.append(f"article {data['article']}")
    providers = data.get("providers") or ([data["provider"]] if data.get("provider") else [])
    bits.extend(str(p) for p in providers)
    return ", ".join(bits)


# -- rendering ---------------------------------------------------------------------

def _text(block):
    lines = [block["sentence"]]
    if block["reason"]:
        lines.append(f"Reason: {block['reason']}")
    for title, items in block["sections"]:
        lines += ["", f"{title}:"] + [f"  - {item}" for item in items]
    if block["link"]:
        lines += ["", f"Open it in the workspace: {block['link']}"]
    return lines


def _html(block):
    e = html.escape
    out = [f'<h2 style="font-size:1.1em;margin:1em 0 .3em">{e(block["sentence"])}</h2>']
    if block["reason"]:
        out.append(f"<p><strong>Reason:</strong> {e(block['reason'])}</p>")
    for title, items in block["sections"]:
        out.append(f'<h3 style="font-size:1em;margin:.8em 0 .2em">{e(title)}</h3><ul>'
                   + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
    if block["link"]:
        out.append(f'<p><a href="{e(block["link"], quote=True)}">Open it in the workspace</a></p>')
    return "".join(out)


def render_email(subscription, events, unsubscribe_url, workspace_url=None, digest=False):
    """``(subject, plain text, HTML)`` of one notification or one daily digest (``events``
    completed with what notify knows of the matches and offers they name)."""
    if digest:
        subject = f"[tacoord] daily digest: {len(events)} notification(s)"
    else:
        words = headline(events[0])
        subject = f"[tacoord] {events[0].get('type')}" + (f": {words}" if words else "")
    blocks = [describe(event, workspace_url) for event in events]
    greeting = f"tacoord notification for {subscription['kind']} {subscription['subject']}"
    text = [greeting, ""]
    for number, block in enumerate(blocks, 1):
        if digest:
            text.append(f"{number}. ({events[number - 1].get('occurred_at')})")
        text += _text(block) + [""]
    text += ["--", f"Unsubscribe: {unsubscribe_url}"]
    e = html.escape
    body = "<hr>".join(_html(block) for block in blocks)
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{e(subject)}</title></head>'
            f'<body style="font-family:sans-serif;line-height:1.4;max-width:40em">'
            f"<p>tacoord notification for {e(subscription['kind'])} <strong>{e(subscription['subject'])}</strong></p>"
            f"{body}<hr><p><small><a href=\"{e(unsubscribe_url, quote=True)}\">Unsubscribe</a></small></p>"
            f"</body></html>")
    return subject, "\n".join(text) + "\n", page


def webhook_body(notification_id, subscription, events, unsubscribe_url, digest=False):
    """The JSON body of a webhook or AMQP notification: the event(s) as published."""
    body = {"notification_id": notification_id, "subscription_id": subscription["subscription_id"],
            "unsubscribe_url": unsubscribe_url}
    if digest:
        body.update({"digest": True, "events": events})
    else:
        body["event"] = events[0]
    return body
