"""Input hardening shared by every schema: no operator keys reach MongoDB, no control characters in text.

:func:`json_loads` is the one JSON parser for request bodies and imports: it
refuses ``NaN``/``Infinity`` (not JSON, and they would come back out as
invalid JSON) and turns nesting too deep for the parser (a ``RecursionError``,
i.e. a 500) into a ``ValueError`` like any other malformed JSON.

:func:`check_text` refuses control characters in a JSON body by field kind
(see ``tacoord.fields``: free text may hold tabs and line breaks, other text
is one line); ``tacoord.web.read_json`` calls it for every JSON route.

:func:`is_digits` is the check before ``int()`` of a number given as text (a query
string, a CSV cell, an IATI code).
"""
import json
import re

from marshmallow import Schema, ValidationError, fields

from tacoord.fields import Text

MAX_DEPTH = 12


def is_digits(text):
    """``text`` is ASCII digits only: ``str.isdigit`` also takes '²' (which ``int`` refuses: a 500)
    and other scripts' digits."""
    return text.isascii() and text.isdigit()


def _no_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def json_loads(raw):
    """``json.loads`` for untrusted input; every failure is a ``ValueError``."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply")


def _valid_unicode(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): MongoDB and the broker cannot store it
        return False


def reject_unsafe_keys(value, path="body", depth=0):
    """Refuse ``$``-prefixed or dotted keys anywhere, absurd nesting and text that is not valid Unicode."""
    if depth > MAX_DEPTH:
        raise ValidationError({path: ["nested too deeply"]})
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError({path: ["keys must be strings"]})
            if not _valid_unicode(key):
                raise ValidationError({path: ["keys must be valid Unicode (no lone surrogates)"]})
            if key.startswith("$") or "." in key or "\x00" in key:
                raise ValidationError({f"{path}.{key}": ["keys may not start with '$' or contain '.'"]})
            reject_unsafe_keys(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_unsafe_keys(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str) and not _valid_unicode(value):
        raise ValidationError({path: ["text must be valid Unicode (no lone surrogates)"]})


# --- control characters in text ----------------------------------------------------------------

LINE_BREAKS = "\t\n\r\u2028\u2029"   # allowed in free text (tacoord.fields.Text) only
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
LINE_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _character_error(text, pattern):
    found = pattern.search(text)
    if found is None:
        return None
    char = found.group()
    if char in LINE_BREAKS:
        return f"one line of text: no tab or line break (U+{ord(char):04X} at position {found.start()})"
    return f"control character U+{ord(char):04X} at position {found.start()} is not allowed in text"


def _field_kind(field):
    """``CONTROL`` for free text (may hold tabs and line breaks), ``LINE_CONTROL`` for any other string field,
    None for fields that are not text; container fields answer for their items."""
    if isinstance(field, Text):
        return CONTROL
    if isinstance(field, fields.String):
        return LINE_CONTROL
    return None


def _text_errors(value, field=None, schema=None):
    """marshmallow-shaped errors ({name: [...]} / {name: {index: ...}}) for text in ``value``.

    Guided by the schema where it has a field for the value; anywhere else (unknown keys, free-form
    dicts) every string is held to the rule that fits all text: no control character but tab and
    line breaks."""
    if schema is not None and isinstance(value, dict):
        errors = {}
        declared = {(f.data_key or name): f for name, f in schema.fields.items() if not f.dump_only}
        for key, item in value.items():
            problem = _character_error(key, LINE_CONTROL) if isinstance(key, str) else None
            if problem:
                errors[key] = [f"key: {problem}"]
                continue
            found = _text_errors(item, declared.get(key))
            if found:
                errors[key] = found
        return errors or None
    if isinstance(field, fields.Nested) and isinstance(field.schema, Schema):
        if isinstance(value, list):
            return _indexed({i: _text_errors(item, schema=field.schema) for i, item in enumerate(value)})
        return _text_errors(value, schema=field.schema)
    if isinstance(field, fields.List) and isinstance(value, list):
        return _indexed({i: _text_errors(item, field.inner) for i, item in enumerate(value)})
    if isinstance(field, fields.Dict) and isinstance(value, dict):
        return _indexed({key: _text_errors(item, field.value_field) for key, item in value.items()})
    if isinstance(value, str):
        problem = _character_error(value, _field_kind(field) or CONTROL)
        return [problem] if problem else None
    if isinstance(value, dict):
        return _indexed({key: ([f"key: {problem}"] if (problem := _character_error(str(key), LINE_CONTROL))
                               else _text_errors(item)) for key, item in value.items()})
    if isinstance(value, list):
        return _indexed({i: _text_errors(item) for i, item in enumerate(value)})
    return None


def _indexed(found):
    found = {key: errors for key, errors in found.items() if errors}
    return found or None


def check_text(payload, schema=None):
    """Refuse control characters in a parsed JSON body, naming each field (marshmallow's shape).

    Free text (``tacoord.fields.Text``: descriptions, outcomes, reasons, notes) may hold tab, LF and
    CR; every other string field of ``schema`` is one line (no tab, line break, U+2028/U+2029); no
    text anywhere, keys included, holds NUL or another C0/C1 control character or DEL."""
    if schema is not None and isinstance(payload, list):
        errors = _indexed({i: _text_errors(item, schema=schema) for i, item in enumerate(payload)})
    else:
        errors = _text_errors(payload, schema=schema) if schema is not None else _text_errors(payload)
    if errors:
        if not isinstance(errors, dict):
            errors = {"_schema": errors}
        raise ValidationError(errors)
