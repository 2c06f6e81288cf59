"""Notify: subscriptions and networks as sent over HTTP, and the events this service emits."""
import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.notify.domain import CHANNELS, EVENT_FAMILIES, KINDS, PAUSABLE
from tacoord import envelope, reference
from tacoord.fields import ORG_ID, GroupId, StateCode, Text

NETWORK_ID = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")
EVENT_PATTERN = re.compile(r"^(\*|[a-z_]+\.(\*|[a-z_]+))$")
EMAIL = validate.Email(error="not a valid e-mail address")


class EventPattern(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        pattern = super()._deserialize(value, attr, data, **kwargs)
        if not EVENT_PATTERN.match(pattern):
            raise ValidationError(f"{value!r} is not an event type or pattern ('match.proposed', 'gap.*', '*')")
        if pattern != "*" and pattern.split(".")[0] not in EVENT_FAMILIES:
            raise ValidationError(f"notify does not receive {pattern.split('.')[0]}.* events; "
                                  f"one of: {', '.join(f + '.*' for f in EVENT_FAMILIES)}")
        return pattern


def _known(choices, what):
    return validate.OneOf(tuple(choices), error=f"unknown {what} {{input!r}}; one of: {{choices}}")


class FilterSchema(Schema):
    """Every list narrows the subscription; an empty or missing list means 'any'."""

    class Meta:
        unknown = RAISE

    types = fields.List(EventPattern(), load_default=list, validate=validate.Length(max=30))
    states = fields.List(StateCode(), load_default=list, validate=validate.Length(max=200))
    regional_groups = fields.List(GroupId(), load_default=list, validate=validate.Length(max=5))
    articles = fields.List(fields.Integer(strict=True, validate=validate.OneOf(
        tuple(reference.articles()), error="unknown UNCAC article {input!r} (1–71)")),
        load_default=list, validate=validate.Length(max=71))
    chapters = fields.List(fields.Integer(strict=True, validate=validate.OneOf(
        tuple(reference.chapters()), error="unknown UNCAC chapter {input!r} (1–8)")),
        load_default=list, validate=validate.Length(max=8))
    forms = fields.List(fields.String(validate=_known(reference.assistance_forms(), "form of assistance")),
                        load_default=list, validate=validate.Length(max=30))
    priority = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(
        min=1, max=3, error="priority is 1 (highest) to 3: notify for needs of this priority or higher"))


class SubscriptionSchema(Schema):
    """POST /subscriptions. ``kind``/``subject`` default to the caller's role and subject."""

    class Meta:
        unknown = RAISE

    kind = fields.String(load_default=None, validate=_known(KINDS, "subscriber kind"))
    subject = fields.String(load_default=None, validate=validate.Length(min=2, max=80))
    channel = fields.String(required=True, validate=_known(CHANNELS, "channel"))
    url = fields.String(load_default=None, validate=validate.Length(max=2000))
    email = fields.String(load_default=None, validate=[validate.Length(max=254), EMAIL])
    filter = fields.Nested(FilterSchema, load_default=lambda: FilterSchema().load({}))
    digest = fields.Boolean(load_default=False)
    label = fields.String(load_default="", validate=validate.Length(max=200))

    @validates_schema
    def channel_target(self, sub, **kwargs):
        if sub.get("channel") == "webhook" and not sub.get("url"):
            raise ValidationError("required for the webhook channel", "url")
        if sub.get("channel") == "email" and not sub.get("email"):
            raise ValidationError("required for the email channel", "email")
        if sub.get("channel") != "webhook" and sub.get("url"):
            raise ValidationError("only for the webhook channel", "url")
        if sub.get("channel") != "email" and sub.get("email"):
            raise ValidationError("only for the email channel", "email")


class SubscriptionStatusSchema(Schema):
    """PATCH /subscriptions/<id>: pause it (nothing is sent or collected for a digest) or resume it."""

    class Meta:
        unknown = RAISE

    status = fields.String(required=True, validate=validate.OneOf(
        PAUSABLE, error="status is 'paused' (pause it) or 'active' (resume it)"))
    example = {"status": "paused"}


def check_subject(kind, subject):
    """The subject a subscriber kind acts for must look right (networks are checked for existence later)."""
    if kind == "state" and not reference.is_known_state(subject.upper()):
        raise ValidationError({"subject": [f"unknown State {subject!r}"]})
    if kind == "donor" and not ORG_ID.match(subject):
        raise ValidationError({"subject": [f"{subject!r} is not an IATI organisation id such as 'GB-GOV-1'"]})
    if kind == "network" and not NETWORK_ID.match(subject):
        raise ValidationError({"subject": [f"{subject!r} is not a network id such as 'AFRICAN'"]})
    return subject.upper() if kind == "state" else subject


class ContactSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.String(required=True, validate=[validate.Length(max=254), EMAIL])
    role = fields.String(load_default="", validate=validate.Length(max=200))


class NetworkSchema(Schema):
    """POST /networks: a named set of States with contacts."""

    class Meta:
        unknown = RAISE

    network_id = fields.String(required=True, validate=validate.Regexp(
        NETWORK_ID, error="upper-case letters, digits and _ (2–40), starting with a letter, e.g. 'EAST_AFRICA'"))
    name = fields.String(required=True, validate=validate.Length(min=2, max=200))
    states = fields.List(StateCode(), required=True, validate=validate.Length(min=1, max=200))
    contacts = fields.List(fields.Nested(ContactSchema), load_default=list, validate=validate.Length(max=50))
    description = Text(load_default="", validate=validate.Length(max=2000))


class NotificationEventSchema(Schema):
    """Payload of notification.delivered / notification.failed."""

    class Meta:
        unknown = RAISE

    notification_id = fields.String(required=True)
    subscription_id = fields.String(required=True)
    source_event_id = fields.String(required=True)
    source_event_type = fields.String(required=True)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    attempts = fields.Integer(required=True, strict=True)
    error = fields.String(load_default=None, allow_none=True)


for _type in ("notification.delivered", "notification.failed"):
    envelope.register(_type, NotificationEventSchema())


class ParkedNotificationSchema(Schema):
    """The ``data`` of an undeliverable notification's dead letter, as notify parks it (and a
    replay brings it back to ``notify.resend``)."""

    class Meta:
        unknown = RAISE

    notification_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    subscription_id = fields.String(required=True, validate=validate.Length(min=1, max=80))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    attempts = fields.Integer(load_default=None, allow_none=True)
    source_event_id = fields.String(required=True)
    events = fields.List(fields.Dict(), required=True, validate=validate.Length(min=1))


def load_parked(body):
    """The parked notification a replay brought back; a ``ValidationError`` naming the fields
    (the consumer parks it again, with that reason) when it is not one."""
    if not isinstance(body, dict) or body.get("type") != "notification.undeliverable":
        raise ValidationError({"type": ["not an undeliverable notification (type 'notification.undeliverable')"]})
    try:
        return ParkedNotificationSchema().load(body.get("data"))
    except ValidationError as exc:
        raise ValidationError({"data": exc.messages}) from exc
