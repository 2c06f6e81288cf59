"""Requests: what States and partners file, the transitions they ask for, and the events emitted.

A request is either a workshop (national or regional) on gap analysis /
compliance review, or assistance completing the self-assessment checklist.
Every request must say what support the State has already received from
other donors on the same need (``support_received``, possibly ``[]``): the
WTO technical-assistance form asks the same, to avoid duplication.
"""
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from services.requests import networks
from tacoord import envelope, reference
from tacoord.fields import GroupId, Language, OrgId, StateCode, Text

KINDS = ("national_workshop", "regional_workshop", "checklist_assistance")
WORKSHOP_KINDS = ("national_workshop", "regional_workshop")
STATUSES = ("submitted", "under_review", "approved", "scheduled", "held", "declined", "cancelled", "offered")
TARGETS = ("submitted", "under_review", "approved", "scheduled", "held", "declined", "cancelled")
EVENT_TYPES = tuple(f"workshop.{s}" for s in ("requested", "under_review", "approved", "scheduled", "held",
                                               "declined", "cancelled", "joined", "offered", "accepted"))
DIRECTORY_ID = validate.Regexp(r"^[A-Z][A-Z0-9_]{1,39}$", error="network id: 2–40 upper-case letters, digits or _, "
                                                                  "starting with a letter, e.g. 'ARINSA'")
EMAIL = validate.Email(error="not a valid e-mail address")
NETWORK_ID = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,39}$",
                             error="network id: 2–40 letters, digits, '-' or '_'")


