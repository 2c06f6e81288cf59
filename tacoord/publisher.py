"""Persistent, confirmed publishing of envelopes.

Built on nameko's own ``Publisher`` (kombu producer pool, publisher confirms,
retry on connection errors). A publish returns only once the broker has
confirmed it; a failure raises, so callers never believe an unconfirmed
event was sent.
"""
import json

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
        self._publisher = Publisher(
            amqp_uri, use_confirms=True, delivery_mode=PERSISTENT, serializer="json",
            retry=True, retry_policy=RETRY_POLICY)
        self._metrics = metrics_for(service)

    def publish_event(self, event, exchange=topology.EVENTS):
        self.publish_raw(event, exchange=exchange, routing_key=event["type"],
                         message_id=event["id"])
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
