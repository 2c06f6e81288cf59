"""A small client for partner systems, built on pika.

    from tacoord.partner import PartnerClient

    # first, once per process, the program registers the schemas publish() validates against
    # (a program of this project calls services.register_schemas(); this module never does)
    with PartnerClient("amqp://acme:SECRET@broker:5672/tacoord") as client:
        event = client.publish("need.submitted", {"state": "KEN", "article": 9,
                               "forms": ["LEGAL_ADVICE"], "priority": 1})

On a cluster, give every node, separated by ``;``
(``amqp://acme:SECRET@node1:5672/tacoord;amqp://acme:SECRET@node2:5672/tacoord;…``):
a connection goes to the first node that answers, and a reconnect tries them in turn.

Each ``publish`` builds the envelope, validates it against the same
marshmallow schemas the services use (so a mistake fails here, with the
field named, instead of in the dead-letter queue), and sends it persistent,
with ``user_id`` set to the connection's user and with publisher confirms:
it returns only once the broker has taken responsibility for the message.
A lost connection is re-opened with exponential backoff (tenacity) and the
message sent again with the same envelope ``id`` (tacoord's consumers are
idempotent on it, so a message that had in fact arrived has one effect).
A message the broker refuses (nack, unroutable, a routing key or ``user_id``
the partner's user may not use) raises ``PublishRefused`` at once; wrong
credentials raise ``pika.exceptions.ProbableAuthenticationError`` at once:
neither is retried.

It validates against the intake schemas registered in the process:
``services.register_schemas()`` registers every service's, so
``client.publish("offer.submitted", …)`` and ``"workshop.submitted"`` are
validated too; with none registered, ``build`` says so instead of refusing
every type. The full contract: docs/partners.md and docs/asyncapi.json.
"""
import json
from urllib.parse import unquote, urlparse

import pika
from pika.exceptions import (AMQPChannelError, AMQPConnectionError, ChannelClosedByBroker, NackError,
                             ProbableAccessDeniedError, ProbableAuthenticationError, UnroutableError)
from tenacity import retry, stop_after_attempt, wait_exponential_jitter
from tenacity import retry_if_exception as retryable_exception

from tacoord import envelope, topology

# Not worth retrying: the same credentials or the same message would fail again.
FINAL = (ProbableAuthenticationError, ProbableAccessDeniedError)


class PublishRefused(Exception):
    """The broker nacked or could not route the message."""


class PartnerClient:

    def __init__(self, url, exchange=topology.INGRESS, source=None, connect_attempts=6):
        self.url = url
        self.nodes = [pika.URLParameters(node) for node in url.split(";") if node]   # a cluster: every node
        self.user = unquote(urlparse(url.split(";")[0]).username or "guest")
        self.exchange = exchange
        self.source = source or f"partner:{self.user}"
        self.connect_attempts = connect_attempts
        self._connection = None
        self._channel = None

    def __enter__(self):
        self._with_reconnect(lambda: None)
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._drop()

    def build(self, event_type, data, actor=None, correlation_id=None):
        """A validated envelope (raises marshmallow.ValidationError naming the fields).

        ``actor``: who in your system did it (``"officer-12"``), sent as ``partner:<user>/officer-12``,
        the form tacoord keeps for its audit log (:func:`tacoord.envelope.partner_actor`)."""
        if not envelope.registered_types(envelope.INGRESS):
            raise LookupError("no intake schemas are registered in this process: call "
                              "services.register_schemas() before publishing")
        within = envelope.partner_source(self.user) + "/"
        if actor and not actor.startswith(within):
            actor = within + actor
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
        def retryable(exc):
            return (isinstance(exc, (AMQPConnectionError, AMQPChannelError, ConnectionError))
                    and not isinstance(exc, FINAL))

        @retry(retry=retryable_exception(retryable), stop=stop_after_attempt(self.connect_attempts),
               wait=wait_exponential_jitter(initial=0.2, max=5), reraise=True)
        def attempt():
            self._ensure_channel()
            try:
                return action()
            except (NackError, UnroutableError) as exc:
                raise PublishRefused(f"broker refused the message: {exc}") from exc
            except ChannelClosedByBroker as exc:
                # 403 ACCESS_REFUSED (exchange or routing key not permitted), 406 PRECONDITION_FAILED
                # (user_id is not the connection's user): the broker closed the channel on purpose.
                self._channel = None
                raise PublishRefused(f"broker refused the message: {exc.reply_code} {exc.reply_text}") from exc
            except (AMQPConnectionError, AMQPChannelError, ConnectionError):
                self._drop()
                raise
        return attempt()

    def _drop(self):
        try:
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
        except Exception:  # already broken: nothing to close
            pass
        self._connection = self._channel = None

    def _ensure_channel(self):
        if self._channel is not None and self._channel.is_open and self._connection.is_open:
            return
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(self.nodes)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
