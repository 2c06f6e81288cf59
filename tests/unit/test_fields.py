"""The core's shared fields: one rule each, wherever a service uses them, and the JSON Schema they document."""
import re

import pytest
from marshmallow import Schema, ValidationError

from services.matching.schemas import CellFilterSchema
from services.needs.schemas import NeedSchema
from services.notify.schemas import FilterSchema
from services.requests.schemas import RequestSchema
from services.supply.schemas import OfferSchema
from tacoord import asyncapi, reference
from tacoord.fields import ORG_ID_PATTERN, GroupId, Language, OrgId, StateCode


class Sample(Schema):
    state = StateCode()
    language = Language()
    provider = OrgId()
    group = GroupId(allow_none=True)


def test_state_codes_are_upper_cased_and_must_be_known():
    assert Sample().load({"state": "ken"}) == {"state": "KEN"}
    with pytest.raises(ValidationError) as error:
        Sample().load({"state": "XXX"})
    assert error.value.messages == {"state": ["unknown State 'XXX': use an ISO 3166-1 alpha-3 code such as 'KEN'"]}


@pytest.mark.parametrize("given, stored", [("en", "en"), ("EN", "en"), ("Fr", "fr")])
def test_a_language_code_is_accepted_in_any_case_and_stored_lower_case(given, stored):
    assert Sample().load({"language": given}) == {"language": stored}


@pytest.mark.parametrize("bad", ["english", "e", "e1", ""])
def test_a_language_is_a_two_letter_iso_639_1_code(bad):
    with pytest.raises(ValidationError) as error:
        Sample().load({"language": bad})
    assert "ISO 639-1" in error.value.messages["language"][0]


@pytest.mark.parametrize("org_id, valid", [
    ("GB-GOV-1", True), ("XM-DAC-41114", True), ("GB-COH-06368740", True),
    ("SE-0-SE-6", True),   # Sida's legacy identifier, still what it publishes
    # Two-part refs predate the organisation identifier guidance and are still published (DE-1 is
    # Germany's BMZ, NL-1 the Dutch MFA): valid (issue 16), the number then one alphanumeric token.
    ("DE-1", True), ("NL-1", True), ("DE-", False), ("DE-1-", False), ("DE-GOV-", False),
    ("gb-gov-1", False), ("GBGOV1", False), ("GB--1", False),
])
def test_iati_organisation_identifiers(org_id, valid):
    assert bool(re.match(ORG_ID_PATTERN, org_id)) is valid
    try:
        Sample().load({"provider": org_id})
        accepted = True
    except ValidationError as error:
        accepted = False
        assert "IATI organisation id" in error.messages["provider"][0]
    assert accepted is valid


def test_a_regional_group_must_be_one_of_the_reference_data():
    assert Sample().load({"group": "AFRICAN"}) == {"group": "AFRICAN"}
    with pytest.raises(ValidationError) as error:
        Sample().load({"group": "NORDIC"})
    assert error.value.messages["group"][0].startswith("unknown regional group 'NORDIC'; one of: AFRICAN")


@pytest.mark.parametrize("load", [
    lambda language: NeedSchema().load({"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
                                        "languages": [language]})["languages"][0],
    lambda language: OfferSchema().load({"provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral",
                                         "scope_states": ["KEN"], "articles": [9], "forms": ["LEGAL_ADVICE"],
                                         "capacity": 1, "period_start": "2026-01-01", "period_end": "2027-01-01",
                                         "languages": [language]})["languages"][0],
    lambda language: RequestSchema().load({"kind": "checklist_assistance", "state": "PER",
                                           "expected_outcomes": "help", "language": language,
                                           "support_received": []})["language"],
], ids=["needs", "supply", "requests"])
def test_every_service_takes_languages_by_the_same_rule(load):
    assert load("ES") == "es"


def test_the_services_use_the_core_fields_not_their_own():
    assert isinstance(CellFilterSchema().fields["state"], StateCode)
    assert isinstance(CellFilterSchema().fields["regional_group"], GroupId)
    assert isinstance(FilterSchema().fields["regional_groups"].inner, GroupId)
    assert isinstance(RequestSchema().fields["regional_group"], GroupId)
    assert isinstance(OfferSchema().fields["provider"], OrgId)


def test_each_field_documents_its_rule_as_json_schema():
    conv = asyncapi.converter()
    assert conv.field2property(StateCode())["pattern"] == "^[A-Za-z]{3}$"
    assert conv.field2property(Language()) == {
        "type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 639-1 language code (lower-cased on input)"}
    assert conv.field2property(OrgId())["pattern"] == ORG_ID_PATTERN
    assert conv.field2property(GroupId())["enum"] == sorted(reference.regional_groups())
    assert conv.field2property(GroupId(allow_none=True))["enum"] == sorted(reference.regional_groups()) + [None]
