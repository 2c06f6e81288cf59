"""Fuzzing every registered payload schema: a load succeeds or raises a readable ValidationError.

Never any other exception (a TypeError, OverflowError, RecursionError … would be a
500 over HTTP, or a retry loop instead of a dead letter over AMQP). The schemas
are those registered in ``tacoord.envelope`` by every ``services/*/schemas.py``.
"""
import copy
import importlib
import pkgutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

import services
from tacoord import envelope
from tacoord.safety import reject_unsafe_keys

for module in pkgutil.iter_modules(services.__path__):
    try:
        importlib.import_module(f"services.{module.name}.schemas")
    except ModuleNotFoundError:
        pass  # a service without payload schemas (audit)

SCHEMAS = sorted((channel, event_type) for channel in (envelope.EVENTS, envelope.INGRESS)
                 for event_type in envelope.registered_types(channel))
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

NASTY_STRINGS = st.sampled_from(["", " ", "$where", "a.b", "\x00", "\ud800", "9" * 400, "x" * 20_000,
                                 "2026-02-30", "1e309", "NaN", "-0", "KEN", "<script>", "null"])
KEYS = st.text(max_size=8) | st.sampled_from(["$set", "a.b", "_id", "__class__", "\x00", ""])
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 300, max_value=10 ** 320)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40) | NASTY_STRINGS)
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                       max_leaves=24)

# Valid examples (from the services' tests), mutated one field at a time.
VALID = {
    (envelope.INGRESS, "need.submitted"): {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
                                           "description": "Procurement reform", "languages": ["en"]},
    (envelope.INGRESS, "offer.submitted"): {
        "provider": "GB-GOV-1", "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
        "articles": [9, 10], "forms": ["LEGAL_ADVICE"], "capacity": 3, "period_start": "2026-01-01",
        "period_end": "2027-12-31", "languages": ["en"]},
    (envelope.INGRESS, "workshop.submitted"): {
        "kind": "regional_workshop", "state": "KEN", "articles": [9, 10],
        "expected_outcomes": "A regional gap analysis on public procurement",
        "preferred_dates": [{"from": "2027-03-01", "to": "2027-03-05"}], "language": "en",
        "support_received": [{"provider": "GB-GOV-1", "description": "2025 procurement training"}]},
}


def schema_of(key):
    return envelope.registered_types(key[0])[key[1]][1]


def field_names(schema):
    return [field.data_key or name for name, field in schema.load_fields.items()] or ["x"]


def assert_loads_or_explains(schema, payload):
    try:
        schema.load(payload)
    except ValidationError as exc:
        lines = envelope.describe_errors(exc.messages)
        assert lines and all(isinstance(line, str) and ": " in line and len(line) < 25_000 for line in lines), lines


@pytest.mark.parametrize("key", SCHEMAS, ids=lambda k: f"{k[0]}:{k[1]}")
def test_any_json_payload_loads_or_is_a_readable_validation_error(key):
    schema = schema_of(key)

    @FUZZ
    @given(payload=JSONISH)
    def anything(payload):
        assert_loads_or_explains(schema, payload)

    @FUZZ
    @given(data=st.data())
    def known_fields_with_wrong_values(data):
        names = field_names(schema)
        payload = data.draw(st.dictionaries(st.sampled_from(names), JSONISH, max_size=len(names)))
        assert_loads_or_explains(schema, payload)

    anything()
    known_fields_with_wrong_values()


@pytest.mark.parametrize("key", sorted(VALID), ids=lambda k: k[1])
def test_mutated_valid_payloads_load_or_are_readable_validation_errors(key):
    schema = schema_of(key)
    schema.load(copy.deepcopy(VALID[key]))  # the example itself is valid

    @FUZZ
    @given(field=st.sampled_from(field_names(schema) + ["unknown_field", "$where"]), value=JSONISH,
           drop=st.booleans())
    def mutated(field, value, drop):
        payload = copy.deepcopy(VALID[key])
        if drop:
            payload.pop(field, None)
        else:
            payload[field] = value
        assert_loads_or_explains(schema, payload)

    mutated()


@FUZZ
@given(body=JSONISH, data=JSONISH, event_type=st.sampled_from([k[1] for k in SCHEMAS] + ["x", "need.unknown"]))
def test_any_envelope_on_either_channel_loads_or_is_a_readable_validation_error(body, data, event_type):
    candidates = [body, envelope.new_event(event_type, data, "fuzz")]
    for candidate in candidates:
        for channel in (envelope.EVENTS, envelope.INGRESS):
            try:
                envelope.load(candidate, channel)
            except ValidationError as exc:
                assert all(": " in line for line in envelope.describe_errors(exc.messages))


def test_deep_nesting_is_refused_without_recursion_errors():
    deep = current = {}
    for _ in range(5000):
        current["a"] = {}
        current = current["a"]
    with pytest.raises(ValidationError, match="nested too deeply"):
        reject_unsafe_keys(deep)
    with pytest.raises(ValidationError):
        envelope.load(envelope.new_event("need.submitted", deep, "fuzz"), envelope.INGRESS)


def test_untrusted_json_is_parsed_without_nan_and_without_recursion_errors():
    from tacoord.safety import json_loads
    for text in ("NaN", '{"a": Infinity}', "[-Infinity]", "[" * 100_000, '{"a":' * 50_000, "\xff"):
        with pytest.raises(ValueError):
            json_loads(text)
    assert json_loads('{"a": [1.5, "\\u00e9"]}') == {"a": [1.5, "é"]}


def test_text_that_is_not_valid_unicode_is_a_validation_error():
    for payload in ({"description": "\ud800"}, {"\udfff": 1}, {"a": ["ok", "x\ud800y"]}):
        with pytest.raises(ValidationError, match="valid Unicode"):
            reject_unsafe_keys(payload)
    with pytest.raises(ValidationError, match="valid Unicode"):
        envelope.load(envelope.new_event("need.submitted", {"description": "\ud800"}, "fuzz"), envelope.INGRESS)


@pytest.mark.parametrize("field", ["source", "actor", "correlation_id", "causation_id"])
def test_envelope_metadata_that_is_not_valid_unicode_is_a_validation_error_naming_the_field(field):
    body = {**envelope.new_event("need.submitted", {}, "partner:x"), field: "state:\ud800"}
    with pytest.raises(ValidationError) as raised:
        envelope.load(body, envelope.EVENTS)
    assert field in raised.value.messages
    assert "valid Unicode" in " ".join(envelope.describe_errors(raised.value.messages))
