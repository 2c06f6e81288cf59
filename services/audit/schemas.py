"""Audit: the query parameters of the event feed and the dead-letter list (the recorder itself accepts every envelope)."""
import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from tacoord.deadletters import PEEK_LIMIT

FEED_MAX_LIMIT = 1000
FEED_DEFAULT_LIMIT = 500
MAX_PATTERNS = 20
MAX_SEQ = 2 ** 62
LIMIT_ERROR = f"limit is a whole number from 1 to {PEEK_LIMIT}"

# RabbitMQ topic patterns, as the queues bind them: words or '*' (one word),
# '#' (any words) only alone or last: "need.*", "workshop.participants_proposed", "need.#", "#".
PATTERN = re.compile(r"^(#|([a-z_]+|\*)(\.([a-z_]+|\*))*(\.#)?)$")


def parse_types(value):
    """``"need.*,offer.*"`` → ``["need.*", "offer.*"]`` (no I/O); raises ValidationError naming ``types``."""
    patterns = [p.strip() for p in value.split(",") if p.strip()]
    if not patterns:
        raise ValidationError("give one or more event type patterns, comma-separated (e.g. 'need.*,offer.*')",
                              "types")
    if len(patterns) > MAX_PATTERNS:
        raise ValidationError(f"at most {MAX_PATTERNS} patterns", "types")
    bad = [p for p in patterns if len(p) > 80 or not PATTERN.match(p)]
    if bad:
        raise ValidationError(f"not a topic pattern: {', '.join(repr(b[:80]) for b in bad)}; use words and '*' "
                              "(one word), e.g. 'need.*' or 'workshop.participants_proposed', '#' only last",
                              "types")
    return patterns


def type_regex(patterns):
    """One anchored regular expression matching the types the topic patterns match."""
    parts = []
    for pattern in patterns:
        if pattern == "#":
            return ".*"
        words, tail = pattern.split("."), ""
        if words[-1] == "#":
            words, tail = words[:-1], r"(\..+)?"
        parts.append(r"\.".join("[^.]+" if w == "*" else re.escape(w) for w in words) + tail)
    return "^(" + "|".join(f"({p})" for p in parts) + ")$"


class FeedQuerySchema(Schema):
    """``GET /audit/events?after=&limit=&types=`` (query strings; a limit above the cap is capped)."""

    class Meta:
        unknown = RAISE

    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_SEQ,
                                                                 error="must be a seq, 0 or more"))
    limit = fields.Integer(load_default=FEED_DEFAULT_LIMIT,
                           validate=validate.Range(min=1, error="must be 1 or more (at most "
                                                                f"{FEED_MAX_LIMIT} are returned)"))
    types = fields.String(load_default=None)

    @validates("types")
    def known_shape(self, value, **kwargs):
        if value is not None:
            parse_types(value)


class DeadLettersQuerySchema(Schema):
    """``GET /audit/dead-letters?limit=``: 1 to ``PEEK_LIMIT`` (absent: all of those)."""

    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=PEEK_LIMIT, error_messages={"invalid": LIMIT_ERROR},
                           validate=validate.Range(min=1, max=PEEK_LIMIT, error=LIMIT_ERROR))
