"""The OpenAPI 3.1 documents of tacoord's HTTP APIs, generated from the routes' declarations.

    tacoord openapi [--output FILE] [--check]      # docs/openapi.json: every service, as the gateway serves it
    GET /openapi.json                              # on each service: its own routes (tacoord.webserver)

Everything comes from the ``@api`` declarations (``tacoord.routes``): method,
path, roles (``x-roles``, the description, and the operation's ``security``,
which lists the roles that may call it, any one of them), the body and
response schemas (the same marshmallow schemas ``read_json`` validates with,
converted by apispec's ``MarshmallowPlugin`` with tacoord's fields, see
``tacoord.schemadoc``), the query parameters and the handler's docstring.
Every request body has an example (the schema's ``example`` class attribute, else
:data:`EXAMPLES`), loaded with its real
schema while the document is generated, so an example that no longer fits
fails the generation (and the tests). Error responses share one schema
(``Error``, the shape of ``tacoord.responses.error_body``).

In the merged document every path is under ``/api/<service>``, where the
gateway (``infra/gateway.py``) routes it, and the gateway's own answers (429
when a client sends too fast, 502–504 when a service is down) are listed.
"""
import copy
import json
import warnings
from pathlib import Path

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_instance
from marshmallow import INCLUDE, Schema, fields

from tacoord import asyncapi
from tacoord.routes import JSON, UNDECLARED, schema_instance
from tacoord.schemadoc import component_name, package_version, schema_description, tacoord_fields

OPENAPI_VERSION = "3.1.0"
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
GATEWAY_PREFIX = "/api"
SECURITY = "apiKey"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class ErrorSchema(Schema):
    """Every error answer: what went wrong, and each field that was wrong."""

    class Meta:
        unknown = INCLUDE  # a reader must tolerate more

    error = fields.String(required=True, metadata={"description": "what went wrong, for a person"})
    status = fields.Integer(required=True, metadata={"description": "the HTTP status again"})
    fields_ = fields.Dict(data_key="fields", metadata={
        "description": "per field (nested as the body is), the messages for it"})
    details = fields.List(fields.String(), metadata={"description": "the same as 'field: message' lines"})
    allowed = fields.List(fields.String(), metadata={"description": "405: the methods the path takes"})
    request_id = fields.String(metadata={"description": "the gateway's errors: the request's id (as in X-Request-Id)"})


# --- examples: one per request body, loaded with its schema at generation time -----------------

NEED_CSV = ("state,article,paragraph,forms,other_text,priority,description,checklist_round,languages,external_ref\n"
            "KEN,9,1,LEGAL_ADVICE;CAPACITY_BUILDING,,1,Procurement reform,2026-1,en;sw,\n")
OFFER_CSV = ("provider,provider_name,level,scope_states,articles,forms,capacity,period_start,period_end,languages\n"
             "GB-GOV-1,FCDO,bilateral,KEN;UGA,9;10,LEGAL_ADVICE,3,2026-01-01,2027-12-31,en\n")
IATI_XML = ('<iati-activities version="2.03"><iati-activity><iati-identifier>GB-GOV-1-300123</iati-identifier>'
            '<reporting-org ref="GB-GOV-1" type="10"><narrative>FCDO</narrative></reporting-org>'
            '<title><narrative>Anti-corruption support to Kenya</narrative></title>'
            '<activity-status code="2"/><activity-date iso-date="2026-01-01" type="2"/>'
            '<activity-date iso-date="2027-12-31" type="3"/><recipient-country code="KE"/>'
            '<sector vocabulary="1" code="15113"/></iati-activity></iati-activities>\n')
EXPERT = {"family_name": "Otieno", "given_names": "Grace", "nationality": "KEN",
          "expertise": [{"article": 36, "level": "expert"}], "languages": [{"code": "en", "level": "fluent"}],
          "regions": ["AFRICAN"], "forms": ["ONSITE_EXPERT"],
          "availability": {"status": "available", "from": "2027-01-01", "to": "2027-12-31"}}

EXAMPLES = {
    # component name (a JSON body) or (operation id, media type): the example
    "needs.NeedSchema": asyncapi.NEED_FILED,
    "needs.NeedUpdateSchema": {"priority": 2, "description": "Public procurement reform, phase 2"},
    ("needs.import_checklist", "text/csv"): NEED_CSV,
    "supply.OfferSchema": asyncapi.OFFER_FILED,
    "supply.OfferUpdateSchema": {"capacity": 5, "languages": ["en", "fr"]},
    ("supply.import_offers", "text/csv"): OFFER_CSV,
    ("supply.import_iati", "application/xml"): IATI_XML,
    "supply.ExpertSchema": EXPERT,
    "supply.ExpertUpdateSchema": {"current_position": "Chief prosecutor", "years_of_experience": 12,
                                  "years_anti_corruption": 8},
    "supply.TransitionSchema": {"to": "submitted", "note": "CV complete"},
    "requests.RequestSchema": asyncapi.WORKSHOP_FILED,
    "requests.TransitionSchema": {"to": "scheduled", "scheduled_for": "2027-03-02"},
    "notify.SubscriptionSchema": {"channel": "webhook", "url": "https://donor.example/tacoord-hook",
                                  "filter": {"types": ["match.*", "duplication.*"], "states": ["KEN"]},
                                  "label": "matches in Kenya"},
    "notify.NetworkSchema": {"network_id": "EAST_AFRICA", "name": "East African Association of Anti-Corruption "
                             "Authorities", "states": ["KEN", "UGA", "TZA", "RWA", "BDI"],
                             "contacts": [{"name": "Secretariat", "email": "secretariat@eaaaca.example"}],
                             "description": "Peer-learning network"},
}


