"""Consuming events: validated, idempotent, retried through the broker, never lost.

    class RequestsService:
        @consume_events(topology.REQUESTS_EVENTS)
        def on_participants_proposed(self, event):   # one validated envelope (a dict)
            ...

    class MatchingService:
        @consume_events(topology.MATCHING_EVENTS, batch_size=50, batch_wait=0)
        def on_events(self, events):                 # a list of them (see Batches below)
            ...

For each message, in order:

1. The body is decoded and validated as an envelope (and its payload, if the
   type is registered). Invalid → parked in the dead-letter queue with the
   field-by-field reason; the audit recorder logs it.
2. Ingress messages must carry RabbitMQ's ``user_id`` property, which the
   broker checks against the connection's user; it becomes ``source``
   (``partner:<user_id>``), and ``actor`` is the envelope's own when it starts
   with ``partner:<user_id>/``, else the partner (:func:`envelope.partner_actor`).
3. Its id is claimed in the inbox (:mod:`tacoord.inbox`): an id already
   processed on this queue is acknowledged and skipped; one another worker
   holds waits (held here, no try used; see Waiting below).
4. The handler runs in a worker. Success → the id is recorded done, the
   message acked. ``Rejected`` or a ``ValidationError`` → parked at once
   (retrying cannot help). Any other error → the claim released, the message
   republished to ``<queue>.retry`` with a per-message TTL growing
   exponentially (with jitter); the broker returns it to the queue when the
   TTL expires. After ``TACOORD_MAX_ATTEMPTS`` tries it is parked with the
   last error as the reason. The database or broker being unreachable, and a
   claim another worker holds, make the message wait without using a try
   (see ``transient`` and Waiting below).

Waiting: a message that is not to be handled now through no fault of its own
(an outage, another worker or instance busy with it) is **held by this
consumer, unacknowledged**, for a delay that grows with its waits (at most
``MAX_WAIT_DELAY_SECONDS``), then handled again. It does not go round the
broker: on a cluster, a quorum retry queue's dead-lettering back to its queue
was seen to stop forwarding while a node left and rejoined (RabbitMQ 3.10;
bench/faults.py --cluster lost every message that went round then). A held
message stays the broker's until it is acked: if this instance dies or its
channel closes, the broker redelivers it (a held message whose channel closed
is dropped here, not handled twice). Holding uses the consumer's prefetch, so
while the database is down the broker stops handing over more.

Every path publishes (confirmed) before it acks, so a crash at any point
leads to a redelivery, never a loss; step 3 makes the redelivery harmless.

One settle path: a single message is a batch of one. ``@consume_events(spec,
batch_size=50)`` hands the handler a *list* of validated envelopes (one
database round trip for many events). Valid messages are buffered and flushed
as one worker when ``batch_size`` are waiting or ``batch_wait`` seconds after
the first. Claiming, recording and releasing take one round trip for the
whole batch: done ids are acked as duplicates, ids another worker holds
wait (no try used), later copies of an id in the same batch too (they find it
done when they are handled again); if the claim itself fails, every message
waits. Failure of the handler → the claims released, then: a transient error
→ every message waits, keeping its tries. Any other error in a batch of several → every message
handled again on its own (held, then in a batch of its own), without using a try; a batch of one fails
like a single message (parked, or retried and parked after the last try). A
poison message so only uses up its own tries. A batch
handler that knows which events failed returns ``{event id: exception}``
(:func:`apply_each`): only those are settled as failures, each like a single
message. With ``keyed_by_event_id=True`` there is no inbox (the handler's
write must be keyed by event id under a unique index, and copies may share a
batch). The container's prefetch is raised to ``2 × batch_size`` so batches
can fill.
"""
import functools
import json
import logging
import random
import time
import uuid
from datetime import datetime, timezone
from functools import partial, wraps
from typing import NamedTuple

import eventlet
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from marshmallow import ValidationError
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer, QueueConsumer
from pymongo.errors import ConnectionFailure

