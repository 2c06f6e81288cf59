"""Supply domain rules without I/O: scope, coverage, IATI mapping, the vetting state machine, balance."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from marshmallow import ValidationError

from services.supply import domain, iati
from services.supply.schemas import ExpertSchema, OfferSchema
from tacoord.errors import Conflict, Forbidden, Rejected

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


# --- expert vetting state machine ------------------------------------------------------------------

COMPLETE_CV = {
    "family_name": "Achieng", "given_names": "Grace", "nationality": "KEN", "current_position": "Director",
    "employer_type": "ACA", "expertise": [{"article": 36, "level": "expert"}], "forms": ["ONSITE_EXPERT"],
    "languages": [{"code": "en", "level": "fluent"}], "regions": ["AFRICAN"], "years_of_experience": 15,
    "availability": {"status": "available"}, "education": [{"degree": "LLM"}],
    "employment_history": [{"from": "2010-01-01", "employer": "EACC", "position": "Investigator"}],
    "conflict_of_interest_declaration": {"text": "none", "date": "2026-11-01"},
    "contact": {"email": "grace@example.org"}, "consent": {"consent_given": True, "publish_profile": True},
}


def expert(status="draft", **changes):
    cv = ExpertSchema().dump(ExpertSchema().load(COMPLETE_CV))
    return {**domain.new_expert(cv, "exp-1", "GB-GOV-1", NOW.isoformat()), "vetting_status": status, **changes}


def test_the_full_vetting_path_is_legal():
    record = expert()
    for to, role, owner in (("submitted", "donor", True), ("validated", "operator", False),
                            ("active", "operator", False), ("expired", "operator", False),
                            ("submitted", "donor", True)):
        changes, [(kind, data)] = domain.transition(record, to, role, owner, NOW)
        record = {**record, **changes}
        assert record["vetting_status"] == to
        assert kind == ("expert.expired" if to == "expired" else "expert.updated")
        assert data == domain.expert_event_data(record)


def test_activation_sets_the_expiry():
    changes, _ = domain.transition(expert("validated"), "active", "operator", False, NOW, validity_days=10)
    assert changes["expires_at"] == (NOW + timedelta(days=10)).isoformat()


@pytest.mark.parametrize("current, to", [("draft", "active"), ("draft", "validated"), ("submitted", "active"),
                                         ("active", "draft"), ("expired", "active"), ("validated", "submitted")])
def test_illegal_transitions_name_the_current_and_allowed_states(current, to):
    with pytest.raises(Conflict) as caught:
        domain.transition(expert(current), to, "operator", False, NOW)
    message = str(caught.value)
    assert f"is '{current}'" in message and f"to '{to}'" in message
    assert f"allowed from '{current}': {', '.join(domain.allowed_from(current))}" in message


def test_only_an_operator_validates():
    with pytest.raises(Forbidden, match="operator"):
        domain.transition(expert("submitted"), "validated", "donor", True, NOW)
    with pytest.raises(Forbidden):
        domain.transition(expert("draft"), "submitted", "donor", False, NOW)  # not the nominator


def test_an_incomplete_cv_cannot_be_submitted():
    with pytest.raises(Rejected) as caught:
        domain.transition(expert(expertise=[], contact={}), "submitted", "donor", True, NOW)
    assert "expertise" in caught.value.reason and "contact.email" in caught.value.reason


def test_no_consent_no_activation():
    with pytest.raises(Rejected, match="consent"):
        domain.transition(expert("validated", consent={"consent_given": False}), "active", "operator", False, NOW)


def test_withdrawing_consent_expires_an_active_expert():
    assert domain.update_consequence(expert("active"), {"consent": {"consent_given": False}}) == "expired"
    assert domain.update_consequence(expert("draft"), {"consent": {"consent_given": False}}) is None


def test_only_active_consented_unexpired_experts_are_searchable():
    future = (NOW + timedelta(days=1)).isoformat()
    assert domain.searchable(expert("active", expires_at=future), NOW)
    assert not domain.searchable(expert("validated"), NOW)
    assert not domain.searchable(expert("active", expires_at=(NOW - timedelta(seconds=1)).isoformat()), NOW)
    assert not domain.searchable(expert("active", consent={"consent_given": False}), NOW)


def test_expert_events_carry_no_personal_details():
    data = domain.expert_event_data(expert())
    assert set(data) == set(domain.EXPERT_EVENT_FIELDS)
    assert data["availability"] == {"status": "available", "from": None, "to": None}


def test_registering_an_expert_emits_expert_registered_without_personal_details():
    cv = ExpertSchema().dump(ExpertSchema().load(COMPLETE_CV))
    record, [(kind, data)] = domain.register_expert(cv, "exp-1", "GB-GOV-1", NOW.isoformat())
    assert (record["vetting_status"], record["owner"], record["family_name"]) == ("draft", "GB-GOV-1", "Achieng")
    assert kind == "expert.registered"
    assert data == domain.expert_event_data(record) and "family_name" not in data


def test_a_cv_update_emits_expert_updated():
    changes, [(kind, data)] = domain.update_expert(expert("active"), {"forms": ["LEGAL_ADVICE"]}, NOW)
    assert changes == {"forms": ["LEGAL_ADVICE"], "updated_at": NOW.isoformat()}
    assert (kind, data["forms"], data["vetting_status"]) == ("expert.updated", ["LEGAL_ADVICE"], "active")


def test_withdrawing_consent_from_an_active_expert_is_one_change_that_expires_it():
    withdrawn = {"consent": {"consent_given": False}}
    changes, [(kind, data)] = domain.update_expert(expert("active"), withdrawn, NOW)
    assert changes == {**withdrawn, "vetting_status": "expired", "expired_at": NOW.isoformat(),
                       "updated_at": NOW.isoformat()}
    assert (kind, data["vetting_status"]) == ("expert.expired", "expired")
    _, [(kind, _)] = domain.update_expert(expert("draft"), withdrawn, NOW)
    assert kind == "expert.updated"


def test_a_lapsed_expert_expires_with_the_same_change_as_a_withdrawn_consent():
    lapsed = expert("active", expires_at=(NOW - timedelta(days=1)).isoformat())
    assert domain.due_for_expiry(lapsed, NOW)
    changes, [(kind, data)] = domain.expire(lapsed, NOW)
    assert changes == {"vetting_status": "expired", "expired_at": NOW.isoformat(), "updated_at": NOW.isoformat()}
    assert (kind, data) == ("expert.expired", domain.expert_event_data({**lapsed, **changes}))
    by_consent, _ = domain.update_expert(lapsed, {"consent": {"consent_given": False}}, NOW)
    assert changes.items() <= by_consent.items()


def test_a_transition_records_who_moved_the_expert_and_why():
    changes, _ = domain.transition(expert("submitted", vetting_history=[{"to": "submitted"}]), "validated",
                                   "operator", False, NOW, by="operator:sec", note="checked")
    assert changes["validated_by"] == "operator:sec"
    assert changes["vetting_history"] == [{"to": "submitted"}, {"from": "submitted", "to": "validated",
                                           "by": "operator:sec", "at": NOW.isoformat(), "note": "checked"}]


def test_operators_and_the_nominator_see_the_whole_record_others_the_restricted_view_while_searchable():
    future = (NOW + timedelta(days=1)).isoformat()
    active = expert("active", expires_at=future)
    assert domain.expert_view(active, "operator", "*", NOW) == active
    assert domain.expert_view(expert("draft"), "donor", "GB-GOV-1", NOW) == expert("draft")
    view = domain.expert_view(active, "state", "KEN", NOW)
    assert set(view) == set(domain.PUBLIC_EXPERT_FIELDS) | set(domain.NAMED_FIELDS) and "contact" not in view
    anonymous = domain.expert_view({**active, "consent": {"consent_given": True}}, "state", "KEN", NOW)
    assert set(anonymous) == set(domain.PUBLIC_EXPERT_FIELDS)
    assert domain.expert_view(expert("draft"), "state", "KEN", NOW) is None


def test_an_expert_search_lists_what_the_viewer_may_see_up_to_the_limit():
    future = (NOW + timedelta(days=1)).isoformat()
    roster = [expert("active", expert_id=f"exp-{n}", expires_at=future) for n in range(3)] + [expert("draft")]
    assert len(domain.visible_experts(roster, {}, "state", "KEN", NOW, 10)) == 3
    assert len(domain.visible_experts(roster, {}, "operator", "*", NOW, 10)) == 4
    assert len(domain.visible_experts(roster, {}, "operator", "*", NOW, 2)) == 2
    assert domain.visible_experts(roster, {"article": 5}, "operator", "*", NOW, 10) == []


def test_region_search_matches_the_group_or_a_country_in_it():
    record = expert(regions=[], countries=["PER"])
    assert domain.expert_matches(record, {"region": "GRULAC"})
    assert not domain.expert_matches(record, {"region": "AFRICAN"})


# --- geographic balance -------------------------------------------------------------------------------

def test_balance_compares_each_groups_share_of_experts_with_its_share_of_states():
    report = domain.balance(["KEN", "UGA", "FRA", "PSE"])
    rows = {r["group"]: r for r in report["groups"]}
    total_states = sum(r["states"] for r in report["groups"])
    assert (report["total_experts"], report["unassigned"]) == (4, 1)
    assert rows["AFRICAN"]["experts"] == 2 and rows["AFRICAN"]["expert_share"] == 0.5
    assert rows["AFRICAN"]["state_share"] == round(rows["AFRICAN"]["states"] / total_states, 4)
    assert rows["AFRICAN"]["ratio"] == round(0.5 / (rows["AFRICAN"]["states"] / total_states), 3)
    assert rows["GRULAC"]["ratio"] == 0.0


def test_balance_of_an_empty_roster_has_no_ratios():
    assert all(r["ratio"] is None for r in domain.balance([])["groups"])
