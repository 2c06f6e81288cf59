"""marshmallow fields several services validate alike, each with the JSON Schema it documents as.

    from tacoord.fields import GroupId, Language, OrgId, StateCode

    state = StateCode(required=True)          # "ken" -> "KEN"; "XXX" -> "unknown State 'XXX': …"
    languages = fields.List(Language())       # "EN" -> "en"
    provider = OrgId(required=True)           # "GB-GOV-1"
    scope_groups = fields.List(GroupId())     # "AFRICAN"
    description = Text(validate=validate.Length(max=5000))   # may hold line breaks

Their checks live in ``_deserialize``, which a marshmallow → JSON Schema
converter cannot see; ``json_schema()`` says what they accept instead, for
the AsyncAPI document (``tacoord.asyncapi``) and any other generator.

Text comes in two kinds (``tacoord.safety.check_text`` tells them apart at the
HTTP edge): ``Text`` is free text a person writes (descriptions, outcomes,
reasons, notes), which may hold tabs and line breaks; every other string field
is one line (names, ids, codes, e-mail, URLs), where a tab or a line break is
refused. No text holds any other control character.
"""
import re

from marshmallow import ValidationError, fields, validate

from tacoord import reference

# IATI organisation identifier: {RegistrationAgency}-{RegistrationNumber}; the agency is a
# 2-letter country (or XI/XM) plus an agency code: GB-GOV-1, XM-DAC-41114, GB-COH-06368740,
# and the legacy one-character codes still published (Sida: SE-0-SE-6). Refs that predate the
# guidance have two parts, a country prefix and a number (GB-1, NL-1, US-1): the number is then
# one alphanumeric token.
ORG_ID_PATTERN = (r"^[A-Z]{2}-(?:[A-Z0-9]{1,12}-[A-Za-z0-9][A-Za-z0-9_-]{0,80}|[A-Za-z0-9]{1,40})$")
ORG_ID = re.compile(ORG_ID_PATTERN)
LANGUAGE = re.compile(r"^[a-z]{2}$")


class EntityId(fields.String):
    """The id of an entity a service owns (need, offer, expert, request, match…), 1–80 characters."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Length(min=1, max=80), **kwargs)


class TacoordField(fields.String):
    """A string field whose rule the JSON Schema below states (``pattern``, ``enum``, ``description``)."""

    def json_schema(self):
        raise NotImplementedError


class StateCode(TacoordField):
    """An ISO 3166-1 alpha-3 code of a State (or party) in the reference data, upper-cased."""

    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs)
        if not reference.is_known_state(code.upper()):
            raise ValidationError(f"unknown State {value!r}: use an ISO 3166-1 alpha-3 code such as 'KEN'")
        return code.upper()

    def json_schema(self):
        return {"pattern": "^[A-Za-z]{3}$",
                "description": "ISO 3166-1 alpha-3 code of a State party in tacoord's reference data "
                               "(upper-cased on input), e.g. KEN"}


class Language(TacoordField):
    """An ISO 639-1 language code, in any case, lower-cased."""

    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs).lower()
        if not LANGUAGE.match(code):
            raise ValidationError(f"use an ISO 639-1 code such as 'en', not {value!r}")
        return code

    def json_schema(self):
        return {"pattern": "^[A-Za-z]{2}$", "description": "ISO 639-1 language code (lower-cased on input)"}


class OrgId(TacoordField):
    """An IATI organisation identifier ``{agency}-{number}``, e.g. ``GB-GOV-1``, ``XM-DAC-41114``."""

    def _deserialize(self, value, attr, data, **kwargs):
        org = super()._deserialize(value, attr, data, **kwargs)
        if not ORG_ID.match(org):
            raise ValidationError(f"{value!r} is not an IATI organisation id '{{agency}}-{{number}}' "
                                  "such as 'GB-GOV-1' or 'XM-DAC-41114'")
        return org

    def json_schema(self):
        return {"pattern": ORG_ID_PATTERN,
                "description": "IATI organisation identifier {agency}-{number}, e.g. GB-GOV-1"}


class GroupId(TacoordField):
    """A UN regional group of the reference data, e.g. ``AFRICAN``."""

    def _deserialize(self, value, attr, data, **kwargs):
        group = super()._deserialize(value, attr, data, **kwargs)
        if group not in reference.regional_groups():
            raise ValidationError(f"unknown regional group {value!r}; one of: "
                                  f"{', '.join(sorted(reference.regional_groups()))}")
        return group

    def json_schema(self):
        return {"enum": sorted(reference.regional_groups())}


class Text(fields.String):
    """Free text written by a person; it may span several lines."""


class Reason(Text):
    """Why a person did something (withdrew, declined, resolved…), in their words; at most 1,000 characters."""

    def __init__(self, **kwargs):
        kwargs.setdefault("load_default", "")
        super().__init__(validate=validate.Length(max=1000), **kwargs)
