"""The AsyncAPI 2.6.0 document of tacoord's AMQP interface, generated, never written by hand.

    tacoord asyncapi [--output FILE] [--check]

Everything comes from the code that the services run:

- the message types and their payload schemas from the registry of
  ``tacoord.envelope``, as registered in the process (the command line
  registers every service's first: ``services.register_schemas()``), the
  envelope from ``EnvelopeSchema``;
- the exchanges, their types and the routing keys from ``tacoord.topology``;
- the dead-letter headers from ``tacoord.headers``.

marshmallow fields become JSON Schema through ``tacoord.schemadoc`` (apispec's
marshmallow converter, OpenAPI 3.1 flavour, with tacoord's own fields; the
OpenAPI document uses the same).

Each message carries an example built below and validated with the real
schemas (``envelope.load``) while the document is generated, so an example
that no longer fits its schema fails the generation (and the tests).
"""
import copy
import json
import uuid
import warnings
from pathlib import Path

# Imported modules may import nameko, hence eventlet, which warns on every import.
warnings.filterwarnings("ignore", message="\\s*Eventlet is deprecated")

from tacoord import envelope, headers, topology
from tacoord.schemadoc import component_name, converter, package_version, schema_to_json

ASYNCAPI_VERSION = "2.6.0"
AMQP_BINDING_VERSION = "0.2.0"
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"
DEFAULT_VHOST = "tacoord"
DEFAULT_PORT = "5673"
EXAMPLE_TIME = "2026-11-26T10:00:00+00:00"
NAMESPACE = uuid.UUID("6f0c1e2a-3b4d-4c5e-8f70-9a1b2c3d4e5f")  # deterministic example ids


# --- examples (validated with the real schemas at generation time) ------------------------------

NEED_ID = "KEN-9-3b1f0c2a9d"
OFFER_ID = "off-3f9a1c0b7d2e4a"
EXPERT_ID = "exp-5d1e0c9a2b7f44"
REQUEST_ID = "REQ-KEN-8e10822918"
MATCH_ID = "m-2ae85ffa417fd8df3d2b"

NEED_FILED = {"state": "KEN", "article": 9, "forms": ["CAPACITY_BUILDING", "LEGAL_ADVICE"], "priority": 1,
              "description": "Public procurement reform", "checklist_round": "2026-1", "languages": ["en"],
              "external_ref": "KEN-SAC-2026-09"}
NEED_EVENT = {"need_id": NEED_ID, "state": "KEN", "regional_group": "AFRICAN", "article": 9, "chapter": 2,
              "paragraph": None, "forms": ["CAPACITY_BUILDING", "LEGAL_ADVICE"], "other_text": None,
              "priority": 1, "description": "Public procurement reform", "checklist_round": "2026-1",
              "languages": ["en"], "external_ref": "KEN-SAC-2026-09", "status": "open",
              "created_at": EXAMPLE_TIME, "updated_at": EXAMPLE_TIME}
OFFER_FILED = {"provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
               "articles": [9, 10], "forms": ["LEGAL_ADVICE"], "capacity": 3, "period_start": "2026-01-01",
               "period_end": "2027-12-31", "languages": ["en"]}
OFFER_EVENT = {"offer_id": OFFER_ID, "provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral",
               "scope_states": ["KEN"], "scope_groups": [], "articles": [9, 10], "chapters": [],
               "forms": ["LEGAL_ADVICE"], "capacity": 3, "period_start": "2026-01-01",
               "period_end": "2027-12-31", "languages": ["en"], "status": "active", "iati_identifier": None,
               "created_at": EXAMPLE_TIME, "updated_at": EXAMPLE_TIME}
EXPERT_EVENT = {"expert_id": EXPERT_ID, "nationality": "KEN", "expertise": [{"article": 36, "level": "expert"}],
                "languages": [{"code": "en", "level": "fluent"}], "regions": ["AFRICAN"], "countries": ["UGA"],
                "forms": ["ONSITE_EXPERT"],
                "availability": {"status": "available", "from": "2027-01-01", "to": "2027-12-31"},
                "vetting_status": "active", "expires_at": "2030-11-25T10:00:00+00:00", "updated_at": EXAMPLE_TIME}
