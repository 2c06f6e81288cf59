"""Supply's expert-roster rules without I/O: the vetting state machine, expiry, who sees what, balance."""
from datetime import datetime, timedelta, timezone

import pytest

from services.supply import experts
from services.supply.schemas import ExpertSchema
from tacoord.errors import Conflict, Forbidden, Rejected

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


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
    return {**experts.new_expert(cv, "exp-1", "GB-GOV-1", NOW.isoformat()), "vetting_status": status, **changes}


def test_the_full_vetting_path_is_legal():
    record = expert()
    for to, role, owner in (("submitted", "donor", True), ("validated", "operator", False),
                            ("active", "operator", False), ("expired", "operator", False),
                            ("submitted", "donor", True)):
        changes, [(kind, data)] = experts.transition(record, to, role, owner, NOW)
        record = {**record, **changes}
        assert record["vetting_status"] == to
        assert kind == ("expert.expired" if to == "expired" else "expert.updated")
        assert data == experts.expert_event_data(record)


def test_activation_sets_the_expiry():
    changes, _ = experts.transition(expert("validated"), "active", "operator", False, NOW, validity_days=10)
    assert changes["expires_at"] == (NOW + timedelta(days=10)).isoformat()


@pytest.mark.parametrize("current, to", [("draft", "active"), ("draft", "validated"), ("submitted", "active"),
                                         ("active", "draft"), ("expired", "active"), ("validated", "submitted")])
def test_illegal_transitions_name_the_current_and_allowed_states(current, to):
    with pytest.raises(Conflict) as caught:
        experts.transition(expert(current), to, "operator", False, NOW)
    message = str(caught.value)
    assert f"is '{current}'" in message and f"to '{to}'" in message
    assert f"allowed from '{current}': {', '.join(experts.allowed_from(current))}" in message


def test_only_an_operator_validates():
    with pytest.raises(Forbidden, match="operator"):
        experts.transition(expert("submitted"), "validated", "donor", True, NOW)
    with pytest.raises(Forbidden):
        experts.transition(expert("draft"), "submitted", "donor", False, NOW)  # not the nominator


def test_an_incomplete_cv_cannot_be_submitted():
    with pytest.raises(Rejected) as caught:
        experts.transition(expert(expertise=[], contact={}), "submitted", "donor", True, NOW)
    assert "expertise" in caught.value.reason and "contact.email" in caught.value.reason


def test_submitting_names_each_missing_field_on_its_own():
    with pytest.raises(experts.Incomplete) as caught:
        experts.transition(expert(expertise=[], contact={}, education=[], consent={"consent_given": False}),
                           "submitted", "donor", True, NOW)
    assert caught.value.messages() == {
        "expertise": ["required before submission: at least one UNCAC article with a level"],
        "education": ["required before submission: education"],
        "contact.email": ["required before submission: a contact e-mail"],
        "consent.consent_given": ["data-protection consent is required"]}


def test_the_states_an_expert_is_never_proposed_to_are_their_nationality_employer_and_declared_ones():
    assert experts.conflict_states(expert()) == ["KEN"]
    assert experts.conflict_states(expert(employer_country="UGA", declared_conflicts=["TZA", "KEN"])) == [
        "KEN", "TZA", "UGA"]
    assert experts.expert_event_data(expert(employer_country="UGA"))["conflict_states"] == ["KEN", "UGA"]


def test_no_consent_no_activation():
    with pytest.raises(Rejected, match="consent"):
        experts.transition(expert("validated", consent={"consent_given": False}), "active", "operator", False, NOW)


def test_withdrawing_consent_expires_an_active_expert():
    assert experts.update_consequence(expert("active"), {"consent": {"consent_given": False}}) == "expired"
    assert experts.update_consequence(expert("draft"), {"consent": {"consent_given": False}}) is None


def test_only_active_consented_unexpired_experts_are_searchable():
    future = (NOW + timedelta(days=1)).isoformat()
    assert experts.searchable(expert("active", expires_at=future), NOW)
    assert not experts.searchable(expert("validated"), NOW)
    assert not experts.searchable(expert("active", expires_at=(NOW - timedelta(seconds=1)).isoformat()), NOW)
    assert not experts.searchable(expert("active", consent={"consent_given": False}), NOW)


def test_expert_events_carry_no_personal_details():
    data = experts.expert_event_data(expert())
    assert set(data) == set(experts.EXPERT_EVENT_FIELDS)
    assert data["availability"] == {"status": "available", "from": None, "to": None}


def test_registering_an_expert_emits_expert_registered_without_personal_details():
    cv = ExpertSchema().dump(ExpertSchema().load(COMPLETE_CV))
    record, [(kind, data)] = experts.register_expert(cv, "exp-1", "GB-GOV-1", NOW.isoformat())
    assert (record["vetting_status"], record["owner"], record["family_name"]) == ("draft", "GB-GOV-1", "Achieng")
    assert kind == "expert.registered"
    assert data == experts.expert_event_data(record) and "family_name" not in data


