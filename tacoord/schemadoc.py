"""marshmallow schemas as JSON Schema, for the generated documents (``tacoord.asyncapi``, ``tacoord.openapi``).

Fields become JSON Schema through apispec's marshmallow converter (the one
its ``MarshmallowPlugin`` uses; maintained by the marshmallow team; OpenAPI
3.1 flavour, i.e. plain JSON Schema: ``type: [..., "null"]`` for
``allow_none``); tacoord's own fields (``tacoord.fields``: State codes,
languages, regional groups, IATI organisation ids) give their JSON Schema
themselves (:func:`tacoord_fields`, an attribute function for any apispec
converter). Cross-field rules (``@validates_schema``) cannot be expressed
there: the schema's description names them (:func:`schema_description`).
"""
import inspect

from apispec.ext.marshmallow import OpenAPIConverter

from tacoord.fields import TacoordField


def _doc_line(obj):
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def tacoord_fields(self, field, **kwargs):
    """Attributes for fields whose checks live in ``_deserialize`` (invisible to apispec)."""
    extra = {}
    if isinstance(field, TacoordField):
        extra = field.json_schema()
    elif not type(field).__module__.startswith("marshmallow"):
        line = _doc_line(type(field))
        if line:
            extra = {"description": line}
    if field.allow_none and "enum" in extra and None not in extra["enum"]:
        extra["enum"] = extra["enum"] + [None]
    return extra


def converter():
    conv = OpenAPIConverter(openapi_version="3.1.0", schema_name_resolver=lambda schema: None, spec=None)
    conv.add_attribute_function(tacoord_fields)
    return conv


def schema_to_json(schema, conv=None):
    """A marshmallow schema (instance) as a JSON Schema object (nested schemas inlined)."""
    result = (conv or converter()).schema2jsonschema(schema)
    description = schema_description(schema)
    if description:
        result = {"description": description, **result}
    return result


def schema_description(schema):
    """The schema's docstring line, and the names of its cross-field rules."""
    description = _doc_line(type(schema))
    rules = _schema_validators(schema)
    if rules:
        description = (description + " " if description else "") + (
            "Also checked across fields by the service: " + ", ".join(rules) + " (see the schema's source).")
    return description


def _schema_validators(schema):
    """Names of the schema's ``@validates_schema`` methods (its cross-field rules)."""
    hooks = getattr(type(schema), "_hooks", {}) or {}
    return sorted({entry[0] if isinstance(entry, tuple) else entry
                   for key, entries in hooks.items() if "validates_schema" in str(key) for entry in entries})


def component_name(schema):
    """``needs.NeedSchema`` for ``services.needs.schemas.NeedSchema``; ``Envelope`` for the envelope."""
    cls = schema if isinstance(schema, type) else type(schema)
    module = cls.__module__.split(".")
    owner = module[1] if module[0] == "services" and len(module) > 2 else module[-1]
    return f"{owner}.{cls.__name__}"


def package_version():
    """tacoord's version, for the documents' ``info.version``."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("tacoord")
    except PackageNotFoundError:  # a checkout that is not installed
        return "0.1.0"
