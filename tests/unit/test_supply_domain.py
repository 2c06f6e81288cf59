"""Supply's offer rules without I/O: scope, coverage, filing and changing offers, the IATI mapping."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from marshmallow import ValidationError

from services.supply import domain, iati
from services.supply.schemas import OfferSchema
from tacoord.errors import Conflict

FIXTURE = Path(__file__).parent.parent / "fixtures" / "iati_activities.xml"
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


@pytest.mark.parametrize("org", ["GB-GOV-1", "XM-DAC-41114", "GB-COH-06368740", "XI-IATI-EC_INTPA"])
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


# --- IATI ------------------------------------------------------------------------------------------

def activities():
    return {a["position"]: a for a in iati.parse(FIXTURE.read_bytes())[1]}


def test_a_15113_activity_in_kenya_becomes_a_bilateral_offer():
    filing, reason = domain.offer_from_activity(activities()[1], domain.merged_sector_map())
    assert reason is None
    assert filing == {
        "provider": "GB-GOV-1", "provider_name": "UK - Foreign, Commonwealth and Development Office",
        "level": "bilateral", "scope_states": ["KEN"], "scope_groups": [], "articles": [6, 36],
        "chapters": [], "forms": ["CAPACITY_BUILDING"], "capacity": 1,
        "period_start": "2026-02-01", "period_end": "2028-12-31",   # actual start wins over planned
        "languages": ["en"], "status": "active", "iati_identifier": "GB-GOV-1-300123"}
    OfferSchema().load(filing)


def test_a_regional_activity_maps_its_dac_region_and_its_uncac_tags():
    filing, reason = domain.offer_from_activity(activities()[2], domain.merged_sector_map())
    assert reason is None
    assert (filing["level"], filing["scope_groups"], filing["scope_states"]) == ("regional", ["AFRICAN"], [])
    assert filing["articles"] == [46, 57]
    assert (filing["status"], filing["languages"]) == ("pipeline", ["fr"])


def test_other_sectors_are_skipped_unless_mapped():
    activity = activities()[3]
    filing, reason = domain.offer_from_activity(activity, domain.merged_sector_map())
    assert filing is None and "11220" in reason
    mapped = domain.merged_sector_map({"11220": {"articles": [13], "forms": ["GOOD_PRACTICES"]}})
    filing, reason = domain.offer_from_activity(activity, mapped)
    assert reason is None and filing["articles"] == [13] and filing["forms"] == ["GOOD_PRACTICES"]


def test_a_sector_in_another_vocabulary_is_not_read_as_a_dac_code():
    activity = {**activities()[1], "sectors": [{"code": "15113", "vocabulary": "99"}]}
    assert domain.offer_from_activity(activity, domain.merged_sector_map())[0] is None


def test_a_bad_recipient_country_code_skips_the_activity_with_a_reason():
    filing, reason = domain.offer_from_activity(activities()[4], domain.merged_sector_map())
    assert filing is None and "'UK'" in reason


@pytest.mark.parametrize("code, status", [("1", "pipeline"), ("2", "active"), ("3", "closed"), ("4", "closed")])
def test_activity_status_maps_to_offer_status(code, status):
    filing, _ = domain.offer_from_activity({**activities()[1], "status_code": code}, domain.merged_sector_map())
    assert filing["status"] == status


@pytest.mark.parametrize("code", ["5", "6", "9", None])
def test_cancelled_suspended_or_unknown_activities_are_skipped(code):
    filing, reason = domain.offer_from_activity({**activities()[1], "status_code": code}, domain.merged_sector_map())
    assert filing is None and "activity-status" in reason


def test_unknown_regions_are_skipped_and_998_means_global():
    base = {**activities()[2], "scope_code": None}
    _, reason = domain.offer_from_activity({**base, "regions": [{"code": "1027", "vocabulary": "1"}]},
                                           domain.merged_sector_map())
    assert "1027" in reason and "no mapping" in reason
    _, reason = domain.offer_from_activity({**base, "regions": [{"code": "298", "vocabulary": "2"}]},
                                           domain.merged_sector_map())
    assert "vocabulary 2" in reason
    filing, _ = domain.offer_from_activity({**base, "regions": [{"code": "998", "vocabulary": None}]},
                                           domain.merged_sector_map())
    assert (filing["level"], filing["scope_groups"], filing["scope_states"]) == ("global", [], [])


def test_several_countries_make_a_regional_offer_and_none_is_skipped():
    base = {**activities()[1], "scope_code": None}
    filing, _ = domain.offer_from_activity({**base, "countries": ["KE", "UG"]}, domain.merged_sector_map())
    assert (filing["level"], filing["scope_states"]) == ("regional", ["KEN", "UGA"])
    _, reason = domain.offer_from_activity({**base, "countries": []}, domain.merged_sector_map())
    assert "no recipient-country" in reason


def test_an_activity_without_both_dates_is_skipped():
    _, reason = domain.offer_from_activity({**activities()[1], "dates": {"1": "2026-01-01"}},
                                           domain.merged_sector_map())
    assert "activity-date" in reason


def test_unsafe_or_foreign_xml_is_refused_whole():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            b'<iati-activities version="2.03">&lol2;</iati-activities>')
    with pytest.raises(iati.IatiError, match="unsafe XML"):
        iati.parse(bomb)
    with pytest.raises(iati.IatiError, match="not well-formed"):
        iati.parse(b"<iati-activities version='2.03'><iati-activity>")
    with pytest.raises(iati.IatiError, match="<iati-organisations>"):
        iati.parse(b"<iati-organisations version='2.03'/>")
    with pytest.raises(iati.IatiError, match="version 1.05"):
        iati.parse(b"<iati-activities version='1.05'/>")


def test_a_dry_run_reports_each_activity():
    report = iati.dry_run(FIXTURE.read_bytes(), domain.merged_sector_map())
    assert (report["activities"], report["imported"], report["skipped"]) == (5, 2, 3)
    assert "duplicate iati-identifier" in report["results"][4]["reason"]


def test_an_import_report_counts_imported_and_skipped_activities():
    results = [{"outcome": "imported"}, {"outcome": "would import"}, {"outcome": "skipped"}]
    assert domain.import_summary(results) == {"activities": 3, "imported": 2, "skipped": 1, "results": results}


def test_a_configured_sector_map_is_checked():
    assert domain.sector_map_problems({"15130": {"articles": [9], "forms": ["LEGAL_ADVICE"]}}) == []
    assert domain.sector_map_problems({"15130": {"articles": [9], "forms": ["TEA"]}})
    assert domain.sector_map_problems({"15130": {"forms": ["LEGAL_ADVICE"]}})