def example_for(route, media, schema):
    """The example of one request body; a JSON one is loaded with ``schema`` (which must accept it)."""
    operation_id = f"{route.service}.{route.name}"
    if isinstance(schema, Schema):
        name = component_name(schema)
        own = getattr(type(schema), "example", None)   # a schema may carry its own (preferred)
        if own is None and name not in EXAMPLES:
            raise LookupError(f"no example for the body of {operation_id} ({name}): give the schema an "
                              "`example` class attribute (or add one to tacoord.openapi.EXAMPLES)")
        example = copy.deepcopy(own if own is not None else EXAMPLES[name])
        example = [example] if schema.many else example
        schema.load(copy.deepcopy(example))  # the real schema must accept it
        return example
    if (operation_id, media) not in EXAMPLES:
        raise LookupError(f"no example for the {media} body of {operation_id}: add one to tacoord.openapi.EXAMPLES")
    return EXAMPLES[(operation_id, media)]


# --- the document ------------------------------------------------------------------------------

class DescribedConverter(MarshmallowPlugin.Converter):
    """apispec's converter, giving each schema component its description (docstring, cross-field rules)."""

    def schema2jsonschema(self, schema):
        result = super().schema2jsonschema(schema)
        description = schema_description(resolve_schema_instance(schema))
        return {"description": description, **result} if description else result


class TacoordPlugin(MarshmallowPlugin):
    Converter = DescribedConverter

    def __init__(self):
        super().__init__(schema_name_resolver=component_name)

    def init_spec(self, spec):
        super().init_spec(spec)
        self.converter.add_attribute_function(tacoord_fields)


def _spec(title, description):
    spec = APISpec(title=title, version=package_version(), openapi_version=OPENAPI_VERSION,
                   plugins=[TacoordPlugin()], info={"description": description},
                   servers=[{"url": "/"}], security=[{SECURITY: []}])
    spec.components.security_scheme(SECURITY, {
        "type": "http", "scheme": "bearer", "bearerFormat": "tck_<key id>_<secret>",
        "description": "An API key issued by an operator (`tacoord credentials issue --role ROLE --subject "
                       "SUBJECT`). Each key has one role: state (its ISO3 code), donor (its IATI organisation "
                       "id), network, partner or operator. An operation's security lists the roles that may "
                       "call it (any one of them); routes without security are public."})
    spec.components.schema("Error", schema=ErrorSchema)
    for name, description in ERRORS.items():
        spec.components.response(name, {"description": description, "content": {JSON: {"schema": "Error"}}})
    return spec


ERRORS = {  # reusable responses (components.responses), all with the Error body
    "BadRequest": "malformed request: not JSON, an unknown query parameter, the wrong JSON type",
    "Unauthorized": "no valid API key",
    "Forbidden": "the key's role or subject may not do this (the message names them)",
    "NotFound": "no such entity (or not visible to this key)",
    "Conflict": "the entity's state does not allow it (the message names the allowed moves)",
    "PayloadTooLarge": "the body is larger than the limit (TACOORD_MAX_BODY_BYTES)",
    "UnsupportedMediaType": "the body is not in a media type this route takes",
    "Invalid": "invalid input: each field named, with what is wrong",
    "TooManyRequests": "too many requests from this client (the gateway's limit): wait and try again",
    "BadGateway": "the service behind the gateway is not running or not answering (also 503, 504)",
    "ClientError": "any other client error",
    "InternalError": "internal error: the body names an error id that is in the service's log",
}


def _roles_text(roles):
    return f"Roles: {', '.join(roles)}." if roles else "Public: no API key needed."


def _parameters(route):
    found = [{"in": "path", "name": name, "required": True,
              "schema": {"type": "integer"} if converter == "int" else {"type": "string"}}
             for name, converter in route.path_parameters()]
    query = schema_instance(route.query)
    if isinstance(query, Schema):
        found.append({"in": "query", "schema": query})
    else:
        found.extend({"in": "query", "name": name, "required": False, "schema": {"type": "string"}}
                     for name in route.query_names())
    return found


def response_view(schema):
    """A response schema as documented: the fields it names, and maybe more (a reader must tolerate
    additions), so unlike a body it does not refuse unknown fields."""
    return schema if schema.unknown == INCLUDE else type(schema)(many=schema.many, unknown=INCLUDE)