from tacoord import config, envelope, headers, logs, topology
from tacoord.errors import Busy, Rejected
from tacoord.inbox import Inbox
from tacoord.ops import metric, metrics_for
from tacoord.publisher import ConfirmedPublisher
from tacoord.queuedepth import QueueDepth
from tacoord.store import DatabaseClient, service_name

log = logging.getLogger(__name__)

DEFAULT_BATCH_WAIT_SECONDS = 0.01
MAX_DELAY_SECONDS = 60
MAX_WAIT_DELAY_SECONDS = 10

# The database or the broker is unreachable (down, restarting, frozen): not the
# message's fault, so it does not use up the message's tries.
TRANSIENT_ERRORS = (ConnectionFailure, AMQPConnectionError, KombuOperationalError, ConnectionError, TimeoutError)


def transient(exc):
    """Not the message's fault: an outage, or someone else busy with it (:class:`Busy`)."""
    return isinstance(exc, TRANSIENT_ERRORS + (Busy,))


def outage(exc):
    return isinstance(exc, TRANSIENT_ERRORS)


def apply_each(events, handle):
    """Run ``handle(event)`` for each event of a batch, in order; returns ``{event id: exception}``
    for those that raised. A batch handler returns this: the others are recorded done and acked,
    each failed one is settled as a single message's failure would be (parked at once when
    rejected, else retried)."""
    failed = {}
    for index, event in enumerate(events):
        try:
            with logs.bound(**logs.event_fields(event)):
                handle(event)
        except Exception as exc:
            failed[event["id"]] = exc
            if outage(exc):  # the database or broker is down: the rest would only wait for it too
                failed.update((later["id"], exc) for later in events[index + 1:])
                break
    return failed


def describe(exc):
    if isinstance(exc, ValidationError):
        return "; ".join(envelope.describe_errors(exc.messages))
    if isinstance(exc, Rejected):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


class Delivery(NamedTuple):
    """One message taken from the queue: ``event`` is the validated envelope (the body for a raw
    consumer); ``message_id`` the inbox key (the event id, or a raw message's dead-letter id)."""
    body: object
    message: object
    event: object
    message_id: str
    waits: int = 0   # times held so far (see Waiting in the module's docstring)
    split: bool = False   # its batch failed: to be handled on its own

    @property
    def attempt(self):
        return int((self.message.headers or {}).get(headers.ATTEMPT, 1))

    @property
    def alone(self):
        return self.split or bool((self.message.headers or {}).get(headers.ALONE))


class ParkingQueueConsumer(QueueConsumer):
    """nameko's queue consumer, except that a body kombu cannot decode (not
    JSON although labelled so) is parked with its reason instead of being
    acked and dropped with only a log line, and that a container with batch
    consumers lets the broker hand over enough messages to fill a batch.

    nameko's prefetch is ``max_workers`` for every consumer of the container
    (one channel, so one value); with a batch consumer it becomes at least
    ``2 × batch_size`` (one batch being written, the next filling)."""

    @property
    def prefetch_count(self):
        batches = [getattr(p, "batch_size", 1) for p in self._providers]
        return max([self.container.max_workers] + [2 * size for size in batches if size > 1])

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = partial(self._park_undecodable, provider)
        return consumers

    def on_connection_error(self, exc, interval):
        log.warning("Error connecting to broker at %s (%s); retrying in %s seconds",
                    config.masked(self.amqp_uri), exc, interval)

    @staticmethod
    def _park_undecodable(provider, message, exc):
        body = message.body.decode("utf-8", "replace") if isinstance(message.body, bytes) else message.body
        provider._park(body, message, f"message body could not be decoded as {message.content_type}: {exc}",
                       kind="invalid")


class Refused(NamedTuple):
    """A ``Rejected`` or ``ValidationError`` the handler raised, returned by its worker instead: a
    message refused is parked with a WARNING naming the reason, not logged by nameko's container
    as a worker error with a traceback (that is for bugs: any other exception still is)."""
    exc: Exception


