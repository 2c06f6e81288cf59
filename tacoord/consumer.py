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
   broker checks against the connection's user; it becomes ``source``.
3. An id already processed on this queue is acknowledged and skipped.
4. The handler runs in a worker. Success → the id is recorded, the message
   acked. ``Rejected`` or a ``ValidationError`` → parked at once (retrying
   cannot help). Any other error → republished to ``<queue>.retry`` with a
   per-message TTL growing exponentially (with jitter); the broker returns it
   to the queue when the TTL expires. After ``TACOORD_MAX_ATTEMPTS`` tries
   it is parked with the last error as the reason. The database or broker
   being unreachable, and a claim another worker holds, send the message
   round without using a try (see ``transient``).

Every path publishes (confirmed) before it acks, so a crash at any point
leads to a redelivery, never a loss; step 3 makes the redelivery harmless.

Batches: ``@consume_events(spec, batch_size=50)`` hands the handler a *list*
of validated envelopes (one database round trip for many events). Valid
messages are buffered and flushed as one worker when ``batch_size`` are
waiting or ``batch_wait`` seconds after the first. At the flush the whole
batch is claimed in the inbox with one round trip (``Inbox.claim_many``):
done ids are acked as duplicates, ids another worker holds go round the retry
queue (waiting, no try used), later copies of an id in the same batch too
(they find it done when they come back); if the claim itself fails, every
message goes round waiting. Success → the ids recorded done with one bulk
write, every message acked. Failure → the claims released with one delete,
then: a transient error → every message round the retry queue, keeping its
tries. Any other error in a batch of several → every message round the retry
queue without using a try, marked ``x-tacoord-alone``, and handled in a batch
of its own when it comes back; a batch of one fails like a single message
(parked, or retried and parked after the last try). A poison message so only
uses up its own tries. A handler that knows which events failed returns
``{event id: exception}`` (:func:`apply_each`): only those are settled as
failures, each like a single message. With ``keyed_by_event_id=True`` there is no inbox (the
handler's write must be keyed by event id under a unique index, and copies
may share a batch). The container's prefetch is raised to ``2 × batch_size``
so batches can fill.
"""
import json
import logging
import random
import time
import uuid
from datetime import datetime, timezone
from functools import partial

import eventlet
from amqp.exceptions import ConnectionError as AMQPConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from marshmallow import ValidationError
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer, QueueConsumer
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError

from tacoord import config, envelope, topology
from tacoord.errors import Rejected
from tacoord.indexes import PROCESSED
from tacoord.ops import metric, metrics_for
from tacoord.publisher import ConfirmedPublisher
from tacoord.store import DatabaseClient, inserted_or_existing, service_name

log = logging.getLogger(__name__)

ATTEMPT_HEADER = "x-tacoord-attempt"
REASON_HEADER = "x-tacoord-reason"
DEAD_LETTER_ID_HEADER = "x-tacoord-dead-letter-id"
PARTNER_HEADER = "x-tacoord-user-id"
WAIT_HEADER = "x-tacoord-waits"
ALONE_HEADER = "x-tacoord-alone"  # failed in a batch: handle it in a batch of its own
DEFAULT_BATCH_WAIT_SECONDS = 0.01
MAX_DELAY_SECONDS = 60
MAX_WAIT_DELAY_SECONDS = 10

# The database or the broker is unreachable (down, restarting, frozen): not the
# message's fault, so it does not use up the message's tries.
TRANSIENT_ERRORS = (ConnectionFailure, AMQPConnectionError, KombuOperationalError, ConnectionError, TimeoutError)


def transient(exc):
    return isinstance(exc, TRANSIENT_ERRORS)


class Inbox:
    """The ids a service has processed, per queue (unique ``_id``).

    A message id is *claimed* before its handler runs, so two copies handled
    at once by two workers cannot both run. A claim older than the lease (its
    worker died) may be taken over; a fresh one means "another worker is on
    it", and the copy is sent round the retry queue instead of being dropped,
    in case that worker fails.
    """

    LEASE_SECONDS = config.INBOX_LEASE_SECONDS

    def __init__(self, database, lease_seconds=LEASE_SECONDS):
        self.collection = database[PROCESSED]
        self.lease_seconds = lease_seconds

    @staticmethod
    def key(queue, message_id):
        return f"{queue}:{message_id}"

    def claim(self, queue, message_id):
        """'new' (run the handler), 'done' (a duplicate) or 'busy' (being handled)."""
        key, now = self.key(queue, message_id), time.time()
        for _ in range(3):
            try:
                self.collection.insert_one({"_id": key, "state": "processing", "claimed_at": now})
                return "new"
            except DuplicateKeyError:
                claim = self.collection.find_one({"_id": key})
            if claim is None:
                continue  # released meanwhile: claim again
            return self._classify(key, claim, now)
        return "busy"

    def _classify(self, key, claim, now):
        """An existing claim: 'done', 'busy' (fresh) or, older than the lease, taken over ('new')."""
        if claim.get("state", "done") == "done":
            return "done"
        if now - claim.get("claimed_at", 0) < self.lease_seconds:
            return "busy"
        taken = self.collection.update_one({"_id": key, "claimed_at": claim.get("claimed_at")},
                                           {"$set": {"claimed_at": now}})
        return "new" if taken.modified_count else "busy"

    def claim_many(self, queue, message_ids):
        """Claim distinct ids with one round trip (two if some were claimed before):
        ``{id: 'new' | 'done' | 'busy'}``, as :meth:`claim` for each."""
        keys = [self.key(queue, message_id) for message_id in message_ids]
        by_key = dict(zip(keys, message_ids))
        if len(by_key) != len(keys):
            raise ValueError("claim_many needs distinct message ids")
        now = time.time()
        outcome = {message_id: "new" for message_id in message_ids}
        if not keys:
            return outcome
        try:
            taken = inserted_or_existing(
                self.collection, [{"_id": key, "state": "processing", "claimed_at": now} for key in keys])
        except BulkWriteError as exc:  # not only duplicates: give back the claims that were made
            failed = {error.get("index") for error in exc.details.get("writeErrors", [])}
            self.release_many(queue, [m for i, m in enumerate(message_ids) if i not in failed])
            raise
        if not taken:
            return outcome
        claims = {claim["_id"]: claim for claim in self.collection.find({"_id": {"$in": sorted(taken)}})}
        for key in taken:
            claim = claims.get(key)
            if claim is None:  # released meanwhile (rare): claim it on its own
                outcome[by_key[key]] = self.claim(queue, by_key[key])
            else:
                outcome[by_key[key]] = self._classify(key, claim, now)
        return outcome

    def record(self, queue, message_id, event_type):
        # The claim is there (claim() inserted it): a plain update, which nx-27017 does about
        # three times faster than an upsert; the upsert only if the claim went missing.
        done = {"state": "done", "type": event_type, "processed_at": datetime.now(timezone.utc).isoformat()}
        key = self.key(queue, message_id)
        if self.collection.update_one({"_id": key}, {"$set": done}).matched_count == 0:
            self.collection.update_one({"_id": key}, {"$set": done}, upsert=True)

    def release(self, queue, message_id):
        self.collection.delete_one({"_id": self.key(queue, message_id), "state": "processing"})

    def record_many(self, queue, done_ids):
        """Mark ``[(message_id, event_type)]`` done with one bulk write (claimed by :meth:`claim_many`)."""
        if not done_ids:
            return
        at = datetime.now(timezone.utc).isoformat()
        updates = {self.key(queue, message_id): {"state": "done", "type": event_type, "processed_at": at}
                   for message_id, event_type in done_ids}
        result = self.collection.bulk_write([UpdateOne({"_id": key}, {"$set": done})
                                             for key, done in updates.items()], ordered=False)
        if result.matched_count < len(updates):  # a claim went missing (rare): upsert those
            present = {d["_id"] for d in self.collection.find({"_id": {"$in": list(updates)}}, {"_id": 1})}
            missing = [UpdateOne({"_id": key}, {"$set": done}, upsert=True)
                       for key, done in updates.items() if key not in present]
            if missing:
                self.collection.bulk_write(missing, ordered=False)

    def release_many(self, queue, message_ids):
        if message_ids:
            self.collection.delete_many({"_id": {"$in": [self.key(queue, m) for m in message_ids]},
                                         "state": "processing"})


def apply_each(events, handle):
    """Run ``handle(event)`` for each event of a batch, in order; returns ``{event id: exception}``
    for those that raised. A batch handler returns this: the others are recorded done and acked,
    each failed one is settled as a single message's failure would be (parked at once when
    rejected, else retried)."""
    failed = {}
    for index, event in enumerate(events):
        try:
            handle(event)
        except Exception as exc:
            failed[event["id"]] = exc
            if transient(exc):  # the database or broker is down: the rest would only wait for it too
                failed.update((later["id"], exc) for later in events[index + 1:])
                break
    return failed


def _attempt(message):
    return int((message.headers or {}).get(ATTEMPT_HEADER, 1))


def headers_say_alone(message):
    return bool((message.headers or {}).get(ALONE_HEADER))


def describe(exc):
    if isinstance(exc, ValidationError):
        return "; ".join(envelope.describe_errors(exc.messages))
    if isinstance(exc, Rejected):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


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

    @staticmethod
    def _park_undecodable(provider, message, exc):
        body = message.body.decode("utf-8", "replace") if isinstance(message.body, bytes) else message.body
        provider._park(body, message, f"message body could not be decoded as {message.content_type}: {exc}",
                       kind="invalid")


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
        message) are skipped.
        ``batch_size > 1`` (not raw, on a queue with a retry queue): the handler
        receives a list of up to ``batch_size`` envelopes, gathered for at most
        ``batch_wait`` seconds; ``batch_wait=0``: the messages the broker has
        already handed over, no waiting (the flush runs when the consumer would
        block for the next message, so a batch adds no latency at low load).
        Without ``keyed_by_event_id`` the batch is claimed in the inbox as a
        whole (one round trip) and recorded done as a whole (one bulk write),
        so each event id reaches the handler once, in one batch, even when
        applying it is not idempotent; copies never share a batch.
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
        self._batch = []  # [(body, message, event)] waiting for a flush
        self._batch_generation = 0
        super().__init__(queue=topology.kombu_queue(spec, passive_exchange=True), requeue_on_error=False, **kwargs)

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
        if self.batch_size > 1:
            self.batches = metric("counter", self.service, "consumer_batches_total",
                                  "Batches handed to a batch handler, by queue", ["queue"])
        self._declare_topology()

    def stop(self):
        if self.batch_size > 1:
            self._flush_batch()  # hand the waiting messages to a worker before the pool is drained
        super().stop()

    def _declare_topology(self):
        from kombu import Connection
        with Connection(self.container.config[config.AMQP_URI_KEY]) as connection:
            topology.declare_for(connection, self.spec)

    # -- receiving -----------------------------------------------------------

    def handle_message(self, body, message):
        # Runs in a managed thread: an exception escaping it would kill the container.
        try:
            self._handle_message(body, message)
        except Exception:
            log.exception("could not dispatch a message from %s; giving it back to the broker", self.spec.name)
            self._requeue(message)

    def _handle_message(self, body, message):
        headers = dict(message.headers or {})
        try:
            if self.raw:
                event, message_id = body, headers.get(DEAD_LETTER_ID_HEADER) or message.properties.get("message_id")
            else:
                event = self._load(body, message)
                message_id = event["id"]
        except (ValidationError, Rejected) as exc:
            self._park(body, message, describe(exc), kind="invalid")
            return
        if self.batch_size > 1:
            self._add_to_batch(body, message, event)
            return
        try:
            claim = self.inbox.claim(self.spec.name, message_id) if self._uses_inbox(message_id) else "new"
        except Exception as exc:  # the database is unreachable: try again later
            self._settle_later(body, message, event, exc)
            return
        if claim != "new":
            self._skip(claim, body, message, event)
            return
        args = (body, headers) if self.raw else (event,)
        handle_result = partial(self.handle_result, message, body, event, message_id, time.monotonic())
        try:
            self.container.spawn_worker(self, args, {}, context_data=self.unpack_message_headers(message),
                                        handle_result=handle_result)
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    # -- batches -------------------------------------------------------------

    def _add_to_batch(self, body, message, event):
        if headers_say_alone(message):
            self._dispatch_batch([(body, message, event)])  # it failed in a batch: on its own
            return
        # No yield between reading and changing the buffer (green threads switch only on I/O).
        self._batch.append((body, message, event))
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
            self._dispatch_batch(batch)

    def _dispatch_batch(self, batch):
        if not self.keyed_by_event_id:
            batch = self._claim_batch(batch)
            if not batch:
                return
        events = [event for _, _, event in batch]
        handle_result = partial(self.handle_batch_result, batch, time.monotonic())
        try:
            self.container.spawn_worker(self, (events,), {},
                                        context_data=self.unpack_message_headers(batch[0][1]),
                                        handle_result=handle_result)
        except Exception as exc:
            if not isinstance(exc, ContainerBeingKilled):
                log.exception("could not start a worker for a batch from %s; giving it back", self.spec.name)
            if not self.keyed_by_event_id:
                try:
                    self.inbox.release_many(self.spec.name, [event["id"] for event in events])
                except Exception:  # the claims lapse after the lease
                    log.warning("could not release the claims of a batch from %s", self.spec.name)
            for _, message, _ in batch:
                self._requeue(message)
            return
        self.batches.labels(queue=self.spec.name).inc()

    def _claim_batch(self, batch):
        """Claim a batch's messages in the inbox with one round trip; returns those to handle.

        Copies of one id: the first is claimed, the others go round the retry queue
        (waiting) and find it done when they come back. 'done' → acked as a duplicate;
        'busy' → round the retry queue (waiting); the database unreachable → every
        message round the retry queue (waiting)."""
        first, copies = {}, []
        for item in batch:
            message_id = item[2]["id"]
            if message_id in first:
                copies.append(item)
            else:
                first[message_id] = item
        try:
            claims = self.inbox.claim_many(self.spec.name, list(first))
        except Exception as exc:
            for body, message, event in batch:
                self._settle_later(body, message, event, exc)
            return []
        handle = [item for message_id, item in first.items() if claims[message_id] == "new"]
        skipped = [(claims[message_id], item) for message_id, item in first.items() if claims[message_id] != "new"]
        for claim, (body, message, event) in skipped + [("copy", item) for item in copies]:
            try:
                self._skip(claim, body, message, event)
            except Exception:
                log.exception("could not settle message from %s; it will be redelivered", self.spec.name)
                self._requeue(message)
        return handle

    def _skip(self, claim, body, message, event):
        """A message not to handle now: 'done' (a duplicate) is acked; 'busy' (another worker has
        it) and 'copy' (its twin is in the same batch) go round the retry queue, keeping their tries."""
        if claim == "done":
            self._count(event, "duplicate")
            self.queue_consumer.ack_message(message)
            return
        reason = ("a copy of this message is in the same batch" if claim == "copy"
                  else "another worker is handling this message")
        self._send_round(body, message, event, attempt=_attempt(message), reason=reason, wait=True)

    def handle_batch_result(self, batch, started, worker_ctx, result=None, exc_info=None):
        per_event = (time.monotonic() - started) / len(batch)  # the batch's time, shared out
        for _, _, event in batch:
            self.metrics.handler_seconds.labels(type=self._type(event)).observe(per_event)
        exc = exc_info[1] if exc_info else None
        # A handler may return {event id: exception} for the events it could not apply; the
        # others succeeded. Those are settled each as a single message's failure would be.
        failed = result if exc is None and isinstance(result, dict) else {}
        succeeded = [item for item in batch if item[2]["id"] not in failed]
        if not self.keyed_by_event_id:
            try:
                if exc is None:
                    self.inbox.record_many(self.spec.name, [(event["id"], self._type(event))
                                                            for _, _, event in succeeded])
                    self.inbox.release_many(self.spec.name, list(failed))
                else:
                    self.inbox.release_many(self.spec.name, [event["id"] for _, _, event in batch])
            except Exception:
                # As for a single message: give the messages back to the broker.
                log.exception("could not settle a batch from %s; it will be redelivered", self.spec.name)
                for _, message, _ in batch:
                    self._requeue(message)
                return result, exc_info
        for body, message, event in batch:
            try:
                if exc is None and event["id"] in failed:
                    self._settle_failure(body, message, event, failed[event["id"]])
                elif exc is None:
                    self._count(event, "ok")
                    self.queue_consumer.ack_message(message)
                elif len(batch) == 1:
                    self._settle_failure(body, message, event, exc)
                elif transient(exc):
                    self._retry_or_park(body, message, event, exc)  # round the retry queue, keeping its tries
                else:
                    # Which message failed the batch is unknown: each one goes round on its own, no try used.
                    self.metrics.retries.labels(type=self._type(event)).inc()
                    self._send_round(body, message, event, _attempt(message),
                                     f"failed in a batch of {len(batch)}: {describe(exc)}", alone=True)
            except Exception:
                log.exception("could not settle message from %s; it will be redelivered", self.spec.name)
                self._requeue(message)
        if exc is not None and len(batch) > 1 and not transient(exc):
            log.warning("%s: a batch of %d failed (%s); each message will be handled on its own",
                        self.spec.name, len(batch), describe(exc))
        return result, exc_info

    def _settle_failure(self, body, message, event, exc):
        """One message's failure: parked at once when retrying cannot help, else retried."""
        if isinstance(exc, (Rejected, ValidationError)):
            self._park(body, message, describe(exc), kind="rejected")
        else:
            self._retry_or_park(body, message, event, exc)

    def _uses_inbox(self, message_id):
        return bool(message_id) and not self.keyed_by_event_id

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
            event["source"] = f"partner:{user_id}"
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
            return (message.headers or {}).get(PARTNER_HEADER)
        return None

    # -- after the worker ----------------------------------------------------

    def handle_result(self, message, body, event, message_id, started, worker_ctx, result=None,
                      exc_info=None):
        self.metrics.handler_seconds.labels(type=self._type(event)).observe(time.monotonic() - started)
        try:
            if exc_info is None:
                if self._uses_inbox(message_id):
                    self.inbox.record(self.spec.name, message_id, self._type(event))
                self._count(event, "ok")
                self.queue_consumer.ack_message(message)
            else:
                if self._uses_inbox(message_id):
                    self.inbox.release(self.spec.name, message_id)
                if isinstance(exc_info[1], (Rejected, ValidationError)):
                    self._park(body, message, describe(exc_info[1]), kind="rejected")
                else:
                    self._retry_or_park(body, message, event, exc_info[1])
        except Exception:
            # Could not record the outcome (broker or database down). Give the
            # message back to the broker: left unacked on a live channel it would
            # sit there, never redelivered, until the service restarts.
            log.exception("could not settle message from %s; it will be redelivered", self.spec.name)
            self._requeue(message)
        return result, exc_info

    def _settle_later(self, body, message, event, exc):
        """The message could not even be claimed: send it round the retry queue without
        using up a try; if the broker is unreachable too, give it back to the broker."""
        log.warning("%s: cannot handle a message now (%s); retrying later", self.spec.name, describe(exc))
        if not self.spec.retry:  # no retry queue to send it round
            self._requeue(message)
            return
        try:
            self._send_round(body, message, event, attempt=_attempt(message),
                             reason=describe(exc), wait=True)
        except Exception:
            log.exception("could not send a message from %s round the retry queue", self.spec.name)
            self._requeue(message)

    def _requeue(self, message):
        try:
            self.queue_consumer.requeue_message(message)
        except Exception:  # the channel is gone: the broker redelivers the message anyway
            log.warning("could not requeue a message from %s; the broker will redeliver it", self.spec.name)

    def _retry_or_park(self, body, message, event, exc):
        attempt = _attempt(message)
        if transient(exc) and self.spec.retry:
            self.metrics.retries.labels(type=self._type(event)).inc()
            delay = self._send_round(body, message, event, attempt, describe(exc), wait=True)
            log.warning("%s: database or broker unavailable (%s); retrying in %.1fs without using a try",
                        self.spec.name, describe(exc), delay)
            return
        if attempt >= self.max_attempts or not self.spec.retry:
            self._park(body, message, f"failed {attempt} time(s); last error: {describe(exc)}",
                       kind="exhausted")
            return
        self.metrics.retries.labels(type=self._type(event)).inc()
        delay = self._send_round(body, message, event, attempt + 1, describe(exc))
        log.warning("%s: attempt %d failed (%s); retrying in %.1fs", self.spec.name, attempt, describe(exc), delay)

    def _send_round(self, body, message, event, attempt, reason, wait=False, alone=False):
        """Republish to ``<queue>.retry`` (TTL grows with ``attempt``), then ack. Returns the delay.

        ``wait``: not a failed try (database or broker unreachable, or another worker
        holds the claim); the delay grows with the number of such rounds
        (``x-tacoord-waits``, at most 10 s) and the message keeps its tries.
        ``alone``: its batch failed; it comes back marked to be handled on its own.
        """
        headers = {**(message.headers or {}), ATTEMPT_HEADER: attempt, REASON_HEADER: reason}
        if alone:
            headers[ALONE_HEADER] = 1
        if wait:
            rounds = int(headers.get(WAIT_HEADER, 0)) + 1
            headers[WAIT_HEADER] = rounds
            delay = min(MAX_WAIT_DELAY_SECONDS, self.retry_base * 2 ** min(rounds - 1, 10))
        else:
            delay = min(MAX_DELAY_SECONDS, self.retry_base * 2 ** (max(attempt, 2) - 2))
        delay *= random.uniform(0.8, 1.2)
        partner = self._partner(message)
        if partner:
            headers[PARTNER_HEADER] = partner
        self.publisher.publish_raw(body, exchange=topology.RETRY, routing_key=self.spec.retry_name,
                                   headers=headers, expiration=delay,
                                   message_id=message.properties.get("message_id"))
        self._count(event, "retried")
        self.queue_consumer.ack_message(message)
        return delay

    def _park(self, body, message, reason, kind):
        """Publish to the dead-letter exchange with the reason, then ack."""
        original = dict(message.headers or {})
        headers = {
            **{k: v for k, v in original.items() if not k.startswith("x-death")},
            REASON_HEADER: reason,
            DEAD_LETTER_ID_HEADER: str(uuid.uuid4()),
            "x-tacoord-queue": self.spec.name,
            "x-tacoord-routing-key": message.delivery_info.get("routing_key"),
            "x-tacoord-exchange": message.delivery_info.get("exchange"),
            "x-tacoord-failed-at": datetime.now(timezone.utc).isoformat(),
            "x-tacoord-kind": kind,
        }
        user_id = self._partner(message)
        if user_id:
            headers[PARTNER_HEADER] = user_id
        self.publisher.publish_raw(body, exchange=topology.DEAD,
                                   routing_key=message.delivery_info.get("routing_key") or "",
                                   headers=headers, message_id=message.properties.get("message_id"))
        self.metrics.dead_letters.labels(reason=kind).inc()
        self._count(body if isinstance(body, dict) else None, "dead_lettered")
        log.warning("%s: parked a message in the dead-letter queue: %s", self.spec.name, reason)
        self.queue_consumer.ack_message(message)

    def _type(self, event):
        event_type = event.get("type") if isinstance(event, dict) else None
        return event_type if envelope.is_registered(event_type) else "other"

    def _count(self, event, outcome):
        self.metrics.events_consumed.labels(type=self._type(event), outcome=outcome).inc()


consume_events = EventConsumer.decorator

