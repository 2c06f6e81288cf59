"""Supply service against the real broker and database: offers over HTTP, AMQP ingress and bulk import."""

import pytest
import requests

from services.supply.dependencies import SupplyStore
from services.supply.schemas import OfferSchema
from services.supply.service import SupplyService
from tacoord import envelope
from tacoord.store import opened
from tacoord.testing import consumed, wait_until

UK = "GB-GOV-1"
UNDP = "XM-DAC-41114"
KENYA_OFFER = {"provider": UK, "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
               "articles": [9, 10], "forms": ["LEGAL_ADVICE"], "capacity": 3,
               "period_start": "2026-01-01", "period_end": "2027-12-31", "languages": ["en"]}
AFRICA_OFFER = {"provider": UNDP, "level": "regional", "scope_groups": ["AFRICAN"], "chapters": [4],
                "forms": ["CAPACITY_BUILDING"], "period_start": "2026-06-01", "period_end": "2028-05-31",
                "languages": ["fr", "en"], "status": "pipeline"}
GLOBAL_OFFER = {"provider": UNDP, "level": "global", "articles": [52], "forms": ["GOOD_PRACTICES"],
                "period_start": "2026-01-01", "period_end": "2026-12-31"}


def collect(sandbox, count):
    """The first ``count`` events the service emitted (read off the matching queue; no matching runs)."""
    seen = []

    def enough():
        seen.extend(body for body, _ in sandbox.get_messages("matching.events"))
        return seen if len(seen) >= count else None
    events = wait_until(enough, message=f"{count} emitted event(s)")
    assert len(events) == count, [e["type"] for e in events]
    return events


@pytest.fixture
def supply(sandbox, start):
    start(SupplyService)

    def call(method, path, role="operator", subject="*", **kwargs):
        headers = {**sandbox.headers(role, subject), **kwargs.pop("headers", {})}
        return requests.request(method, sandbox.url("supply", path), headers=headers, timeout=10, **kwargs)
    return call


