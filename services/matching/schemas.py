"""Matching: the events this service emits (registered), and the query parameters it reads.

What it consumes (need.*, offer.*, expert.*, workshop.*) is validated by the
producers' schemas when they are registered in the process; the read model
itself reads those payloads as a tolerant reader (``payloads.normalize_*``):
it takes the fields of docs/events.md it uses and ignores the rest, so an
additive change upstream never dead-letters the matching queue.
"""
from datetime import timezone

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.matching import lifecycle
from services.matching.alerts import KINDS as ALERT_KINDS
from services.matching.alerts import STATUSES as ALERT_STATUSES
from services.matching.matrix import STATUSES as MATRIX_STATUSES
from services.matching.worklists import LISTED as WORKLIST_LEVELS
from tacoord import envelope, reference
from tacoord.fields import GroupId, OrgId, StateCode, Text
from tacoord.safety import is_digits

LEVELS = ("bilateral", "regional", "global")
MATCH_LEVELS = LEVELS + ("expert",)


class Strict(Schema):
    class Meta:
        unknown = RAISE


class ExplanationSchema(Strict):
    constraints_met = fields.List(fields.String(), required=True)
    score_parts = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)
    weights = fields.Dict(keys=fields.String(), values=fields.Float())   # of each part; absent from older events


class MatchPairSchema(Strict):
    """What names a match and who is on each side: every match.* event but ``match.retracted`` carries it."""
    match_id = fields.String(required=True)
    need_id = fields.String(required=True)
    offer_id = fields.String()
    expert_id = fields.String()
    provider = fields.String(allow_none=True, required=True)
    state = fields.String(required=True)
    regional_group = fields.String(allow_none=True, required=True)
    article = fields.Integer(required=True, strict=True)

    @validates_schema
    def one_supplier(self, data, **kwargs):
        if bool(data.get("offer_id")) == bool(data.get("expert_id")):
            raise ValidationError("exactly one of offer_id and expert_id", "offer_id")


class MatchSchema(MatchPairSchema):
    chapter = fields.Integer(required=True, strict=True, allow_none=True)
    forms = fields.List(fields.String(), required=True)
    priority = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    level = fields.String(required=True, validate=validate.OneOf(MATCH_LEVELS))
    score = fields.Float(required=True, validate=validate.Range(min=0, max=1))


class MatchProposedSchema(MatchSchema):
    explanation = fields.Nested(ExplanationSchema, required=True)


class MatchRetractedSchema(Strict):
    match_id = fields.String(required=True)
    need_id = fields.String(required=True)
    offer_id = fields.String()
    expert_id = fields.String()
    reason = fields.String(required=True)


class MatchStepSchema(MatchSchema):
    """A person's step on a match (``match.accepted`` … ``match.cancelled``): the pair, the step, why, who."""
    status = fields.String(required=True, validate=validate.OneOf(lifecycle.TARGETS))
    previous_status = fields.String(required=True, validate=validate.OneOf(lifecycle.STATUSES))
    reason = fields.String(allow_none=True, required=True)
    by = fields.String(required=True)
    at = fields.String(required=True)


class MatchWithdrawnSchema(MatchPairSchema):
    """An agreed match, or one in delivery, whose need or supply was withdrawn."""
    previous_status = fields.String(required=True, validate=validate.OneOf(lifecycle.WITHDRAWABLE))
    reason = fields.String(required=True)


class MatchRescoredSchema(MatchPairSchema):
    """A match whose score, priority or forms changed with its need or supply."""
    status = fields.String(required=True, validate=validate.OneOf(lifecycle.HELD))
    score = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    previous_score = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    priority = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    previous_priority = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    forms = fields.List(fields.String(), required=True)
class DuplicatingOfferSchema(Strict):
    offer_id = fields.String(required=True)
    provider = fields.String(required=True)
    provider_name = fields.String(allow_none=True, required=True)
    level = fields.String(required=True)
    forms = fields.List(fields.String(), required=True)
    period_start = fields.String(allow_none=True, required=True)
    period_end = fields.String(allow_none=True, required=True)


