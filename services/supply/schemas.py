"""Supply: what donors and partners send (offers, experts), and the events this service emits.

Consumers (matching, notify) import this module read-only: the ``*EventSchema``
classes are the contract of docs/events.md.
"""
from datetime import date

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from services.supply import domain, experts, iati_mapping, money
from tacoord import envelope, reference
from tacoord.fields import EntityId, GroupId, Language, OrgId, Reason, StateCode, TacoordField, Text


# --- fields ---------------------------------------------------------------------------------

class IsoDate(fields.Date):
    """A calendar date, stored and sent as an ISO string (``2027-01-31``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).isoformat()

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None or isinstance(value, str):
            return value
        return value.isoformat() if isinstance(value, date) else str(value)


def Article(**kwargs):
    return fields.Integer(strict=True, validate=validate.Range(
        min=5, max=62, error="UNCAC article must be between 5 and 62 (chapters II–VI)"), **kwargs)


def Form(**kwargs):
    return fields.String(validate=validate.OneOf(
        tuple(reference.assistance_forms()), error="unknown form of assistance; one of: {choices}"), **kwargs)


def _raise_problems(problems):
    if problems:
        errors = {}
        for field, message in problems:
            errors.setdefault(field, []).append(message)
        raise ValidationError(errors)


class OrgRef(TacoordField):
    """An organisation as an IATI file names it: an IATI organisation id, or (imported with a
    warning) a historical ref of another shape, one token such as ``41114``."""

    def _deserialize(self, value, attr, data, **kwargs):
        ref = super()._deserialize(value, attr, data, **kwargs)
        if not iati_mapping.LOOSE_REF.match(ref):
            raise ValidationError(f"{value!r} is not an organisation identifier")
        return ref

    def json_schema(self):
        return {"pattern": iati_mapping.LOOSE_REF.pattern,
                "description": "organisation identifier: an IATI organisation id {agency}-{number} such as "
                               "GB-GOV-1 (offers filed directly), or a historical ref as published in an "
                               "IATI file (imported with a warning)"}


class Currency(TacoordField):
    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs).upper()
        if not money.CURRENCY.match(code):
            raise ValidationError(f"{value!r} is not an ISO 4217 currency code such as 'USD'")
        return code

    def json_schema(self):
        return {"pattern": "^[A-Za-z]{3}$", "description": "ISO 4217 currency code (upper-cased on input)"}


class OneOrMany(fields.List):
    """A list that also takes a single item (``"budget": {…}`` is a budget of one line)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value if isinstance(value, list) else [value], attr, data, **kwargs)


# --- money (services/supply/money.py) ----------------------------------------------------------

MAX_MONEY_LINES = 2000


class MoneyLine(Schema):
    """A value in a currency on a value date (IATI ``value``); the currency defaults to the offer's."""

    class Meta:
        unknown = RAISE

    value = fields.Float(required=True, allow_nan=False)
    currency = Currency(load_default=None, allow_none=True)
    value_date = IsoDate(load_default=None, allow_none=True)


class PeriodLine(MoneyLine):
    period_start = IsoDate(load_default=None, allow_none=True)
    period_end = IsoDate(load_default=None, allow_none=True)

    @validates_schema
    def period(self, line, **kwargs):
        if line.get("period_start") and line.get("period_end") and line["period_end"] < line["period_start"]:
            raise ValidationError("must not be before period_start", "period_end")


class BudgetSchema(PeriodLine):
    """IATI ``budget``: BudgetType 1 original / 2 revised, BudgetStatus 1 indicative / 2 committed."""

    type = fields.String(load_default="original", validate=validate.OneOf(money.BUDGET_TYPES))
    status = fields.String(load_default="indicative", validate=validate.OneOf(money.BUDGET_STATUSES))


class PlannedDisbursementSchema(PeriodLine):
    """IATI ``planned-disbursement``."""




class TransactionSchema(MoneyLine):
    """IATI ``transaction`` of TransactionType 1–4; ``share``: its own anti-corruption share when it
    reports its own sectors (else the offer's); ``state``: its own recipient country."""

    type = fields.String(required=True, validate=validate.OneOf(money.TRANSACTION_TYPES))
    date = IsoDate(load_default=None, allow_none=True)
    share = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1))
    state = StateCode(load_default=None, allow_none=True)