def test_a_donor_publishes_updates_and_withdraws_its_offer(sandbox, supply):
    created = supply("POST", "/offers", "donor", UK, json=KENYA_OFFER)
    assert created.status_code == 201, created.text
    offer = created.json()
    assert offer["status"] == "active" and offer["capacity"] == 3 and offer["scope_groups"] == []

    patched = supply("PATCH", f"/offers/{offer['offer_id']}", "donor", UK, json={"capacity": 5, "status": "closed"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["capacity"], patched.json()["status"]) == (5, "closed")

    withdrawn = supply("DELETE", f"/offers/{offer['offer_id']}?reason=funding+ended", "donor", UK)
    assert withdrawn.json()["status"] == "withdrawn"
    assert supply("PATCH", f"/offers/{offer['offer_id']}", "donor", UK, json={"capacity": 1}).status_code == 409

    events = collect(sandbox, 3)
    assert [e["type"] for e in events] == ["offer.published", "offer.updated", "offer.withdrawn"]
    for event in events:   # every payload honours the contract
        envelope.load(event)
    assert events[0]["actor"] == f"donor:{UK}" and events[0]["data"]["offer_id"] == offer["offer_id"]
    assert events[2]["data"]["status"] == "withdrawn"
    assert events[2]["data"]["withdrawal_reason"] == "funding ended"   # what the donor said, kept in the event


def test_a_donor_manages_only_its_own_offers(supply):
    assert supply("POST", "/offers", "donor", UNDP, json=KENYA_OFFER).status_code == 403
    assert supply("POST", "/offers", "state", "KEN", json=KENYA_OFFER).status_code == 403
    offer = supply("POST", "/offers", "donor", UK, json=KENYA_OFFER).json()
    assert supply("PATCH", f"/offers/{offer['offer_id']}", "donor", UNDP, json={"capacity": 9}).status_code == 403
    assert supply("DELETE", f"/offers/{offer['offer_id']}", "donor", UNDP).status_code == 403
    assert supply("DELETE", f"/offers/{offer['offer_id']}", "operator").json()["status"] == "withdrawn"


def test_offers_are_found_by_state_in_scope_article_chapter_form_level_and_status(supply):
    ids = {}
    for name, offer in (("kenya", KENYA_OFFER), ("africa", AFRICA_OFFER), ("global", GLOBAL_OFFER)):
        response = supply("POST", "/offers", json=offer)
        assert response.status_code == 201, response.text
        ids[name] = response.json()["offer_id"]

    def found(query):
        response = supply("GET", f"/offers?{query}", "state", "KEN")
        assert response.status_code == 200, response.text
        return {name for name, the_id in ids.items() if the_id in {o["offer_id"] for o in response.json()["offers"]}}

    assert found("state=KEN") == {"kenya", "africa", "global"}   # named, via AFRICAN, global
    assert found("state=uga") == {"africa", "global"}
    assert found("state=PER") == {"global"}
    assert found("article=46") == {"africa"}                     # chapter IV covers article 46
    assert found("chapter=2") == {"kenya"}                       # article 9 is in chapter II
    assert found("form=LEGAL_ADVICE") == {"kenya"}
    assert found("level=global") == {"global"}
    assert found("status=pipeline") == {"africa"}
    assert found(f"provider={UNDP}&state=KEN") == {"africa", "global"}
    for bad, field in (("state=XXX", "state"), ("article=nine", "article"), ("level=local", "level"),
                       ("colour=red", None)):
        response = supply("GET", f"/offers?{bad}")
        assert response.status_code in (400, 422), bad
        if field:
            assert field in response.json()["fields"]


@pytest.mark.parametrize("change, field", [
    ({"articles": [99]}, "articles"),                     # unknown article
    ({"scope_states": ["XXX"]}, "scope_states"),          # unknown State
    ({"provider": "GB GOV 1"}, "provider"),               # bad org id
    ({"capacity": "3"}, "capacity"),                      # wrong type
    ({"articles": "9"}, "articles"),                      # wrong type
    ({"period_end": "2025-01-01"}, "period_end"),         # end before start
    ({"scope_groups": ["AFRICAN"]}, "scope_groups"),      # bilateral with a group
    ({"level": "global"}, "scope_states"),                # global with States
    ({"tea": True}, "tea"),                               # unknown field
])
def test_bad_offers_are_refused_naming_the_field(supply, change, field):
    response = supply("POST", "/offers", json={**KENYA_OFFER, **change})
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"], response.json()


def test_dollar_keys_oversized_and_non_json_bodies_are_refused(sandbox, supply):
    response = supply("POST", "/offers", json={**KENYA_OFFER, "$where": "1"})
    assert response.status_code == 422 and "body.$where" in response.json()["fields"]
    response = supply("POST", "/offers", json={**KENYA_OFFER, "languages": [{"$gt": ""}]})
    assert response.status_code == 422
    big = {**KENYA_OFFER, "provider_name": "x" * 1_100_000}
    assert supply("POST", "/offers", json=big).status_code == 413
    bad_json = requests.post(sandbox.url("supply", "/offers"), data=b"{not json", timeout=5,
                             headers=sandbox.headers("operator"))
    assert bad_json.status_code == 400
    assert sandbox.db("supply").offers.count_documents({}) == 0


def test_an_offer_patch_is_checked_against_the_whole_offer(supply):
    offer = supply("POST", "/offers", json=KENYA_OFFER).json()
    response = supply("PATCH", f"/offers/{offer['offer_id']}", json={"period_end": "2025-06-30"})
    assert response.status_code == 422 and "period_end" in response.json()["fields"]
    response = supply("PATCH", f"/offers/{offer['offer_id']}", json={"level": "regional"})
    assert response.status_code == 422 and "scope_groups" in response.json()["fields"]
    response = supply("PATCH", f"/offers/{offer['offer_id']}", json={"level": "regional",
                                                                     "scope_states": ["KEN", "UGA"]})
    assert response.status_code == 200 and response.json()["scope_states"] == ["KEN", "UGA"]
    assert supply("PATCH", f"/offers/{offer['offer_id']}", json={"status": "withdrawn"}).status_code == 422


# --- AMQP ingress ---------------------------------------------------------------------------------

def test_an_offer_submitted_on_ingress_is_published_once_even_when_redelivered(sandbox, start):
    start(SupplyService)
    duplicates = consumed("supply", "duplicate")
    event = envelope.new_event("offer.submitted", {**AFRICA_OFFER, "external_ref": "UNDP-AFR-7"}, "partner")
    sandbox.publish("offer.submitted", None, event=event)
    sandbox.publish("offer.submitted", None, event=event)   # the broker redelivers the same event

    stored = wait_until(lambda: sandbox.db("supply").offers.find_one({"provider": UNDP}), message="stored offer")
    # acked as a duplicate only once the inbox has the id done (a ready-only queue depth does not
    # see a copy going round the retry queue); nothing else of it is left
    wait_until(lambda: consumed("supply", "duplicate") - duplicates == 1, message="the copy skipped as done")
    assert sandbox.queue_depth("supply.ingress") == 0 and sandbox.queue_depth("supply.ingress.retry") == 0
    events = collect(sandbox, 1)
    assert sandbox.db("supply").offers.count_documents({}) == 1
    assert [e["type"] for e in events] == ["offer.published"]
    assert events[0]["causation_id"] == event["id"] and events[0]["actor"] == "partner:tacoord"
    assert stored["scope_groups"] == ["AFRICAN"] and stored["chapters"] == [4]

    # the same external_ref again (a new event) updates the same offer; then the partner withdraws it
    sandbox.publish("offer.submitted", {**AFRICA_OFFER, "external_ref": "UNDP-AFR-7", "capacity": 4})
    wait_until(lambda: sandbox.db("supply").offers.find_one({"capacity": 4}), message="updated offer")
    sandbox.publish("offer.withdrawn", {"offer_id": stored["_id"], "reason": "merged into a global offer"})
    wait_until(lambda: sandbox.db("supply").offers.find_one({"status": "withdrawn"}), message="withdrawn")
    more = collect(sandbox, 2)
    assert [e["type"] for e in more] == ["offer.updated", "offer.withdrawn"]
    assert more[1]["data"]["withdrawal_reason"] == "merged into a global offer"
    assert sandbox.db("supply").offers.count_documents({}) == 1


def test_an_ingress_event_filed_again_after_a_lost_inbox_record_writes_and_emits_nothing(sandbox, start):
    """A crash between the offer's write and the inbox's "done" record redelivers an event the
    inbox does not know: the offer itself remembers the event that filed it."""
    start(SupplyService)
    with opened(SupplyStore, sandbox.config("supply")) as repository:
        for data in (AFRICA_OFFER, {**AFRICA_OFFER, "external_ref": "UNDP-AFR-8"}):
            event = envelope.new_event("offer.submitted", data, "partner")
            key = data.get("external_ref") or f"event:{event['id']}"
            filed = OfferSchema().load(data)
            offer, published = repository.file_offer(filed, key, "partner", cause=event)
            again, nothing = repository.file_offer(filed, key, "partner", cause=event)
            assert published["type"] == "offer.published" and nothing is None
            assert again == offer
            _, updated = repository.file_offer(filed, key, "partner",
                                               cause=envelope.new_event("offer.submitted", data, "partner"))
            assert updated["type"] == "offer.updated"   # another event for the same offer is filed
    emitted = [body["type"] for body, _ in sandbox.get_messages("matching.events")]
    assert emitted == ["offer.published", "offer.updated"] * 2
    assert sandbox.db("supply").offers.count_documents({}) == 2


def test_a_bad_ingress_offer_is_dead_lettered_with_the_reason(sandbox, start):
    start(SupplyService)
    sandbox.publish("offer.submitted", {**KENYA_OFFER, "provider": "FCDO", "scope_states": ["XXX"]})
    sandbox.publish("offer.withdrawn", {"offer_id": "off-nope"})
    parked = wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 2 and
                        sandbox.get_messages("tacoord.dead-letters"), message="two dead letters")
    reasons = sorted(headers["x-tacoord-reason"] for _, headers in parked)
    assert "data.provider" in reasons[0] and "data.scope_states" in reasons[0]
    assert reasons[1] == "no offer 'off-nope'"
    assert sandbox.db("supply").offers.count_documents({}) == 0


