"""Input hardening shared by every schema: no operator keys reach MongoDB."""
from marshmallow import ValidationError

MAX_DEPTH = 12


def reject_unsafe_keys(value, path="body", depth=0):
    """Refuse ``$``-prefixed or dotted keys anywhere, and absurd nesting."""
    if depth > MAX_DEPTH:
        raise ValidationError({path: ["nested too deeply"]})
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError({path: ["keys must be strings"]})
            if key.startswith("$") or "." in key or "\x00" in key:
                raise ValidationError({f"{path}.{key}": ["keys may not start with '$' or contain '.'"]})
            reject_unsafe_keys(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_unsafe_keys(item, f"{path}[{index}]", depth + 1)