def _money_problems(offer):
    """Each money line needs a currency: its own or the offer's."""
    problems = []
    for key in ("budget", "planned_disbursements", "transactions"):
        for index, line in enumerate(offer.get(key) or ()):
            if not line.get("currency") and not offer.get("currency"):
                problems.append((key, f"line {index + 1}: give its currency or the offer's currency "
                                      "(ISO 4217)"))
    return problems


def _fill_currency(offer):
    for key in ("budget", "planned_disbursements", "transactions"):
        if key in offer:
            offer[key] = money.with_currency(offer[key], offer.get("currency"))
    return offer


# --- offers ---------------------------------------------------------------------------------

class OfferFields(Schema):
    """The fields of an offer that a provider sets (shared by filing, update and events)."""

    class Meta:
        unknown = RAISE

    provider_name = fields.String(validate=validate.Length(max=300))
    level = fields.String(validate=validate.OneOf(domain.LEVELS))
    scope_states = fields.List(StateCode(), validate=validate.Length(max=200))
    scope_groups = fields.List(GroupId(), validate=validate.Length(max=5))
    articles = fields.List(Article(), validate=validate.Length(max=58))
    chapters = fields.List(fields.Integer(strict=True, validate=validate.Range(
        min=2, max=6, error="chapter must be between 2 and 6 (II–VI)")), validate=validate.Length(max=5))
    forms = fields.List(Form(), validate=validate.Length(min=1, max=8, error="give 1 to 8 forms of assistance"))
    capacity = fields.Integer(strict=True, validate=validate.Range(min=1, max=10000))
    period_start = IsoDate()
    period_end = IsoDate(allow_none=True)
    languages = fields.List(Language(), validate=validate.Length(max=10))
    anti_corruption_share = fields.Float(validate=validate.Range(min=0, max=1))
    currency = Currency(allow_none=True)
    budget = OneOrMany(fields.Nested(BudgetSchema), validate=validate.Length(max=MAX_MONEY_LINES))
    planned_disbursements = fields.List(fields.Nested(PlannedDisbursementSchema),
                                        validate=validate.Length(max=MAX_MONEY_LINES))
    transactions = fields.List(fields.Nested(TransactionSchema), validate=validate.Length(max=MAX_MONEY_LINES))


class OfferSchema(OfferFields):
    """An offer as filed over HTTP, AMQP (``offer.submitted``) or in a bulk import."""

    provider = OrgId(required=True)
    provider_name = fields.String(load_default="", validate=validate.Length(max=300))
    level = fields.String(required=True, validate=validate.OneOf(domain.LEVELS))
    scope_states = fields.List(StateCode(), load_default=list, validate=validate.Length(max=200))
    scope_groups = fields.List(GroupId(), load_default=list, validate=validate.Length(max=5))
    articles = fields.List(Article(), load_default=list, validate=validate.Length(max=58))
    chapters = fields.List(fields.Integer(strict=True, validate=validate.Range(
        min=2, max=6, error="chapter must be between 2 and 6 (II–VI)")), load_default=list,
        validate=validate.Length(max=5))
    forms = fields.List(Form(), required=True,
                        validate=validate.Length(min=1, max=8, error="give 1 to 8 forms of assistance"))
    capacity = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=10000))
    period_start = IsoDate(required=True)
    period_end = IsoDate(load_default=None, allow_none=True)   # None: open-ended (ongoing)
    languages = fields.List(Language(), load_default=list, validate=validate.Length(max=10))
    anti_corruption_share = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=1))
    currency = Currency(load_default=None, allow_none=True)
    budget = OneOrMany(fields.Nested(BudgetSchema), load_default=list, validate=validate.Length(max=MAX_MONEY_LINES))
    planned_disbursements = fields.List(fields.Nested(PlannedDisbursementSchema), load_default=list,
                                        validate=validate.Length(max=MAX_MONEY_LINES))
    transactions = fields.List(fields.Nested(TransactionSchema), load_default=list,
                               validate=validate.Length(max=MAX_MONEY_LINES))
    status = fields.String(load_default="active", validate=validate.OneOf(
        domain.FILING_STATUSES, error="a new offer is one of: {choices}"))
    external_ref = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=120))
    iati_identifier = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))

    @validates_schema
    def consistent(self, offer, **kwargs):
        _raise_problems(domain.offer_problems(offer) + _money_problems(offer))

    @post_load
    def currencies(self, offer, **kwargs):
        return _fill_currency(offer)