WORKSHOP_FILED = {"kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN", "articles": [9, 10],
                  "expected_outcomes": "A regional gap analysis on public procurement",
                  "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
                  "support_received": [{"provider": "GB-GOV-1", "description": "2025 procurement training"}]}
REQUEST_EVENT = {"request_id": REQUEST_ID, "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN",
                 "network_id": None, "network_states": [], "states": ["KEN", "UGA"], "articles": [9, 10],
                 "expected_outcomes": "A regional gap analysis on public procurement",
                 "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
                 "support_received": [{"provider": "GB-GOV-1", "description": "2025 procurement training"}],
                 "status": "submitted", "reason": None, "outcome_notes": None, "scheduled_for": None,
                 "created_at": EXAMPLE_TIME, "updated_at": EXAMPLE_TIME}
REQUEST_STEPS = {  # type -> what the transition sets
    "workshop.requested": {"status": "submitted"},
    "workshop.under_review": {"status": "under_review"},
    "workshop.approved": {"status": "approved"},
    "workshop.scheduled": {"status": "scheduled", "scheduled_for": "2027-03-02"},
    "workshop.held": {"status": "held", "scheduled_for": "2027-03-02",
                      "outcome_notes": "Gap analysis adopted by 6 States"},
    "workshop.declined": {"status": "declined", "reason": "Topic already covered by a 2026 workshop"},
    "workshop.cancelled": {"status": "cancelled", "reason": "Requested by the State"},
    "workshop.joined": {"status": "approved", "states": ["KEN", "UGA", "TZA"]},
}
MATCH_PAIR = {"match_id": MATCH_ID, "need_id": NEED_ID, "offer_id": OFFER_ID, "provider": "GB-GOV-1", "state": "KEN",
              "regional_group": "AFRICAN", "article": 9}
MATCH_STEP = {**MATCH_PAIR, "chapter": 2, "forms": ["LEGAL_ADVICE"], "priority": 1, "level": "bilateral", "score": 0.91,
              "reason": None, "at": EXAMPLE_TIME}
MATCH_STEPS = {  # type -> the step it records (services/matching/lifecycle.py)
    "match.accepted": {"previous_status": "proposed", "status": "accepted", "by": "donor:GB-GOV-1",
                       "reason": "We can start in March"},
    "match.declined": {"previous_status": "proposed", "status": "declined", "by": "donor:GB-GOV-1",
                       "reason": "No budget left this year"},
    "match.agreed": {"previous_status": "accepted", "status": "agreed", "by": "state:KEN"},
    "match.delivery_started": {"previous_status": "agreed", "status": "in_delivery", "by": "donor:GB-GOV-1"},
    "match.delivered": {"previous_status": "in_delivery", "status": "delivered", "by": "state:KEN",
                        "reason": "Workshop held; law drafted"},
    "match.cancelled": {"previous_status": "agreed", "status": "cancelled", "by": "state:KEN",
                        "reason": "Elections postponed the reform"},
}
NOTIFICATION = {"notification_id": f"sub_5c1e9a:{MATCH_ID}", "subscription_id": "sub_5c1e9a",
                "source_event_id": "0b6f4d0e-6a41-4c4e-9d51-2b1f3c9a7e10", "source_event_type": "match.proposed",
                "channel": "webhook", "attempts": 1, "error": None}

ALERT_STEP = {"alert_id": "dup-f8760a73c399df632672", "alert": "duplication",
              "duplication_id": "dup-f8760a73c399df632672", "gap_kind": None, "state": "KEN",
              "regional_group": "AFRICAN", "article": 9, "form": "LEGAL_ADVICE",
              "providers": ["DE-BMZ-1", "GB-GOV-1"], "need_id": None, "at": "2026-11-02T09:30:00+00:00"}

