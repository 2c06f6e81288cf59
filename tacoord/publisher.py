"""Persistent, confirmed publishing of envelopes.

Built on nameko's own ``Publisher`` (kombu producer pool, publisher confirms,
retry on connection errors). A publish returns only once the broker has
confirmed it; a failure raises, so callers never believe an unconfirmed
event was sent.
"""
import json
import time

from kombu import Exchange
from nameko.amqp.publish import Publisher
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider

from tacoord import config, topology
from tacoord.ops import metrics_for

RETRY_POLICY = {"max_retries": 10, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 3}


class ConfirmedPublisher:
    """Publishes envelopes to an exchange of the topology, persistent and confirmed."""

    def __init__(self, amqp_uri, service):
        self.service = service
        self.amqp_uri = amqp_uri
        self._publisher = Publisher(
            amqp_uri, use_confirms=True, delivery_mode=PERSISTENT, serializer="json",
            retry=True, retry_policy=RETRY_POLICY)
        self._metrics = metrics_for(service)

    def publish_event(self, event, exchange=topology.EVENTS):
        self.publish_raw(event, exchange=exchange, routing_key=event["type"],
                         message_id=event["id"])
        self._metrics.events_published.labels(type=event["type"]).inc()

    def publish_events(self, events, exchange=topology.EVENTS, timeout=60):
        """Publish many envelopes on one channel and wait once for all the broker's confirms.

        Same guarantees as :meth:`publish_event` (persistent; returns only when
        every message is confirmed; raises if any is refused or unconfirmed),
        without one confirm round trip per message: for bulk imports.
        """
        from kombu import Connection, Producer

        events = list(events)
        if not events:
            return
        with Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            unconfirmed = set(range(1, len(events) + 1))
            refused = []

            def settle(tag, multiple, outcome=None):
                done = {t for t in unconfirmed if t <= tag} if multiple else {tag}
                unconfirmed.difference_update(done)
                if outcome is not None:
                    outcome.extend(done)

            channel.events["basic_ack"].add(settle)
            channel.events["basic_nack"].add(lambda tag, multiple: settle(tag, multiple, refused))
            channel.confirm_select()
            producer = Producer(channel, exchange=topology.EXCHANGES[exchange], auto_declare=False)
            for event in events:
                producer.publish(event, routing_key=event["type"], serializer="json", delivery_mode=PERSISTENT,
                                 message_id=event["id"], headers={}, retry=False)
            deadline = time.monotonic() + timeout
            while unconfirmed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"the broker did not confirm {len(unconfirmed)} of {len(events)} events")
                connection.drain_events(timeout=remaining)
            if refused:
                raise RuntimeError(f"the broker refused {len(refused)} of {len(events)} events")
        for event in events:
            self._metrics.events_published.labels(type=event["type"]).inc()

    def publish_raw(self, body, exchange, routing_key, headers=None, message_id=None,
                    expiration=None):
        """Publish any JSON body (dead letters, retries) with the same guarantees."""
        target = topology.EXCHANGES[exchange] if exchange else Exchange("")
        self._publisher.publish(
            body, exchange=target, routing_key=routing_key, headers=headers or {},
            message_id=message_id, expiration=expiration)


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