def test_a_cv_update_emits_expert_updated():
    changes, [(kind, data)] = experts.update_expert(expert("active"), {"forms": ["LEGAL_ADVICE"]}, NOW)
    assert changes == {"forms": ["LEGAL_ADVICE"], "updated_at": NOW.isoformat()}
    assert (kind, data["forms"], data["vetting_status"]) == ("expert.updated", ["LEGAL_ADVICE"], "active")


def test_withdrawing_consent_from_an_active_expert_is_one_change_that_expires_it():
    withdrawn = {"consent": {"consent_given": False}}
    changes, [(kind, data)] = experts.update_expert(expert("active"), withdrawn, NOW)
    assert changes == {**withdrawn, "vetting_status": "expired", "expired_at": NOW.isoformat(),
                       "updated_at": NOW.isoformat()}
    assert (kind, data["vetting_status"]) == ("expert.expired", "expired")
    _, [(kind, _)] = experts.update_expert(expert("draft"), withdrawn, NOW)
    assert kind == "expert.updated"


def test_a_lapsed_expert_expires_with_the_same_change_as_a_withdrawn_consent():
    lapsed = expert("active", expires_at=(NOW - timedelta(days=1)).isoformat())
    assert experts.due_for_expiry(lapsed, NOW)
    changes, [(kind, data)] = experts.expire(lapsed, NOW)
    assert changes == {"vetting_status": "expired", "expired_at": NOW.isoformat(), "updated_at": NOW.isoformat()}
    assert (kind, data) == ("expert.expired", experts.expert_event_data({**lapsed, **changes}))
    by_consent, _ = experts.update_expert(lapsed, {"consent": {"consent_given": False}}, NOW)
    assert changes.items() <= by_consent.items()


def test_a_transition_records_who_moved_the_expert_and_why():
    changes, _ = experts.transition(expert("submitted", vetting_history=[{"to": "submitted"}]), "validated",
                                   "operator", False, NOW, by="operator:sec", note="checked")
    assert changes["validated_by"] == "operator:sec"
    assert changes["vetting_history"] == [{"to": "submitted"}, {"from": "submitted", "to": "validated",
                                           "by": "operator:sec", "at": NOW.isoformat(), "note": "checked"}]


def test_operators_and_the_nominator_see_the_whole_record_others_the_restricted_view_while_searchable():
    future = (NOW + timedelta(days=1)).isoformat()
    active = expert("active", expires_at=future)
    assert experts.expert_view(active, "operator", "*", NOW) == active
    assert experts.expert_view(expert("draft"), "donor", "GB-GOV-1", NOW) == expert("draft")
    view = experts.expert_view(active, "state", "KEN", NOW)
    assert set(view) == set(experts.PUBLIC_EXPERT_FIELDS) | set(experts.NAMED_FIELDS) and "contact" not in view
    anonymous = experts.expert_view({**active, "consent": {"consent_given": True}}, "state", "KEN", NOW)
    assert set(anonymous) == set(experts.PUBLIC_EXPERT_FIELDS)
    assert experts.expert_view(expert("draft"), "state", "KEN", NOW) is None


def test_an_expert_search_lists_what_the_viewer_may_see_up_to_the_limit():
    future = (NOW + timedelta(days=1)).isoformat()
    roster = [expert("active", expert_id=f"exp-{n}", expires_at=future) for n in range(3)] + [expert("draft")]
    assert len(experts.visible_experts(roster, {}, "state", "KEN", NOW, 10)) == 3
    assert len(experts.visible_experts(roster, {}, "operator", "*", NOW, 10)) == 4
    assert len(experts.visible_experts(roster, {}, "operator", "*", NOW, 2)) == 2
    assert experts.visible_experts(roster, {"article": 5}, "operator", "*", NOW, 10) == []


def test_region_search_matches_the_group_or_a_country_in_it():
    record = expert(regions=[], countries=["PER"])
    assert experts.expert_matches(record, {"region": "GRULAC"})
    assert not experts.expert_matches(record, {"region": "AFRICAN"})


# --- geographic balance -------------------------------------------------------------------------------

def test_balance_compares_each_groups_share_of_experts_with_its_share_of_states():
    report = experts.balance(["KEN", "UGA", "FRA", "PSE"])
    rows = {r["group"]: r for r in report["groups"]}
    total_states = sum(r["states"] for r in report["groups"])
    assert (report["total_experts"], report["unassigned"]) == (4, 1)
    assert rows["AFRICAN"]["experts"] == 2 and rows["AFRICAN"]["expert_share"] == 0.5
    assert rows["AFRICAN"]["state_share"] == round(rows["AFRICAN"]["states"] / total_states, 4)
    assert rows["AFRICAN"]["ratio"] == round(0.5 / (rows["AFRICAN"]["states"] / total_states), 3)
    assert rows["GRULAC"]["ratio"] == 0.0


def test_balance_of_an_empty_roster_has_no_ratios():
    assert all(r["ratio"] is None for r in experts.balance([])["groups"])
