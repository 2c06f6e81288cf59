"""Matching's funding view and the money in the matrix, against the real broker and database:
offer events with transactions in, amounts per State × article out, converted with the operator's
table of exchange rates."""
import requests

from services.matching.service import MatchingService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until

NOW = "2026-11-01T00:00:00+00:00"
RATES = {"source": "IMF International Financial Statistics, annual average rates (test table)", "base": "USD",
         "rates": {"2026": {"GBP": 0.8, "EUR": 0.9}}}


def offer_event(offer_id, **changes):
    data = {"offer_id": offer_id, "provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral",
            "scope_states": ["KEN"], "scope_groups": [], "articles": [36], "chapters": [],
            "forms": ["CAPACITY_BUILDING"], "capacity": 1, "period_start": "2026-01-01", "period_end": None,
            "languages": ["en"], "status": "active", "iati_identifier": None, "anti_corruption_share": 0.6,
            "currency": "GBP", "budget": [], "planned_disbursements": [],
            "transactions": [
                {"type": "outgoing_commitment", "value": 1000000.0, "currency": "GBP", "value_date": "2026-01-15",
                 "date": "2026-01-15", "share": None, "state": None},
                {"type": "disbursement", "value": 250000.0, "currency": "GBP", "value_date": "2026-06-30",
                 "date": "2026-06-30", "share": None, "state": None}],
            "created_at": NOW, "updated_at": NOW, **changes}
    return new_event("offer.published", data, "supply", "test")


def get(sandbox, path, role="state", subject="KEN", **kwargs):
    return requests.get(sandbox.url("matching", path), headers=sandbox.headers(role, subject), timeout=10, **kwargs)


def test_offer_money_shows_per_state_and_article_and_in_the_matrix(sandbox, start):
    start(MatchingService)
    for event in (offer_event("off-money-1"), offer_event("off-money-2", provider="XM-DAC-41114", currency="EUR",
                  anti_corruption_share=1.0, transactions=[
                      {"type": "expenditure", "value": 90000.0, "currency": "EUR", "value_date": "2026-03-01"}]),
                  offer_event("off-money-3", level="global", scope_states=[])):
        sandbox.publish(event["type"], None, exchange=topology.EVENTS, event=event)
    wait_until(lambda: get(sandbox, "/funding").json()["not_attributed"], message="the offers' money")

    found = get(sandbox, "/funding?article=36").json()
    assert found["exchange_rates"] is None
    [kenya] = found["cells"]
    assert (kenya["row"], kenya["col"], kenya["offers"]) == (36, "KEN", 2)
    assert kenya["committed"] == {"GBP": 600000.0}
    assert kenya["disbursed"] == {"EUR": 90000.0, "GBP": 150000.0}
    assert [(n["scope"], n["committed"]) for n in found["not_attributed"]] == [("global", {"GBP": 600000.0})]

    cells = get(sandbox, "/matrix?article=36").json()["cells"]
    assert [(c["col"], c["committed"], c["disbursed"]) for c in cells if c["col"] == "KEN"] == \
        [("KEN", {"GBP": 600000.0}, {"EUR": 90000.0, "GBP": 150000.0})]

    assert get(sandbox, "/funding/rates").status_code == 404
    refused = requests.put(sandbox.url("matching", "/funding/rates"), json=RATES, timeout=10,
                           headers=sandbox.headers("state", "KEN"))
    assert refused.status_code == 403
    bad = requests.put(sandbox.url("matching", "/funding/rates"), timeout=10, headers=sandbox.headers("operator"),
                       json={**RATES, "base": "dollars", "rates": {"26": {"GBP": -1}}})
    assert bad.status_code == 422 and {"base", "rates"} <= set(bad.json()["fields"])
    loaded = requests.put(sandbox.url("matching", "/funding/rates"), json=RATES, timeout=10,
                          headers=sandbox.headers("operator"))
    assert loaded.status_code == 200, loaded.text
    assert get(sandbox, "/funding/rates").json()["source"] == RATES["source"]

    converted = get(sandbox, "/funding?article=36").json()
    assert converted["exchange_rates"]["source"] == RATES["source"] and converted["exchange_rates"]["years"] == ["2026"]
    reporting = converted["cells"][0]["reporting"]
    assert (reporting["currency"], reporting["committed"], reporting["disbursed"]) == \
        ("USD", 750000.0, 100000.0 + 187500.0)
    assert get(sandbox, "/matrix?article=36&state=KEN").json()["cells"][0]["reporting"]["committed"] == 750000.0
    assert get(sandbox, "/funding?rows=chapter&cols=regional_group").json()["cells"][0]["col"] == "AFRICAN"
    assert get(sandbox, "/funding?colour=red").status_code == 400
