"""The event envelope every message carries, and the registry of payload schemas.

    {"id": "…uuid…", "type": "need.submitted", "version": 1,
     "occurred_at": "2026-11-26T10:00:00+00:00", "source": "needs",
     "actor": "state:KEN", "correlation_id": "…", "causation_id": "…",
     "data": {…the payload, validated by the type's schema…}}

``id`` is the idempotency key: consumers skip an id they have processed.
``correlation_id`` ties every event of one story together (the first event's
id); ``causation_id`` names the event that directly caused this one.
"""
import uuid
from datetime import datetime, timezone

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from tacoord.safety import reject_unsafe_keys

MAX_DATA_KEYS = 200

EVENTS = "events"    # what services emit on tacoord.events
INGRESS = "ingress"  # what partners may publish on tacoord.ingress

# (channel, type) -> (version, payload schema instance). Services register the
# types they emit and accept with :func:`register` when their ``schemas``
# module is imported (a process that is not one service imports them all:
# ``services.register_schemas()``); the AsyncAPI document is generated from
# this registry.
_PAYLOADS = {}


def register(event_type, schema, version=1, channel=EVENTS):
    _PAYLOADS[(channel, event_type)] = (version, schema)
    return schema


def is_registered(event_type):
    """Whether ``event_type`` has a schema on either channel (a dict lookup, for per-message use)."""
    return (EVENTS, event_type) in _PAYLOADS or (INGRESS, event_type) in _PAYLOADS


def registered_types(channel=EVENTS):
    return {t: v for (c, t), v in _PAYLOADS.items() if c == channel}


def utcnow():
    return datetime.now(timezone.utc)


class EnvelopeSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.UUID(required=True)
    type = fields.String(required=True, validate=[
        validate.Length(min=3, max=80),
        validate.Regexp(r"^[a-z_]+(\.[a-z_]+)+$", error="must look like 'need.submitted'")])
    version = fields.Integer(required=True, validate=validate.Range(min=1, max=100))
    occurred_at = fields.AwareDateTime(required=True, default_timezone=timezone.utc)
    source = fields.String(required=True, validate=validate.Length(min=1, max=120))
    actor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    correlation_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    causation_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    data = fields.Dict(required=True)

    @validates_schema
    def data_is_safe(self, envelope, **kwargs):
        for name in ("source", "actor", "correlation_id", "causation_id"):
            reject_unsafe_keys(envelope.get(name), path=name)  # text: valid Unicode only
        reject_unsafe_keys(envelope.get("data", {}), path="data")


ENVELOPE = EnvelopeSchema()


def new_event(event_type, data, source, actor=None, cause=None, correlation_id=None, event_id=None):
    """A new envelope (a plain, JSON-ready dict). ``cause`` is the event that caused it.

    ``event_id``: a deterministic id, for an event that may be published again after a crash
    and must then be recognised as the same event (consumers skip repeated ids)."""
    event_id = event_id or str(uuid.uuid4())
    if cause is not None:
        correlation_id = correlation_id or cause.get("correlation_id") or cause["id"]
    version = _PAYLOADS.get((EVENTS, event_type), (1, None))[0]
    return {
        "id": event_id,
        "type": event_type,
        "version": version,
        "occurred_at": utcnow().isoformat(),
        "source": source,
        "actor": actor,
        "correlation_id": correlation_id or event_id,
        "causation_id": cause["id"] if cause is not None else None,
        "data": data,
    }


def partner_source(user_id):
    """The ``source`` of an ingress message the broker says ``user_id`` sent."""
    return f"partner:{user_id}"


def partner_actor(user_id, claimed):
    """Who did it, for an ingress message the broker says ``user_id`` sent: the envelope's own
    ``actor`` when it names the partner itself or someone within it (``partner:acme/officer-12``
    for the user ``acme``), else the partner. A partner cannot claim to be someone else, and what
    it says about who in its system acted is kept for the audit log."""
    source = partner_source(user_id)
    if isinstance(claimed, str) and claimed.startswith(source + "/") and len(claimed) > len(source) + 1:
        return claimed
    return source


def load(body, channel=EVENTS):
    """Validate an envelope and, when its type is registered, its payload.

    Returns a JSON-ready dict (ids and dates as strings). Raises
    ``ValidationError`` whose ``messages`` map field -> message.
    """
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["message body must be a JSON object"]})
    envelope = ENVELOPE.load(body)
    registered = _PAYLOADS.get((channel, envelope["type"]))
    if registered is None and channel == INGRESS:
        raise ValidationError({"type": [f"unknown message type {envelope['type']!r}; accepted: "
                                        f"{', '.join(sorted(registered_types(INGRESS)))}"]})
    data = envelope["data"]
    if registered is not None:
        try:
            data = registered[1].dump(registered[1].load(data))
        except ValidationError as exc:
            raise ValidationError({"data": exc.messages}) from exc
    return {**ENVELOPE.dump(envelope), "data": data}


def describe_errors(messages, prefix=""):
    """Flatten marshmallow's nested messages into 'field: message' lines."""
    lines = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = key if key != "_schema" else ""
            path = ".".join(p for p in (prefix, str(name)) if p)
            lines.extend(describe_errors(value, path))
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, (dict, list)):
                lines.extend(describe_errors(item, prefix))
            else:
                lines.append(f"{prefix or 'body'}: {item}")
    else:
        lines.append(f"{prefix or 'body'}: {messages}")
    return lines


__all__ = ["EnvelopeSchema", "new_event", "load", "register", "describe_errors",
           "ValidationError", "EXCLUDE"]
