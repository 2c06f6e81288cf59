"""The IATI activity → offer mapping, rule by rule, on fixtures built from the IATI 2.03 standard."""
from pathlib import Path

import pytest

from services.supply import iati, iati_mapping, money
from services.supply.schemas import IatiOfferSchema, OfferSchema

FIXTURES = Path(__file__).parent.parent / "fixtures"
IATI = FIXTURES / "iati"
SECTOR_MAP = iati_mapping.merged_sector_map()


def activities(name):
    path = IATI / name if name != "iati_activities.xml" else FIXTURES / name
    return {a["position"]: a for a in iati.parse(path.read_bytes())[1]}


def mapped(activity, sector_map=SECTOR_MAP):
    return iati_mapping.map_activity(activity, sector_map)


# --- the original rules ----------------------------------------------------------------------------

def test_a_15113_activity_in_kenya_becomes_a_bilateral_offer_with_its_budget():
    filing, reason, warnings = mapped(activities("iati_activities.xml")[1])
    assert reason is None and warnings == []
    assert {k: v for k, v in filing.items() if k not in ("budget", "planned_disbursements", "transactions")} == {
        "provider": "GB-GOV-1", "provider_name": "UK - Foreign, Commonwealth and Development Office",
        "level": "bilateral", "scope_states": ["KEN"], "scope_groups": [], "articles": [6, 36],
        "chapters": [], "forms": ["CAPACITY_BUILDING"], "capacity": 1,
        "period_start": "2026-02-01", "period_end": "2028-12-31",   # actual start wins over planned
        "languages": ["en"], "status": "active", "iati_identifier": "GB-GOV-1-300123",
        "anti_corruption_share": 1.0, "currency": "GBP"}
    assert filing["budget"] == [{"type": "original", "status": "committed", "period_start": "2026-02-01",
                                 "period_end": "2027-01-31", "value": 1500000.0, "currency": "GBP",
                                 "value_date": "2026-02-01"}]
    OfferSchema().load(filing)


def test_a_regional_activity_maps_its_dac_region_and_its_uncac_tags():
    filing, reason, _ = mapped(activities("iati_activities.xml")[2])
    assert reason is None
    assert (filing["level"], filing["scope_groups"], filing["scope_states"]) == ("regional", ["AFRICAN"], [])
    assert filing["articles"] == [46, 57]
    assert (filing["status"], filing["languages"]) == ("pipeline", ["fr"])


def test_other_sectors_are_skipped_unless_mapped():
    activity = activities("iati_activities.xml")[3]
    filing, reason, _ = mapped(activity)
    assert filing is None and "11220" in reason
    extra = iati_mapping.merged_sector_map({"11220": {"articles": [13], "forms": ["GOOD_PRACTICES"]}})
    filing, reason, _ = mapped(activity, extra)
    assert reason is None and filing["articles"] == [13] and filing["forms"] == ["GOOD_PRACTICES"]


def test_a_sector_in_another_vocabulary_is_not_read_as_a_dac_code():
    activity = {**activities("iati_activities.xml")[1], "sectors": [{"code": "15113", "vocabulary": "99"}]}
    assert mapped(activity)[0] is None


def test_a_bad_recipient_country_code_skips_the_activity_with_a_reason():
    filing, reason, _ = mapped(activities("iati_activities.xml")[4])
    assert filing is None and "'UK'" in reason


@pytest.mark.parametrize("code, status", [("1", "pipeline"), ("2", "active"), ("3", "closed"), ("4", "closed")])
def test_activity_status_maps_to_offer_status(code, status):
    filing, _, _ = mapped({**activities("iati_activities.xml")[1], "status_code": code})
    assert filing["status"] == status


@pytest.mark.parametrize("code", ["5", "6", "9", None])
def test_cancelled_suspended_or_unknown_activities_are_skipped(code):
    filing, reason, _ = mapped({**activities("iati_activities.xml")[1], "status_code": code})
    assert filing is None and "activity-status" in reason


