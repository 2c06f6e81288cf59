"""What a request filing must contain, and how bad input is named (no I/O)."""
import pytest
from marshmallow import ValidationError

from services.requests.schemas import (ChecklistAssistanceSubmittedSchema, RequestEventSchema, RequestSchema,
                                       TransitionSchema, WorkshopSubmittedSchema)
from tacoord import envelope

REGIONAL = {
    "kind": "regional_workshop", "state": "ken", "articles": [9, 5],
    "expected_outcomes": "A regional gap analysis of procurement rules",
    "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
    "support_received": [{"provider": "GB-GOV-1", "description": "2025 procurement training"}],
}


def errors_of(body, schema=RequestSchema()):
    with pytest.raises(ValidationError) as raised:
        schema.load(body)
    return raised.value.messages


def test_a_complete_filing_loads_and_dumps_json_ready():
    schema = RequestSchema()
    dumped = schema.dump(schema.load(REGIONAL))
    assert dumped["state"] == "KEN"
    assert dumped["preferred_dates"] == [{"from": "2027-03-01", "to": "2027-03-05"}]
    assert dumped["support_received"][0]["provider"] == "GB-GOV-1"


def test_support_received_must_be_present_even_if_empty():
    body = {k: v for k, v in REGIONAL.items() if k != "support_received"}
    assert "avoid duplication" in errors_of(body)["support_received"][0]
    assert RequestSchema().load({**REGIONAL, "support_received": []})["support_received"] == []
    assert "support_received" in errors_of({**REGIONAL, "support_received": None})


@pytest.mark.parametrize("change,field,fragment", [
    ({"state": "XXX"}, "state", "unknown State 'XXX'"),
    ({"state": 404}, "state", "Not a valid string"),
    ({"articles": [99]}, "articles", "unknown UNCAC article 99"),
    ({"articles": [2]}, "articles", "not a substantive provision"),
    ({"articles": ["9"]}, "articles", "Not a valid integer"),
    ({"articles": []}, "articles", "at least one topic article"),
    ({"preferred_dates": [{"from": "2027-03-05", "to": "2027-03-01"}]}, "preferred_dates", "before 'from'"),
    ({"preferred_dates": [{"from": "March", "to": "2027-03-01"}]}, "preferred_dates", "Not a valid date"),
    ({"preferred_dates": []}, "preferred_dates", "at least one preferred period"),
    ({"preferred_dates": "2027-03-01"}, "preferred_dates", "Not a valid list"),
    ({"language": "English"}, "language", "ISO 639-1"),
    ({"kind": "seminar"}, "kind", "kind must be one of"),
    ({"expected_outcomes": ""}, "expected_outcomes", "Length must be between 1"),
    ({"support_received": [{"description": "no provider"}]}, "support_received", "Missing data"),
    ({"support_received": "none"}, "support_received", "Not a valid list"),
    ({"regional_group": "WEOG"}, "regional_group", "KEN belongs to AFRICAN"),
    ({"regional_group": "NORDIC"}, "regional_group", "unknown regional group"),
    ({"network_states": ["FRA"]}, "network_states", "needs a network_id"),
    ({"budget": 1000}, "budget", "Unknown field"),
])
def test_bad_input_is_refused_naming_the_field(change, field, fragment):
    messages = errors_of({**REGIONAL, **change})
    assert field in messages, messages
    assert fragment in str(messages[field])


def test_network_fields_are_only_for_regional_workshops():
    messages = errors_of({**REGIONAL, "kind": "national_workshop", "network_id": "ARINSA",
                          "network_states": ["UGA"]})
    assert "network_id" in messages


def test_checklist_assistance_needs_no_articles_or_dates():
    loaded = ChecklistAssistanceSubmittedSchema().load({
        "state": "KEN", "expected_outcomes": "Checklist completed before the review", "language": "fr",
        "support_received": []})
    assert loaded["kind"] == "checklist_assistance"


def test_workshop_ingress_refuses_the_checklist_kind():
    messages = errors_of({**REGIONAL, "kind": "checklist_assistance"}, WorkshopSubmittedSchema())
    assert "checklist_assistance.submitted" in messages["kind"][0]


def test_dollar_keys_are_refused_before_any_schema():
    event = envelope.new_event("workshop.submitted", {**REGIONAL, "support_received": [{"$where": "1"}]}, "t")
    with pytest.raises(ValidationError) as raised:
        envelope.load(event, envelope.INGRESS)
    assert "keys may not start with '$'" in str(raised.value.messages)


def test_a_transition_names_a_known_target_and_typed_values():
    assert "to" in errors_of({"to": "done"}, TransitionSchema())
    assert "scheduled_for" in errors_of({"to": "scheduled", "scheduled_for": "soon"}, TransitionSchema())
    assert "reason" in errors_of({"to": "declined", "reason": 7}, TransitionSchema())


def test_the_event_payload_schema_accepts_what_the_service_emits():
    payload = {**RequestSchema().dump(RequestSchema().load(REGIONAL)), "request_id": "REQ-KEN-1", "states": ["KEN"],
               "regional_group": "AFRICAN", "status": "submitted", "network_states": [], "network_id": None,
               "reason": None, "outcome_notes": None, "scheduled_for": None, "offered_by": None, "donors": [],
               "checklist_round": None, "created_at": "2027-01-10T09:00:00+00:00", "updated_at": "2027-01-10T09:00:00+00:00"}
    schema = RequestEventSchema()
    assert schema.dump(schema.load(payload)) == payload