# --- bulk import ----------------------------------------------------------------------------------

CSV = """provider,provider_name,level,scope_states,scope_groups,articles,chapters,forms,capacity,period_start,period_end,languages,status,external_ref
GB-GOV-1,FCDO,bilateral,KEN,,9;10,,LEGAL_ADVICE;CAPACITY_BUILDING,2,2026-01-01,2027-12-31,en,active,FCDO-1
GB-GOV-1,FCDO,regional,,GRULAC,,5,ONSITE_EXPERT,1,2026-01-01,2027-12-31,es;en,pipeline,FCDO-2
GB-GOV-1,FCDO,bilateral,XXX,,9,,LEGAL_ADVICE,1,2026-01-01,2027-12-31,en,active,FCDO-3
XM-DAC-41114,UNDP,global,,,52,,GOOD_PRACTICES,1,2026-01-01,2026-12-31,en,active,UNDP-1
GB-GOV-1,FCDO,bilateral,KEN,,99,,LEGAL_ADVICE,many,2026-01-01,2027-12-31,en,active,FCDO-4
"""


def test_a_csv_import_reports_accepted_and_rejected_lines(supply):
    summary = supply_csv(supply, CSV, "donor", UK)
    assert summary["accepted"] == 2 and summary["format"] == "csv"
    rejected = {r["line"]: r["reason"] for r in summary["rejected"]}
    assert set(rejected) == {4, 5, 6}
    assert "scope_states" in rejected[4] and "XXX" in rejected[4]
    assert "not your organisation" in rejected[5]
    assert "articles" in rejected[6] and "capacity" in rejected[6]

    again = supply_csv(supply, CSV, "operator", "*")   # the same refs: updates, not duplicates
    assert again["accepted"] == 3 and sorted(again["offers"][:2]) == sorted(summary["offers"])
    assert len(supply("GET", "/offers").json()["offers"]) == 3