def test_an_activity_without_a_start_date_is_skipped():
    _, reason, _ = mapped({**activities("iati_activities.xml")[1], "dates": {"3": "2028-01-01"}})
    assert "start" in reason


# --- sectors: transaction level, percentages, vocabularies -------------------------------------------

def test_the_share_is_the_dac_percentage_never_added_across_vocabularies():
    filing, reason, warnings = mapped(activities("sectors.xml")[1])
    assert reason is None and warnings == []
    assert filing["anti_corruption_share"] == 0.6          # not (60 + 100 + 100) / …
    amounts = money.totals(filing)["EUR"]
    assert amounts["budget"] == 0.6 * (2_500_000 + 1_500_000)   # the revised budget replaces the original
    assert (amounts["committed"], amounts["disbursed"], amounts["planned"]) == (2_400_000, 750_000, 360_000)
    assert money.totals(filing, attributed=False)["EUR"]["incoming"] == 0   # type 11: not assistance money
    # a publisher's own vocabulary reusing the DAC code at 100 % does not make it all anti-corruption
    own = {**activities("sectors.xml")[1]}
    own["sectors"] = own["sectors"] + [{"code": "15113", "vocabulary": "98", "percentage": "100"}]
    assert mapped(own)[0]["anti_corruption_share"] == 0.6


def test_a_revised_budget_replaces_the_original_of_its_period_in_any_order():
    original = {"type": "original", "period_start": "2026-01-01", "period_end": "2026-12-31", "currency": "EUR",
                "value": 100.0}
    revised = {**original, "type": "revised", "value": 120.0}
    assert money.latest_budgets([revised, original]) == [revised]
    assert money.latest_budgets([original, revised]) == [revised]
    other_year = {**original, "period_start": "2027-01-01", "period_end": "2027-12-31"}
    assert money.totals({"budget": [revised, original, other_year]})["EUR"]["budget"] == 220.0


def test_sectors_only_on_transactions_are_read_transaction_by_transaction():
    filing, reason, _ = mapped(activities("sectors.xml")[2])
    assert reason is None
    assert (filing["level"], filing["scope_states"]) == ("bilateral", ["UGA"])   # the health one went to Kenya
    shares = [(t["type"], t["share"], t.get("state")) for t in filing["transactions"]]
    assert shares == [("outgoing_commitment", 1.0, "UGA"), ("disbursement", 1.0, "UGA"),
                      ("disbursement", 0.0, "KEN")]
    assert money.totals(filing)["USD"]["disbursed"] == 1_200_000
    assert filing["anti_corruption_share"] == round(4.2 / 5.0, 4)


def test_an_activity_with_no_anti_corruption_transaction_is_skipped():
    activity = activities("sectors.xml")[2]
    health = [{**t, "sectors": [{"code": "12220", "vocabulary": "1", "percentage": None}]}
              for t in activity["transactions"]]
    filing, reason, _ = mapped({**activity, "transactions": health})
    assert filing is None and "transactions" in reason


def test_a_missing_vocabulary_is_dac_and_percentages_not_adding_up_are_warned():
    filing, _, warnings = mapped(activities("sectors.xml")[3])
    assert filing["anti_corruption_share"] == 0.5
    assert any("add up to 80" in w for w in warnings)


def test_sectors_without_percentages_are_equal_shares():
    share, mapped_codes = iati_mapping.sector_share(
        [{"code": "15113", "vocabulary": None, "percentage": None},
         {"code": "15150", "vocabulary": "1", "percentage": None}], SECTOR_MAP, warnings := [])
    assert (share, mapped_codes) == (0.5, ["15113"]) and "equal shares" in warnings[0]


# --- organisation refs, scope, dates, regions ---------------------------------------------------

def test_a_two_part_org_ref_is_an_organisation_id():
    filing, _, warnings = mapped(activities("refs_scope_dates.xml")[1])
    assert filing["provider"] == "NL-1" and warnings == []
    OfferSchema().load(filing)


