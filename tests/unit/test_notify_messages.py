"""What a notification says to people: the sentence, the need and offer in brief, why it
matched, the workspace link; the HTML escaped and self-contained."""
import re

from services import register_schemas
from services.matching import lifecycle
from services.notify import domain, messages
from tacoord import asyncapi, envelope, topology, workspace
from tacoord.envelope import new_event

WORKSPACE = "https://tacoord.example/"
STATE_SUB = {"kind": "state", "subject": "KEN", "subscription_id": "s"}

PROPOSED = new_event("match.proposed", {
    "match_id": "m-1", "need_id": "KEN-9-x", "offer_id": "o-1", "provider": "GB-GOV-1", "provider_name": "FCDO",
    "state": "KEN", "regional_group": "AFRICAN", "article": 9, "chapter": 2,
    "forms": ["LEGAL_ADVICE", "CAPACITY_BUILDING"], "priority": 1, "level": "bilateral", "score": 0.9,
    "explanation": {"constraints_met": ["geography: KEN in scope_states", "coverage: article 9 in articles"],
                    "score_parts": {"priority": 1.0, "language": 0.5, "level": 1.0, "capacity": 1.0},
                    "weights": {"priority": 0.3, "language": 0.2, "level": 0.3, "capacity": 0.2}}}, "matching")

DUPLICATION = new_event("duplication.detected", {
    "duplication_id": "dup-1", "state": "KEN", "regional_group": "AFRICAN", "article": 9, "form": "LEGAL_ADVICE",
    "providers": ["DE-BMZ-1", "GB-GOV-1", "US-GOV-1"], "offer_ids": ["o-2", "o-1", "o-3"],
    "offers": [{"offer_id": "o-2", "provider": "DE-BMZ-1", "provider_name": "BMZ", "level": "regional",
                "forms": ["LEGAL_ADVICE"], "period_start": "2026-06-01", "period_end": "2027-06-30"},
               {"offer_id": "o-1", "provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral",
                "forms": ["LEGAL_ADVICE", "ONSITE_EXPERT"], "period_start": "2026-01-01", "period_end": "2027-12-31"},
               {"offer_id": "o-3", "provider": "US-GOV-1", "provider_name": None, "level": "global",
                "forms": ["LEGAL_ADVICE"], "period_start": "2026-03-01", "period_end": "2027-03-31"}],
    "period": {"start": "2026-06-01", "end": "2027-03-31"}}, "matching")


def test_a_proposed_match_says_what_happened_the_need_the_offer_why_and_where_to_see_it():
    subject, text, html = messages.render_email(STATE_SUB, [PROPOSED], "https://x/unsubscribe/t", WORKSPACE)
    assert subject == "[tacoord] match.proposed: KEN (Kenya), article 9, GB-GOV-1"
    assert text.splitlines()[2] == ("A match was proposed: FCDO (GB-GOV-1)'s offer for Kenya's need on article 9 "
                                    "(Public procurement and management of public finances).")
    for said in ("Kenya (KEN), African States: UNCAC article 9 (Public procurement and management of public "
                 "finances), chapter II",
                 "priority 1 (highest); forms of assistance: Legal advice, Capacity-building programmes",
                 "FCDO (GB-GOV-1), bilateral",
                 "Why it matched (score 0.90 of 1: the weighted mean of these parts)",
                 "the need's priority: 1.00 of 1 × weight 0.30",
                 "a language both sides work in: 0.50 of 1 × weight 0.20",
                 "the capacity the offer has left: 1.00 of 1 × weight 0.20",
                 "conditions met: geography: KEN in scope_states; coverage: article 9 in articles",
                 "Open it in the workspace: https://tacoord.example/#/matches/m-1",
                 "Unsubscribe: https://x/unsubscribe/t"):
        assert said in text, said
    visible = re.sub(r"<[^>]+>", " ", html).replace("&#x27;", "'")
    for said in ("FCDO (GB-GOV-1)'s offer for Kenya's need", "chapter II", "× weight 0.30", "Legal advice"):
        assert said in visible, said
    assert 'href="https://tacoord.example/#/matches/m-1"' in html


