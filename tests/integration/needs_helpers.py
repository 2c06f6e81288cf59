"""Shared by the needs integration tests: a tap on tacoord.events and small request helpers."""
from datetime import date, timedelta

from kombu import Connection, Queue, binding

from tacoord import reference, topology

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


def states_parties_on(day):
    """The rule, restated: a State is a party 30 days after its deposit, not before 14 Dec 2005."""
    day = date.fromisoformat(day)
    return {code for code, p in reference.parties().items() if p["kind"] == "state" and p["status"] == "party"
            and p["deposited"] and max(date.fromisoformat(p["deposited"]) + timedelta(days=30),
                                       date(2005, 12, 14)) <= day}
