"""The broker topology: every exchange and queue, declared in one place.

Services, the infra script and the tests all declare from this table, so a
queue exists before anyone publishes to it (an event with no bound queue
would be dropped) and the flags never disagree between declarers.

- ``tacoord.events``  topic: every event a service emits, routing key = type.
- ``tacoord.ingress`` topic: partner systems publish here (``need.submitted``…).
- ``tacoord.unrouted`` fanout + queue: the alternate exchange of both topics,
  so a message nobody is bound for is kept, not silently dropped.
- ``tacoord.dead``    fanout: parked messages, with the reason in headers;
  bound to ``tacoord.dead-letters`` (kept for the dead-letter tool) and
  ``audit.dead-letters`` (the audit recorder logs every rejection).
- every consumer queue ``Q`` has a ``Q.retry`` queue with no consumer: a
  failed message waits there for its per-message TTL, then RabbitMQ
  dead-letters it back into ``Q`` (delayed redelivery through the broker)
  through ``tacoord.requeue`` (direct, key = ``Q``). No user but the admin may
  publish to that exchange, so what arrives through it was put round the
  retry queue by the broker itself: the consumer trusts its partner header
  (``headers.PARTNER``) only then. Services put a message round through
  ``tacoord.retry`` (topic, key = ``Q.retry``), where each service's topic
  permission names only its own retry queues; no service may write the
  default exchange, which would reach any queue by name.

``TACOORD_QUEUE_TYPE=quorum`` declares consumer queues as quorum queues (for
a cluster); the default is classic durable queues.
"""
import os
from dataclasses import dataclass, field

from kombu import Exchange, Queue, binding

EVENTS = "tacoord.events"
INGRESS = "tacoord.ingress"
UNROUTED = "tacoord.unrouted"
DEAD = "tacoord.dead"
DEAD_LETTERS_QUEUE = "tacoord.dead-letters"
REQUEUE = "tacoord.requeue"
RETRY = "tacoord.retry"


def _exchange(name, type_, **arguments):
    return Exchange(name, type=type_, durable=True, arguments=arguments or None)


EXCHANGES = {
    UNROUTED: _exchange(UNROUTED, "fanout"),
    EVENTS: _exchange(EVENTS, "topic", **{"alternate-exchange": UNROUTED}),
    INGRESS: _exchange(INGRESS, "topic", **{"alternate-exchange": UNROUTED}),
    DEAD: _exchange(DEAD, "fanout"),
    REQUEUE: _exchange(REQUEUE, "direct"),
    RETRY: _exchange(RETRY, "topic"),
}


@dataclass(frozen=True)
class QueueSpec:
    """A consumer queue: its name, the exchange it reads and the keys bound."""

    name: str
    exchange: str
    routing_keys: tuple = field(default_factory=tuple)
    retry: bool = True

    @property
    def retry_name(self):
        return f"{self.name}.retry"


def queue_type():
    return os.environ.get("TACOORD_QUEUE_TYPE", "classic")


def _queue_arguments():
    return {"x-queue-type": queue_type()} if queue_type() == "quorum" else None


def _bound_exchange(name, passive):
    """``passive=True``: binding checks that the exchange exists instead of declaring it
    (declaring needs the ``configure`` permission on it, which a service's
    least-privilege broker user does not have)."""
    declared = EXCHANGES[name]
    if passive:
        return Exchange(declared.name, type=declared.type, durable=True, arguments=declared.arguments, passive=True)
    return declared


def kombu_queue(spec, passive_exchange=False):
    def exchange(name):
        return _bound_exchange(name, passive_exchange)
    bindings = [binding(exchange(spec.exchange), routing_key=key) for key in spec.routing_keys]
    if spec.retry:
        bindings.append(binding(exchange(REQUEUE), routing_key=spec.name))
    return Queue(spec.name, bindings=bindings, durable=True, queue_arguments=_queue_arguments())