def _logging_event_fields(handler):
    """The handler, run with the ids of its event (or its batch's only event) bound to its log lines;
    a refusal comes back as :class:`Refused`."""
    @functools.wraps(handler)
    def handle(service, first, *args, **kwargs):
        single = first[0] if isinstance(first, list) and len(first) == 1 else first
        with logs.bound(**logs.event_fields(single)):
            try:
                return handler(service, first, *args, **kwargs)
            except (Rejected, ValidationError) as exc:
                return Refused(exc)
    return handle


class EventConsumer(Consumer):

    queue_consumer = ParkingQueueConsumer()
    database_client = DatabaseClient()

    def __init__(self, spec, raw=False, keyed_by_event_id=False, batch_size=1,
                 batch_wait=DEFAULT_BATCH_WAIT_SECONDS, **kwargs):
        """Consume the queue ``spec`` (a ``topology.QueueSpec``).

        ``raw=True`` hands the handler ``(body, headers)`` without envelope
        validation (the audit recorder reads dead letters this way).
        ``keyed_by_event_id=True``: every effect of the handler is keyed by the
        message id under a unique index (audit: one record per event id; notify:
        one delivery per subscription and event id), so a second copy cannot take
        effect twice; the inbox claim and record (two database round trips per
        message or batch) are skipped.
        ``batch_size > 1`` (not raw, on a queue with a retry queue): the handler
        receives a list of up to ``batch_size`` envelopes, gathered for at most
        ``batch_wait`` seconds; ``batch_wait=0``: the messages the broker has
        already handed over, no waiting (the flush runs when the consumer would
        block for the next message, so a batch adds no latency at low load).
        Without ``keyed_by_event_id`` the batch is claimed in the inbox as a
        whole (one round trip) and recorded done as a whole (one bulk write),
        so each event id reaches the handler once, in one batch, even when
        applying it is not idempotent; copies never share a batch.
        ``batch_size=1`` (the default): the handler receives one envelope.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if batch_size > 1:
            if raw:
                raise TypeError("batches need validated envelopes (raw=False): each message is claimed "
                                "by its event id")
            if not spec.retry:
                raise TypeError(f"batches need a retry queue; {spec.name} has none")
            if isinstance(batch_wait, bool) or not isinstance(batch_wait, (int, float)) or batch_wait < 0:
                raise ValueError(f"batch_wait must be a number of seconds (0 or more), not {batch_wait!r}")
        self.spec = spec
        self.raw = raw
        self.keyed_by_event_id = keyed_by_event_id
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self._batch = []  # [Delivery] waiting for a flush
        self._batch_generation = 0
        super().__init__(queue=topology.kombu_queue(spec, passive_exchange=True), requeue_on_error=False, **kwargs)

    @classmethod
    def decorator(cls, *args, **kwargs):
        register = super().decorator(*args, **kwargs)
        return lambda handler: register(_logging_event_fields(handler))

    def setup(self):
        super().setup()
        cfg = self.container.config
        self.service = service_name(self.container)
        self.publisher = ConfirmedPublisher(cfg[config.AMQP_URI_KEY], self.service)
        self.inbox = Inbox(self.database_client.database(),
                           lease_seconds=float(cfg.get(config.INBOX_LEASE_SECONDS_KEY, Inbox.LEASE_SECONDS)))
        self.max_attempts = int(cfg.get(config.MAX_ATTEMPTS_KEY, 5))
        self.retry_base = int(cfg.get(config.RETRY_BASE_MS_KEY, 500)) / 1000.0
        self.metrics = metrics_for(self.service)
        self.metrics.queue_settled.labels(queue=self.spec.name)  # at 0 from the start, like the depth
        self.depth = QueueDepth(cfg[config.AMQP_URI_KEY], self.spec.name, self.metrics.queue_messages, cfg)
        if self.batch_size > 1:
            self.batches = metric("counter", self.service, "consumer_batches_total",
                                  "Batches handed to a batch handler, by queue", ["queue"])
        self._declare_topology()

    def start(self):
        super().start()
        self._depth_thread = self.container.spawn_managed_thread(self.depth.poll_forever,
                                                                 identifier=f"queue-depth[{self.spec.name}]")

    def stop(self):
        if self.batch_size > 1:
            self._flush_batch()  # hand the waiting messages to a worker before the pool is drained
        self._stop_depth()
        super().stop()

    def kill(self):
        self._stop_depth()
        super().kill()

    def _stop_depth(self):
        thread = getattr(self, "_depth_thread", None)
        if thread is not None:
            thread.kill()
            self._depth_thread = None
        self.depth.close()

    def _declare_topology(self):
        from kombu import Connection
        with Connection(self.container.config[config.AMQP_URI_KEY]) as connection:
            topology.declare_for(connection, self.spec)

    # -- receiving -----------------------------------------------------------

    def handle_message(self, body, message):
        # Runs in a managed thread: an exception escaping it would kill the container.
        try:
            with logs.bound(queue=self.spec.name, **logs.event_fields(body)):
                self._handle_message(body, message)
        except Exception:
            log.exception("could not dispatch a message from %s; giving it back to the broker", self.spec.name)
            self._requeue(message)

    def _handle_message(self, body, message):
        try:
            if self.raw:
                event = body
                message_id = (message.headers or {}).get(headers.DEAD_LETTER_ID) or message.properties.get("message_id")
            else:
                event = self._load(body, message)
                message_id = event["id"]
        except (ValidationError, Rejected) as exc:
            self._park(body, message, describe(exc), kind="invalid")
            return
        self._take(Delivery(body, message, event, message_id))

    def _take(self, delivery):
        """A valid message to handle: dispatched at once, or into the batch filling."""
        if self.batch_size == 1 or delivery.alone:  # a batch of one (one that failed in a batch: on its own)
            self._dispatch([delivery])
            return
        # No yield between reading and changing the buffer (green threads switch only on I/O).
        self._batch.append(delivery)
        if len(self._batch) >= self.batch_size:
            self._flush_batch()
        elif len(self._batch) == 1:
            self.container.spawn_managed_thread(partial(self._flush_later, self._batch_generation),
                                                identifier=f"{type(self).__name__}.flush[{self.spec.name}]")

    def _flush_later(self, generation):
        # A managed thread: an exception escaping it would kill the container.
        try:
            eventlet.sleep(self.batch_wait)
            if generation == self._batch_generation:  # else that batch was flushed full meanwhile
                self._flush_batch()
        except Exception:
            log.exception("could not flush a batch from %s", self.spec.name)

    def _flush_batch(self):
        batch, self._batch = self._batch, []
        self._batch_generation += 1
        if batch:
            self._dispatch(batch)

    def _load(self, body, message):
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError:
                raise Rejected("message body is not JSON")
        ingress = self.spec.exchange == topology.INGRESS
        event = envelope.load(body, envelope.INGRESS if ingress else envelope.EVENTS)
        if ingress:
            user_id = self._partner(message)
            if not user_id:
                raise Rejected("ingress messages must carry the broker-validated user_id property")
            event["source"] = envelope.partner_source(user_id)
            event["actor"] = envelope.partner_actor(user_id, event.get("actor"))
        return event

    def _partner(self, message):
        """The partner who sent an ingress message: the broker-checked ``user_id``, or on a retry the header."""
        return message.properties.get("user_id") or self._retried_partner(message)

    @staticmethod
    def _retried_partner(message):
        """The partner of a message coming back from its retry queue.

        A retry is republished by the service (whose broker user cannot set the
        partner's ``user_id``), so the partner travels in a header. It is trusted
        only on messages that RabbitMQ dead-lettered back from the retry queue
        through ``tacoord.requeue``, which no partner and no service may publish
        to; a service reaches only its own retry queues (through ``tacoord.retry``),
        so it cannot slip a message claiming a partner into another service's.
        """
        if message.delivery_info.get("exchange") == topology.REQUEUE:
            return (message.headers or {}).get(headers.PARTNER)
        return None

    # -- to a worker -----------------------------------------------------------

    def _dispatch(self, batch):
        """Claim ``batch`` (a list of :class:`Delivery`) and hand what is new to one worker."""
        batch = self._claim(batch)
        if not batch:
            return
        handle_result = partial(self.handle_result, batch, time.monotonic())
        try:
            self.container.spawn_worker(self, self._worker_args(batch), {},
                                        context_data=self.unpack_message_headers(batch[0].message),
                                        handle_result=handle_result)
        except Exception as exc:
            if not isinstance(exc, ContainerBeingKilled):
                log.exception("could not start a worker for messages from %s; giving them back", self.spec.name)
            try:
                self.inbox.release_many(self.spec.name, self._inbox_ids(batch))
            except Exception:  # the claims lapse after the lease
                log.warning("could not release the claims of messages from %s", self.spec.name)
            for delivery in batch:
                self._requeue(delivery.message)
            return
        if self.batch_size > 1:
            self.batches.labels(queue=self.spec.name).inc()

    def _worker_args(self, batch):
        if self.raw:
            [delivery] = batch
            return delivery.body, dict(delivery.message.headers or {})
        if self.batch_size == 1:
            return (batch[0].event,)
        return ([delivery.event for delivery in batch],)

    def _in_inbox(self, deliveries):
        """The deliveries claimed in the inbox: none with ``keyed_by_event_id``, nor a raw message without an id."""
        if self.keyed_by_event_id:
            return []
        return [delivery for delivery in deliveries if delivery.message_id]

    def _inbox_ids(self, deliveries):
        return [delivery.message_id for delivery in self._in_inbox(deliveries)]

    def _claim(self, batch):
        """Claim the messages in the inbox with one round trip; returns those to handle.

        Copies of one id: the first is claimed, the others wait (held, :meth:`_hold`) and
        find it done when they are taken again. 'done' → acked as a duplicate; 'busy' →
        waiting; the database unreachable → every message waiting. Without an inbox (``keyed_by_event_id``,
        or a raw message without an id) every message is handled."""
        first, copies = {}, []
        for delivery in batch:
            if delivery.message_id in first:
                copies.append(delivery)
            else:
                first[delivery.message_id] = delivery
        wanted = self._inbox_ids(first.values())
        if not wanted:
            return batch
        try:
            claims = self.inbox.claim_many(self.spec.name, wanted)
        except Exception as exc:
            log.warning("%s: cannot claim messages now (%s); retrying later", self.spec.name, describe(exc))
            for delivery in batch:
                self._wait_round(delivery, describe(exc))
            return []
        handle = [d for message_id, d in first.items() if claims.get(message_id, "new") == "new"]
        skipped = [(claims[message_id], d) for message_id, d in first.items()
                   if claims.get(message_id, "new") != "new"]
        for claim, delivery in skipped + [("copy", delivery) for delivery in copies]:
            with self._fields(delivery):
                if claim == "done":
                    self._count(delivery.event, "duplicate")
                    self._ack(delivery)
                else:
                    self._wait_round(delivery, "a copy of this message is in the same batch" if claim == "copy"
                                     else "another worker is handling this message")
        return handle

    # -- after the worker ----------------------------------------------------

    def handle_result(self, batch, started, worker_ctx, result=None, exc_info=None):
        if isinstance(result, Refused):
            result, exc_info = None, (type(result.exc), result.exc, result.exc.__traceback__)
        per_event = (time.monotonic() - started) / len(batch)  # the batch's time, shared out
        for delivery in batch:
            self.metrics.handler_seconds.labels(type=self._type(delivery.event)).observe(per_event)
        exc = exc_info[1] if exc_info else None
        # A batch handler may return {event id: exception} for the events it could not apply;
        # the others succeeded. Those are settled each as a single message's failure would be.
        failed = result if exc is None and self.batch_size > 1 and isinstance(result, dict) else {}
        try:
            if exc is None:
                done = [d for d in batch if d.message_id not in failed]
                self.inbox.record_many(self.spec.name, [(d.message_id, self._type(d.event))
                                                        for d in self._in_inbox(done)])
                self.inbox.release_many(self.spec.name, self._inbox_ids(d for d in batch if d.message_id in failed))
            else:
                self.inbox.release_many(self.spec.name, self._inbox_ids(batch))
        except Exception:
            # Could not record the outcome (database down). Give the messages back to the
            # broker: left unacked on a live channel they would sit there, never redelivered,
            # until the service restarts.
            log.exception("could not settle messages from %s; they will be redelivered", self.spec.name)
            for delivery in batch:
                self._requeue(delivery.message)
            return result, exc_info
        for delivery in batch:
            try:
                with self._fields(delivery):
                    self._settle(delivery, batch, exc, failed)
            except Exception:
                log.exception("could not settle a message from %s; it will be redelivered", self.spec.name)
                self._requeue(delivery.message)
        if exc is not None and len(batch) > 1 and not transient(exc):
            log.warning("%s: a batch of %d failed (%s); each message will be handled on its own",
                        self.spec.name, len(batch), describe(exc))
        return result, exc_info

    def _fields(self, delivery):
        return logs.bound(queue=self.spec.name, **logs.event_fields(delivery.event))

    def _settle(self, delivery, batch, exc, failed):
        """One message of a handled batch: acked, or settled as a failure."""
        if exc is None and delivery.message_id in failed:
            self._settle_failure(delivery, failed[delivery.message_id])
        elif exc is None:
            self._count(delivery.event, "ok")
            log.debug("%s: handled %s", self.spec.name, self._type(delivery.event))
            self.queue_consumer.ack_message(delivery.message)
        elif len(batch) == 1:
            self._settle_failure(delivery, exc)
        elif transient(exc):
            self._retry_or_park(delivery, exc)  # waits, keeping its tries
        else:
            # Which message failed the batch is unknown: each one is handled again on its own, no try used.
            self._hold(delivery._replace(split=True))

    def _settle_failure(self, delivery, exc):
        """One message's failure: parked at once when retrying cannot help, else retried."""
        if isinstance(exc, (Rejected, ValidationError)):
            self._park(delivery.body, delivery.message, describe(exc), kind="rejected", alone=delivery.alone)
        else:
            self._retry_or_park(delivery, exc)

    def _retry_or_park(self, delivery, exc):
        attempt = delivery.attempt
        if transient(exc):
            delay = self._hold(delivery)
            what = "busy elsewhere" if isinstance(exc, Busy) else "database or broker unavailable"
            log.warning("%s: %s (%s); trying again in %.1fs without using a try",
                        self.spec.name, what, describe(exc), delay)
            return
        if attempt >= self.max_attempts or not self.spec.retry:
            self._park(delivery.body, delivery.message, f"failed {attempt} time(s); last error: {describe(exc)}",
                       kind="exhausted", alone=delivery.alone)
            return
        delay = self._send_round(delivery, attempt + 1, describe(exc))
        log.warning("%s: attempt %d failed (%s); retrying in %.1fs", self.spec.name, attempt, describe(exc), delay)

    # -- settling one message --------------------------------------------------

    def _ack(self, delivery):
        try:
            self.queue_consumer.ack_message(delivery.message)
        except Exception:
            log.exception("could not ack a message from %s; it will be redelivered", self.spec.name)
            self._requeue(delivery.message)

    def _wait_round(self, delivery, reason):
        """Not to handle now, and not the message's fault: held, then handled again (no try used)."""
        delay = self._hold(delivery)
        log.debug("%s: %s; trying again in %.1fs", self.spec.name, reason, delay)

    def _hold(self, delivery):
        """Keep the message (unacknowledged) for a delay growing with its waits, then take it
        again; returns the delay. Counted like a round of the retry queue (``retries_total``,
        ``events_consumed_total{outcome="retried"}``)."""
        waits = delivery.waits + 1
        delay = min(MAX_WAIT_DELAY_SECONDS, self.retry_base * 2 ** min(waits - 1, 10)) * random.uniform(0.8, 1.2)
        self._count(delivery.event, "retried")
        self.metrics.retries.labels(type=self._type(delivery.event)).inc()
        self.container.spawn_managed_thread(partial(self._take_again, delivery._replace(waits=waits), delay),
                                            identifier=f"{type(self).__name__}.hold[{self.spec.name}]")
        return delay

    def _take_again(self, delivery, delay):
        # A managed thread: killed with the container, the message left to the broker to redeliver.
        try:
            eventlet.sleep(delay)
            if not delivery.message.channel.connection:
                # its channel closed meanwhile: the broker has taken it back and hands it out again
                log.info("%s: a held message's channel closed; the broker redelivers it", self.spec.name)
                return
            with self._fields(delivery):
                self._take(delivery)
        except Exception:
            log.exception("could not take a held message from %s again; giving it back", self.spec.name)
            self._requeue(delivery.message)

    def _requeue(self, message):
        try:
            self.queue_consumer.requeue_message(message)
        except Exception:  # the channel is gone: the broker redelivers the message anyway
            log.warning("could not requeue a message from %s; the broker will redeliver it", self.spec.name)

    def _send_round(self, delivery, attempt, reason):
        """Republish to ``<queue>.retry`` (TTL grows with ``attempt``), then ack. Returns the delay.
        Counted in ``retries_total`` and ``events_consumed_total{outcome="retried"}``, as a wait or a
        batch split is (:meth:`_hold`). One that failed on its own (its batch
        failed before) comes back marked to be handled on its own again (``headers.ALONE``).
        """
        message = delivery.message
        sent = {**(message.headers or {}), headers.ATTEMPT: attempt, headers.REASON: reason}
        if delivery.alone:
            sent[headers.ALONE] = 1
        delay = min(MAX_DELAY_SECONDS, self.retry_base * 2 ** (max(attempt, 2) - 2)) * random.uniform(0.8, 1.2)
        partner = self._partner(message)
        if partner:
            sent[headers.PARTNER] = partner
        self.publisher.publish_raw(delivery.body, exchange=topology.RETRY, routing_key=self.spec.retry_name,
                                   headers=sent, expiration=delay, message_id=message.properties.get("message_id"))
        self._count(delivery.event, "retried")
        self.metrics.retries.labels(type=self._type(delivery.event)).inc()
        self.queue_consumer.ack_message(message)
        return delay

    def _park(self, body, message, reason, kind, alone=False):
        """Publish to the dead-letter exchange with the reason, then ack. ``alone``: it failed in a
        batch first, then on its own (``headers.ALONE`` on the dead letter says so)."""
        kept = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-death")}
        parked = {**kept, **headers.parking(
            reason, str(uuid.uuid4()), queue=self.spec.name, routing_key=message.delivery_info.get("routing_key"),
            exchange=message.delivery_info.get("exchange"), failed_at=datetime.now(timezone.utc).isoformat(),
            kind=kind)}
        if alone:
            parked[headers.ALONE] = 1
        user_id = self._partner(message)
        if user_id:
            parked[headers.PARTNER] = user_id
        self.publisher.park(body, parked, message.delivery_info.get("routing_key"),
                            message_id=message.properties.get("message_id"))
        self._count(body if isinstance(body, dict) else None, "dead_lettered")
        log.warning("%s: parked a message in the dead-letter queue: %s", self.spec.name, reason)
        self.queue_consumer.ack_message(message)

    def _type(self, event):
        event_type = event.get("type") if isinstance(event, dict) else None
        return event_type if envelope.is_registered(event_type) else "other"

    def _count(self, event, outcome):
        event_type = self._type(event)
        self.metrics.events_consumed.labels(type=event_type, outcome=outcome).inc()
        self.metrics.queue_settled.labels(queue=self.spec.name).inc()
        self.metrics.retries.labels(type=event_type)  # at 0 for each type seen: a first retry is an increase


consume_events = EventConsumer.decorator

INGRESS_BATCH = 50


def consume_each(spec, batch_size=INGRESS_BATCH):
    """Handle one event at a time, consumed in batches of what the broker has handed over (one
    inbox claim and one record per batch); each event is applied and settled on its own
    (:func:`apply_each`)::

        @consume_each(topology.NEEDS_INGRESS)
        def on_ingress(self, message):     # one validated envelope
            ...
    """
    def decorate(handle_one):
        @wraps(handle_one)
        def handle_batch(self, events):
            return apply_each(events, lambda event: handle_one(self, event))
        return consume_events(spec, batch_size=batch_size, batch_wait=0)(handle_batch)
    return decorate
