"""Input hardening shared by every schema: no operator keys reach MongoDB.

:func:`json_loads` is the one JSON parser for request bodies and imports: it
refuses ``NaN``/``Infinity`` (not JSON, and they would come back out as
invalid JSON) and turns nesting too deep for the parser (a ``RecursionError``,
i.e. a 500) into a ``ValueError`` like any other malformed JSON.
"""
import json

from marshmallow import ValidationError

MAX_DEPTH = 12


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
