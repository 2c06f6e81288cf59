"""The needs domain: keys, refiling, transitions, import plans and the Secretariat's views."""
import pytest

from services.needs import domain
from tacoord.errors import Conflict, Rejected

NOW, LATER = "2026-11-26T10:00:00+00:00", "2026-11-27T10:00:00+00:00"
FILED = {"state": "KEN", "article": 9, "paragraph": None, "forms": ["LEGAL_ADVICE", "CAPACITY_BUILDING"],
         "other_text": None, "priority": 1, "description": "Procurement reform", "checklist_round": "2026-1",
         "languages": ["en"], "external_ref": None}


def test_the_need_id_does_not_depend_on_the_order_or_repetition_of_forms():
    a = domain.need_id("KEN", 9, ["LEGAL_ADVICE", "CAPACITY_BUILDING"])
    b = domain.need_id("KEN", 9, ["CAPACITY_BUILDING", "LEGAL_ADVICE", "LEGAL_ADVICE"])
    assert a == b and a.startswith("KEN-9-")
    assert domain.need_id("KEN", 9, ["LEGAL_ADVICE"]) != a


def test_a_new_need_is_open_with_its_group_chapter_and_sorted_forms():
    need = domain.new_need(FILED, NOW)
    assert need["status"] == "open"
    assert need["regional_group"] == "AFRICAN" and need["chapter"] == 2
    assert need["forms"] == ["CAPACITY_BUILDING", "LEGAL_ADVICE"]
    assert need["created_at"] == need["updated_at"] == NOW


def test_filing_a_new_need_emits_need_submitted_carrying_the_need():
    need, events = domain.file_need(None, dict(FILED), NOW)
    assert need == domain.new_need(FILED, NOW)
    assert events == [("need.submitted", domain.public(need))]
    assert set(events[0][1]) == set(domain.PUBLIC_FIELDS)


def test_filing_the_same_need_again_unchanged_causes_no_event():
    existing = domain.new_need(FILED, NOW)
    need, events = domain.file_need(existing, dict(FILED), LATER)
    assert events == []
    assert need["updated_at"] == NOW


def test_filing_the_same_need_with_a_new_priority_updates_it_and_keeps_its_status():
    existing = {**domain.new_need(FILED, NOW), "status": "in_progress"}
    need, events = domain.file_need(existing, {**FILED, "priority": 3}, LATER)
    assert events == [("need.updated", domain.public(need))]
    assert need["priority"] == 3 and need["status"] == "in_progress"
    assert need["created_at"] == NOW and need["updated_at"] == LATER


@pytest.mark.parametrize("status", ["met", "withdrawn"])
def test_filing_a_met_or_withdrawn_need_again_reopens_it(status):
    existing = {**domain.new_need(FILED, NOW), "status": status}
    need, events = domain.file_need(existing, dict(FILED), LATER)
    assert need["status"] == "open"
    assert events == [("need.submitted", domain.public(need))]


def test_a_withdrawn_need_cannot_be_changed():
    existing = {**domain.new_need(FILED, NOW), "status": "withdrawn"}
    with pytest.raises(Conflict, match="withdrawn"):
        domain.change(existing, {"priority": 2}, LATER)


def test_a_met_need_cannot_go_back_to_open_by_an_update():
    existing = {**domain.new_need(FILED, NOW), "status": "met"}
    with pytest.raises(Conflict, match="cannot become open"):
        domain.change(existing, {"status": "open"}, LATER)


def test_an_open_need_can_be_marked_in_progress_then_met():
    need = domain.new_need(FILED, NOW)
    changes, events = domain.change(need, {"status": "in_progress"}, LATER)
    assert changes == {"status": "in_progress", "updated_at": LATER}
    assert events == [("need.updated", domain.public({**need, **changes}))]
    changes, events = domain.change({**need, **changes}, {"status": "met"}, LATER)
    assert changes["status"] == "met" and events[0][1]["status"] == "met"


def test_withdrawing_twice_is_a_no_op():
    need = domain.new_need(FILED, NOW)
    changes, events = domain.withdraw(need, "no longer needed", LATER)
    assert changes["status"] == "withdrawn"
    assert events == [("need.withdrawn", domain.public({**need, **changes}))]
    assert domain.withdraw({**need, **changes}, "again", LATER) == ({}, [])


def test_an_import_plan_inserts_new_needs_and_updates_only_true_duplicates():
    stored = domain.new_need(FILED, NOW)
    rows = [
        dict(FILED),                                              # identical to the stored need
        {**FILED, "forms": ["ONSITE_EXPERT"]},                    # new
        {**FILED, "state": "GHA"},                                # new
        {**FILED, "state": "GHA", "priority": 2},                 # same key as the row above: later wins
        {**FILED, "state": "GHA", "priority": 2},                 # repeats it
    ]
    inserts, updates, counts = domain.plan_import(rows, {stored["need_id"]: stored}, LATER)
    assert counts == {"accepted": 2, "updated": 1, "unchanged": 2}
    assert sum(counts.values()) == len(rows)
    assert updates == []
    assert {n["state"] for n, _ in inserts} == {"KEN", "GHA"}
    assert [n["priority"] for n, _ in inserts if n["state"] == "GHA"] == [2]
    assert all(events == [("need.submitted", domain.public(n))] for n, events in inserts)


def test_an_import_plan_updates_a_stored_need_whose_row_changed():
    stored = domain.new_need(FILED, NOW)
    inserts, updates, counts = domain.plan_import([{**FILED, "description": "new"}], {stored["need_id"]: stored},
                                                  LATER)
    assert inserts == [] and counts["updated"] == 1
    [(need, events)] = updates
    assert need["description"] == "new"
    assert events == [("need.updated", domain.public(need))]


def test_an_import_plan_reopens_a_withdrawn_need_as_submitted():
    stored = {**domain.new_need(FILED, NOW), "status": "withdrawn"}
    _, [(need, events)], counts = domain.plan_import([dict(FILED)], {stored["need_id"]: stored}, LATER)
    assert counts["updated"] == 1 and need["status"] == "open"
    assert events == [("need.submitted", domain.public(need))]


def test_list_filters_are_normalised_and_a_bad_one_is_rejected_naming_it():
    assert domain.check_filters({"state": "ken", "form": "legal_advice"}) == {"state": "KEN", "form": "LEGAL_ADVICE"}
    with pytest.raises(Rejected) as rejected:
        domain.check_filters({"article": "nine"})
    assert rejected.value.field == "article"
    for digits in ("²", "٣"):   # str.isdigit() takes both, int() refuses the first (a 500, found by schemathesis)
        with pytest.raises(Rejected, match="priority must be a number"):
            domain.check_filters({"priority": digits})
    with pytest.raises(Rejected, match="status must be one of"):
        domain.check_filters({"status": "all"})
    assert domain.check_filters({"status": "all"}, domain.STATUSES + ("all",)) == {"status": "all"}


def test_the_overview_counts_needs_per_article_and_regional_group():
    needs = [{"article": 9, "regional_group": "AFRICAN"}, {"article": 9, "regional_group": "AFRICAN"},
             {"article": 9, "regional_group": "WEOG"}, {"article": 15, "regional_group": None}]
    view = domain.overview(needs)
    assert view["counts"]["9"]["AFRICAN"] == 2 and view["counts"]["9"]["WEOG"] == 1
    assert view["counts"]["9"]["GRULAC"] == 0
    assert view["counts"]["15"]["NONE"] == 1
    assert view["articles"] == [9, 15] and view["total"] == 4
    assert view["group_totals"]["AFRICAN"] == 2 and view["article_totals"]["9"] == 3
