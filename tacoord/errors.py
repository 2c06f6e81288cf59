"""Errors with a meaning for delivery: a rejection is final, anything else is retried."""


class Rejected(Exception):
    """The message can never succeed (bad input, unknown reference): park it.

    ``reason`` is written for a person: it lands in the dead-letter headers,
    the audit log and the HTTP error body.
    """

    def __init__(self, reason, field=None):
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def messages(self):
        return {self.field or "_schema": [self.reason]}


class NotFound(Exception):
    pass


class Conflict(Exception):
    """The request clashes with the entity's current state (e.g. an illegal transition)."""


class Forbidden(Exception):
    pass


class Busy(Exception):
    """Someone else is on it right now (another worker holds the claim or the delivery is in
    flight): send the message round again later without using up a try."""
