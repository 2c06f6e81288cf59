"""marshmallow fields every service validates alike."""
from marshmallow import ValidationError, fields

from tacoord import reference


class StateCode(fields.String):
    """An ISO 3166-1 alpha-3 code of a State (or party) in the reference data, upper-cased."""

    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs)
        if not reference.is_known_state(code.upper()):
            raise ValidationError(f"unknown State {value!r}: use an ISO 3166-1 alpha-3 code such as 'KEN'")
        return code.upper()