EXAMPLES = {
    (envelope.INGRESS, "need.submitted"): NEED_FILED,
    (envelope.INGRESS, "need.updated"): {"need_id": NEED_ID, "status": "in_progress", "priority": 2},
    (envelope.INGRESS, "need.withdrawn"): {"need_id": NEED_ID, "reason": "Covered by the national budget"},
    (envelope.INGRESS, "offer.submitted"): OFFER_FILED,
    (envelope.INGRESS, "offer.withdrawn"): {"offer_id": OFFER_ID, "reason": "Programme closed"},
    (envelope.INGRESS, "workshop.submitted"): WORKSHOP_FILED,
    (envelope.INGRESS, "checklist_assistance.submitted"): {
        "state": "PER", "expected_outcomes": "Help to complete the self-assessment checklist for chapter II",
        "language": "es", "support_received": []},
    (envelope.EVENTS, "need.submitted"): NEED_EVENT,
    (envelope.EVENTS, "need.updated"): {**NEED_EVENT, "status": "in_progress", "priority": 2},
    (envelope.EVENTS, "need.withdrawn"): {**NEED_EVENT, "status": "withdrawn"},
    (envelope.EVENTS, "offer.published"): OFFER_EVENT,
    (envelope.EVENTS, "offer.updated"): {**OFFER_EVENT, "capacity": 5},
    (envelope.EVENTS, "offer.withdrawn"): {**OFFER_EVENT, "status": "withdrawn"},
    (envelope.EVENTS, "expert.registered"): {**EXPERT_EVENT, "vetting_status": "draft", "expires_at": None},
    (envelope.EVENTS, "expert.updated"): EXPERT_EVENT,
    (envelope.EVENTS, "expert.expired"): {**EXPERT_EVENT, "vetting_status": "expired"},
    (envelope.EVENTS, "match.proposed"): {
        "match_id": MATCH_ID, "need_id": NEED_ID, "offer_id": OFFER_ID, "provider": "GB-GOV-1", "state": "KEN",
        "regional_group": "AFRICAN", "article": 9, "chapter": 2, "forms": ["LEGAL_ADVICE"], "priority": 1,
        "level": "bilateral", "score": 1.0,
        "explanation": {"constraints_met": ["geography: KEN in scope_states", "coverage: article 9 in articles",
                                            "forms: LEGAL_ADVICE", "status: need open, offer active"],
                        "score_parts": {"priority": 1.0, "language": 1.0, "level": 1.0, "capacity": 1.0}}},
    (envelope.EVENTS, "match.retracted"): {"match_id": MATCH_ID, "need_id": NEED_ID, "offer_id": OFFER_ID,
                                           "reason": "need withdrawn"},
    **{(envelope.EVENTS, kind): {**MATCH_STEP, **step} for kind, step in MATCH_STEPS.items()},
    (envelope.EVENTS, "match.withdrawn"): {**MATCH_PAIR, "previous_status": "agreed", "reason": "need withdrawn"},
    (envelope.EVENTS, "match.rescored"): {**MATCH_PAIR, "status": "proposed", "score": 0.79, "previous_score": 0.91,
                                          "priority": 2, "previous_priority": 1, "forms": ["LEGAL_ADVICE"]},
    (envelope.EVENTS, "duplication.detected"): {
        "duplication_id": "dup-f8760a73c399df632672", "state": "KEN", "regional_group": "AFRICAN", "article": 9,
        "form": "LEGAL_ADVICE", "providers": ["DE-BMZ-1", "GB-GOV-1"], "offer_ids": ["off-7a1b2c3d4e5f60", OFFER_ID],
        "offers": [{"offer_id": "off-7a1b2c3d4e5f60", "provider": "DE-BMZ-1", "provider_name": "BMZ",
                    "level": "regional", "forms": ["LEGAL_ADVICE"], "period_start": "2026-06-01",
                    "period_end": "2027-06-30"},
                   {"offer_id": OFFER_ID, "provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral",
                    "forms": ["LEGAL_ADVICE", "ONSITE_EXPERT"], "period_start": "2026-01-01",
                    "period_end": "2027-12-31"}],
        "period": {"start": "2026-06-01", "end": "2027-06-30"}},
    (envelope.EVENTS, "alert.acknowledged"): {**ALERT_STEP, "status": "acknowledged", "actor": "donor:GB-GOV-1",
                                              "note": "Talking to BMZ", "reason": "Talking to BMZ"},
    (envelope.EVENTS, "alert.resolved"): {**ALERT_STEP, "status": "resolved", "actor": "operator:*",
                                          "note": "GB: legislation, DE: training", "resolution": "work_split",
                                          "reason": "the providers agreed to split the work: GB: legislation, "
                                                    "DE: training", "automatic": False},
    (envelope.EVENTS, "gap.detected"): {
        "gap_id": "gap-0c1d5e7f9a", "kind": "unmatched_priority_need", "need_id": NEED_ID, "state": "KEN",
        "article": 9, "regional_group": "AFRICAN", "since": "2026-11-01T00:00:00+00:00"},
    (envelope.EVENTS, "workshop.participants_proposed"): {
        "request_id": REQUEST_ID, "regional_group": "AFRICAN", "states_completed": ["KEN"],
        "states_upcoming": ["UGA", "TZA"], "donors": ["GB-GOV-1"]},
    (envelope.EVENTS, "notification.delivered"): NOTIFICATION,
    (envelope.EVENTS, "notification.failed"): {**NOTIFICATION, "attempts": 5,
                                               "error": "HTTP 500 from https://donor.example/tacoord-hook"},
    **{(envelope.EVENTS, kind): {**REQUEST_EVENT, **step} for kind, step in REQUEST_STEPS.items()},
}


