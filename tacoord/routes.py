"""What an HTTP route declares about itself, read from a service class without running it.

    @api("POST", "/needs", roles=("state", "operator"), body=NeedSchema, response=NeedEventSchema)

gives, through :func:`routes_of`, a :class:`Route` that the OpenAPI document
(``tacoord.openapi``), the service's index (``GET /``) and the tests read; the
same ``body`` is what ``tacoord.web.read_json(request)`` validates, so one
declaration drives both the check and the documentation.

``body`` and ``response`` are each one of:

- a marshmallow schema (class or instance): a JSON body (``many=True`` for an array);
- a dict ``{media type: schema or description}`` for other formats, e.g.
  ``{"text/csv": "one need per line", "application/json": NeedSchema(many=True)}``;
- ``None``: no body (a write route that takes none) or, for ``response``, a
  JSON object whose fields are not documented.

A write route (POST, PUT, PATCH) that says nothing about its body keeps
:data:`UNDECLARED`; the OpenAPI test lists such routes.
"""
import inspect
import re
import sys
from dataclasses import dataclass

from marshmallow import INCLUDE, Schema, fields
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

WRITE_METHODS = ("POST", "PUT", "PATCH")
JSON = "application/json"
UNDECLARED = "undeclared"
PATH_PARAMETER = re.compile(r"<(?:(?P<converter>[a-z]+):)?(?P<name>[a-z_][a-z0-9_]*)>")


def schema_instance(schema):
    """A schema class becomes an instance; anything else is returned as it is."""
    return schema() if isinstance(schema, type) and issubclass(schema, Schema) else schema


def contents(declared):
    """``{media type: schema instance or description}`` for a ``body``/``response`` declaration."""
    if declared is None or declared == UNDECLARED:
        return {}
    if isinstance(declared, dict):
        return {media: schema_instance(item) for media, item in declared.items()}
    return {JSON: schema_instance(declared)}


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    url: str                      # werkzeug syntax: /needs/<string:need_id>
    name: str                     # the handler's name
    roles: tuple                  # () = public
    body: object = UNDECLARED
    response: object = None
    query: tuple = ()             # names, or a schema (class or instance)
    doc: str = ""

    @property
    def path(self):
        """OpenAPI syntax: /needs/{need_id}."""
        return PATH_PARAMETER.sub(lambda m: "{" + m.group("name") + "}", self.url)

    def path_parameters(self):
        return [(m.group("name"), m.group("converter") or "string") for m in PATH_PARAMETER.finditer(self.url)]

    @property
    def summary(self):
        """The docstring's first paragraph, else the handler's name as words (``file_need``: File need)."""
        if self.doc:
            return " ".join(self.doc.split("\n\n")[0].split())
        return self.name.replace("_", " ").strip().capitalize()

    def body_contents(self):
        return contents(self.body)

    def response_contents(self):
        return contents(self.response)

    def json_body_schema(self):
        """The schema ``read_json(request)`` validates with, or None: a route that takes other media
        types too (a CSV or JSON import) reads its body itself."""
        body = self.body_contents()
        schema = body.get(JSON)
        return schema if isinstance(schema, Schema) and len(body) == 1 else None

    def body_undeclared(self):
        return self.method in WRITE_METHODS and self.body == UNDECLARED

    def query_names(self):
        query = schema_instance(self.query)
        if isinstance(query, Schema):
            return tuple((f.data_key or n) for n, f in query.fields.items() if not f.dump_only)
        return tuple(query or ())


def routes_of(service_cls):
    """Every route the service class declares (entrypoints with a ``route(service, name, doc)``
    method: ``tacoord.web.JsonApi``), sorted by path then method."""
    found = []
    for name, function in inspect.getmembers(service_cls, inspect.isfunction):
        for entrypoint in getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            describe = getattr(entrypoint, "route", None)
            if callable(describe):
                found.append(describe(service_cls.name, name, inspect.getdoc(function) or ""))
    return sorted(found, key=lambda r: (r.url, r.method))


def service_summary(service_cls):
    """The first paragraph of the service class's docstring, else of its module's."""
    doc = inspect.getdoc(service_cls) if service_cls.__doc__ else None
    doc = doc or inspect.getdoc(sys.modules.get(service_cls.__module__)) or ""
    return " ".join(doc.split("\n\n")[0].split())


def listing(key, item):
    """The response schema of a list route, ``{"count": n, key: [item, ...]}``, named after ``key``
    (``needs`` → ``NeedsListing``, in the item schema's module, so it documents as that service's)."""
    item_cls = item if isinstance(item, type) else type(item)
    name = "".join(part.title() for part in key.split("_")) + "Listing"
    return type(name, (Schema,), {
        "__module__": item_cls.__module__, "__doc__": f"A list of {key}, with how many there are.",
        "count": fields.Integer(required=True),
        key: fields.List(fields.Nested(item_cls(unknown=INCLUDE)), required=True)})  # items may say more
