"""Matching: the events this service emits (registered), and the query parameters it reads.

What it consumes (need.*, offer.*, expert.*, workshop.*) is validated by the
producers' schemas when they are registered in the process; the read model
itself reads those payloads as a tolerant reader (``payloads.normalize_*``):
it takes the fields of docs/events.md it uses and ignores the rest, so an
additive change upstream never dead-letters the matching queue.
"""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from tacoord import envelope, reference
from tacoord.fields import GroupId, StateCode

LEVELS = ("bilateral", "regional", "global")
MATCH_LEVELS = LEVELS + ("expert",)


class Strict(Schema):
    class Meta:
        unknown = RAISE


class ExplanationSchema(Strict):
    constraints_met = fields.List(fields.String(), required=True)
    score_parts = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)


class MatchProposedSchema(Strict):
    match_id = fields.String(required=True)
    need_id = fields.String(required=True)
    offer_id = fields.String()
    expert_id = fields.String()
    provider = fields.String(allow_none=True, required=True)
    state = fields.String(required=True)
    regional_group = fields.String(allow_none=True, required=True)
    article = fields.Integer(required=True, strict=True)
    chapter = fields.Integer(required=True, strict=True, allow_none=True)
    forms = fields.List(fields.String(), required=True)
    priority = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    level = fields.String(required=True, validate=validate.OneOf(MATCH_LEVELS))
    score = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    explanation = fields.Nested(ExplanationSchema, required=True)

    @validates_schema
    def one_supplier(self, data, **kwargs):
        if bool(data.get("offer_id")) == bool(data.get("expert_id")):
            raise ValidationError("exactly one of offer_id and expert_id", "offer_id")


class MatchRetractedSchema(Strict):
    match_id = fields.String(required=True)
    need_id = fields.String(required=True)
    offer_id = fields.String()
    expert_id = fields.String()
    reason = fields.String(required=True)


class DuplicationSchema(Strict):
    duplication_id = fields.String(required=True)
    state = fields.String(required=True)
    article = fields.Integer(required=True, strict=True)
    form = fields.String(required=True)
    providers = fields.List(fields.String(), required=True, validate=validate.Length(min=2))
    offer_ids = fields.List(fields.String(), required=True)


class GapSchema(Strict):
    gap_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("unmatched_priority_need", "no_supply")))
    need_id = fields.String(allow_none=True, required=True)
    state = fields.String(allow_none=True, required=True)
    article = fields.Integer(required=True, strict=True)
    regional_group = fields.String(allow_none=True, required=True)
    since = fields.String(required=True)


class ParticipantsSchema(Strict):
    request_id = fields.String(required=True)
    regional_group = fields.String(allow_none=True, required=True)
    states_completed = fields.List(fields.String(), required=True)
    states_upcoming = fields.List(fields.String(), required=True)
    donors = fields.List(fields.String(), required=True)


envelope.register("match.proposed", MatchProposedSchema())
envelope.register("match.retracted", MatchRetractedSchema())
envelope.register("duplication.detected", DuplicationSchema())
envelope.register("gap.detected", GapSchema())
envelope.register("workshop.participants_proposed", ParticipantsSchema())


# --- query parameters ----------------------------------------------------------

class Number(fields.Integer):
    """An integer given as a query string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            raise ValidationError("must be a whole number")
        return super()._deserialize(value, attr, data, **kwargs)


class CellFilterSchema(Strict):
    article = Number(validate=validate.Range(min=5, max=62, error="UNCAC article must be between 5 and 62"))
    chapter = Number(validate=validate.Range(min=2, max=6, error="chapter must be between 2 and 6"))
    state = StateCode()
    regional_group = GroupId()
    level = fields.String(validate=validate.OneOf(LEVELS))
    form = fields.String(validate=validate.OneOf(tuple(f for f in reference.assistance_forms())))


class MatrixQuerySchema(CellFilterSchema):
    rows = fields.String(load_default="article", validate=validate.OneOf(("article", "chapter")))
    cols = fields.String(load_default="state", validate=validate.OneOf(("state", "regional_group")))


class CellQuerySchema(CellFilterSchema):
    @validates_schema
    def one_row_one_col(self, data, **kwargs):
        if ("article" in data) == ("chapter" in data):
            raise ValidationError("give exactly one of article and chapter", "article")
        if ("state" in data) == ("regional_group" in data):
            raise ValidationError("give exactly one of state and regional_group", "state")


class MatchesQuerySchema(Strict):
    need_id = fields.String(validate=validate.Length(max=80))
    offer_id = fields.String(validate=validate.Length(max=80))
    expert_id = fields.String(validate=validate.Length(max=80))
    status = fields.String(validate=validate.OneOf(("active", "retracted")))


class AlertsQuerySchema(Strict):
    kind = fields.String(validate=validate.OneOf(("gap", "duplication")))


# --- funding (services/matching/funding.py) ------------------------------------------------------

class FundingQuerySchema(MatrixQuerySchema):
    """``GET /funding``: the matrix's rows, columns and filters."""


class ExchangeRatesSchema(Strict):
    """``PUT /funding/rates``: a table of annual exchange rates, as units of each currency per one
    unit of ``base``, by year: ``{"source": "…", "base": "USD", "rates": {"2026": {"EUR": 0.92}}}``."""

    source = fields.String(required=True, validate=validate.Length(min=1, max=300))
    base = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code such as 'USD'"))
    rates = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^(19|20)\d\d$", error="a year such as '2026'")),
        values=fields.Dict(
            keys=fields.String(validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code such as 'EUR'")),
            values=fields.Float(allow_nan=False, validate=validate.Range(min=0, min_inclusive=False,
                                                                         error="a rate is above 0")),
            validate=validate.Length(max=300)),
        required=True, validate=validate.Length(min=1, max=100))