# The parties list, the networks directory and checklist assistance offered (issue 17).
NETWORK_EVENT = {"network_id": "ARINSA", "name": "Asset Recovery Inter-Agency Network of Southern Africa",
                 "kind": "regional_network", "status": "active", "states": ["BWA", "NAM", "ZAF"], "donors": [],
                 "focus_articles": [51, 54], "website": "https://www.arinsa.org",
                 "contacts": [{"name": "Secretariat", "email": "secretariat@example.org", "role": ""}],
                 "description": "", "retired_reason": None, "created_at": EXAMPLE_TIME, "updated_at": EXAMPLE_TIME}
OFFERED = {**REQUEST_EVENT, "request_id": "REQ-TCD-5b0e1d7c3a", "kind": "checklist_assistance", "state": "TCD",
           "regional_group": "AFRICAN", "states": ["TCD"], "articles": [], "preferred_dates": [], "language": "fr",
           "support_received": [], "expected_outcomes": "The self-assessment checklist completed",
           "offered_by": "GB-GOV-1", "donors": ["GB-GOV-1"], "checklist_round": "2027-1"}
EXAMPLES.update({
    (envelope.EVENTS, "party.corrected"): {
        "party_id": "NIU", "name": "Niue", "kind": "state", "status": "party", "instrument": "accession",
        "deposited": "2017-03-03", "party_since": "2017-04-02", "verification": "operator_corrected",
        "source": "depositary notification", "note": None, "corrected_by": "operator:ops",
        "corrected_at": EXAMPLE_TIME,
        "previous": {"status": "unknown", "instrument": None, "deposited": None, "verification": "unknown"}},
    (envelope.EVENTS, "network.registered"): NETWORK_EVENT,
    (envelope.EVENTS, "network.updated"): {**NETWORK_EVENT, "website": "https://arinsa.example.org"},
    (envelope.EVENTS, "network.retired"): {**NETWORK_EVENT, "status": "retired", "retired_reason": "Merged"},
    (envelope.EVENTS, "workshop.offered"): {**OFFERED, "status": "offered"},
    (envelope.EVENTS, "workshop.accepted"): {**OFFERED, "status": "submitted"},
})