def test_the_html_part_escapes_every_value_and_loads_nothing_from_elsewhere():
    hostile = new_event("match.declined", {**PROPOSED["data"], "provider_name": "<img src=http://evil/x>",
                                           "reason": "<script>alert(1)</script> & \"quotes\"", "by": "state:KEN",
                                           "status": "declined", "previous_status": "accepted",
                                           "at": "2026-11-02T10:00:00+00:00"}, "matching")
    _, text, html = messages.render_email(STATE_SUB, [hostile], 'https://x/u?a=1&b="2"', WORKSPACE)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    assert "<img" not in html and "&lt;img src=http://evil/x&gt;" in html
    assert 'href="https://x/u?a=1&amp;b=&quot;2&quot;"' in html
    tags = re.findall(r"<[a-zA-Z!][^>]*>", html)
    assert {re.match(r"<!?(\w+)", tag).group(1).lower() for tag in tags} <= {
        "doctype", "html", "head", "meta", "title", "body", "p", "h2", "h3", "ul", "li", "strong", "a", "hr", "small"}
    assert not [tag for tag in tags if re.search(r"\bsrc=|url\(|@import", tag, re.I)]
    assert "Reason: <script>alert(1)</script>" in text   # the text part is text: nothing to escape


def test_a_decline_says_who_declined_and_why():
    declined = new_event("match.declined", {**PROPOSED["data"], "status": "declined", "previous_status": "accepted",
                                            "reason": "the ministry prefers a regional programme", "by": "state:KEN",
                                            "at": "2026-11-02T10:00:00+00:00"}, "matching")
    _, text, _ = messages.render_email({"kind": "donor", "subject": "GB-GOV-1"}, [declined], "u", WORKSPACE)
    assert "Kenya (KEN) declined the match of FCDO (GB-GOV-1)'s offer with Kenya's need on article 9" in text
    assert "Reason: the ministry prefers a regional programme" in text


def test_a_duplication_names_every_provider_the_forms_and_the_overlapping_period():
    subject, text, _ = messages.render_email(STATE_SUB, [DUPLICATION], "u", WORKSPACE)
    assert subject == "[tacoord] duplication.detected: KEN (Kenya), article 9, DE-BMZ-1, GB-GOV-1, US-GOV-1"
    assert ("Possible duplication: DE-BMZ-1, GB-GOV-1 and US-GOV-1 each offer Legal advice to Kenya (KEN) on "
            "article 9 (Public procurement and management of public finances), over the same period, "
            "2026-06-01 to 2027-03-31.") in text
    assert "BMZ (DE-BMZ-1), regional: Legal advice; 2026-06-01 to 2027-06-30" in text
    assert ("FCDO (GB-GOV-1), bilateral: Legal advice, On-site assistance by an anti-corruption expert; "
            "2026-01-01 to 2027-12-31") in text
    assert "US-GOV-1, global: Legal advice; 2026-03-01 to 2027-03-31" in text
    assert "Open it in the workspace: https://tacoord.example/#/alerts/dup-1" in text
    apart = {**DUPLICATION, "data": {**DUPLICATION["data"], "period": None}}
    assert "though their periods do not overlap" in messages.render_email(STATE_SUB, [apart], "u", WORKSPACE)[1]


def test_an_alert_step_says_who_took_it_and_how_it_was_resolved():
    resolved = new_event("alert.resolved", {
        "alert_id": "dup-1", "alert": "duplication", "duplication_id": "dup-1", "gap_kind": None, "state": "KEN",
        "regional_group": "AFRICAN", "article": 9, "form": "LEGAL_ADVICE", "providers": ["DE-BMZ-1", "GB-GOV-1"],
        "need_id": None, "status": "resolved", "actor": "donor:GB-GOV-1", "at": "2026-11-02T09:30:00+00:00",
        "note": "GB: legislation, DE: training", "resolution": "work_split", "automatic": False,
        "reason": "the providers agreed to split the work: GB: legislation, DE: training"}, "matching")
    _, text, _ = messages.render_email(STATE_SUB, [resolved], "u", WORKSPACE)
    assert "GB-GOV-1 resolved the duplication alert on Kenya (KEN) and article 9" in text
    assert "Reason: the providers agreed to split the work: GB: legislation, DE: training" in text
    assert "DE-BMZ-1 and GB-GOV-1" in text and "#/alerts/dup-1" in text