class PeriodSchema(Strict):
    start = fields.String(allow_none=True, required=True)
    end = fields.String(allow_none=True, required=True)


class DuplicationSchema(Strict):
    duplication_id = fields.String(required=True)
    state = fields.String(required=True)
    article = fields.Integer(required=True, strict=True)
    form = fields.String(required=True)
    providers = fields.List(fields.String(), required=True, validate=validate.Length(min=2))
    offer_ids = fields.List(fields.String(), required=True)
    # since the alert workflow (issue 17); absent from older events
    regional_group = fields.String(allow_none=True)
    offers = fields.List(fields.Nested(DuplicatingOfferSchema))
    period = fields.Nested(PeriodSchema, allow_none=True)


class GapSchema(Strict):
    gap_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("unmatched_priority_need", "no_supply")))
    need_id = fields.String(allow_none=True, required=True)
    state = fields.String(allow_none=True, required=True)
    article = fields.Integer(required=True, strict=True)
    regional_group = fields.String(allow_none=True, required=True)
    since = fields.String(required=True)


class AlertStepSchema(Strict):
    """``alert.acknowledged`` / ``alert.resolved``: what the alert names, and the step."""
    alert_id = fields.String(required=True)
    alert = fields.String(required=True, validate=validate.OneOf(ALERT_KINDS))
    duplication_id = fields.String()
    gap_id = fields.String()
    gap_kind = fields.String(allow_none=True, required=True)
    state = fields.String(allow_none=True, required=True)
    regional_group = fields.String(allow_none=True, required=True)
    article = fields.Integer(required=True, strict=True)
    form = fields.String(allow_none=True, required=True)
    providers = fields.List(fields.String(), required=True)
    need_id = fields.String(allow_none=True, required=True)
    status = fields.String(required=True, validate=validate.OneOf(ALERT_STATUSES[1:]))
    actor = fields.String(required=True)
    at = fields.String(required=True)
    note = fields.String(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)
    resolution = fields.String()
    automatic = fields.Boolean()


class ParticipantsSchema(Strict):
    request_id = fields.String(required=True)
    regional_group = fields.String(allow_none=True, required=True)
    states_completed = fields.List(fields.String(), required=True)
    states_upcoming = fields.List(fields.String(), required=True)
    donors = fields.List(fields.String(), required=True)


envelope.register("match.proposed", MatchProposedSchema())
envelope.register("match.retracted", MatchRetractedSchema())
for _step_event in lifecycle.STEP_EVENTS:
    envelope.register(_step_event, MatchStepSchema())
envelope.register("match.withdrawn", MatchWithdrawnSchema())
envelope.register("match.rescored", MatchRescoredSchema())
envelope.register("duplication.detected", DuplicationSchema())
envelope.register("gap.detected", GapSchema())
envelope.register("workshop.participants_proposed", ParticipantsSchema())
envelope.register("alert.acknowledged", AlertStepSchema())
envelope.register("alert.resolved", AlertStepSchema())


# --- query parameters ----------------------------------------------------------