def example_envelope(channel, event_type, version):
    """A complete, valid envelope for one message type (deterministic ids)."""
    data = EXAMPLES.get((channel, event_type))
    if data is None:
        raise LookupError(f"no example for {channel} {event_type}: add one to tacoord.asyncapi.EXAMPLES")
    event_id = str(uuid.uuid5(NAMESPACE, f"{channel}:{event_type}"))
    ingress = channel == envelope.INGRESS
    owner = event_type.split(".")[0]
    source = "partner:acme" if ingress else {"match": "matching", "gap": "matching", "duplication": "matching",
                                             "alert": "matching",
                                             "notification": "notify", "offer": "supply", "expert": "supply",
                                             "workshop": "requests"}.get(owner, "needs")
    if event_type == "workshop.participants_proposed":
        source = "matching"
    return {"id": event_id, "type": event_type, "version": version, "occurred_at": EXAMPLE_TIME,
            "source": source, "actor": "partner:acme" if ingress else "state:KEN",
            "correlation_id": event_id, "causation_id": None, "data": copy.deepcopy(data)}


# --- the document -----------------------------------------------------------------------------

def _exchange_binding(name, vhost=DEFAULT_VHOST):
    exchange = topology.EXCHANGES[name]
    return {"amqp": {"is": "routingKey",
                     "exchange": {"name": name, "type": exchange.type, "durable": bool(exchange.durable),
                                  "autoDelete": bool(exchange.auto_delete), "vhost": vhost},
                     "bindingVersion": AMQP_BINDING_VERSION}}


def topic_matches(pattern, key):
    """RabbitMQ topic matching: ``*`` is exactly one word, ``#`` zero or more words."""
    def match(words, parts):
        if not words:
            return not parts
        if words[0] == "#":
            return match(words[1:], parts) or (bool(parts) and match(words, parts[1:]))
        return bool(parts) and words[0] in ("*", parts[0]) and match(words[1:], parts[1:])
    return match(pattern.split("."), key.split("."))


def consumers_of(exchange, key):
    return sorted(spec.name for spec in topology.CONSUMER_QUEUES + (topology.PARKED,)
                  if spec.exchange == exchange and any(topic_matches(p, key) for p in spec.routing_keys))


DEAD_LETTER_HEADERS = {
    headers.REASON: "why it was parked, field by field for invalid messages "
                    "('data.article: UNCAC article must be between 5 and 62')",
    headers.DEAD_LETTER_ID: "id of this dead letter (for `tacoord deadletters show|replay|discard ID`)",
    headers.QUEUE: "the consumer queue that parked it",
    headers.ROUTING_KEY: "the routing key it was published with",
    headers.EXCHANGE: "the exchange it was published to",
    headers.FAILED_AT: "when it was parked (ISO 8601, UTC)",
    headers.KIND: "invalid (envelope or payload failed validation, or no user_id), rejected (the service "
                  "refused it: unknown id, illegal transition…), exhausted (failed "
                  "TACOORD_MAX_ATTEMPTS times), undeliverable (notify: a notification that failed on every try)",
    headers.PARTNER: "the partner's broker user, for ingress messages",
    headers.ATTEMPT: "how many times it was tried (present once it went through the retry queue)",
}


def _dead_letter_headers_schema():
    props = {name: {"type": "string", "description": text} for name, text in DEAD_LETTER_HEADERS.items()}
    props[headers.KIND]["enum"] = list(headers.DEAD_LETTER_KINDS)
    props[headers.ATTEMPT] = {"type": "integer", "minimum": 1, "description": DEAD_LETTER_HEADERS[headers.ATTEMPT]}
    return {"type": "object", "properties": props,
            "required": [headers.REASON, headers.DEAD_LETTER_ID, headers.QUEUE, headers.FAILED_AT, headers.KIND]}


