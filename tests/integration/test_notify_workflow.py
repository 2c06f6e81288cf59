"""Notify tells the people concerned of the coordination workflow's steps, in words they can
read: real broker and database, real webhook receivers and a real SMTP server (aiosmtpd) on
loopback."""
import json
import re

from services.matching.service import MatchingService
from services.notify.service import NotifyService
from tacoord.envelope import new_event
from tacoord.testing import wait_until
from tests.integration.test_matching_lifecycle import PROVIDER, STATE, moved
from tests.integration.test_matching_service import emit, need_data, offer_data
from tests.integration.test_notify_delivery import (  # noqa: F401 (receivers, smtp are fixtures)
    FAST, deliveries, handled, publish, receivers, smtp, subscribe)

WORKSPACE = "https://workspace.example/"

OFFER = {"offer_id": "off-1", "provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral",
         "scope_states": ["KEN"], "scope_groups": [], "articles": [9], "chapters": [], "forms": ["LEGAL_ADVICE"],
         "capacity": 2, "period_start": "2026-01-01", "period_end": "2027-12-31", "languages": ["en"],
         "status": "active", "iati_identifier": None, "created_at": "2026-11-01T09:00:00+00:00",
         "updated_at": "2026-11-01T09:00:00+00:00"}
PROPOSED = {"match_id": "mat-1", "need_id": "KEN-9-abc", "offer_id": "off-1", "provider": "GB-GOV-1",
            "state": "KEN", "regional_group": "AFRICAN", "article": 9, "chapter": 2,
            "forms": ["LEGAL_ADVICE"], "priority": 1, "level": "bilateral", "score": 0.9,
            "explanation": {"constraints_met": ["geography: KEN in scope_states"],
                            "score_parts": {"priority": 1.0, "language": 1.0, "level": 1.0, "capacity": 0.5},
                            "weights": {"priority": 0.3, "language": 0.2, "level": 0.3, "capacity": 0.2}}}
ALERT_STEP = {"alert_id": "dup-1", "alert": "duplication", "duplication_id": "dup-1", "gap_kind": None,
              "state": "KEN", "regional_group": "AFRICAN", "article": 9, "form": "LEGAL_ADVICE",
              "providers": ["DE-BMZ-1", "GB-GOV-1"], "need_id": None, "at": "2026-11-02T09:30:00+00:00"}
DUPLICATION = {"duplication_id": "dup-1", "state": "KEN", "regional_group": "AFRICAN", "article": 9,
               "form": "LEGAL_ADVICE", "providers": ["DE-BMZ-1", "GB-GOV-1"], "offer_ids": ["off-2", "off-1"],
               "offers": [{"offer_id": "off-2", "provider": "DE-BMZ-1", "provider_name": "BMZ", "level": "regional",
                           "forms": ["LEGAL_ADVICE"], "period_start": "2026-06-01", "period_end": "2027-06-30"},
                          {"offer_id": "off-1", "provider": "GB-GOV-1", "provider_name": "FCDO",
                           "level": "bilateral", "forms": ["LEGAL_ADVICE", "ONSITE_EXPERT"],
                           "period_start": "2026-01-01", "period_end": "2027-12-31"}],
               "period": {"start": "2026-06-01", "end": "2027-06-30"}}


