"""Shared by the needs integration tests: a tap on tacoord.events and small request helpers."""
from kombu import Connection, Queue, binding

from tacoord import topology

KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE", "CAPACITY_BUILDING"],
              "priority": 1, "description": "Public procurement reform", "checklist_round": "2026-1"}


def tap(sandbox, name="test.needs-tap", keys=("need.*",)):
    """A queue on tacoord.events in the sandbox vhost: what the service really emitted."""
    exchange = topology.EXCHANGES[topology.EVENTS]
    with Connection(sandbox.amqp_uri) as connection:
        with connection.channel() as channel:
            Queue(name, bindings=[binding(exchange, routing_key=k) for k in keys], durable=True,
                  channel=channel).declare()
    return name


def emitted(sandbox, queue):
    """Take the events off the tap: [envelope]."""
    return [body for body, _ in sandbox.get_messages(queue, limit=10_000)]


def collect(sandbox, queue, count, timeout=15):
    """Wait until ``count`` events have come off the tap; returns them (and any extra)."""
    from tacoord.testing import wait_until
    seen = []
    wait_until(lambda: seen.extend(emitted(sandbox, queue)) or len(seen) >= count, timeout=timeout,
               message=f"{count} event(s) on {queue}")
    return seen
