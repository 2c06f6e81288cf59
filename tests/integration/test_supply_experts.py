"""The expert roster against the real broker and database: registration, vetting, search, balance."""
from datetime import timedelta

import pytest
import requests

from services.supply.service import SupplyService
from tacoord import envelope
from tacoord.envelope import utcnow
from tacoord.testing import wait_until

UK = "GB-GOV-1"
CV = {
    "family_name": "Achieng", "given_names": "Grace", "title": "Dr", "gender": "female", "nationality": "KEN",
    "country_of_residence": "KEN", "current_position": "Director of Investigations", "employer": "EACC",
    "employer_type": "ACA", "expertise": [{"article": 36, "level": "expert"}, {"article": 46, "level": "advanced"}],
    "thematic_areas": ["investigation"], "forms": ["ONSITE_EXPERT", "CAPACITY_BUILDING"],
    "languages": [{"code": "en", "level": "fluent"}, {"code": "sw", "level": "mother_tongue"}],
    "regions": ["AFRICAN"], "countries": ["UGA", "TZA"], "years_of_experience": 15, "years_anti_corruption": 12,
    "education": [{"degree": "LLM", "field": "Criminal law", "institution": "University of Nairobi", "year": 2008}],
    "employment_history": [{"from": "2010-01-01", "employer": "EACC", "position": "Investigator"}],
    "availability": {"status": "available", "from": "2027-01-01", "to": "2027-12-31", "remote_ok": True},
    "conflict_of_interest_declaration": {"text": "No interests to declare.", "date": "2026-11-01"},
    "consent": {"consent_given": True, "date": "2026-11-01", "publish_profile": False},
    "contact": {"email": "grace@example.org"},
}


@pytest.fixture
def supply(sandbox, start):
    start(SupplyService, TACOORD_EXPERT_VALIDITY_DAYS=30)

    def call(method, path, role="operator", subject="*", **kwargs):
        return requests.request(method, sandbox.url("supply", path), headers=sandbox.headers(role, subject),
                                timeout=10, **kwargs)
    return call


def move(supply, expert_id, to, role="operator", subject="*"):
    return supply("POST", f"/experts/{expert_id}/transition", role, subject, json={"to": to})


def activated(supply, cv=CV, subject=UK):
    expert = supply("POST", "/experts", "donor", subject, json=cv).json()
    for to, role in (("submitted", "donor"), ("validated", "operator"), ("active", "operator")):
        response = move(supply, expert["expert_id"], to, role, subject if role == "donor" else "*")
        assert response.status_code == 200, response.text
    return response.json()


def test_an_expert_goes_from_draft_to_active_and_is_announced(sandbox, supply):
    created = supply("POST", "/experts", "donor", UK, json=CV)
    assert created.status_code == 201, created.text
    expert = created.json()
    assert (expert["vetting_status"], expert["nominated_by"], expert["expires_at"]) == ("draft", UK, None)

    assert move(supply, expert["expert_id"], "submitted", "donor", UK).json()["vetting_status"] == "submitted"
    assert move(supply, expert["expert_id"], "validated", "donor", UK).status_code == 403   # operators validate
    assert move(supply, expert["expert_id"], "validated").json()["validated_by"] == "operator:*"
    active = move(supply, expert["expert_id"], "active").json()
    assert active["vetting_status"] == "active"
    assert active["expires_at"][:10] == (utcnow() + timedelta(days=30)).date().isoformat()
    assert [h["to"] for h in active["vetting_history"]] == ["submitted", "validated", "active"]

    events = wait_until(lambda: sandbox.queue_depth("matching.events") >= 4 and
                        sandbox.get_messages("matching.events"), message="expert events")
    assert [e["type"] for e, _ in events] == ["expert.registered"] + ["expert.updated"] * 3
    for event, _ in events:
        envelope.load(event)
        assert "family_name" not in event["data"] and "contact" not in event["data"]
    assert events[-1][0]["data"]["vetting_status"] == "active"