def test_an_org_ref_of_an_unknown_shape_is_a_warning_not_a_rejection():
    filing, reason, warnings = mapped(activities("refs_scope_dates.xml")[2])
    assert reason is None and filing["provider"] == "41114"
    assert "not of the {agency}-{number} shape" in warnings[0]
    IatiOfferSchema().load(filing)


def test_recipient_countries_set_the_scope_whatever_activity_scope_says():
    filing, _, warnings = mapped(activities("refs_scope_dates.xml")[3])
    assert (filing["level"], filing["scope_states"]) == ("regional", ["CIV", "SEN"])
    assert "activity-scope 1 (global)" in warnings[0]


def test_an_activity_with_a_start_and_no_end_is_ongoing():
    filing, _, _ = mapped(activities("refs_scope_dates.xml")[3])
    assert (filing["period_start"], filing["period_end"]) == ("2026-04-01", None)
    assert OfferSchema().load(filing)["period_end"] is None


def test_a_region_only_activity_is_regional_and_the_catch_all_region_global():
    regional, _, _ = mapped(activities("refs_scope_dates.xml")[4])
    assert (regional["level"], regional["scope_groups"]) == ("regional", ["AFRICAN"])
    catch_all, _, warnings = mapped(activities("refs_scope_dates.xml")[5])
    assert (catch_all["level"], warnings) == ("global", [])


def test_regions_no_codelist_maps_are_imported_global_with_warnings():
    filing, reason, warnings = mapped(activities("refs_scope_dates.xml")[6])
    assert reason is None and filing["level"] == "global"
    assert any("'EAC' (vocabulary 99)" in w for w in warnings) and any("'1027'" in w for w in warnings)


def test_no_recipient_and_no_global_scope_is_skipped():
    base = {**activities("iati_activities.xml")[1], "countries": [], "scope_code": "4"}
    assert "no recipient-country" in mapped(base)[1]


# --- identifiers and values ----------------------------------------------------------------------

def test_a_wrapped_identifier_is_joined_and_reported_one_with_a_space_rejected():
    wrapped, spaced = activities("identifiers_and_values.xml").values()
    assert wrapped["iati_identifier"] == "GB-GOV-1-301234"
    filing, _, warnings = mapped(wrapped)
    assert filing["iati_identifier"] == "GB-GOV-1-301234" and "line break" in warnings[0]
    filing, reason, _ = mapped(spaced)
    assert filing is None and "contains whitespace" in reason


def test_values_that_are_not_xs_decimal_are_flagged_not_counted():
    filing, _, warnings = mapped(activities("identifiers_and_values.xml")[1])
    assert [b["value"] for b in filing["budget"]] == [900000.5]
    assert filing["transactions"] == []
    assert any("'1,500,000' is not an xs:decimal" in w for w in warnings)
    assert any("'n/a' is not an xs:decimal" in w for w in warnings)


@pytest.mark.parametrize("text, value", [("1500000", 1500000.0), (" -12.50 ", -12.5), (".5", 0.5), ("+3.", 3.0),
                                         ("1,500", None), ("1.5E6", None), ("£200", None), ("", None), (None, None)])
def test_xs_decimal(text, value):
    assert money.xs_decimal(text) == value


# --- versions ------------------------------------------------------------------------------------

def test_a_1_0x_file_and_a_file_without_a_version_are_refused_whole():
    with pytest.raises(iati.IatiError, match="version 1.01 is not supported"):
        iati.parse((IATI / "version_1_01.xml").read_bytes())
    with pytest.raises(iati.IatiError, match="no version"):
        iati.parse((IATI / "no_version.xml").read_bytes())
    with pytest.raises(iati.IatiError, match="version 2.04"):
        iati.parse(b"<iati-activities version='2.04'/>")


@pytest.mark.parametrize("version", ["2.01", "2.02", "2.03"])
def test_2_01_to_2_03_are_read(version):
    text = (IATI / "reimport_v1.xml").read_bytes().replace(b'version="2.03"', f'version="{version}"'.encode())
    assert len(iati.parse(text)[1]) == 2


