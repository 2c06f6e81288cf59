"""The CV template the 2009 Working Group asked for (recommendation 25), read from the CV schema itself.

``GET /experts/template`` serves it: every field of :class:`~services.supply.schemas.ExpertSchema`
with its shape (type, allowed values, limits, nested fields), whether it is needed to register
the record and whether it is needed before the CV can be submitted for validation. Being read
from the schema, it cannot drift from what ``POST /experts`` accepts.
"""
from marshmallow import fields, validate

from services.supply import experts
from services.supply.schemas import ExpertSchema
from tacoord import reference
from tacoord.fields import TacoordField

TYPES = ((fields.Email, "email"), (fields.AwareDateTime, "datetime (ISO 8601, with a time zone)"),
         (fields.Date, "date (YYYY-MM-DD)"), (fields.Integer, "integer"), (fields.Boolean, "boolean"),
         (fields.String, "string"))
# Needed before submission besides the REQUIRED_FOR_SUBMISSION fields (experts.completeness_problems).
ALSO_FOR_SUBMISSION = {"regions": "regions or countries of experience", "countries": "regions or countries of experience",
                       "contact": "a contact e-mail (contact.email)", "consent": "consent.consent_given: true"}


def _constraints(field):
    shape = {}
    for rule in field.validators:
        if isinstance(rule, validate.OneOf):
            shape["choices"] = list(rule.choices)
        elif isinstance(rule, validate.Length):
            limits = {"min": rule.min, "max": rule.max}
            prefix = "items" if isinstance(field, fields.List) else "length"
            shape.update({f"{k}_{prefix}": v for k, v in limits.items() if v is not None})
        elif isinstance(rule, validate.Range):
            shape.update({k: v for k, v in (("minimum", rule.min), ("maximum", rule.max)) if v is not None})
        elif isinstance(rule, validate.Regexp):
            shape["pattern"] = rule.regex.pattern
    return shape


def shape_of(field):
    """A marshmallow field as ``{"type": …, …constraints}``; lists and nested schemas recursively."""
    if isinstance(field, fields.List):
        shape = {"type": "list", "items": shape_of(field.inner)}
    elif isinstance(field, fields.Nested):
        nested = field.schema
        shape = {"type": "object", "fields": {f.data_key or name: {**shape_of(f), "required": f.required}
                                              for name, f in nested.fields.items()}}
    elif isinstance(field, TacoordField):
        shape = {"type": "string", **field.json_schema()}
    else:
        shape = {"type": next(name for cls, name in TYPES if isinstance(field, cls))}
    shape.update(_constraints(field))
    if field.allow_none:
        shape["nullable"] = True
    return shape


def template():
    """The CV template: every field's shape and when it is required."""
    for_submission = {name: what for name, what in experts.REQUIRED_FOR_SUBMISSION} | ALSO_FOR_SUBMISSION
    described = {f["field"]: f["description"] for f in reference.data()["expert_cv_fields"]}
    schema = ExpertSchema()
    template_fields = {}
    for name, field in schema.fields.items():
        entry = {**shape_of(field), "required_to_register": field.required,
                 "required_to_submit": name in for_submission}
        if name in for_submission:
            entry["needed_before_submission"] = for_submission[name]
        if name in described:
            entry["description"] = described[name]
        template_fields[field.data_key or name] = entry
    return {
        "fields": template_fields,
        "required_to_register": sorted(n for n, f in template_fields.items() if f["required_to_register"]),
        "required_to_submit": sorted(n for n, f in template_fields.items() if f["required_to_submit"]),
        "vetting": {"statuses": list(experts.VETTING_STATUSES),
                    "submit": "POST /experts/<id>/transition {\"to\": \"submitted\"}: a 422 names every field "
                              "still missing"},
        "conflicts_of_interest": "an expert is never proposed to a need of the State of their nationality, of "
                                 "their current employer (employer_country) or of any State in declared_conflicts",
        "basis": reference.data()["expert_cv_fields"][0]["verification"],
    }
