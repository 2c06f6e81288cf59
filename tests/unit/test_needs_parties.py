"""The parties to the Convention: when each became one, corrections, and a round's coverage (no I/O)."""
from datetime import date

import pytest

from services.needs import parties
from tacoord import reference
from tacoord.errors import Rejected

NOW = "2026-12-02T10:00:00+00:00"


def entry(code, deposited, group="AFRICAN", kind="state", status="party", verification="verified"):
    return {"party": code, "name": code, "kind": kind, "status": status, "deposited": deposited,
            "party_since": parties.party_since(deposited) if status == "party" else None,
            "regional_group": group, "verification": verification}


def test_a_state_becomes_a_party_thirty_days_after_its_deposit_and_not_before_the_convention_is_in_force():
    assert parties.party_since("2008-08-25") == "2008-09-24"
    assert parties.party_since("2003-12-09") == "2005-12-14"   # Kenya ratified first; in force for all on 14 Dec 2005
    assert parties.party_since("2005-11-14") == "2005-12-14"
    assert parties.party_since("2005-11-15") == "2005-12-15"
    assert parties.party_since(None) is None


def test_coverage_divides_by_the_states_parties_on_the_rounds_date_per_group_naming_who_has_not_reported():
    entries = {
        "KEN": entry("KEN", "2003-12-09"), "GHA": entry("GHA", "2007-06-27"), "SOM": entry("SOM", "2021-08-26"),
        "FRA": entry("FRA", "2005-07-11", "WEOG", verification="unverified_recalled"),
        "PSE": entry("PSE", "2014-04-02", None), "COK": entry("COK", "2011-10-17", None),
        "EU": entry("EU", "2008-11-12", None, kind="reio"),
        "NIU": entry("NIU", None, None, status="unknown", verification="unknown"),
        "PRK": entry("PRK", None, "ASIA_PACIFIC", status="not_party"),
    }
    early = parties.coverage(entries, ["KEN", "FRA", "SOM", "EU"], date(2009, 9, 3))
    assert (early["reported"], early["parties"], early["text"], early["rate"]) == (2, 3, "2 of 3", 0.667)
    assert early["by_group"] == {
        "AFRICAN": {"reported": 1, "parties": 2, "rate": 0.5, "not_reported": ["GHA"]},
        "WEOG": {"reported": 1, "parties": 1, "rate": 1.0, "not_reported": []}}
    assert early["not_reported"] == [{"party": "GHA", "name": "GHA", "regional_group": "AFRICAN"}]
    assert early["not_counted"] == ["EU", "SOM"]          # Somalia was not yet a party; the EU is not a State
    assert early["regional_organizations"] == [
        {"party": "EU", "name": "EU", "regional_group": None, "party_since": "2008-12-12", "reported": True}]
    assert [u["party"] for u in early["undetermined"]] == ["NIU"]
    assert early["denominator_verification"] == {"unverified_recalled": 1, "verified": 2}

    later = parties.coverage(entries, ["KEN", "PSE"], date(2026, 1, 1))
    assert (later["reported"], later["parties"]) == (2, 6)
    assert later["by_group"]["NONE"] == {"reported": 1, "parties": 2, "rate": 0.5, "not_reported": ["COK"]}
    assert "PRK" not in later["by_group"].get("ASIA_PACIFIC", {"not_reported": []})["not_reported"]


def test_the_report_of_2009_is_reproduced_from_a_list_of_parties_with_dates():
    # 18-19 Dec 2008: 66 of 126 States parties; 3-4 Sep 2009: 77 of 137 (CAC/COSP/2009/..., para. 23)
    entries = {f"S{i:03}": entry(f"S{i:03}", "2005-01-01" if i < 126 else "2009-06-01") for i in range(137)}
    entries["LATE"] = entry("LATE", "2009-08-20")                 # in force on 19 Sep 2009: not yet a party
    first = parties.coverage(entries, [f"S{i:03}" for i in range(66)], date(2008, 12, 18))
    second = parties.coverage(entries, [f"S{i:03}" for i in range(77)], date(2009, 9, 3))
    assert (first["text"], round(first["rate"] * 100)) == ("66 of 126", 52)
    assert (second["text"], second["rate"]) == ("77 of 137", 0.562)    # the report rounds it to 57 per cent


def test_the_shipped_list_labels_every_entry_and_dates_every_party_it_asserts():
    meta, shipped = reference.parties_data()["_meta"], reference.parties()
    legend = set(meta["verification_legend"])
    assert set(reference.states()) - {None} <= set(shipped)            # every State of the reference data
    assert shipped["EU"]["kind"] == "reio"
    for code, item in shipped.items():
        assert item["verification"] in legend, code
        assert set(item["sources"]) <= set(meta["sources"]), code
        if item["verification"] in ("verified", "single_source"):
            assert item["sources"], code
        if item["status"] == "party" and item["verification"] != "unknown":
            assert item["deposited"], code
        if item["status"] == "unknown":
            assert item["deposited"] is None and item["verification"] == "unknown", code
    assert shipped["VAT"]["status"] == "party" and shipped["VAT"]["verification"] == "verified"


def test_an_operator_corrects_a_date_and_the_event_says_what_it_was():
    shipped = reference.parties()["FRA"]
    correction, events = parties.correct(shipped, None, {"deposited": "2005-07-12", "source": "UNTC XVIII-14"},
                                         "operator:ops", NOW)
    [(kind, data)] = events
    assert kind == "party.corrected" and data["party_id"] == "FRA"
    assert (data["deposited"], data["party_since"], data["verification"]) == (
        "2005-07-12", "2005-12-14", "operator_corrected")
    assert data["previous"] == {"status": "party", "instrument": shipped["instrument"],
                                "deposited": shipped["deposited"], "verification": shipped["verification"]}
    stored = {**correction, "_id": "FRA"}
    again, none = parties.correct(shipped, stored, {"deposited": "2005-07-12", "source": "UNTC XVIII-14"},
                                  "operator:ops", NOW)
    assert none == [] and again == stored
    view = parties.effective(shipped, stored)
    assert view["verification"] == "operator_corrected" and view["shipped"]["deposited"] == shipped["deposited"]
    assert view["correction_source"] == "UNTC XVIII-14"


def test_a_correction_that_contradicts_itself_is_refused_naming_the_field():
    unknown = reference.parties()["NIU"]
    with pytest.raises(Rejected) as refused:
        parties.correct(unknown, None, {"status": "party", "source": "depositary notification"}, "operator:x", NOW)
    assert refused.value.field == "deposited"
    with pytest.raises(Rejected) as refused:
        parties.correct(unknown, None, {"status": "party", "deposited": "2001-01-01", "source": "a notification"},
                        "operator:x", NOW)
    assert refused.value.field == "deposited"
    with pytest.raises(Rejected) as refused:
        parties.correct(unknown, None, {"status": "not_party", "deposited": "2010-01-01", "source": "UNTC"},
                        "operator:x", NOW)
    assert refused.value.field == "deposited"
    _, [(_, not_party)] = parties.correct(reference.parties()["FRA"], None,
                                          {"status": "not_party", "source": "test"}, "operator:x", NOW)
    assert (not_party["status"], not_party["deposited"], not_party["party_since"]) == ("not_party", None, None)
