"""Needs: the commands States and partners send, and the events this service emits."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from tacoord import envelope, reference
from tacoord.fields import EntityId, Language, Reason, StateCode

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
    other_text = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    priority = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3))
    description = fields.String(load_default="", validate=validate.Length(max=5000))
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
    description = fields.String(validate=validate.Length(max=5000))
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

