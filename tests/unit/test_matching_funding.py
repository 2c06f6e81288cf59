"""Matching's funding view without I/O: committed and disbursed amounts per State × article."""
from services.matching import funding
from services.matching.payloads import normalize_offer

EVENT = {"id": "e1", "type": "offer.published", "occurred_at": "2026-11-26T10:00:00+00:00"}
RATES = {"source": "IMF IFS annual averages (test table)", "base": "USD",
         "rates": {"2026": {"EUR": 0.9, "GBP": 0.8}, "2025": {"EUR": 0.95}}}


def offer(offer_id="off-1", **changes):
    data = {"offer_id": offer_id, "provider": "GB-GOV-1", "level": "bilateral", "scope_states": ["KEN"],
            "scope_groups": [], "articles": [6, 36], "chapters": [], "forms": ["CAPACITY_BUILDING"],
            "status": "active", "anti_corruption_share": 0.5, "currency": "GBP",
            "transactions": [
                {"type": "outgoing_commitment", "value": 1000.0, "currency": "GBP", "value_date": "2026-01-15"},
                {"type": "disbursement", "value": 400.0, "currency": "GBP", "value_date": "2026-06-30"},
                {"type": "expenditure", "value": 100.0, "currency": "GBP", "value_date": "2026-09-30"},
                {"type": "incoming_funds", "value": 5000.0, "currency": "GBP", "value_date": "2026-01-01"}]}
    return normalize_offer({**data, **changes}, EVENT)


def cell(found, row, col):
    return next(c for c in found["cells"] if (c["row"], c["col"]) == (row, col))


def test_a_bilateral_offer_counts_its_share_of_commitments_and_disbursements_in_each_article():
    found = funding.funding([offer()])
    for article in (6, 36):
        kenya = cell(found, article, "KEN")
        assert (kenya["committed"], kenya["disbursed"], kenya["offers"]) == ({"GBP": 500.0}, {"GBP": 250.0}, 1)
    assert found["totals"] == [{"col": "KEN", "committed": {"GBP": 500.0}, "disbursed": {"GBP": 250.0}, "offers": 1}]


def test_an_event_without_money_counts_nothing_and_share_defaults_to_one():
    bare = normalize_offer({"offer_id": "off-2", "provider": "GB-GOV-1", "scope_states": ["KEN"],
                            "articles": [9], "forms": ["LEGAL_ADVICE"]}, EVENT)
    assert bare["anti_corruption_share"] == 1.0 and bare["transactions"] == []
    assert funding.funding([bare])["cells"] == []


def test_money_of_several_states_is_split_and_a_transaction_recipient_wins():
    regional = offer(level="regional", scope_states=["KEN", "UGA"], anti_corruption_share=1.0, transactions=[
        {"type": "disbursement", "value": 100.0, "currency": "USD", "value_date": "2026-02-01"},
        {"type": "disbursement", "value": 30.0, "currency": "USD", "value_date": "2026-02-01", "state": "UGA",
         "share": 1.0},
        {"type": "disbursement", "value": 70.0, "currency": "USD", "value_date": "2026-02-01", "state": "TZA",
         "share": 0.0}])
    found = funding.funding([regional], rows="chapter")
    assert cell(found, 2, "KEN")["disbursed"] == {"USD": 50.0}
    assert cell(found, 2, "UGA")["disbursed"] == {"USD": 80.0}
    assert all(c["col"] != "TZA" for c in found["cells"])   # share 0: not anti-corruption money


def test_regional_and_global_money_is_listed_apart_never_spread_on_states():
    group = offer("off-3", level="regional", scope_states=[], scope_groups=["AFRICAN"])
    world = offer("off-4", level="global", scope_states=[], scope_groups=[])
    found = funding.funding([group, world], filters={"article": 6})
    assert found["cells"] == []
    assert [(n["scope"], n["regional_group"], n["committed"]) for n in found["not_attributed"]] == [
        ("global", None, {"GBP": 500.0}), ("regional_group", "AFRICAN", {"GBP": 500.0})]
    by_group = funding.funding([group, offer()], cols="regional_group", filters={"article": 6})
    assert cell(by_group, 6, "AFRICAN")["committed"] == {"GBP": 1000.0}   # the group's and Kenya's


def test_a_withdrawn_offer_or_another_level_or_form_is_not_counted():
    assert funding.funding([offer(status="withdrawn")])["cells"] == []
    assert funding.funding([offer()], level="regional")["cells"] == []
    assert funding.funding([offer()], filters={"form": "LEGAL_ADVICE"})["cells"] == []


def test_amounts_convert_at_their_years_rate_and_the_table_is_named():
    mixed = offer(anti_corruption_share=1.0, transactions=[
        {"type": "outgoing_commitment", "value": 900.0, "currency": "EUR", "value_date": "2026-01-01"},
        {"type": "outgoing_commitment", "value": 950.0, "currency": "EUR", "value_date": "2025-12-31"},
        {"type": "outgoing_commitment", "value": 80.0, "currency": "GBP", "value_date": "2026-03-01"},
        {"type": "outgoing_commitment", "value": 10.0, "currency": "USD", "value_date": "2024-03-01"},
        {"type": "disbursement", "value": 500.0, "currency": "SEK", "value_date": "2026-03-01"}])
    reporting = cell(funding.funding([mixed], rates=RATES), 6, "KEN")["reporting"]
    assert reporting["currency"] == "USD" and reporting["table"] == RATES["source"]
    assert reporting["committed"] == 1000.0 + 1000.0 + 100.0 + 10.0
    assert reporting["years"] == ["2025", "2026"]
    assert reporting["unconverted"] == [{"kind": "disbursed", "currency": "SEK", "year": "2026", "amount": 500.0}]
    assert reporting["disbursed"] == 0


def test_the_matrix_cells_get_the_amounts():
    cells = [{"row": 6, "col": "KEN", "needs": 1}, {"row": 9, "col": "KEN", "needs": 1}]
    funding.annotate(cells, funding.funding([offer()]))
    assert (cells[0]["committed"], cells[0]["disbursed"]) == ({"GBP": 500.0}, {"GBP": 250.0})
    assert (cells[1]["committed"], cells[1]["disbursed"]) == ({}, {})