def _info_description():
    return (
        "tacoord's services exchange events over RabbitMQ (AMQP 0-9-1). Every message body is a JSON "
        "envelope (components.schemas.Envelope) whose `data` is validated by the schema registered for its "
        "`type`; the routing key is the type.\n\n"
        f"**Partners** publish commands to the topic exchange `{topology.INGRESS}` (channels "
        f"`{topology.INGRESS}/<type>`), persistent (delivery mode 2), with publisher confirms, and with the "
        "AMQP `user_id` property set to their own broker user. RabbitMQ refuses a publish whose `user_id` "
        "differs from the connection's user (broker-validated), and the consuming service sets the event's "
        "`source` to `partner:<user_id>` whatever the body says. A partner user may publish only to "
        f"`{topology.INGRESS}`, only with intake routing keys, and read only its own notification queue.\n\n"
        f"**Subscribers** (the services, and operators' tools) bind queues to the topic exchange "
        f"`{topology.EVENTS}` (channels `{topology.EVENTS}/<type>`). External parties receive events through "
        "notify subscriptions (webhook, e-mail or their own AMQP queue `notify.sub.<subscription_id>`), "
        "not by reading this exchange.\n\n"
        "**Bad messages are never dropped.** A message that fails validation (envelope, payload, missing "
        "`user_id`) or that the service rejects is parked at once: published to the fanout exchange "
        f"`{topology.DEAD}` with `x-tacoord-*` headers giving the reason, kept in the queue "
        f"`{topology.DEAD_LETTERS_QUEUE}` (for `tacoord deadletters list|show|replay`) and recorded by the "
        "audit service. Any other failure is retried through `<queue>.retry` with a growing per-message TTL "
        "and parked after TACOORD_MAX_ATTEMPTS tries (kind `exhausted`). A message no queue is bound for goes "
        f"to the alternate exchange `{topology.UNROUTED}` and is kept in the queue of the same name. Consumers "
        "are idempotent on the envelope `id`: publishing the same envelope twice has one effect.")


def build():
    """The AsyncAPI document (a JSON-ready dict) of the message types registered in this process."""
    if not envelope.registered_types(envelope.INGRESS) or not envelope.registered_types(envelope.EVENTS):
        raise LookupError("no message types are registered in this process: register the services' schemas "
                          "first (services.register_schemas())")
    conv = converter()
    schemas = {"Envelope": schema_to_json(envelope.ENVELOPE, conv)}
    messages, channels = {}, {}
    for channel, exchange in ((envelope.INGRESS, topology.INGRESS), (envelope.EVENTS, topology.EVENTS)):
        ingress = channel == envelope.INGRESS
        for event_type, (version, schema) in sorted(envelope.registered_types(channel).items()):
            name = component_name(schema)
            schemas.setdefault(name, schema_to_json(schema, conv))
            example = example_envelope(channel, event_type, version)
            envelope.load(copy.deepcopy(example), channel)  # the real schemas must accept it
            message_name = f"{channel}.{event_type}"
            messages[message_name] = _message(channel, event_type, version, name, example)
            readers = consumers_of(exchange, event_type)
            channels[f"{exchange}/{event_type}"] = _channel(channel, exchange, event_type, message_name, readers,
                                                            ingress)
    channels[f"{topology.DEAD}"] = {
        "description": f"Parked messages (fanout; kept in `{topology.DEAD_LETTERS_QUEUE}`, logged by the audit "
                       "service through `audit.dead-letters`). The body is the original message, unchanged "
                       "(it may not be valid JSON); the headers say why.",
        "x-tacoord-exchange": topology.DEAD,
        "subscribe": {"operationId": "readDeadLetters", "summary": "A message tacoord could not accept",
                      "message": {"$ref": "#/components/messages/deadLetter"}},
        "bindings": _exchange_binding(topology.DEAD),
    }
    messages["deadLetter"] = {
        "name": "deadLetter", "title": "Dead letter", "contentType": "application/json",
        "summary": "The original body, with the reason and origin in x-tacoord-* headers.",
        "headers": _dead_letter_headers_schema(),
        "payload": {"description": "the original message body, unchanged"},
        "examples": [{"name": "invalid-need", "headers": {
            headers.REASON: "data.article: UNCAC article must be between 5 and 62 (chapters II–VI)",
            headers.DEAD_LETTER_ID: str(uuid.uuid5(NAMESPACE, "dead-letter")),
            headers.QUEUE: topology.NEEDS_INGRESS.name, headers.ROUTING_KEY: "need.submitted",
            headers.EXCHANGE: topology.INGRESS, headers.FAILED_AT: EXAMPLE_TIME,
            headers.KIND: "invalid", headers.PARTNER: "acme"},
            "payload": {**example_envelope(envelope.INGRESS, "need.submitted", 1),
                        "data": {**NEED_FILED, "article": 99}}}],
        "bindings": {"amqp": {"bindingVersion": AMQP_BINDING_VERSION}},
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:tacoord:amqp",
        "info": {"title": "tacoord AMQP interface", "version": package_version(), "description": _info_description(),
                 "license": {"name": "see the tacoord repository"}},
        "servers": {"local": {
            "url": "{host}:{port}", "protocol": "amqp", "protocolVersion": "0.9.1",
            "description": f"A tacoord RabbitMQ node; the virtual host is `{DEFAULT_VHOST}` unless the operator "
                           "says otherwise (AMQP URI amqp://USER:PASSWORD@HOST:PORT/VHOST).",
            "variables": {"host": {"default": "127.0.0.1"}, "port": {"default": DEFAULT_PORT}},
            "security": [{"brokerUser": []}]}},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {"brokerUser": {
                "type": "userPassword",
                "description": "A RabbitMQ user per partner, created by the operator "
                               "(`python -m infra.partners add NAME SECRET`). Set the AMQP `user_id` property "
                               "of every message to this user name."}},
        },
    }