def parts(mail):
    """(plain text, HTML) of a multipart/alternative e-mail, decoded."""
    assert [p.get_content_type() for p in mail.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    text, html = mail.get_payload()
    return text.get_payload(decode=True).decode(), html.get_payload(decode=True).decode()


def visible(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'").replace("&amp;", "&")


def bodies(hook):
    return [json.loads(r["body"])["event"] for r in hook.received]


def test_an_e_mail_says_what_happened_the_need_and_offer_why_it_matched_and_links_to_the_workspace(
        sandbox, start, smtp):
    start(NotifyService, TACOORD_SMTP_PORT=smtp.port, TACOORD_WORKSPACE_URL=WORKSPACE, **FAST)
    subscribe(sandbox, "state", "KEN", {"channel": "email", "email": "focal.point@ken.example",
                                        "filter": {"types": ["match.*"]}})
    before = handled("offer.published")
    publish(sandbox, "offer.published", OFFER, event=new_event("offer.published", OFFER, "supply"))
    wait_until(lambda: handled("offer.published") > before, message="the offer seen (its provider's name kept)")

    publish(sandbox, "match.proposed", PROPOSED)

    [mail] = wait_until(lambda: smtp.messages(), message="the e-mail")
    assert mail["Subject"] == "[tacoord] match.proposed: KEN (Kenya), article 9, GB-GOV-1"
    text, html = parts(mail)
    for said in ("A match was proposed: FCDO (GB-GOV-1)'s offer for Kenya's need on article 9 "
                 "(Public procurement and management of public finances).",
                 "Kenya (KEN), African States: UNCAC article 9 (Public procurement and management of public "
                 "finances), chapter II",
                 "priority 1 (highest); forms of assistance: Legal advice",
                 "FCDO (GB-GOV-1), bilateral",
                 "Why it matched (score 0.90 of 1: the weighted mean of these parts)",
                 "the need's priority: 1.00 of 1 × weight 0.30",
                 "the capacity the offer has left: 0.50 of 1 × weight 0.20"):
        assert said in text, said
        assert said in visible(html), said
    assert f"Open it in the workspace: {WORKSPACE}#/matches/mat-1" in text
    assert f'<a href="{WORKSPACE}#/matches/mat-1">Open it in the workspace</a>' in html
    assert not re.search(r"<(img|script|link|iframe|style)\b|\bsrc=", html, re.I)


def test_a_duplication_e_mail_names_every_provider_the_forms_and_the_overlapping_period(sandbox, start, smtp):
    start(NotifyService, TACOORD_SMTP_PORT=smtp.port, TACOORD_WORKSPACE_URL=WORKSPACE, **FAST)
    subscribe(sandbox, "network", "AFRICAN", {"channel": "email", "email": "desk@african.example"})

    publish(sandbox, "duplication.detected", DUPLICATION)

    [mail] = wait_until(lambda: smtp.messages(), message="the e-mail")
    text, html = parts(mail)
    sentence = ("Possible duplication: DE-BMZ-1 and GB-GOV-1 each offer Legal advice to Kenya (KEN) on article 9 "
                "(Public procurement and management of public finances), over the same period, 2026-06-01 to "
                "2027-06-30.")
    assert sentence in text and sentence in visible(html)
    assert "BMZ (DE-BMZ-1), regional: Legal advice; 2026-06-01 to 2027-06-30" in text
    assert ("FCDO (GB-GOV-1), bilateral: Legal advice, On-site assistance by an anti-corruption expert; "
            "2026-01-01 to 2027-12-31") in text
    assert f"{WORKSPACE}#/alerts/dup-1" in text


def test_an_alert_step_reaches_the_other_providers_it_names_and_the_state_not_whoever_took_it(
        sandbox, start, receivers):
    start(NotifyService, **FAST)
    hooks = {who: receivers() for who in ("GB-GOV-1", "DE-BMZ-1", "US-GOV-1", "KEN", "UGA")}
    for who, hook in hooks.items():
        kind = "state" if len(who) == 3 else "donor"
        subscribe(sandbox, kind, who, {"channel": "webhook", "url": hook.url})
    before = handled("alert.acknowledged"), handled("alert.resolved")

    acknowledged = publish(sandbox, "alert.acknowledged", {**ALERT_STEP, "status": "acknowledged",
                                                           "actor": "donor:GB-GOV-1", "note": "talking to BMZ",
                                                           "reason": "talking to BMZ"})
    resolved = publish(sandbox, "alert.resolved", {**ALERT_STEP, "status": "resolved", "actor": "operator:*",
                                                   "note": "GB: legislation, DE: training",
                                                   "resolution": "work_split", "automatic": False,
                                                   "reason": "the providers agreed to split the work"})

    wait_until(lambda: handled("alert.acknowledged") > before[0] and handled("alert.resolved") > before[1],
               message="both steps handled")
    wait_until(lambda: len(hooks["DE-BMZ-1"].received) == 2 and len(hooks["KEN"].received) == 2,
               message="the other provider and the State told of both steps")
    assert [e["id"] for e in bodies(hooks["GB-GOV-1"])] == [resolved["id"]]   # not of its own step
    assert sorted(e["id"] for e in bodies(hooks["KEN"])) == sorted([acknowledged["id"], resolved["id"]])
    assert hooks["US-GOV-1"].received == [] and hooks["UGA"].received == []


def test_a_retracted_match_naming_only_ids_reaches_the_state_and_provider_of_its_proposal(sandbox, start, receivers):
    start(NotifyService, **FAST)
    state, donor, other = receivers(), receivers(), receivers()
    subscribe(sandbox, "state", "KEN", {"channel": "webhook", "url": state.url})
    subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": donor.url})
    subscribe(sandbox, "donor", "US-GOV-1", {"channel": "webhook", "url": other.url})

    proposed = publish(sandbox, "match.proposed", PROPOSED)
    wait_until(lambda: state.received and donor.received, message="the proposal")
    retracted = publish(sandbox, "match.retracted", {"match_id": "mat-1", "need_id": "KEN-9-abc",
                                                     "offer_id": "off-1", "reason": "need withdrawn"})

    wait_until(lambda: len(state.received) == 2 and len(donor.received) == 2, message="the retraction")
    assert [e["id"] for e in bodies(state)] == [proposed["id"], retracted["id"]]
    assert bodies(donor)[1]["data"] == {"match_id": "mat-1", "need_id": "KEN-9-abc", "offer_id": "off-1",
                                        "reason": "need withdrawn"}   # the event as published
    assert other.received == []
    assert [d["status"] for d in deliveries(sandbox, sandbox.db("notify").subscriptions.find_one(
        {"subject": "KEN"})["_id"])] == ["delivered", "delivered"]


def test_each_step_of_a_real_match_reaches_its_state_and_provider_once_never_whoever_took_it(
        sandbox, start, receivers):
    """Matching and notify together: the lifecycle's own events (match.accepted … match.delivered, as
    matching emits them on ``POST /matches/<id>/transitions``) reach notify's queue and the other side."""
    start(MatchingService, NotifyService, **FAST)
    state, provider, other = receivers(), receivers(), receivers()
    for kind, subject, hook in (("state", "KEN", state), ("donor", "GB-GOV-1", provider), ("donor", "US-GOV-1", other)):
        subscribe(sandbox, kind, subject, {"channel": "webhook", "url": hook.url, "filter": {"types": ["match.*"]}})
    steps = ("match.accepted", "match.agreed", "match.delivery_started", "match.delivered")
    before = {event_type: handled(event_type) for event_type in steps}

    emit(sandbox, "offer.published", offer_data())
    emit(sandbox, "need.submitted", need_data())
    wait_until(lambda: state.received and provider.received, timeout=20, message="the proposal told to both sides")
    match_id = bodies(state)[0]["data"]["match_id"]

    moved(sandbox, match_id, "accepted", PROVIDER)                 # the State hears, the provider took it
    wait_until(lambda: len(state.received) == 2, message="the acceptance told to the State")
    moved(sandbox, match_id, "agreed", ("operator", "*"))          # an operator's step: both sides hear
    moved(sandbox, match_id, "in_delivery", PROVIDER)
    moved(sandbox, match_id, "delivered", STATE, reason="workshop held in Nairobi")

    wait_until(lambda: all(handled(t) > before[t] for t in steps), timeout=20, message="notify handled every step")
    wait_until(lambda: len(state.received) == 4 and len(provider.received) == 3, message="every step told")
    assert [e["type"] for e in bodies(state)] == ["match.proposed", "match.accepted", "match.agreed",
                                                  "match.delivery_started"]
    assert [e["type"] for e in bodies(provider)] == ["match.proposed", "match.agreed", "match.delivered"]
    agreed = bodies(state)[2]
    assert agreed == bodies(provider)[1] and agreed["source"] == "matching"
    assert (agreed["data"]["match_id"], agreed["data"]["by"], agreed["data"]["previous_status"]) == (
        match_id, "operator:*", "accepted")
    assert bodies(provider)[2]["data"]["reason"] == "workshop held in Nairobi"
    assert other.received == []
    for subject in ("KEN", "GB-GOV-1"):
        subscription = sandbox.db("notify").subscriptions.find_one({"subject": subject})
        assert [d["status"] for d in deliveries(sandbox, subscription["_id"])] == ["delivered"] * (
            4 if subject == "KEN" else 3)
