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
  retry queue by the broker itself (or replayed by the operator, as an
  undeliverable notification is onto ``notify.resend``): the consumer trusts
  its partner header (``headers.PARTNER``) only then. Services put a message round through
  ``tacoord.retry`` (topic, key = ``Q.retry``), where each service's topic
  permission names only its own retry queues; no service may write the
  default exchange, which would reach any queue by name.

``TACOORD_QUEUE_TYPE=quorum`` declares every queue here (consumer queues, their
retry queues, the dead-letter and unrouted queues) as a quorum queue, replicated
on the nodes of a cluster; unset, that is the default when the services are given
more than one broker node (``tacoord.config.clustered``), else classic durable
queues. A quorum retry queue dead-letters at least once (a message expiring
while a node fails is not dropped on the way back).

A queue marked ``single_active`` (matching's) has RabbitMQ's single active
consumer: of the instances consuming it, one gets the messages, in order; another
takes over when its channel closes. Queue arguments are fixed when a queue is
made: :mod:`tacoord.queue_upgrade` moves an existing queue to new arguments.
"""
import os
from dataclasses import dataclass, field

from kombu import Exchange, Queue, binding

from tacoord import config

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
    single_active: bool = False

    @property
    def retry_name(self):
        return f"{self.name}.retry"


def queue_type():
    """``TACOORD_QUEUE_TYPE``; unset: ``quorum`` on a cluster, else ``classic``."""
    return os.environ.get("TACOORD_QUEUE_TYPE") or ("quorum" if config.clustered() else "classic")


def queue_arguments(spec=None):
    """The arguments a queue of this topology is declared with (None: none)."""
    arguments = {"x-queue-type": "quorum"} if queue_type() == "quorum" else {}
    if spec is not None and spec.single_active:
        arguments["x-single-active-consumer"] = True
    return arguments or None


def _retry_arguments(spec):
    arguments = {"x-dead-letter-exchange": REQUEUE, "x-dead-letter-routing-key": spec.name}
    if queue_type() == "quorum":
        # at-least-once dead-lettering (quorum queues, RabbitMQ 3.10+) needs reject-publish overflow
        arguments.update({"x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
                          "x-overflow": "reject-publish"})
    return arguments


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
    return Queue(spec.name, bindings=bindings, durable=True, queue_arguments=queue_arguments(spec))


def kombu_retry_queue(spec, passive_exchange=False):
    """``Q.retry``: bound to ``tacoord.retry`` under its own name (the only way in for a
    service, whose topic permission names its own retry queues), dead-lettering back to
    ``Q`` through ``tacoord.requeue``."""
    return Queue(spec.retry_name, durable=True, queue_arguments=_retry_arguments(spec),
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
    ("need.*", "offer.*", "expert.*", "workshop.*", "checklist_assistance.*", "alert.*") + MATCH_STEPS,
    single_active=True)   # one instance applies events to its model at a time (services/matching/README.md)
NOTIFY_EVENTS = QueueSpec(
    "notify.events", EVENTS,
    ("match.*", "alert.*", "gap.*", "duplication.*", "workshop.*", "need.*", "offer.*"))
# An undeliverable notification is parked naming this queue (through tacoord.requeue, which only
# the admin writes), so the operator's dead-letter replay is notify's resend of it.
NOTIFY_RESEND = QueueSpec("notify.resend", REQUEUE)
REQUESTS_EVENTS = QueueSpec("requests.events", EVENTS, ("workshop.participants_proposed",))
AUDIT_EVENTS = QueueSpec("audit.events", EVENTS, ("#",))
AUDIT_DEAD_LETTERS = QueueSpec("audit.dead-letters", DEAD, ("",), retry=True)
PARKED = QueueSpec(DEAD_LETTERS_QUEUE, DEAD, ("",), retry=False)
UNROUTED_QUEUE = QueueSpec(UNROUTED, UNROUTED, ("",), retry=False)

CONSUMER_QUEUES = (
    NEEDS_INGRESS, SUPPLY_INGRESS, REQUESTS_INGRESS, MATCHING_EVENTS,
    NOTIFY_EVENTS, NOTIFY_RESEND, REQUESTS_EVENTS, AUDIT_EVENTS, AUDIT_DEAD_LETTERS,
)
ALL_QUEUES = CONSUMER_QUEUES + (PARKED, UNROUTED_QUEUE)


class QueueArgumentsChanged(RuntimeError):
    """A queue exists with other arguments than this release declares it with."""


def declare(connection, specs=ALL_QUEUES, upgrade=False):
    """Declare every exchange, then each queue, its retry queue and bindings.

    A queue that exists with other arguments (made by an older release, before a switch to
    quorum queues or to matching's single active consumer) raises
    :class:`QueueArgumentsChanged` naming what to do; ``upgrade=True`` (``infra.stack up``, as
    the admin) moves it to the new arguments instead (:mod:`tacoord.queue_upgrade`)."""
    with connection.channel() as channel:
        for exchange in EXCHANGES.values():
            exchange.bind(channel).declare()
    for spec in specs:
        _declare_queue(connection, spec, upgrade=upgrade)
        if spec.retry:
            _declare_retry_queue(connection, spec, upgrade=upgrade)


def _declare_queue(connection, spec, passive_exchange=False, upgrade=False):
    from amqp.exceptions import PreconditionFailed
    target = kombu_queue(spec, passive_exchange)
    try:
        with connection.channel() as channel:
            target.bind(channel).declare()
    except PreconditionFailed as exc:
        if not upgrade:
            raise _changed(spec.name, exc)
        from tacoord import queue_upgrade
        queue_upgrade.move(connection, target, EXCHANGES[REQUEUE] if spec.retry else None,
                           queue_arguments())


def _changed(name, exc):
    return QueueArgumentsChanged(
        f"queue {name} exists with other arguments than this release declares ({exc}); stop the services "
        f"consuming it and run `tacoord stack up` (as the admin), which moves it and its messages to the new "
        f"arguments (tacoord/queue_upgrade.py)")


def _declare_retry_queue(connection, spec, passive_exchange=False, upgrade=False):
    """Declare ``spec``'s retry queue. One declared by an older release (dead-lettering
    through the default exchange, or a classic one on a cluster) is replaced when empty, so
    ``up`` is also an upgrade; a non-empty one is moved with ``upgrade``, else the error stands."""
    from amqp.exceptions import PreconditionFailed
    target = kombu_retry_queue(spec, passive_exchange)
    try:
        with connection.channel() as channel:
            target.bind(channel).declare()
    except PreconditionFailed:
        try:
            with connection.channel() as channel:
                channel.queue_delete(spec.retry_name, if_empty=True)
                target.bind(channel).declare()
        except PreconditionFailed as exc:
            if not upgrade:
                raise _changed(spec.retry_name, exc)
            from tacoord import queue_upgrade
            # the holding queue dead-letters like a retry queue: a message whose wait ends there goes back too
            queue_upgrade.move(connection, target, None, _retry_arguments(spec))


def declare_all(connection, upgrade=False):
    declare(connection, upgrade=upgrade)


def declare_own(connection, spec):
    """What a service's own broker user may declare: its queue, retry queue and
    bindings; the exchanges must exist already (``infra.stack up`` declares
    everything as the admin user)."""
    _declare_queue(connection, spec, passive_exchange=True)
    if spec.retry:
        _declare_retry_queue(connection, spec, passive_exchange=True)


def declare_for(connection, spec):
    """Declare the whole topology when allowed (admin user), else only ``spec``'s own."""
    from amqp.exceptions import AccessRefused
    try:
        declare_all(connection)
    except AccessRefused:
        declare_own(connection, spec)
