"""The AsyncAPI document: generated from the code, valid AsyncAPI 2.6.0, with examples that really validate."""
import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from infra.partners import INGRESS_KEYS
from tacoord import asyncapi, envelope, topology

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asyncapi"
INGRESS_QUEUES = (topology.NEEDS_INGRESS, topology.SUPPLY_INGRESS, topology.REQUESTS_INGRESS)


@pytest.fixture(scope="module")
def doc():
    return asyncapi.build()


def _spec(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _validator(schema):
    resource = DRAFT7.create_resource(schema)
    return Draft7Validator(schema, registry=Registry().with_resource(schema["$id"], resource))


def _messages(doc, channel=None):
    for name, message in doc["components"]["messages"].items():
        if channel is None or name.startswith(f"{channel}."):
            yield name, message


def test_the_committed_document_is_what_the_schemas_generate_now(doc):
    committed = asyncapi.DOC_PATH.read_text(encoding="utf-8")
    assert committed == asyncapi.render(doc), "docs/asyncapi.json is stale: run `tacoord asyncapi`"


def test_the_document_is_valid_asyncapi_2_6_0(doc):
    errors = sorted(_validator(_spec("2.6.0.json")).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:10])


def test_the_validator_used_above_does_catch_a_broken_document(doc):
    broken = copy.deepcopy(doc)
    broken["channels"]["tacoord.ingress/need.submitted"]["publish"]["bogus"] = 1
    del broken["info"]["version"]
    assert len(list(_validator(_spec("2.6.0.json")).iter_errors(broken))) == 2


def test_every_amqp_binding_is_valid_against_the_amqp_binding_schemas(doc):
    validators = {kind: _validator(_spec(f"bindings/amqp/0.2.0/{kind}.json"))
                  for kind in ("channel", "operation", "message")}
    checked = 0
    for name, item in doc["channels"].items():
        validators["channel"].validate(item["bindings"]["amqp"])
        for verb in ("publish", "subscribe"):
            if "bindings" in item.get(verb, {}):
                validators["operation"].validate(item[verb]["bindings"]["amqp"])
                checked += 1
    for name, message in _messages(doc):
        validators["message"].validate(message["bindings"]["amqp"])
    assert checked == len(doc["channels"]) - 1  # every channel but the dead letters has operation bindings


def test_every_registered_type_has_a_message_and_a_channel(doc):
    for channel, exchange in ((envelope.INGRESS, topology.INGRESS), (envelope.EVENTS, topology.EVENTS)):
        for event_type in envelope.registered_types(channel):
            assert f"{channel}.{event_type}" in doc["components"]["messages"]
            assert f"{exchange}/{event_type}" in doc["channels"]
    assert "services.audit" not in json.dumps(doc)  # audit registers nothing; nothing invented


def test_every_example_is_accepted_by_the_real_marshmallow_schemas(doc):
    count = 0
    for name, message in _messages(doc):
        channel = name.split(".")[0]
        if channel not in (envelope.INGRESS, envelope.EVENTS):
            continue
        for example in message["examples"]:
            loaded = envelope.load(copy.deepcopy(example["payload"]), channel)
            assert loaded["type"] == message["name"]
            count += 1
    assert count == len(envelope.registered_types(envelope.INGRESS)) + len(envelope.registered_types(envelope.EVENTS))


def test_every_example_also_fits_the_generated_json_schema(doc):
    """The converter's output agrees with marshmallow on the examples (and the dead letter's headers)."""
    root = {"$id": "urn:tacoord:asyncapi", **doc}
    registry = Registry().with_resource(root["$id"], DRAFT7.create_resource(root))
    for name, message in _messages(doc):
        for example in message["examples"]:
            schema = {"$id": "urn:tacoord:asyncapi", **doc, **message["payload"]}
            Draft7Validator(schema, registry=registry).validate(example["payload"])
            if "headers" in example:
                Draft7Validator(message["headers"]).validate(example["headers"])


def test_the_generated_json_schema_refuses_what_marshmallow_refuses(doc):
    schema = doc["components"]["schemas"]["needs.NeedSchema"]
    validator = Draft7Validator(schema)
    good = asyncapi.EXAMPLES[(envelope.INGRESS, "need.submitted")]
    assert validator.is_valid(good)
    for bad in ({**good, "article": 99}, {**good, "forms": ["TEA"]}, {**good, "surprise": 1},
                {k: v for k, v in good.items() if k != "priority"}, {**good, "paragraph": None, "forms": []}):
        assert not validator.is_valid(bad)
        with pytest.raises(envelope.ValidationError):
            envelope.load({**asyncapi.example_envelope(envelope.INGRESS, "need.submitted", 1), "data": bad},
                          envelope.INGRESS)


def test_every_ingress_routing_key_reaches_an_ingress_queue_and_partners_may_publish_it(doc):
    keys = [item["x-tacoord-routing-key"] for item in doc["channels"].values()
            if item.get("x-tacoord-exchange") == topology.INGRESS]
    assert sorted(keys) == sorted(envelope.registered_types(envelope.INGRESS))
    import re
    for key in keys:
        queues = [spec.name for spec in INGRESS_QUEUES
                  if any(asyncapi.topic_matches(pattern, key) for pattern in spec.routing_keys)]
        assert len(queues) == 1, f"{key} reaches {queues}"
        assert re.match(INGRESS_KEYS, key), f"partners have no topic permission for {key}"
        assert "publish" in doc["channels"][f"{topology.INGRESS}/{key}"]


@pytest.mark.parametrize("pattern,key,expected", [
    ("need.*", "need.submitted", True), ("need.*", "need", False), ("need.*", "need.a.b", False),
    ("#", "need.submitted", True), ("workshop.#", "workshop", True), ("*.submitted", "offer.submitted", True),
    ("a.#.z", "a.z", True), ("a.#.z", "a.b.c.z", True), ("a.#.z", "a.b.c", False),
])
def test_topic_matching_follows_rabbitmq(pattern, key, expected):
    assert asyncapi.topic_matches(pattern, key) is expected


def test_the_contract_says_how_partners_are_identified_and_what_happens_to_bad_messages(doc):
    text = doc["info"]["description"]
    assert "user_id" in text and "partner:<user_id>" in text and topology.DEAD_LETTERS_QUEUE in text
    headers = doc["components"]["messages"]["deadLetter"]["headers"]["properties"]
    assert {"x-tacoord-reason", "x-tacoord-kind", "x-tacoord-dead-letter-id", "x-tacoord-user-id"} <= set(headers)
    publish = doc["channels"]["tacoord.ingress/need.submitted"]["publish"]["bindings"]["amqp"]
    assert publish["deliveryMode"] == 2 and publish["userId"]
