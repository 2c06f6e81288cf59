"""Needs: the commands States and partners send, and the events this service emits."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.needs import parties
from tacoord import envelope, reference
from tacoord.fields import EntityId, Language, Reason, StateCode, Text

STATUSES = ("open", "in_progress", "met", "withdrawn")


class NeedSchema(Schema):
    """A need as filed: State × article × forms × priority."""

    class Meta:
        unknown = RAISE

    state = StateCode(required=True)
    article = fields.Integer(required=True, strict=True, validate=validate.Range(
        min=5, max=62, error="UNCAC article must be between 5 and 62 (chapters II–VI)"))
    paragraph = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    forms = fields.List(fields.String(validate=validate.OneOf(
        tuple(reference.assistance_forms()), error="unknown form of assistance; one of: {choices}")),
        required=True, validate=validate.Length(min=1, max=8, error="give 1 to 8 forms of assistance"))
    other_text = Text(load_default=None, allow_none=True, validate=validate.Length(max=500))
    priority = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    description = Text(load_default="", validate=validate.Length(max=5000))
    checklist_round = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    languages = fields.List(Language(), load_default=list, validate=validate.Length(max=6))
    external_ref = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=120))

    @validates_schema
    def other_needs_text(self, need, **kwargs):
        if "OTHER" in need.get("forms", []) and not (need.get("other_text") or "").strip():
            raise ValidationError("required when forms include OTHER", "other_text")


class NeedEventSchema(NeedSchema):
    """Payload of need.submitted / need.updated / need.withdrawn."""

    class Meta:
        unknown = RAISE

    need_id = fields.String(required=True, validate=validate.Length(min=1, max=80))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    regional_group = fields.String(allow_none=True, load_default=None)
    chapter = fields.Integer(required=True)
    withdrawal_reason = fields.String(allow_none=True)  # need.withdrawn: why, in their words (absent in older events)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


for _type in ("need.submitted", "need.updated", "need.withdrawn"):
    envelope.register(_type, NeedEventSchema())


class WithdrawSchema(Schema):
    class Meta:
        unknown = RAISE

    need_id = EntityId(required=True)
    reason = Reason()


class NeedUpdateSchema(Schema):
    """What a State may change on its open need."""

    class Meta:
        unknown = RAISE

    priority = fields.Integer(strict=True, validate=validate.Range(min=1, max=3))
    description = Text(validate=validate.Length(max=5000))
    status = fields.String(validate=validate.OneOf(("open", "in_progress", "met")))
    paragraph = fields.String(allow_none=True, validate=validate.Length(max=40))
    languages = fields.List(Language(), validate=validate.Length(max=6))

    @validates_schema
    def not_empty(self, changes, **kwargs):
        if not changes:
            raise ValidationError("give at least one of: priority, description, status, paragraph, languages")


class NeedUpdateIngressSchema(NeedUpdateSchema):
    """need.updated on tacoord.ingress: the need and what changes."""

    class Meta:
        unknown = RAISE

    need_id = fields.String(required=True, validate=validate.Length(min=1, max=80))

    @validates_schema
    def not_empty(self, changes, **kwargs):
        if not set(changes) - {"need_id"}:
            raise ValidationError("give at least one of: priority, description, status, paragraph, languages")


envelope.register("need.submitted", NeedSchema(), channel=envelope.INGRESS)
envelope.register("need.updated", NeedUpdateIngressSchema(), channel=envelope.INGRESS)
envelope.register("need.withdrawn", WithdrawSchema(), channel=envelope.INGRESS)



# --- the parties to the Convention (services/needs/parties.py) ----------------------------

PARTY_STATUSES, INSTRUMENTS = parties.STATUSES, parties.INSTRUMENTS


class IsoDate(fields.Date):
    """A calendar date, kept as its ISO string."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).isoformat()


class PartyCorrectionSchema(Schema):
    """``PUT /parties/<code>``: what an operator corrects, and how they know."""

    example = {"status": "party", "instrument": "accession", "deposited": "2009-09-16",
               "source": "UN Treaty Collection, depositary notification (as read by the operator)"}

    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(PARTY_STATUSES, error="status must be one of: {choices}"))
    instrument = fields.String(allow_none=True, validate=validate.OneOf(
        INSTRUMENTS, error="instrument must be one of: {choices}"))
    deposited = IsoDate(allow_none=True)
    note = Text(allow_none=True, validate=validate.Length(max=1000))
    source = fields.String(required=True, validate=validate.Length(
        min=3, max=500, error="say how you know (a depositary notification, a UNTC page…), 3–500 characters"))

    @validates_schema
    def says_something(self, correction, **kwargs):
        if not set(correction) - {"source"}:
            raise ValidationError("give at least one of: status, instrument, deposited, note")


class PartyStepSchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(allow_none=True)
    instrument = fields.String(allow_none=True)
    deposited = fields.String(allow_none=True)
    verification = fields.String(allow_none=True)


class PartyCorrectedEventSchema(Schema):
    """Payload of ``party.corrected``: the entry as corrected, and what it said before."""

    class Meta:
        unknown = RAISE

    party_id = fields.String(required=True, validate=validate.Length(min=2, max=3))
    name = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("state", "reio")))
    status = fields.String(required=True, validate=validate.OneOf(PARTY_STATUSES))
    instrument = fields.String(required=True, allow_none=True)
    deposited = fields.String(required=True, allow_none=True)
    party_since = fields.String(required=True, allow_none=True)
    verification = fields.String(required=True)
    source = fields.String(required=True)
    note = fields.String(load_default=None, allow_none=True)
    corrected_by = fields.String(required=True)
    corrected_at = fields.String(required=True)
    previous = fields.Nested(PartyStepSchema, required=True)


envelope.register("party.corrected", PartyCorrectedEventSchema())