def test_unsafe_or_foreign_xml_is_refused_whole():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            b'<iati-activities version="2.03">&lol2;</iati-activities>')
    with pytest.raises(iati.IatiError, match="unsafe XML"):
        iati.parse(bomb)
    with pytest.raises(iati.IatiError, match="not well-formed"):
        iati.parse(b"<iati-activities version='2.03'><iati-activity>")
    with pytest.raises(iati.IatiError, match="<iati-organisations>"):
        iati.parse(b"<iati-organisations version='2.03'/>")


# --- re-import and the report ----------------------------------------------------------------------

def stored_of(filing):
    return {**filing, "status": filing["status"], "iati_last_updated": filing.get("iati_last_updated")}


def test_a_reimport_is_unchanged_updated_or_an_older_version():
    old = {**mapped(activities("reimport_v1.xml")[1])[0], "iati_last_updated": "2026-09-30T12:00:00Z"}
    new = {**mapped(activities("reimport_v2.xml")[1])[0], "iati_last_updated": "2026-10-31T09:15:00Z"}
    assert iati_mapping.reimport_outcome(old, old) == ("unchanged", None)
    assert iati_mapping.reimport_outcome(old, new) == ("updated", None)
    outcome, reason = iati_mapping.reimport_outcome(new, old)
    assert outcome == "skipped" and "older version" in reason
    assert iati_mapping.reimport_outcome({**old, "status": "withdrawn"}, old)[0] == "updated"
    # the same content with a newer timestamp adds nothing
    assert iati_mapping.reimport_outcome(old, {**old, "iati_last_updated": "2026-12-01T00:00:00Z"})[0] == "unchanged"


def test_a_dry_run_reports_scope_articles_share_amounts_and_warnings():
    report = iati.dry_run((IATI / "sectors.xml").read_bytes(), SECTOR_MAP)
    assert (report["activities"], report["imported"], report["skipped"]) == (3, 3, 0)
    first = report["results"][0]
    assert {k: first[k] for k in ("iati_identifier", "outcome", "level", "states", "articles", "forms", "share")} == {
        "iati_identifier": "XI-IATI-EC_INTPA-2026-441122", "outcome": "would import", "level": "bilateral",
        "states": ["GHA"], "articles": [6, 36], "forms": ["CAPACITY_BUILDING"], "share": 0.6}
    assert first["anti_corruption_amounts"]["EUR"]["committed"] == 2_400_000
    assert first["amounts"]["EUR"]["committed"] == 4_000_000
    assert "add up to 80" in report["results"][2]["warnings"][0]


def test_a_dry_run_names_a_duplicate_identifier():
    report = iati.dry_run((FIXTURES / "iati_activities.xml").read_bytes(), SECTOR_MAP)
    assert (report["activities"], report["imported"], report["skipped"]) == (5, 2, 3)
    assert "duplicate iati-identifier: activity 1 of this file" in report["results"][4]["reason"]


def test_an_import_report_counts_each_outcome():
    results = [{"outcome": o} for o in ("imported", "would import", "updated", "unchanged", "skipped")]
    assert {k: v for k, v in iati_mapping.import_summary(results).items() if k != "results"} == {
        "activities": 5, "imported": 2, "updated": 1, "unchanged": 1, "skipped": 1}


def test_a_configured_sector_map_is_checked():
    assert iati_mapping.sector_map_problems({"15130": {"articles": [9], "forms": ["LEGAL_ADVICE"]}}) == []
    assert iati_mapping.sector_map_problems({"15130": {"articles": [9], "forms": ["TEA"]}})
    assert iati_mapping.sector_map_problems({"15130": {"forms": ["LEGAL_ADVICE"]}})


def test_a_file_of_a_few_hundred_activities_maps_each_one():
    report = iati.dry_run((IATI / "many_activities.xml").read_bytes(), SECTOR_MAP)
    assert report["activities"] == 200
    assert report["imported"] == 160   # one in five is not anti-corruption
    assert all(r["warnings"] == [] for r in report["results"] if r["outcome"] == "would import")
