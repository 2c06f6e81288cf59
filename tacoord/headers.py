"""The ``x-tacoord-*`` AMQP headers: one place for their names.

The consumer writes them when it sends a message round its retry queue or
parks it in the dead-letter queue; notify writes the same parking headers
for a notification it could not deliver; the audit recorder and the
dead-letter tool read them; the AsyncAPI document describes them.
"""

ATTEMPT = "x-tacoord-attempt"            # which try this is (1 = the first)
ALONE = "x-tacoord-alone"                # failed in a batch: handle it in a batch of its own
REASON = "x-tacoord-reason"              # why it was sent round or parked, in words
PARTNER = "x-tacoord-user-id"            # the partner's broker-validated user_id, carried across a retry

# Parking (the dead-letter queue)
DEAD_LETTER_ID = "x-tacoord-dead-letter-id"
QUEUE = "x-tacoord-queue"                # the queue that parked it
ROUTING_KEY = "x-tacoord-routing-key"    # the routing key it was published with
EXCHANGE = "x-tacoord-exchange"          # the exchange it was published to (a replay goes back there)
FAILED_AT = "x-tacoord-failed-at"        # when it was parked (ISO 8601, UTC)
KIND = "x-tacoord-kind"                  # invalid | rejected | exhausted | undeliverable
SUBSCRIPTION_ID = "x-tacoord-subscription-id"   # notify: the subscription it was for
CHANNEL = "x-tacoord-channel"                   # notify: webhook | email | amqp
NOTIFICATION_ID = "x-tacoord-notification-id"   # notify: the notification's id on an AMQP delivery

# Replays (tacoord.deadletters)
REPLAY_OF = "x-tacoord-replay-of"
REPLAYED_AT = "x-tacoord-replayed-at"

DEAD_LETTER_KINDS = ("invalid", "rejected", "exhausted", "undeliverable")

# What parking adds to a message; a replay strips these before republishing.
PARKING = (ATTEMPT, REASON, DEAD_LETTER_ID, QUEUE, ROUTING_KEY, EXCHANGE, FAILED_AT, KIND, PARTNER,
           SUBSCRIPTION_ID, CHANNEL)


def parking(reason, dead_letter_id, queue, routing_key, exchange, failed_at, kind, **extra):
    """The headers of a parked message (the caller adds the original headers it keeps)."""
    if kind not in DEAD_LETTER_KINDS:
        raise ValueError(f"unknown dead-letter kind {kind!r}")
    return {REASON: reason, DEAD_LETTER_ID: dead_letter_id, QUEUE: queue, ROUTING_KEY: routing_key,
            EXCHANGE: exchange, FAILED_AT: failed_at, KIND: kind, **extra}