def test_illegal_transitions_are_refused_naming_current_and_allowed_states(supply):
    expert = supply("POST", "/experts", "donor", UK, json=CV).json()
    response = move(supply, expert["expert_id"], "active")
    assert response.status_code == 409
    assert response.json()["error"] == (f"expert {expert['expert_id']} is 'draft' and cannot move to 'active'; "
                                        "allowed from 'draft': submitted")
    assert move(supply, expert["expert_id"], "retired").status_code == 422
    assert move(supply, expert["expert_id"], "submitted", "donor", "XM-DAC-41114").status_code == 403


def test_an_incomplete_or_unconsented_cv_cannot_be_submitted(supply):
    thin = {"family_name": "Doe", "given_names": "Jo", "nationality": "FRA"}
    expert = supply("POST", "/experts", "state", "FRA", json=thin).json()
    assert expert["nominated_by"] == "FRA"
    response = move(supply, expert["expert_id"], "submitted", "state", "FRA")
    assert response.status_code == 422
    assert "expertise" in response.json()["error"] and "consent" in response.json()["error"]
    missing = response.json()["fields"]
    # each missing field on its own, as the template names them
    assert {"current_position", "employer_type", "expertise", "forms", "languages", "years_of_experience",
            "availability", "conflict_of_interest_declaration", "education", "employment_history", "regions",
            "contact.email", "consent.consent_given"} == set(missing)
    assert missing["education"] == ["required before submission: education"]
    template = supply("GET", "/experts/template", "state", "FRA").json()["fields"]
    assert {f.split(".")[0] for f in missing} <= {n for n, f in template.items() if f["required_to_submit"]}


@pytest.mark.parametrize("change, field", [
    ({"nationality": "XXX"}, "nationality"),
    ({"expertise": [{"article": 99, "level": "expert"}]}, "expertise"),
    ({"expertise": [{"article": 9, "level": "guru"}]}, "expertise"),
    ({"languages": [{"code": "english", "level": "fluent"}]}, "languages"),
    ({"years_of_experience": "15"}, "years_of_experience"),
    ({"years_anti_corruption": 20}, "years_anti_corruption"),
    ({"regions": ["EUROPE"]}, "regions"),
    ({"vetting_status": "active"}, "vetting_status"),
])
def test_bad_expert_records_are_refused_naming_the_field(supply, change, field):
    response = supply("POST", "/experts", "donor", UK, json={**CV, **change})
    assert response.status_code == 422, response.text
    assert field in response.json()["fields"]


def test_only_active_consented_experts_are_found_by_others(supply):
    active = activated(supply)
    draft = supply("POST", "/experts", "donor", UK, json={**CV, "nationality": "PER"}).json()

    def found(query, role="state", subject="UGA"):
        response = supply("GET", f"/experts?{query}", role, subject)
        assert response.status_code == 200, response.text
        return response.json()["experts"]

    hits = found("article=46&language=sw&region=AFRICAN")
    assert [e["expert_id"] for e in hits] == [active["expert_id"]]
    assert "contact" not in hits[0] and "family_name" not in hits[0]   # publish_profile is false
    assert found("article=9") == [] and found("language=fr") == [] and found("region=GRULAC") == []
    assert {e["expert_id"] for e in found("", "donor", UK)} == {active["expert_id"], draft["expert_id"]}
    assert {e["expert_id"] for e in found("vetting_status=draft", "operator", "*")} == {draft["expert_id"]}
    assert supply("GET", "/experts?vetting_status=draft", "state", "UGA").status_code == 403
    assert supply("GET", f"/experts/{draft['expert_id']}", "state", "UGA").status_code == 404

    # withdrawing consent takes the expert off the roster at once
    patched = supply("PATCH", f"/experts/{active['expert_id']}", "donor", UK,
                     json={"consent": {"consent_given": False}})
    assert patched.json()["vetting_status"] == "expired"
    assert found("article=46") == []


def test_a_lapsed_expert_expires(sandbox, supply):
    active = activated(supply)
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    assert supply("PATCH", f"/experts/{active['expert_id']}", "donor", UK, json={"expires_at": past}).status_code == 403
    assert supply("PATCH", f"/experts/{active['expert_id']}", json={"expires_at": past}).status_code == 200
    assert supply("POST", "/experts/expire-due").json() == {"expired": [active["expert_id"]]}
    assert supply("GET", f"/experts/{active['expert_id']}").json()["vetting_status"] == "expired"
    expired = wait_until(lambda: [e for e, _ in sandbox.get_messages("matching.events") if e["type"] == "expert.expired"],
                         message="expert.expired")
    assert expired[0]["data"]["expert_id"] == active["expert_id"]
    assert move(supply, active["expert_id"], "submitted", "donor", UK).status_code == 200   # re-nominated