class IatiOfferSchema(OfferSchema):
    """An offer mapped from an IATI activity: its provider is the reporting-org ref as published."""

    provider = OrgRef(required=True)


class OfferUpdateSchema(OfferFields):
    """What a provider may change on its offer (PATCH); the merged offer is checked again. Money
    lines sent without a currency take the ``currency`` sent with them."""

    @validates_schema
    def currencies_given(self, changes, **kwargs):
        _raise_problems(_money_problems(changes))

    @post_load
    def currencies(self, changes, **kwargs):
        return _fill_currency(changes)

    status = fields.String(validate=validate.OneOf(
        domain.FILING_STATUSES, error="status may be set to one of: {choices} (DELETE withdraws)"))


class OfferEventSchema(Schema):
    """Payload of offer.published / offer.updated / offer.withdrawn (docs/events.md)."""

    class Meta:
        unknown = RAISE

    offer_id = fields.String(required=True, validate=validate.Length(min=1, max=80))
    provider = OrgRef(required=True)
    provider_name = fields.String(required=True)
    level = fields.String(required=True, validate=validate.OneOf(domain.LEVELS))
    scope_states = fields.List(StateCode(), required=True)
    scope_groups = fields.List(GroupId(), required=True)
    withdrawal_reason = fields.String(allow_none=True)   # offer.withdrawn: why, in their words (absent in older events)
    articles = fields.List(fields.Integer(strict=True), required=True)
    chapters = fields.List(fields.Integer(strict=True), required=True)
    forms = fields.List(fields.String(), required=True)
    capacity = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    period_start = IsoDate(required=True)
    period_end = IsoDate(required=True, allow_none=True)   # null: open-ended
    languages = fields.List(fields.String(), required=True)
    status = fields.String(required=True, validate=validate.OneOf(domain.OFFER_STATUSES))
    iati_identifier = fields.String(load_default=None, allow_none=True)
    # The money (services/supply/money.py); absent in events of offers filed before offers carried it.
    anti_corruption_share = fields.Float(load_default=1.0, validate=validate.Range(min=0, max=1))
    currency = fields.String(load_default=None, allow_none=True)
    budget = fields.List(fields.Nested(BudgetSchema), load_default=list)
    planned_disbursements = fields.List(fields.Nested(PlannedDisbursementSchema), load_default=list)
    transactions = fields.List(fields.Nested(TransactionSchema), load_default=list)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


for _type in domain.OFFER_EVENTS:
    envelope.register(_type, OfferEventSchema())


class OfferWithdrawSchema(Schema):
    class Meta:
        unknown = RAISE

    offer_id = EntityId(required=True)
    reason = Reason()


envelope.register("offer.submitted", OfferSchema(), channel=envelope.INGRESS)
envelope.register("offer.withdrawn", OfferWithdrawSchema(), channel=envelope.INGRESS)


# --- experts (CV fields of tacoord/data/uncac_reference.json expert_cv_fields) -----------------

class Strict(Schema):
    class Meta:
        unknown = RAISE


class ExpertiseSchema(Strict):
    article = Article(required=True)
    paragraph = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    level = fields.String(required=True, validate=validate.OneOf(experts.EXPERTISE_LEVELS))


class LanguageSkillSchema(Strict):
    code = Language(required=True)
    level = fields.String(required=True, validate=validate.OneOf(experts.LANGUAGE_LEVELS))


