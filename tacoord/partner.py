"""A small client for partner systems, built on pika.

    from tacoord.partner import PartnerClient

    with PartnerClient("amqp://acme:SECRET@broker:5672/tacoord") as client:
        event = client.publish("need.submitted", {"state": "KEN", "article": 9,
                               "forms": ["LEGAL_ADVICE"], "priority": 1})

Each ``publish`` builds the envelope, validates it against the same
marshmallow schemas the services use (so a mistake fails here, with the
field named, instead of in the dead-letter queue), and sends it persistent,
with ``user_id`` set to the connection's user and with publisher confirms:
it returns only once the broker has taken responsibility for the message.
A lost connection is re-opened with exponential backoff (tenacity) and the
message sent again; a message the broker refuses raises ``PublishRefused``.
"""
import json
from urllib.parse import unquote, urlparse

import pika
from pika.exceptions import AMQPConnectionError, AMQPChannelError, NackError, UnroutableError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from tacoord import envelope, topology

# Registers the intake schemas the services accept.
import services.needs.schemas  # noqa: F401,E402


class PublishRefused(Exception):
    """The broker nacked or could not route the message."""


class PartnerClient:

    def __init__(self, url, exchange=topology.INGRESS, source=None, connect_attempts=6):
        self.url = url
        self.user = unquote(urlparse(url).username or "guest")
        self.exchange = exchange
        self.source = source or f"partner:{self.user}"
        self.connect_attempts = connect_attempts
        self._connection = None
        self._channel = None

    def __enter__(self):
        self._ensure_channel()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._connection is not None and self._connection.is_open:
            self._connection.close()
        self._connection = self._channel = None

    def build(self, event_type, data, actor=None, correlation_id=None):
        """A validated envelope (raises marshmallow.ValidationError naming the fields)."""
        event = envelope.new_event(event_type, data, self.source, actor=actor, correlation_id=correlation_id)
        envelope.load(event, envelope.INGRESS)
        return event

    def publish(self, event_type, data, actor=None, correlation_id=None):
        event = self.build(event_type, data, actor=actor, correlation_id=correlation_id)
        self._send(event)
        return event

    def _send(self, event):
        body = json.dumps(event).encode()
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json",
            message_id=event["id"], user_id=self.user, type=event["type"])
        self._with_reconnect(lambda: self._channel.basic_publish(
            self.exchange, event["type"], body, properties, mandatory=True))

    def _with_reconnect(self, action):
        @retry(retry=retry_if_exception_type((AMQPConnectionError, AMQPChannelError, ConnectionError)),
               stop=stop_after_attempt(self.connect_attempts),
               wait=wait_exponential_jitter(initial=0.2, max=5), reraise=True)
        def attempt():
            self._ensure_channel()
            try:
                return action()
            except (NackError, UnroutableError) as exc:
                raise PublishRefused(f"broker refused the message: {exc}") from exc
            except (AMQPConnectionError, AMQPChannelError, ConnectionError):
                self._connection = self._channel = None
                raise
        return attempt()

    def _ensure_channel(self):
        if self._channel is not None and self._channel.is_open and self._connection.is_open:
            return
        self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