def test_a_digest_says_each_event_in_its_own_words():
    subject, text, html = messages.render_email(STATE_SUB, [PROPOSED, DUPLICATION], "u", WORKSPACE, digest=True)
    assert subject == "[tacoord] daily digest: 2 notification(s)"
    assert "A match was proposed" in text and "Possible duplication" in text
    assert html.count("Open it in the workspace") == 2


def test_workspace_links_are_made_in_one_place_from_the_item_an_event_is_about():
    assert workspace.link(None, "match", "m 1/2") == "http://127.0.0.1:8080/#/matches/m%201%2F2"
    assert workspace.event_link("https://w.example", PROPOSED) == "https://w.example/#/matches/m-1"
    need = new_event("need.withdrawn", {"need_id": "KEN-9-x", "state": "KEN"}, "needs")
    assert workspace.event_link(WORKSPACE, need) == "https://tacoord.example/#/needs/KEN-9-x"
    gap = new_event("gap.detected", {"gap_id": "gap-1", "need_id": "KEN-9-x"}, "matching")
    assert workspace.event_link(WORKSPACE, gap) == "https://tacoord.example/#/alerts/gap-1"
    assert workspace.event_link(WORKSPACE, new_event("x.y", {}, "t")) is None


LIFECYCLE_EVENTS = {"match.accepted", "match.declined", "match.agreed", "match.delivery_started",
                    "match.delivered", "match.cancelled", "match.retracted", "match.withdrawn", "match.rescored"}


def lifecycle_event(event_type):
    """A payload of each match event as matching emits it (checked against its registered schema)."""
    pair = {k: PROPOSED["data"][k] for k in ("match_id", "need_id", "offer_id", "provider", "state",
                                             "regional_group", "article")}
    match = {k: v for k, v in PROPOSED["data"].items() if k not in ("explanation", "provider_name")}
    if event_type == "match.proposed":
        data = {k: v for k, v in PROPOSED["data"].items() if k != "provider_name"}
    elif event_type in lifecycle.STEP_EVENTS:
        target = next(status for status, kind in lifecycle.EVENT_OF.items() if kind == event_type)
        data = {**match, "status": target, "previous_status": "proposed", "reason": "as discussed",
                "by": "operator:*", "at": "2026-11-02T10:00:00+00:00"}
    elif event_type == "match.retracted":
        data = {k: pair[k] for k in ("match_id", "need_id", "offer_id")} | {"reason": "need withdrawn"}
    elif event_type == "match.withdrawn":
        data = {**pair, "previous_status": "in_delivery", "reason": "offer withdrawn"}
    else:
        data = {**pair, "status": "agreed", "score": 0.8, "previous_score": 0.9, "priority": 2,
                "previous_priority": 1, "forms": ["LEGAL_ADVICE"]}
    return envelope.load(new_event(event_type, data, "matching"))


def test_every_match_event_the_lifecycle_emits_reaches_notify_and_is_said_in_its_own_words():
    register_schemas()
    emitted = set(lifecycle.STEP_EVENTS) | set(lifecycle.MODEL_EVENTS)
    assert emitted - {"match.proposed"} == LIFECYCLE_EVENTS
    assert {t for t in envelope.registered_types() if t.startswith("match.")} == emitted
    known = dict(domain.facts_of(PROPOSED))   # what notify learned of the match when it was proposed
    sentences = set()
    for event_type in sorted(emitted):
        assert topology.NOTIFY_EVENTS.name in asyncapi.consumers_of(topology.EVENTS, event_type), event_type
        assert event_type in messages.SENTENCES, f"{event_type} has no sentence of its own"
        said = messages.sentence(domain.completed(lifecycle_event(event_type), known))
        assert "GB-GOV-1" in said and "Kenya" in said and "article 9" in said, said
        sentences.add(said)
    assert len(sentences) == len(emitted)
    withdrawn = messages.sentence(domain.completed(lifecycle_event("match.withdrawn"), known))
    assert "(in delivery: its need or supply was withdrawn)" in withdrawn