def supply_csv(supply, text, role, subject):
    response = supply("POST", "/offers/import", role, subject, data=text.encode("utf-8"),
                      headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_json_import_reports_items_by_position(supply):
    items = [KENYA_OFFER, {**KENYA_OFFER, "forms": []}, "not an object", {**GLOBAL_OFFER, "$set": {}}, GLOBAL_OFFER]
    response = supply("POST", "/offers/import", "partner", "iati-registry", json=items)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["accepted"] == 2 and summary["format"] == "json"
    assert [r["line"] for r in summary["rejected"]] == [2, 3, 4]
    assert "forms" in summary["rejected"][0]["reason"]
    assert "$set" in summary["rejected"][2]["reason"]
    assert supply("POST", "/offers/import", "state", "KEN", json=items).status_code == 403


# --- money -------------------------------------------------------------------------------------------

MONEY = {"currency": "gbp", "anti_corruption_share": 0.75,
         "budget": {"value": 1200000, "period_start": "2026-01-01", "period_end": "2026-12-31",
                    "status": "committed"},
         "planned_disbursements": [{"value": 300000, "period_start": "2026-04-01", "period_end": "2026-06-30"}],
         "transactions": [{"type": "outgoing_commitment", "value": 1200000, "date": "2026-01-10"},
                          {"type": "disbursement", "value": 250000.5, "currency": "EUR", "value_date": "2026-05-01"}]}


def test_an_offer_carries_its_budget_and_transactions_over_http_and_amqp(sandbox, supply):
    created = supply("POST", "/offers", "donor", UK, json={**KENYA_OFFER, **MONEY})
    assert created.status_code == 201, created.text
    offer = created.json()
    assert offer["currency"] == "GBP" and offer["anti_corruption_share"] == 0.75
    assert offer["budget"] == [{"type": "original", "status": "committed", "period_start": "2026-01-01",
                                "period_end": "2026-12-31", "value": 1200000.0, "currency": "GBP",
                                "value_date": None}]
    assert [(t["type"], t["currency"]) for t in offer["transactions"]] == [("outgoing_commitment", "GBP"),
                                                                           ("disbursement", "EUR")]
    sandbox.publish("offer.submitted", {**AFRICA_OFFER, **MONEY, "external_ref": "UNDP-AFR-9"})
    wait_until(lambda: sandbox.db("supply").offers.find_one({"provider": UNDP}), message="the AMQP offer")
    events = collect(sandbox, 2)
    for event in events:
        envelope.load(event)
        assert event["data"]["budget"][0]["value"] == 1200000.0
        assert event["data"]["transactions"][1]["value"] == 250000.5


def test_money_without_a_currency_or_with_a_bad_value_is_refused_naming_the_field(supply):
    no_currency = supply("POST", "/offers", "donor", UK, json={**KENYA_OFFER, "budget": [{"value": 10}]})
    assert no_currency.status_code == 422 and "budget" in no_currency.json()["fields"]
    bad = supply("POST", "/offers", "donor", UK, json={**KENYA_OFFER, "currency": "pounds", "anti_corruption_share": 2,
                                                        "transactions": [{"type": "pledge", "value": "lots"}]})
    assert bad.status_code == 422
    assert {"currency", "anti_corruption_share", "transactions"} <= set(bad.json()["fields"])
    assert set(bad.json()["fields"]["transactions"]["0"]) == {"type", "value"}