class Article(fields.Integer):
    """A substantive UNCAC article (5–62, chapters II–VI)."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        number = super()._deserialize(value, attr, data, **kwargs)
        if number not in reference.articles():
            raise ValidationError(f"unknown UNCAC article {number}: the Convention has articles 1–71")
        if number not in reference.NEED_ARTICLES:
            raise ValidationError(f"article {number} is not a substantive provision; "
                                  f"workshops cover articles 5–62 (chapters II–VI)")
        return number


class DateRangeSchema(Schema):
    """A preferred period: ``{"from": "2027-03-01", "to": "2027-03-05"}``."""

    class Meta:
        unknown = RAISE

    from_ = fields.Date(required=True, data_key="from")
    to = fields.Date(required=True)

    @validates_schema
    def ordered(self, period, **kwargs):
        if period["to"] < period["from_"]:
            raise ValidationError(f"'to' ({period['to'].isoformat()}) is before 'from' "
                                  f"({period['from_'].isoformat()})", "to")


class SupportReceivedSchema(Schema):
    """Support already received from another donor or provider on the same need."""

    class Meta:
        unknown = RAISE

    provider = fields.String(required=True, validate=validate.Length(min=1, max=120))
    description = Text(load_default="", validate=validate.Length(max=2000))


SUPPORT_REQUIRED = ("required: list the support already received from other donors on the same need "
                    "({{provider, description}}), or [] if none; it is asked to avoid duplication")


class RequestSchema(Schema):
    """A request as filed (HTTP ``POST /requests``)."""

    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(KINDS, error="kind must be one of: {choices}"))
    state = StateCode(required=True)
    regional_group = GroupId(load_default=None, allow_none=True)
    network_id = fields.String(load_default=None, allow_none=True, validate=NETWORK_ID)
    network_states = fields.List(StateCode(), load_default=list, validate=validate.Length(max=60))
    articles = fields.List(Article(), load_default=list, validate=validate.Length(max=58))
    expected_outcomes = Text(required=True, validate=validate.Length(min=1, max=5000))
    preferred_dates = fields.List(fields.Nested(DateRangeSchema), load_default=list,
                                  validate=validate.Length(max=10, error="give at most 10 preferred periods"))
    language = Language(required=True)
    support_received = fields.List(fields.Nested(SupportReceivedSchema), required=True,
                                   validate=validate.Length(max=50),
                                   error_messages={"required": SUPPORT_REQUIRED, "null": SUPPORT_REQUIRED})

    @validates_schema
    def coherent(self, filed, **kwargs):
        kind = filed["kind"]
        if kind in WORKSHOP_KINDS:
            if not filed["articles"]:
                raise ValidationError("a workshop needs at least one topic article (5–62)", "articles")
            if not filed["preferred_dates"]:
                raise ValidationError("a workshop needs at least one preferred period {from, to}",
                                      "preferred_dates")
        own_group = reference.regional_group_of(filed["state"])
        if kind != "regional_workshop":
            for key in ("network_id", "network_states"):
                if filed.get(key):
                    raise ValidationError("only for regional workshops", key)
            if filed["regional_group"] not in (None, own_group):
                raise ValidationError(f"{filed['state']} belongs to {own_group}, not {filed['regional_group']}",
                                      "regional_group")
            return
        if filed["network_states"] and not filed["network_id"]:
            raise ValidationError("network_states needs a network_id", "network_states")
        if filed["network_id"]:
            return  # a registered network gives its members; another must name them (domain.with_network)
        if filed["regional_group"] is None and own_group is None:
            raise ValidationError(f"{filed['state']} is in no UN regional group: name a network_id and its "
                                  f"network_states", "regional_group")
        elif filed["regional_group"] not in (None, own_group):
            raise ValidationError(f"{filed['state']} belongs to {own_group}; a regional workshop is requested "
                                  f"for the requesting State's own group (or for a network)", "regional_group")


class WorkshopSubmittedSchema(RequestSchema):
    """Ingress ``workshop.submitted`` (partners): a national or regional workshop."""

    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(
        WORKSHOP_KINDS, error="kind must be one of: {choices} (checklist help: checklist_assistance.submitted)"))


class ChecklistAssistanceSubmittedSchema(RequestSchema):
    """Ingress ``checklist_assistance.submitted`` (partners)."""

    class Meta:
        unknown = RAISE

    kind = fields.String(load_default="checklist_assistance", validate=validate.OneOf(
        ("checklist_assistance",), error="kind must be checklist_assistance (workshops: workshop.submitted)"))


class RequestEventSchema(Schema):
    """Payload of every ``workshop.*`` event this service emits (all kinds)."""

    class Meta:
        unknown = RAISE

    request_id = fields.String(required=True, validate=validate.Length(min=1, max=80))
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    state = StateCode(required=True)
    regional_group = fields.String(required=True, allow_none=True)
    network_id = fields.String(load_default=None, allow_none=True)
    network_states = fields.List(StateCode(), load_default=list)
    states = fields.List(StateCode(), required=True)
    articles = fields.List(fields.Integer(strict=True), required=True)
    expected_outcomes = fields.String(required=True)
    preferred_dates = fields.List(fields.Nested(DateRangeSchema), required=True)
    language = fields.String(required=True)
    support_received = fields.List(fields.Nested(SupportReceivedSchema), required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    reason = fields.String(load_default=None, allow_none=True)
    outcome_notes = fields.String(load_default=None, allow_none=True)
    scheduled_for = fields.Date(load_default=None, allow_none=True)
    offered_by = fields.String(load_default=None, allow_none=True)
    donors = fields.List(fields.String(), load_default=list)
    checklist_round = fields.String(load_default=None, allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class TransitionSchema(Schema):
    """``POST /requests/<id>/transitions``: ``{"to": "approved"}`` plus what that step needs."""

    class Meta:
        unknown = RAISE

    to = fields.String(required=True, validate=validate.OneOf(
        TARGETS, error="to must be one of: {choices}"))
    reason = Text(validate=validate.Length(min=1, max=2000))
    scheduled_for = fields.Date()
    outcome_notes = Text(validate=validate.Length(min=1, max=10000))


class ParticipantsProposedSchema(Schema):
    """``workshop.participants_proposed`` from matching (its contract, docs/events.md).

    Matching owns and registers this type; this service reads only the fields
    it stores and ignores others (tolerant reader: matching may add fields).
    """

    class Meta:
        unknown = EXCLUDE

    request_id = fields.String(required=True, validate=validate.Length(min=1, max=80))
    regional_group = fields.String(load_default=None, allow_none=True)
    states_completed = fields.List(StateCode(), load_default=list)
    states_upcoming = fields.List(StateCode(), load_default=list)
    donors = fields.List(fields.String(validate=validate.Length(min=1, max=120)), load_default=list)


class OfferSchema(Schema):
    """``POST /requests/offers``: checklist assistance offered to a State party (recommendation 22)."""

    example = {"state": "TLS", "expected_outcomes": "The self-assessment checklist completed for chapters II "
               "and IV, with a national workshop to validate it", "language": "pt",
               "checklist_round": "2026-1", "offered_by": "GB-GOV-1"}

    class Meta:
        unknown = RAISE

    state = StateCode(required=True)
    expected_outcomes = fields.String(required=True, validate=validate.Length(min=1, max=5000))
    language = Language(required=True)
    checklist_round = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    offered_by = OrgId(load_default=None, allow_none=True)


class ContactSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    email = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=254), EMAIL])
    role = fields.String(load_default="", validate=validate.Length(max=200))


class NetworkFields(Schema):
    """A directory entry's fields (every one optional here: an update names what changes)."""

    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(min=2, max=200))
    kind = fields.String(validate=validate.OneOf(networks.KINDS, error="kind must be one of: {choices}"))
    states = fields.List(StateCode(), validate=validate.Length(max=200))
    donors = fields.List(OrgId(), validate=validate.Length(max=200))
    focus_articles = fields.List(Article(), validate=validate.Length(max=58))
    website = fields.Url(allow_none=True, schemes={"http", "https"})
    contacts = fields.List(fields.Nested(ContactSchema), validate=validate.Length(max=50))
    description = fields.String(validate=validate.Length(max=5000))