def test_the_balance_report_compares_groups_with_their_share_of_states(supply):
    activated(supply)
    activated(supply, {**CV, "nationality": "UGA"})
    activated(supply, {**CV, "nationality": "FRA"})
    supply("POST", "/experts", "donor", UK, json={**CV, "nationality": "PER"})   # draft: not counted
    response = supply("GET", "/experts/balance", "network", "AFRICAN")
    assert response.status_code == 200, response.text
    report = response.json()
    rows = {r["group"]: r for r in report["groups"]}
    assert report["total_experts"] == 3
    assert (rows["AFRICAN"]["experts"], rows["WEOG"]["experts"], rows["GRULAC"]["experts"]) == (2, 1, 0)
    assert rows["AFRICAN"]["ratio"] == round((2 / 3) / rows["AFRICAN"]["state_share"], 3)
    assert rows["GRULAC"]["ratio"] == 0.0


def test_the_cv_template_gives_every_fields_shape_from_the_schema(supply):
    from services.supply.schemas import ExpertSchema
    for role, subject in (("state", "KEN"), ("donor", UK), ("partner", "acme"), ("network", "AFRICAN")):
        assert supply("GET", "/experts/template", role, subject).status_code == 200
    template = supply("GET", "/experts/template").json()
    fields = template["fields"]
    assert set(fields) == {f.data_key or n for n, f in ExpertSchema().fields.items()}
    assert template["required_to_register"] == ["family_name", "given_names", "nationality"]
    assert fields["title"]["choices"] == ["Mr", "Ms", "Mx", "Dr", "Prof", "Judge", "Amb"]
    assert {k: v for k, v in fields["years_of_experience"].items() if k != "description"} == {
        "type": "integer", "minimum": 0, "maximum": 70, "nullable": True, "required_to_register": False,
        "required_to_submit": True, "needed_before_submission": "years of experience"}
    languages = fields["languages"]
    assert languages["type"] == "list" and languages["max_items"] == 12
    assert languages["items"]["fields"]["level"]["choices"] == ["basic", "intermediate", "fluent", "mother_tongue"]
    assert languages["items"]["fields"]["code"]["required"] is True
    assert fields["availability"]["fields"]["from"]["type"] == "date (YYYY-MM-DD)"
    assert fields["declared_conflicts"]["items"]["pattern"] == "^[A-Za-z]{3}$"
    assert supply("GET", "/experts/template?format=pdf").status_code == 400


def test_an_unknown_language_or_country_in_a_search_is_refused_naming_the_allowed_form(supply):
    activated(supply)
    for query, field in (("language=xx", "language"), ("language=english", "language"), ("country=XYZ", "country")):
        response = supply("GET", f"/experts?{query}", "state", "UGA")
        assert response.status_code == 422, response.text
        assert list(response.json()["fields"]) == [field]
    assert "ISO 639-1 two-letter code such as 'en'" in supply("GET", "/experts?language=xx").json()["error"]
    assert supply("GET", "/experts?language=SW", "state", "UGA").json()["count"] == 1


def test_expert_events_name_the_states_the_expert_must_not_be_proposed_to(sandbox, supply):
    expert = supply("POST", "/experts", "donor", UK, json={**CV, "employer_country": "KEN",
                                                           "declared_conflicts": ["tza"]}).json()
    assert expert["declared_conflicts"] == ["TZA"]
    [(event, _)] = wait_until(lambda: sandbox.get_messages("matching.events"), message="expert.registered")
    assert event["data"]["conflict_states"] == ["KEN", "TZA"]
    assert supply("POST", "/experts", "donor", UK, json={**CV, "employer_country": "XYZ"}).json()["fields"] == {
        "employer_country": ["unknown State 'XYZ': use an ISO 3166-1 alpha-3 code such as 'KEN'"]}