def _content(contents, route=None, seen=None):
    """``{media: {"schema": ..., "example": ...}}`` for a body (``route`` given) or a response.

    ``seen`` ({schema class: "body"/"response"}) refuses a class documented both ways: its component
    would be strict for one and tolerant for the other (declare a separate response schema)."""
    result = {}
    for media, item in contents.items():
        if isinstance(item, Schema):
            role = "body" if route is not None else "response"
            if seen is not None and seen.setdefault(type(item), role) != role:
                raise ValueError(f"{component_name(item)} is both a request body and a response: "
                                 "declare a separate response schema")
            entry = {"schema": item if route is not None else response_view(item)}
        else:  # a description: any JSON, or text in that media type
            entry = {"schema": ({} if media == JSON else {"type": "string"}) | ({"description": item} if item else {})}
        if route is not None:
            entry["example"] = example_for(route, media, item)
        result[media] = entry
    return result


def operation(route, gateway=False, seen=None):
    """The OpenAPI operation object of one route."""
    description = "\n\n".join(p for p in (route.doc, _roles_text(route.roles)) if p)
    op = {"operationId": f"{route.service}.{route.name}", "tags": [route.service],
          "summary": route.summary or f"{route.method} {route.url}", "description": description,
          "x-roles": list(route.roles), "parameters": _parameters(route)}
    op["security"] = [{SECURITY: list(route.roles)}] if route.roles else []
    body = route.body_contents()
    if body:
        op["requestBody"] = {"required": True, "content": _content(body, route, seen)}
    elif route.body == UNDECLARED and route.method in WRITES[:3]:
        op["requestBody"] = {"required": False, "description": "not documented yet",
                             "content": {JSON: {"schema": {}}}}
    answer = route.response_contents() or {JSON: None}
    responses = {"2XX": {"description": "done" if route.method in WRITES else "found",
                         "content": _content(answer, seen=seen)}}
    responses["400"] = "BadRequest"
    if route.roles:
        responses.update({"401": "Unauthorized", "403": "Forbidden"})
    responses["404"] = "NotFound"
    if route.method in WRITES:
        responses["409"] = "Conflict"
    if body:
        responses.update({"413": "PayloadTooLarge", "415": "UnsupportedMediaType"})
    responses["422"] = "Invalid"
    if gateway:
        responses.update({"429": "TooManyRequests", "502": "BadGateway"})
    responses.update({"4XX": "ClientError", "500": "InternalError"})
    op["responses"] = responses
    return op


def _add_routes(spec, routes, prefix="", gateway=False, seen=None):
    paths = {}
    for route in routes:
        paths.setdefault(prefix + route.path, {})[route.method.lower()] = operation(route, gateway, seen)
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)


def _tag(service, service_doc):
    return {"name": service, "description": service_doc or f"the {service} service"}


def service_document(service, routes, service_doc="", prefix=""):
    """One service's document, paths as the service serves them (under ``prefix`` behind the gateway)."""
    spec = _spec(f"tacoord {service} HTTP API",
                 f"The {service} service's routes. {TEXT_RULES}")
    spec.tag(_tag(service, service_doc))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the same nested schema met twice: one component
        _add_routes(spec, routes, seen={})
    doc = spec.to_dict()
    if prefix:
        doc["servers"] = [{"url": prefix, "description": "through the gateway"}]
    return doc


def document(services):
    """The merged document: ``{service: (routes, service docstring)}``, paths under ``/api/<service>``."""
    spec = _spec("tacoord HTTP API", INFO)
    seen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for service, (routes, service_doc) in services.items():
            spec.tag(_tag(service, service_doc))
            _add_routes(spec, routes, f"{GATEWAY_PREFIX}/{service}", gateway=True, seen=seen)
    return spec.to_dict()


def service_index(service, routes, prefix=""):
    """``GET /`` of a service: its routes and where its OpenAPI document is."""
    pages = [prefix + r.path for r in routes if "text/html" in r.response_contents()]
    return {"service": service, "openapi": f"{prefix}/openapi.json",
            "docs": "/docs/ (on the gateway, with every service)",
            "routes": [{"method": r.method, "path": prefix + r.path, "roles": list(r.roles) or "public",
                        "summary": r.summary} for r in routes],
            **({"pages": pages} if pages else {})}


def render(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


TEXT_RULES = (
    "JSON bodies are sent as `Content-Type: application/json` (UTF-8; another media type is a 415, none at all "
    "is read as JSON). "
    "Text holds no control characters (NUL, other C0 and C1 controls, DEL): a 422 names the field. "
    "Free-text fields (descriptions, outcomes, reasons, notes) may hold tabs and line breaks; every other "
    "string field is one line.")
INFO = (
    "tacoord's HTTP APIs, one origin: the gateway (nginx) routes `/api/<service>/…` to each service, whose own "
    "paths follow (e.g. `GET /api/needs/needs/{need_id}`). Each service also serves its routes at `GET /` and "
    "its own document at `GET /openapi.json` (through the gateway: `/api/<service>/` and "
    "`/api/<service>/openapi.json`). Every request carries an `X-Request-Id` (yours if it is 8–128 letters, "
    "digits or `._:-`, else the gateway's), sent back and logged by the gateway and the service. "
    + TEXT_RULES + " The gateway limits request bodies (413) and the request rate per client (429); every "
    "error answer is JSON (`Error`).")
