"""The dead-letter tool: list, inspect, replay and purge parked messages.

    with DeadLetters(config.amqp_uri()) as dlq:
        for letter in dlq.peek():               # nothing is lost or reordered
            print(letter.id, letter.reason)
        dlq.replay(letter.id)                   # back to its original exchange and key
        dlq.replay(letter.id, body=corrected)   # or a corrected body
        dlq.replay_all()

Parked messages sit in ``tacoord.dead-letters`` (see ``tacoord.topology``)
with the headers (``tacoord.headers``) the consumer or notify adds when it
parks one: the dead-letter id, the reason, the queue that gave up, and the
original exchange and routing key. A replay drops those (``headers.PARKING``).

Peeking takes messages with ``basic.get`` without acknowledging them, then
rejects them all with ``requeue=True``: RabbitMQ puts a requeued message back
in its original position, and a crash mid-way closes the channel, which
requeues them too. Replaying publishes (persistent, confirmed by the broker)
and only then acknowledges the message off the queue, so a failed publish
leaves it where it was. ``replay_all`` handles at most the messages present
when it starts, so a message that fails again and is parked again is not
replayed in a loop.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kombu import Connection, Exchange, Producer, Queue

from tacoord import headers, topology

PEEK_LIMIT = 100
SCAN_LIMIT = 100_000


class DeadLetterError(Exception):
    """Something the operator can act on (unknown id, message not replayable)."""


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@dataclass
class DeadLetter:
    """One parked message, as read from the queue."""

    id: str
    reason: str
    kind: str
    queue: str
    exchange: str
    routing_key: str
    failed_at: str
    user_id: str
    message_id: str
    content_type: str
    content_encoding: str
    body: bytes
    headers: dict = field(default_factory=dict)

    @classmethod
    def from_message(cls, message):
        received = {k: _text(v) for k, v in (message.headers or {}).items()}
        properties = message.properties or {}
        return cls(
            id=received.get(headers.DEAD_LETTER_ID), reason=received.get(headers.REASON),
            kind=received.get(headers.KIND), queue=received.get(headers.QUEUE),
            exchange=received.get(headers.EXCHANGE), routing_key=received.get(headers.ROUTING_KEY),
            failed_at=received.get(headers.FAILED_AT), user_id=received.get(headers.PARTNER),
            message_id=properties.get("message_id"),
            content_type=message.content_type or "application/json",
            content_encoding=message.content_encoding or "utf-8",
            body=message.body if isinstance(message.body, bytes) else str(message.body).encode(),
            headers=received)

    @property
    def payload(self):
        """The body as JSON when it is JSON, else as text."""
        text = self.body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    @property
    def event_type(self):
        payload = self.payload
        if isinstance(payload, dict) and isinstance(payload.get("type"), str):
            return payload["type"]
        return self.routing_key

    def summary(self):
        return {"id": self.id, "failed_at": self.failed_at, "queue": self.queue, "kind": self.kind,
                "exchange": self.exchange, "routing_key": self.routing_key, "type": self.event_type,
                "reason": self.reason}

    def as_dict(self):
        return {**self.summary(), "user_id": self.user_id, "message_id": self.message_id,
                "headers": self.headers, "body": self.payload}


class DeadLetters:
    """The dead-letter queue of one vhost (a context manager over one connection)."""

    def __init__(self, amqp_uri, queue=topology.DEAD_LETTERS_QUEUE, connect_timeout=5):
        self.amqp_uri = amqp_uri
        self.queue_name = queue
        self.connection = Connection(amqp_uri, connect_timeout=connect_timeout,
                                     transport_options={"confirm_publish": True})

    def __enter__(self):
        self.connection.ensure_connection(max_retries=1)
        return self

    def __exit__(self, *exc):
        self.connection.release()

    # -- reading -------------------------------------------------------------

    def depth(self):
        with self.connection.channel() as channel:
            return self._queue(channel).queue_declare(passive=True).message_count

    def _queue(self, channel):
        return Queue(self.queue_name, channel=channel, no_declare=True)

    def _held(self, channel, limit):
        """Get up to ``limit`` messages without acknowledging them (the caller settles each)."""
        queue = self._queue(channel)
        held = []
        while len(held) < limit:
            message = queue.get(no_ack=False, accept=None)
            if message is None:
                break
            held.append(message)
        return held

    @staticmethod
    def _requeue(messages):
        for message in messages:
            if not message.acknowledged:
                message.requeue()

    def peek(self, limit=PEEK_LIMIT):
        """The first ``limit`` dead letters, left in the queue in their order."""
        with self.connection.channel() as channel:
            held = self._held(channel, limit)
            try:
                return [DeadLetter.from_message(m) for m in held]
            finally:
                self._requeue(held)

    def get(self, dead_letter_id):
        """One dead letter by its id (header ``headers.DEAD_LETTER_ID``), left in the queue."""
        with self.connection.channel() as channel:
            held = self._held(channel, min(self.depth(), SCAN_LIMIT))
            try:
                for message in held:
                    letter = DeadLetter.from_message(message)
                    if letter.id == dead_letter_id:
                        return letter
            finally:
                self._requeue(held)
        raise DeadLetterError(f"no dead letter {dead_letter_id!r} in {self.queue_name}")

    # -- acting --------------------------------------------------------------

    def replay(self, dead_letter_id, body=None):
        """Republish one dead letter (or ``body`` instead of its body), then remove it."""
        replayed = self._settle(lambda letter: letter.id == dead_letter_id, body=body, action="replay")
        if not replayed:
            raise DeadLetterError(f"no dead letter {dead_letter_id!r} in {self.queue_name}")
        return replayed[0]

    def replay_all(self):
        """Republish every dead letter present now; returns them."""
        return self._settle(lambda letter: True, action="replay")

    def discard(self, dead_letter_id):
        """Remove one dead letter without replaying it."""
        removed = self._settle(lambda letter: letter.id == dead_letter_id, action="discard")
        if not removed:
            raise DeadLetterError(f"no dead letter {dead_letter_id!r} in {self.queue_name}")
        return removed[0]

    def purge(self):
        """Remove every dead letter; returns how many there were."""
        with self.connection.channel() as channel:
            return self._queue(channel).purge() or 0

    def _settle(self, wanted, action, body=None):
        done = []
        with self.connection.channel() as channel:
            held = self._held(channel, min(self.depth(), SCAN_LIMIT))
            try:
                for message in held:
                    letter = DeadLetter.from_message(message)
                    if not wanted(letter):
                        continue
                    if action == "replay":
                        self._republish(letter, body)
                    message.ack()
                    done.append(letter)
            finally:
                self._requeue(held)
        return done

    def _republish(self, letter, body=None):
        if letter.exchange is None:
            raise DeadLetterError(f"dead letter {letter.id} has no {headers.EXCHANGE} header; "
                                  "it cannot be replayed")
        if letter.exchange and letter.exchange not in topology.EXCHANGES:
            raise DeadLetterError(f"dead letter {letter.id} came from unknown exchange {letter.exchange!r}")
        sent = {k: v for k, v in letter.headers.items()
                if k not in headers.PARKING and not k.startswith("x-death")}
        sent[headers.REPLAY_OF] = letter.id
        sent[headers.REPLAYED_AT] = datetime.now(timezone.utc).isoformat()
        if body is None:
            payload, content_type, content_encoding = letter.body, letter.content_type, letter.content_encoding
        else:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            content_type, content_encoding = "application/json", "utf-8"
        exchange = topology.EXCHANGES[letter.exchange] if letter.exchange else Exchange("")
        with self.connection.channel() as channel:
            # user_id must be the connection's own user (RabbitMQ checks it); ingress
            # consumers require it. The original sender stays in the audit log.
            Producer(channel).publish(
                payload, exchange=exchange, routing_key=letter.routing_key or "", headers=sent,
                content_type=content_type, content_encoding=content_encoding, delivery_mode=2,
                message_id=letter.message_id, user_id=self.connection.userid, retry=False)
