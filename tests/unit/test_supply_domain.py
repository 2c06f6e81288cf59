"""Supply's offer rules without I/O: scope, coverage, filing and changing offers, the IATI mapping."""
from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from services.supply import domain
from services.supply.schemas import OfferSchema
from tacoord.errors import Conflict

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)

OFFER = {"provider": "GB-GOV-1", "level": "bilateral", "scope_states": ["KEN"], "articles": [9],
         "forms": ["LEGAL_ADVICE"], "period_start": "2026-01-01", "period_end": "2027-12-31"}


# --- scope and validation ----------------------------------------------------------------------

@pytest.mark.parametrize("level, states, groups, ok", [
    ("global", [], [], True),
    ("global", ["KEN"], [], False),
    ("bilateral", ["KEN"], [], True),
    ("bilateral", [], [], False),
    ("bilateral", ["KEN"], ["AFRICAN"], False),
    ("regional", [], ["AFRICAN"], True),
    ("regional", ["KEN", "UGA"], [], True),
    ("regional", ["KEN"], [], False),
])
def test_the_scope_must_fit_the_level(level, states, groups, ok):
    assert (domain.scope_problems(level, states, groups) == []) is ok


def test_an_offer_names_articles_or_chapters_and_a_forward_period():
    problems = dict(domain.offer_problems({**OFFER, "articles": [], "period_end": "2025-12-31"}))
    assert set(problems) == {"articles", "period_end"}
    assert "2026-01-01" in problems["period_end"]


@pytest.mark.parametrize("org", ["GB-GOV-1", "XM-DAC-41114", "GB-COH-06368740", "XI-IATI-EC_INTPA",
                                 "GB-1", "NL-1", "US-1"])   # two-part refs that predate the guidance
def test_iati_organisation_ids_are_accepted(org):
    assert OfferSchema().load({**OFFER, "provider": org})["provider"] == org


@pytest.mark.parametrize("org", ["GB", "gb-gov-1", "GOV-1", "GB-GOV-", "GB-GOV-1 ", "$where", "GB-GOV-1.2"])
def test_malformed_organisation_ids_are_refused(org):
    with pytest.raises(ValidationError) as caught:
        OfferSchema().load({**OFFER, "provider": org})
    assert "provider" in caught.value.messages


def test_the_offer_schema_names_each_bad_field():
    with pytest.raises(ValidationError) as caught:
        OfferSchema().load({**OFFER, "scope_states": ["XXX"], "articles": [99], "capacity": "3",
                            "forms": ["TEA"], "colour": "red"})
    assert set(caught.value.messages) == {"scope_states", "articles", "capacity", "forms", "colour"}


# --- coverage ------------------------------------------------------------------------------------

def test_a_state_is_covered_by_name_by_its_group_or_by_a_global_offer():
    bilateral = {"level": "bilateral", "scope_states": ["KEN"], "scope_groups": []}
    regional = {"level": "regional", "scope_states": [], "scope_groups": ["AFRICAN"]}
    worldwide = {"level": "global", "scope_states": [], "scope_groups": []}
    assert domain.covers_state(bilateral, "KEN") and not domain.covers_state(bilateral, "UGA")
    assert domain.covers_state(regional, "UGA") and not domain.covers_state(regional, "PER")
    assert domain.covers_state(worldwide, "PER")


def test_a_chapter_covers_all_its_articles():
    offer = {"articles": [9], "chapters": [4]}
    assert domain.covers_article(offer, 9)
    assert domain.covers_article(offer, 46)      # chapter IV
    assert not domain.covers_article(offer, 15)  # chapter III
    assert domain.covers_chapter(offer, 2)       # through article 9
    assert not domain.covers_chapter(offer, 5)


# --- filing and changing offers: the new state and the events to emit -----------------------------

LATER = (NOW + timedelta(hours=1)).isoformat()


def filed(**changes):
    return OfferSchema().load({**OFFER, **changes})


def test_a_first_filing_publishes_the_offer():
    offer, events = domain.file_offer(None, filed(languages=["fr", "en", "en"]), "off-1", NOW.isoformat())
    assert (offer["offer_id"], offer["created_at"], offer["updated_at"]) == ("off-1", NOW.isoformat(), NOW.isoformat())
    assert offer["languages"] == ["en", "fr"]
    assert events == [("offer.published", domain.event_data(offer))]


def test_filing_an_offer_again_updates_it_and_keeps_its_creation_time():
    first, _ = domain.file_offer(None, filed(), "off-1", NOW.isoformat())
    offer, [(kind, data)] = domain.file_offer(first, filed(capacity=3), "off-1", LATER)
    assert kind == "offer.updated"
    assert (offer["created_at"], offer["updated_at"], offer["capacity"]) == (NOW.isoformat(), LATER, 3)
    assert data == domain.event_data(offer)


def test_filing_a_withdrawn_offer_again_publishes_it_anew():
    first, _ = domain.file_offer(None, filed(), "off-1", NOW.isoformat())
    _, [(kind, _)] = domain.file_offer({**first, "status": "withdrawn"}, filed(), "off-1", LATER)
    assert kind == "offer.published"


def test_a_filing_lands_on_its_iati_activity_or_on_provider_and_key():
    assert domain.filed_offer_id(filed(), "ref-1") == domain.offer_id("GB-GOV-1", "ref-1")
    assert domain.filed_offer_id(filed(), "ref-1") != domain.filed_offer_id(filed(), "ref-2")
    assert domain.filed_offer_id(filed(iati_identifier="GB-GOV-1-9"), "ref-1") == domain.iati_offer_id("GB-GOV-1-9")


def test_a_change_sets_the_changed_fields_and_emits_the_whole_offer():
    offer, _ = domain.file_offer(None, filed(), "off-1", NOW.isoformat())
    changes, [(kind, data)] = domain.change_offer(offer, {"scope_states": ["UGA", "KEN", "UGA"]}, LATER)
    assert changes == {"scope_states": ["KEN", "UGA"], "updated_at": LATER}
    assert kind == "offer.updated"
    assert data == domain.event_data({**offer, **changes})


def test_a_change_is_checked_against_the_whole_offer():
    offer, _ = domain.file_offer(None, filed(), "off-1", NOW.isoformat())
    with pytest.raises(ValidationError) as caught:
        domain.change_offer(offer, {"level": "global"}, LATER)   # still names KEN
    assert "scope_states" in caught.value.messages


def test_withdrawing_an_offer_emits_offer_withdrawn_once():
    offer, _ = domain.file_offer(None, filed(), "off-1", NOW.isoformat())
    changes, [(kind, data)] = domain.withdraw_offer(offer, "funds spent", LATER)
    assert changes == {"status": "withdrawn", "withdrawal_reason": "funds spent", "updated_at": LATER}
    assert (kind, data["status"]) == ("offer.withdrawn", "withdrawn")
    assert domain.withdraw_offer({**offer, **changes}, "again", LATER) == ({}, [])
    with pytest.raises(Conflict, match="withdrawn"):
        domain.change_offer({**offer, **changes}, {"capacity": 2}, LATER)


