"""How many messages wait in a queue a service consumes: polled, for its metrics.

Each consumer (:class:`tacoord.consumer.EventConsumer`) polls its own queue every
``TACOORD_QUEUE_POLL_SECONDS`` (15) with a passive declare on a connection of its own and
sets ``tacoord_<service>_queue_messages{queue}``. Beside ``queue_settled_total{queue}``
(what the consumer took off that queue) it tells a stalled consumer (messages waiting, none
settled) from an idle one, without the broker's own metrics plugin.
"""
import logging

import eventlet
from kombu import Connection

from tacoord.config import setting

log = logging.getLogger(__name__)

POLL_SECONDS_KEY = "TACOORD_QUEUE_POLL_SECONDS"
POLL_SECONDS = 15.0


class QueueDepth:
    """Polls one queue's ready-message count into a gauge (run :meth:`poll_forever` in a managed thread)."""

    def __init__(self, amqp_uri, queue, gauge, container_config):
        self.amqp_uri = amqp_uri
        self.queue = queue
        self.gauge = gauge.labels(queue=queue)
        self.interval = float(setting(container_config, POLL_SECONDS_KEY, POLL_SECONDS))
        self.connection = None
        self.failing = False

    def poll(self):
        """Set the gauge from one passive declare; returns the count."""
        if self.connection is None:
            self.connection = Connection(self.amqp_uri, connect_timeout=5)
        with self.connection.channel() as channel:
            _, count, _ = channel.queue_declare(queue=self.queue, passive=True)
        self.gauge.set(count)
        return count

    def poll_forever(self):
        while True:
            try:
                self.poll()
                self.failing = False
            except Exception as exc:  # the broker restarting: the gauge keeps its last value
                if not self.failing:
                    log.warning("could not read the depth of queue %s (%s); will retry", self.queue, exc)
                self.failing = True
                self.close()
            eventlet.sleep(self.interval)

    def close(self):
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # already broken
                pass
            self.connection = None
