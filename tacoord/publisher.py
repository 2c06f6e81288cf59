"""Persistent, confirmed publishing of envelopes.

Built on nameko's own ``Publisher`` (kombu producer pool, publisher confirms,
retry on connection errors). A publish returns only once the broker has
confirmed it; a failure raises, so callers never believe an unconfirmed
event was sent.
"""
import json
import time

from amqp.exceptions import ConnectionError as AMQPConnectionError
from eventlet.semaphore import Semaphore
from kombu import Connection, Exchange, Producer
from kombu.exceptions import OperationalError as KombuOperationalError
from nameko.amqp.publish import Publisher
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider

from tacoord import config, headers, topology
from tacoord.ops import metrics_for

RETRY_POLICY = {"max_retries": 10, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 3}


# The connection to the broker broke (restart, network): worth one more try on a new one.
BROKEN_CONNECTION = (AMQPConnectionError, ConnectionError, OSError, KombuOperationalError)


class _Confirms:
    """Publisher confirms of one channel: publish sequence numbers start at 1 after
    ``confirm.select`` and grow by one per message; the broker acks or nacks them,
    possibly many at once (``multiple``)."""

    def __init__(self):
        self.sent = 0
        self.pending = set()
        self.refused = []

    def expect(self):
        self.sent += 1
        self.pending.add(self.sent)

    def ack(self, tag, multiple):
        self._settle(tag, multiple)

    def nack(self, tag, multiple):
        self.refused.extend(self._settle(tag, multiple))

    def _settle(self, tag, multiple):
        done = {t for t in self.pending if t <= tag} if multiple else {tag} & self.pending
        self.pending -= done
        return done


class ConfirmedPublisher:
    """Publishes envelopes to an exchange of the topology, persistent and confirmed."""

    def __init__(self, amqp_uri, service):
        self.service = service
        self.amqp_uri = amqp_uri
        self._publisher = Publisher(
            amqp_uri, use_confirms=True, delivery_mode=PERSISTENT, serializer="json",
            retry=True, retry_policy=RETRY_POLICY)
        self._metrics = metrics_for(service)
        self._batch_lock = Semaphore(1)
        self._batch_channel = None  # (connection, channel, _Confirms) for publish_events

    def publish_event(self, event, exchange=topology.EVENTS):
        self.publish_raw(event, exchange=exchange, routing_key=event["type"],
                         message_id=event["id"])
        self._metrics.events_published.labels(type=event["type"]).inc()

    def publish_events(self, events, exchange=topology.EVENTS, timeout=60):
        """Publish many envelopes on one channel and wait once for all the broker's confirms.

        Same guarantees as :meth:`publish_event` (persistent; returns only when
        every message is confirmed; raises if any is refused or unconfirmed),
        without one confirm round trip per message. The channel is kept between
        calls; if the connection broke (the broker restarted), the batch is sent
        again once on a new one (consumers skip the copies by event id).
        """
        events = list(events)
        if not events:
            return
        with self._batch_lock:
            for attempt in (1, 2):
                try:
                    self._publish_batch(events, exchange, timeout)
                    break
                except Exception as exc:
                    self._close_batch_channel()
                    # a slow confirm (socket timeout) is not a broken connection: sending the
                    # batch again would only double it
                    if attempt == 2 or not isinstance(exc, BROKEN_CONNECTION) or isinstance(exc, TimeoutError):
                        raise
        for event in events:
            self._metrics.events_published.labels(type=event["type"]).inc()

    def _publish_batch(self, events, exchange, timeout):
        connection, channel, confirms = self._batch_channel or self._open_batch_channel()
        confirms.refused.clear()
        producer = Producer(channel, exchange=topology.EXCHANGES[exchange], auto_declare=False)
        for event in events:
            confirms.expect()
            producer.publish(event, routing_key=event["type"], serializer="json", delivery_mode=PERSISTENT,
                             message_id=event["id"], headers={}, retry=False)
        deadline = time.monotonic() + timeout
        while confirms.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the broker did not confirm {len(confirms.pending)} of {len(events)} events")
            connection.drain_events(timeout=remaining)
        if confirms.refused:
            raise RuntimeError(f"the broker refused {len(confirms.refused)} of {len(events)} events")

    def _open_batch_channel(self):
        connection = Connection(self.amqp_uri)
        channel = connection.channel()
        confirms = _Confirms()
        channel.events["basic_ack"].add(confirms.ack)
        channel.events["basic_nack"].add(confirms.nack)
        channel.confirm_select()
        self._batch_channel = (connection, channel, confirms)
        return self._batch_channel

    def close(self):
        """Close the channel kept for :meth:`publish_events` (the container is stopping)."""
        with self._batch_lock:
            self._close_batch_channel()

    def _close_batch_channel(self):
        if self._batch_channel is not None:
            try:
                self._batch_channel[0].release()
            except Exception:  # already broken: nothing to close cleanly
                pass
            self._batch_channel = None

    def publish_raw(self, body, exchange, routing_key, headers=None, message_id=None,
                    expiration=None):
        """Publish any JSON body (dead letters, retries) with the same guarantees."""
        target = topology.EXCHANGES[exchange] if exchange else Exchange("")
        self._publisher.publish(
            body, exchange=target, routing_key=routing_key, headers=headers or {},
            message_id=message_id, expiration=expiration)

    def park(self, body, parking_headers, routing_key, message_id=None):
        """Publish a message to the dead-letter exchange (confirmed), with its parking headers
        (:func:`tacoord.headers.parking`), and count it in ``dead_letters_total`` by its kind: every
        path that parks (the consumer, notify's undeliverable notifications) goes through here."""
        self.publish_raw(body, exchange=topology.DEAD, routing_key=routing_key or "", headers=parking_headers,
                         message_id=message_id)
        self._metrics.dead_letters.labels(reason=parking_headers[headers.KIND]).inc()


class EventPublisher(DependencyProvider):
    """Injects ``publish(event)`` for events that change no stored state."""

    def setup(self):
        cfg = self.container.config
        self.publisher = ConfirmedPublisher(
            cfg[config.AMQP_URI_KEY], cfg.get(config.SERVICE_KEY, self.container.service_name))

    def get_dependency(self, worker_ctx):
        return self.publisher.publish_event


def encode(body):
    return json.dumps(body, separators=(",", ":"), default=str)