class Number(fields.Integer):
    """An integer given as a query string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not is_digits(value.strip().removeprefix("-")):
            raise ValidationError("must be a whole number")
        return super()._deserialize(value, attr, data, **kwargs)


class CellFilterSchema(Strict):
    article = Number(validate=validate.Range(min=5, max=62, error="UNCAC article must be between 5 and 62"))
    chapter = Number(validate=validate.Range(min=2, max=6, error="chapter must be between 2 and 6"))
    state = StateCode()
    regional_group = GroupId()
    level = fields.String(validate=validate.OneOf(LEVELS))
    form = fields.String(validate=validate.OneOf(tuple(f for f in reference.assistance_forms())))
    priority = Number(validate=validate.Range(min=1, max=3, error="priority must be 1, 2 or 3"))


class MatrixQuerySchema(CellFilterSchema):
    rows = fields.String(load_default="article", validate=validate.OneOf(("article", "chapter")))
    cols = fields.String(load_default="state", validate=validate.OneOf(("state", "regional_group")))
    # a coverage, or "duplicated": the cells with that coverage, or duplicated whatever their coverage
    status = fields.String(validate=validate.OneOf(MATRIX_STATUSES))


class CellQuerySchema(CellFilterSchema):
    @validates_schema
    def one_row_one_col(self, data, **kwargs):
        if ("article" in data) == ("chapter" in data):
            raise ValidationError("give exactly one of article and chapter", "article")
        if ("state" in data) == ("regional_group" in data):
            raise ValidationError("give exactly one of state and regional_group", "state")


class MatchesQuerySchema(Strict):
    state = StateCode()     # a State's matches (the workspace's "matches on my needs")
    provider = OrgId()      # a donor's
    need_id = fields.String(validate=validate.Length(max=80))
    offer_id = fields.String(validate=validate.Length(max=80))
    expert_id = fields.String(validate=validate.Length(max=80))
    status = fields.String(validate=validate.OneOf((lifecycle.ACTIVE,) + lifecycle.STATUSES))


class AlertsQuerySchema(Strict):
    kind = fields.String(validate=validate.OneOf(ALERT_KINDS))
    status = fields.String(validate=validate.OneOf(ALERT_STATUSES))
    state = StateCode()
    regional_group = GroupId()
    article = Number(validate=validate.Range(min=5, max=62, error="UNCAC article must be between 5 and 62"))
    provider = OrgId()
    need_id = fields.String(validate=validate.Length(max=80))


NOTE = Text(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class AcknowledgeSchema(Strict):
    """The body may be left out (no note)."""

    example = {"note": "Both providers contacted; a call is set for next week"}
    note = NOTE


class ResolveSchema(Strict):
    example = {"resolution": "work_split", "note": "GB-GOV-1 takes the legal drafting, XM-DAC-41114 the training"}
    resolution = fields.String(required=True, validate=validate.Length(min=1, max=40))
    note = Text(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class TransitionSchema(Strict):
    """``POST /matches/<id>/transitions``: ``{"to": "accepted", "reason": "…"}`` (a reason is required to
    decline or cancel)."""

    example = {"to": "declined", "reason": "our 2027 budget for article 9 is already committed elsewhere"}
    to = fields.String(required=True, validate=validate.OneOf(lifecycle.TARGETS))
    reason = Text(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class WorklistQuerySchema(Strict):
    regional_group = GroupId()
    state = StateCode()
    article = Number(validate=validate.Range(min=5, max=62, error="UNCAC article must be between 5 and 62"))
    chapter = Number(validate=validate.Range(min=2, max=6, error="chapter must be between 2 and 6"))
    form = fields.String(validate=validate.OneOf(tuple(f for f in reference.assistance_forms())))
    priority = Number(validate=validate.Range(min=1, max=3, error="priority must be 1, 2 or 3"))
    status = fields.String(validate=validate.OneOf(WORKLIST_LEVELS))
    limit = Number(load_default=1000, validate=validate.Range(min=1, max=10000))


class ChangesQuerySchema(Strict):
    since = fields.AwareDateTime(required=True, default_timezone=timezone.utc)
    state = StateCode()
    donor = OrgId()
    network = fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{2,40}$",
                                                     error="network id: 2–40 letters, digits, '-' or '_'"))
    limit = Number(load_default=1000, validate=validate.Range(min=1, max=10000))

    @validates_schema
    def one_scope(self, data, **kwargs):
        named = [k for k in ("state", "donor", "network") if k in data]
        if len(named) > 1:
            raise ValidationError("give at most one of state, donor and network", named[1])


# --- funding (services/matching/funding.py) ------------------------------------------------------

class FundingQuerySchema(MatrixQuerySchema):
    """``GET /funding``: the matrix's rows, columns and filters."""


class ExchangeRatesSchema(Strict):
    """``PUT /funding/rates``: a table of annual exchange rates, as units of each currency per one
    unit of ``base``, by year: ``{"source": "…", "base": "USD", "rates": {"2026": {"EUR": 0.92}}}``."""

    example = {"source": "IMF International Financial Statistics, annual averages (as entered by the operator)",
               "base": "USD", "rates": {"2025": {"EUR": 0.95, "GBP": 0.79}, "2026": {"EUR": 0.92, "GBP": 0.78}}}

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