def kombu_retry_queue(spec, passive_exchange=False):
    """``Q.retry``: bound to ``tacoord.retry`` under its own name (the only way in for a
    service, whose topic permission names its own retry queues), dead-lettering back to
    ``Q`` through ``tacoord.requeue``."""
    arguments = {"x-dead-letter-exchange": REQUEUE, "x-dead-letter-routing-key": spec.name}
    arguments.update(_queue_arguments() or {})
    return Queue(spec.retry_name, durable=True, queue_arguments=arguments,
                 bindings=[binding(_bound_exchange(RETRY, passive_exchange), routing_key=spec.retry_name)])


# --- the consumer queues, one line each --------------------------------------

NEEDS_INGRESS = QueueSpec("needs.ingress", INGRESS, ("need.*",))
SUPPLY_INGRESS = QueueSpec("supply.ingress", INGRESS, ("offer.*", "expert.*"))
REQUESTS_INGRESS = QueueSpec("requests.ingress", INGRESS, ("workshop.*", "checklist_assistance.*"))
# Matching also consumes the steps people take on its matches and its alerts (over HTTP, on any instance),
# so that the model that applies events learns of each in order (services/matching/README.md).
MATCH_STEPS = ("match.accepted", "match.declined", "match.agreed", "match.delivery_started", "match.delivered",
               "match.cancelled")
MATCHING_EVENTS = QueueSpec(
    "matching.events", EVENTS,
    ("need.*", "offer.*", "expert.*", "workshop.*", "checklist_assistance.*", "alert.*") + MATCH_STEPS)
NOTIFY_EVENTS = QueueSpec(
    "notify.events", EVENTS,
    ("match.*", "gap.*", "duplication.*", "workshop.*", "need.*", "offer.*"))
REQUESTS_EVENTS = QueueSpec("requests.events", EVENTS, ("workshop.participants_proposed",))
AUDIT_EVENTS = QueueSpec("audit.events", EVENTS, ("#",))
AUDIT_DEAD_LETTERS = QueueSpec("audit.dead-letters", DEAD, ("",), retry=True)
PARKED = QueueSpec(DEAD_LETTERS_QUEUE, DEAD, ("",), retry=False)
UNROUTED_QUEUE = QueueSpec(UNROUTED, UNROUTED, ("",), retry=False)

CONSUMER_QUEUES = (
    NEEDS_INGRESS, SUPPLY_INGRESS, REQUESTS_INGRESS, MATCHING_EVENTS,
    NOTIFY_EVENTS, REQUESTS_EVENTS, AUDIT_EVENTS, AUDIT_DEAD_LETTERS,
)
ALL_QUEUES = CONSUMER_QUEUES + (PARKED, UNROUTED_QUEUE)


def declare(connection, specs=ALL_QUEUES):
    """Declare every exchange, then each queue, its retry queue and bindings."""
    with connection.channel() as channel:
        for exchange in EXCHANGES.values():
            exchange.bind(channel).declare()
        for spec in specs:
            kombu_queue(spec).bind(channel).declare()
    for spec in specs:
        if spec.retry:
            _declare_retry_queue(connection, spec)


def _declare_retry_queue(connection, spec, passive_exchange=False):
    """Declare ``spec``'s retry queue. One declared by an older release (dead-lettering
    through the default exchange) is replaced when empty, so ``up`` is also an upgrade;
    a non-empty one is left for its messages to come back, and the error stands."""
    from amqp.exceptions import PreconditionFailed
    try:
        with connection.channel() as channel:
            kombu_retry_queue(spec, passive_exchange).bind(channel).declare()
    except PreconditionFailed:
        with connection.channel() as channel:
            channel.queue_delete(spec.retry_name, if_empty=True)
            kombu_retry_queue(spec, passive_exchange).bind(channel).declare()


def declare_all(connection):
    declare(connection)


def declare_own(connection, spec):
    """What a service's own broker user may declare: its queue, retry queue and
    bindings; the exchanges must exist already (``infra.stack up`` declares
    everything as the admin user)."""
    with connection.channel() as channel:
        kombu_queue(spec, passive_exchange=True).bind(channel).declare()
    if spec.retry:
        _declare_retry_queue(connection, spec, passive_exchange=True)


def declare_for(connection, spec):
    """Declare the whole topology when allowed (admin user), else only ``spec``'s own."""
    from amqp.exceptions import AccessRefused
    try:
        declare_all(connection)
    except AccessRefused:
        declare_own(connection, spec)