class NetworkSchema(NetworkFields):
    """``POST /networks``: a new entry of the directory."""

    example = {"network_id": "ARIN_AP", "name": "Asset Recovery Interagency Network for Asia-Pacific",
               "kind": "regional_network", "states": ["KOR", "IDN", "PHL"], "focus_articles": [51, 54, 57],
               "website": "https://www.arin-ap.org/", "contacts": [{"name": "Secretariat", "role": "focal point"}],
               "description": "Practitioners' network on asset recovery"}

    network_id = fields.String(required=True, validate=DIRECTORY_ID)
    name = fields.String(required=True, validate=validate.Length(min=2, max=200))
    kind = fields.String(required=True, validate=validate.OneOf(networks.KINDS, error="kind must be one of: {choices}"))
    states = fields.List(StateCode(), load_default=list, validate=validate.Length(max=200))
    donors = fields.List(OrgId(), load_default=list, validate=validate.Length(max=200))
    focus_articles = fields.List(Article(), load_default=list, validate=validate.Length(max=58))
    website = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"})
    contacts = fields.List(fields.Nested(ContactSchema), load_default=list, validate=validate.Length(max=50))
    description = fields.String(load_default="", validate=validate.Length(max=5000))


class NetworkUpdateSchema(NetworkFields):
    """``PATCH /networks/<id>``: what changes (at least one field)."""

    example = {"focus_articles": [51, 52, 54, 57], "website": "https://www.arin-ap.org/"}

    @validates_schema
    def not_empty(self, changes, **kwargs):
        if not changes:
            raise ValidationError(f"give at least one of: {', '.join(sorted(NetworkFields().fields))}")


class RetireSchema(Schema):
    """``POST /networks/<id>/retire``: why the entry is retired."""

    example = {"reason": "merged into the regional network of the same States"}

    class Meta:
        unknown = RAISE

    reason = Text(required=True, validate=validate.Length(min=1, max=2000))


class NetworkEventSchema(Schema):
    """Payload of ``network.registered`` / ``network.updated`` / ``network.retired``: the whole entry."""

    class Meta:
        unknown = RAISE

    network_id = fields.String(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(networks.KINDS))
    status = fields.String(required=True, validate=validate.OneOf(networks.STATUSES))
    states = fields.List(StateCode(), required=True)
    donors = fields.List(fields.String(), required=True)
    focus_articles = fields.List(fields.Integer(strict=True), required=True)
    website = fields.String(required=True, allow_none=True)
    contacts = fields.List(fields.Nested(ContactSchema), required=True)
    description = fields.String(required=True)
    retired_reason = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


NETWORK_EVENTS = ("network.registered", "network.updated", "network.retired")

for _type in EVENT_TYPES:
    envelope.register(_type, RequestEventSchema())
for _type in NETWORK_EVENTS:
    envelope.register(_type, NetworkEventSchema())

envelope.register("workshop.submitted", WorkshopSubmittedSchema(), channel=envelope.INGRESS)
envelope.register("checklist_assistance.submitted", ChecklistAssistanceSubmittedSchema(), channel=envelope.INGRESS)