class AvailabilitySchema(Strict):
    status = fields.String(required=True, validate=validate.OneOf(experts.AVAILABILITY))
    from_ = IsoDate(data_key="from", load_default=None, allow_none=True)
    to = IsoDate(load_default=None, allow_none=True)
    max_days_per_year = fields.Integer(strict=True, load_default=None, allow_none=True,
                                       validate=validate.Range(min=0, max=366))
    remote_ok = fields.Boolean(load_default=None, allow_none=True)
    notice_period_days = fields.Integer(strict=True, load_default=None, allow_none=True,
                                        validate=validate.Range(min=0, max=365))

    @validates_schema
    def window(self, availability, **kwargs):
        if availability.get("from_") and availability.get("to") and availability["to"] < availability["from_"]:
            raise ValidationError("must not be before 'from'", "to")


class ConsentSchema(Strict):
    consent_given = fields.Boolean(required=True)
    date = IsoDate(load_default=None, allow_none=True)
    publish_profile = fields.Boolean(load_default=False)


class DeclarationSchema(Strict):
    text = Text(required=True, validate=validate.Length(max=5000))
    date = IsoDate(required=True)


class ContactSchema(Strict):
    email = fields.Email(load_default=None, allow_none=True)
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))
    address = Text(load_default=None, allow_none=True, validate=validate.Length(max=500))


class EducationSchema(Strict):
    degree = fields.String(required=True, validate=validate.Length(max=200))
    field = fields.String(load_default="", validate=validate.Length(max=200))
    institution = fields.String(load_default="", validate=validate.Length(max=300))
    year = fields.Integer(strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1940, max=2100))


class EmploymentSchema(Strict):
    from_ = IsoDate(data_key="from", required=True)
    to = IsoDate(load_default=None, allow_none=True)
    employer = fields.String(required=True, validate=validate.Length(max=300))
    position = fields.String(required=True, validate=validate.Length(max=300))
    duties = Text(load_default="", validate=validate.Length(max=3000))


class AssignmentSchema(Strict):
    country = StateCode(required=True)
    year = fields.Integer(strict=True, required=True, validate=validate.Range(min=1990, max=2100))
    client = fields.String(load_default="", validate=validate.Length(max=300))
    type = Form(load_default=None, allow_none=True)
    uncac_articles = fields.List(Article(), load_default=list)
    outcome = Text(load_default="", validate=validate.Length(max=2000))


class RefereeSchema(Strict):
    name = fields.String(required=True, validate=validate.Length(max=200))
    position = fields.String(load_default="", validate=validate.Length(max=200))
    contact = fields.String(load_default="", validate=validate.Length(max=300))


class FeeSchema(Strict):
    min = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    max = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    currency = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{3}$", error="ISO 4217 code"))