def _payload(channel, event_type, version, schema_name):
    base = copy.deepcopy(_envelope_schema())
    base["description"] = f"The envelope of a {event_type} message; `data` is {schema_name}."
    props = base["properties"]
    props["type"] = {"type": "string", "const": event_type, "description": "the message type (= routing key)"}
    props["version"] = {"type": "integer", "const": version}
    props["data"] = {"$ref": f"#/components/schemas/{schema_name}"}
    if channel == envelope.INGRESS:
        props["source"] = {**props["source"], "description": "replaced by `partner:<user_id>` on receipt"}
    return base


_ENVELOPE_JSON = None


def _envelope_schema():
    global _ENVELOPE_JSON
    if _ENVELOPE_JSON is None:
        _ENVELOPE_JSON = schema_to_json(envelope.ENVELOPE)
    return _ENVELOPE_JSON


def _message(channel, event_type, version, schema_name, example):
    ingress = channel == envelope.INGRESS
    return {
        "name": event_type,
        "title": event_type,
        "summary": ("Command from a partner system" if ingress else "Event emitted by a tacoord service")
                   + f"; data: {schema_name}.",
        "contentType": "application/json",
        "correlationId": {"location": "$message.payload#/correlation_id",
                          "description": "the id of the first event of the story"},
        "payload": _payload(channel, event_type, version, schema_name),
        "examples": [{"name": event_type.replace(".", "-"), "payload": example}],
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def _channel(channel, exchange, event_type, message_name, readers, ingress):
    item = {
        "description": (f"Routing key `{event_type}` on the topic exchange `{exchange}`; consumed from "
                        + (", ".join(f"`{q}`" for q in readers) or "no tacoord queue") + "."),
        "x-tacoord-exchange": exchange,
        "x-tacoord-routing-key": event_type,
        "bindings": _exchange_binding(exchange),
    }
    operation = {"message": {"$ref": f"#/components/messages/{message_name}"}}
    if ingress:
        # AsyncAPI 2.x: "publish" = others send to tacoord.
        item["publish"] = {
            "operationId": "send_" + event_type.replace(".", "_"),
            "summary": f"A partner sends {event_type}",
            "description": "Publish persistent, mandatory, with publisher confirms and `user_id` = your "
                           "broker user (RabbitMQ refuses any other value; it becomes the event's `source`). "
                           "Invalid messages are parked in the dead-letter queue (channel tacoord.dead).",
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "userId": "<your broker user>",
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            **operation}
    else:
        item["subscribe"] = {
            "operationId": "on_" + event_type.replace(".", "_"),
            "summary": f"tacoord emits {event_type}",
            "bindings": {"amqp": {"deliveryMode": 2, "ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            **operation}
    return item


def render(doc=None):
    return json.dumps(doc if doc is not None else build(), indent=2, ensure_ascii=False) + "\n"