class ExpertFields(Strict):
    """The CV of an expert (every field optional here; completeness is checked on submission)."""

    family_name = fields.String(validate=validate.Length(min=1, max=200))
    given_names = fields.String(validate=validate.Length(min=1, max=200))
    display_name = fields.String(allow_none=True, validate=validate.Length(max=200))
    title = fields.String(allow_none=True, validate=validate.OneOf(experts.TITLES))
    gender = fields.String(allow_none=True, validate=validate.OneOf(experts.GENDERS))
    nationality = StateCode()
    country_of_residence = StateCode(allow_none=True)
    nominated_by = fields.String(allow_none=True, validate=validate.Length(max=80))
    current_position = fields.String(allow_none=True, validate=validate.Length(max=300))
    employer = fields.String(allow_none=True, validate=validate.Length(max=300))
    employer_type = fields.String(allow_none=True, validate=validate.OneOf(experts.EMPLOYER_TYPES))
    employer_country = StateCode(allow_none=True)      # the current employer's State: a conflict of interest
    declared_conflicts = fields.List(StateCode(), validate=validate.Length(max=50))   # other States to avoid
    expertise = fields.List(fields.Nested(ExpertiseSchema), validate=validate.Length(max=60))
    thematic_areas = fields.List(fields.String(validate=validate.Length(max=100)), validate=validate.Length(max=15))
    forms = fields.List(Form(), validate=validate.Length(max=8))
    legal_systems = fields.List(fields.String(validate=validate.OneOf(experts.LEGAL_SYSTEMS)))
    languages = fields.List(fields.Nested(LanguageSkillSchema), validate=validate.Length(max=12))
    regions = fields.List(GroupId(), validate=validate.Length(max=5))
    countries = fields.List(StateCode(), validate=validate.Length(max=200))
    years_of_experience = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=70))
    years_anti_corruption = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=70))
    education = fields.List(fields.Nested(EducationSchema), validate=validate.Length(max=20))
    employment_history = fields.List(fields.Nested(EmploymentSchema), validate=validate.Length(max=50))
    prior_assignments = fields.List(fields.Nested(AssignmentSchema), validate=validate.Length(max=100))
    irm_experience = fields.Boolean(allow_none=True)
    irm_details = Text(allow_none=True, validate=validate.Length(max=2000))
    publications = fields.List(fields.String(validate=validate.Length(max=500)), validate=validate.Length(max=100))
    references = fields.List(fields.Nested(RefereeSchema), validate=validate.Length(max=10))
    availability = fields.Nested(AvailabilitySchema)
    daily_fee_range = fields.Nested(FeeSchema, allow_none=True)
    pro_bono = fields.Boolean(allow_none=True)
    conflict_of_interest_declaration = fields.Nested(DeclarationSchema, allow_none=True)
    consent = fields.Nested(ConsentSchema)
    cv_document = fields.String(allow_none=True, validate=validate.Length(max=500))
    contact = fields.Nested(ContactSchema)

    @validates_schema
    def consistent(self, expert, **kwargs):
        total, specific = expert.get("years_of_experience"), expert.get("years_anti_corruption")
        if total is not None and specific is not None and specific > total:
            raise ValidationError("cannot exceed years_of_experience", "years_anti_corruption")
        fee = expert.get("daily_fee_range")
        if fee and fee["max"] < fee["min"]:
            raise ValidationError({"daily_fee_range": {"max": ["must not be below min"]}})


class ExpertSchema(ExpertFields):
    """A new expert record (POST /experts): identity and nationality at least."""

    family_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    given_names = fields.String(required=True, validate=validate.Length(min=1, max=200))
    nationality = StateCode(required=True)


class ExpertUpdateSchema(ExpertFields):
    """PATCH /experts/<id>; operators may also move ``expires_at``."""

    expires_at = fields.AwareDateTime(allow_none=True)


class TransitionSchema(Strict):
    to = fields.String(required=True, validate=validate.OneOf(experts.VETTING_STATUSES))
    note = Text(load_default="", validate=validate.Length(max=2000))


class ExpertiseEventSchema(Strict):
    article = fields.Integer(strict=True, required=True)
    level = fields.String(required=True, validate=validate.OneOf(experts.EXPERTISE_LEVELS))


class LanguageEventSchema(Strict):
    code = fields.String(required=True)
    level = fields.String(required=True)


class AvailabilityEventSchema(Strict):
    status = fields.String(required=True, validate=validate.OneOf(experts.AVAILABILITY))
    from_ = fields.String(data_key="from", allow_none=True, load_default=None)
    to = fields.String(allow_none=True, load_default=None)


class ExpertEventSchema(Strict):
    """Payload of expert.registered / expert.updated / expert.expired (docs/events.md).

    No names, contact or fees: events go to every consumer and the audit log.
    """

    expert_id = fields.String(required=True, validate=validate.Length(min=1, max=80))
    nationality = fields.String(required=True)
    expertise = fields.List(fields.Nested(ExpertiseEventSchema), required=True)
    languages = fields.List(fields.Nested(LanguageEventSchema), required=True)
    regions = fields.List(fields.String(), required=True)
    countries = fields.List(fields.String(), required=True)
    forms = fields.List(fields.String(), required=True)
    availability = fields.Nested(AvailabilityEventSchema, required=True, allow_none=True)
    vetting_status = fields.String(required=True, validate=validate.OneOf(experts.VETTING_STATUSES))
    expires_at = fields.String(required=True, allow_none=True)
    updated_at = fields.String(required=True)
    # States the expert is never proposed to (nationality, current employer's State, declared ones)
    conflict_states = fields.List(fields.String(), load_default=list)


for _type in experts.EXPERT_EVENTS:
    envelope.register(_type, ExpertEventSchema())
