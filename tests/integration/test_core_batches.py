"""Batched consuming in the core: a handler receiving lists of events, and a poison
message in a batch burning only its own tries, against the real broker."""
import time
from collections import Counter

import pytest
from kombu import Connection
from pymongo.errors import AutoReconnect

from tacoord import topology
from tacoord.consumer import apply_each, consume_events
from tacoord.errors import Busy, Rejected
from tacoord.envelope import new_event
from tacoord.headers import ALONE, KIND, REASON
from tacoord.indexes import PROCESSED
from tacoord.testing import consumed, wait_until

PROBE = topology.QueueSpec("probe.batches", topology.EVENTS, ("probe.#",))
POISON = set()
OUTAGES = {"left": 0}  # batches that fail as if the database were unreachable
BUSY = {"on": False}  # every batch fails as if another instance held the turn
HANDLED = []  # ids handled successfully, one entry per handling
BATCHES = []  # size of every batch the handler received


class BatchProbe:
    name = "probe"

    @consume_events(PROBE, keyed_by_event_id=True, batch_size=50)
    def on_events(self, events):
        BATCHES.append(len(events))
        if BUSY["on"]:
            raise Busy("another instance holds the turn")
        if OUTAGES["left"] > 0:
            OUTAGES["left"] -= 1
            raise AutoReconnect("database unreachable")
        poisoned = [e["id"] for e in events if e["id"] in POISON]
        if poisoned:
            raise Exception(f"poison pill {poisoned[0]}")
        HANDLED.extend(e["id"] for e in events)


def declare_probe_queue(sandbox):
    with Connection(sandbox.amqp_uri) as connection:
        topology.declare(connection, (PROBE,))


class RetryRounds:
    """Counts the messages put round the probe's retry queue: a tap bound beside it gets a copy of
    each; a copy's TTL runs out there too, so the tap dead-letters it on to a queue without TTL."""

    def __init__(self, sandbox):
        self.sandbox, self.tap, self.seen = sandbox, "test.probe-retry-tap", "test.probe-retry-seen"
        with Connection(sandbox.amqp_uri) as connection:
            channel = connection.channel()
            channel.queue_declare(self.seen, durable=True)
            channel.queue_declare(self.tap, durable=True, arguments={
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.seen})
            channel.queue_bind(self.tap, topology.RETRY, routing_key=PROBE.retry_name)

    def count(self):
        return self.sandbox.queue_depth(self.tap) + self.sandbox.queue_depth(self.seen)


def test_a_poison_message_in_a_batch_is_parked_alone_and_the_others_are_handled_once(sandbox, start):
    POISON.clear(), HANDLED.clear(), BATCHES.clear()
    OUTAGES["left"] = 0
    declare_probe_queue(sandbox)
    good = [new_event("probe.noted", {"n": n}, "test", "test") for n in range(20)]
    poison = new_event("probe.noted", {"n": 666}, "test", "test")
    POISON.add(poison["id"])
    sandbox.publish_events(good[:10] + [poison] + good[10:])  # queued: they arrive as one batch
    containers = start(BatchProbe, TACOORD_RETRY_BASE_MS=50, TACOORD_MAX_ATTEMPTS=3)

    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, timeout=30, message="poison parked")
    wait_until(lambda: len(HANDLED) >= len(good), message="good events handled")
    assert sandbox.left_after_stopping(containers, PROBE.name, PROBE.retry_name) == 0  # all acked
    [(body, headers)] = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    assert body["id"] == poison["id"]
    assert headers[REASON] == f"failed 3 time(s); last error: Exception: poison pill {poison['id']}"
    assert headers[ALONE] == 1
    assert Counter(HANDLED) == Counter(e["id"] for e in good)  # each exactly once
    assert BATCHES[0] == len(good) + 1  # all together first, then each on its own
    assert BATCHES[1:].count(1) == len(BATCHES) - 1


def test_a_batch_that_succeeds_is_acked_and_copies_reach_the_handler_together(sandbox, start):
    POISON.clear(), HANDLED.clear(), BATCHES.clear()
    OUTAGES["left"] = 0
    declare_probe_queue(sandbox)
    events = [new_event("probe.noted", {"n": n}, "test", "test") for n in range(30)]
    sandbox.publish_events(events + events[:5])
    containers = start(BatchProbe)
    wait_until(lambda: sum(BATCHES) >= 35, message="all delivered")
    assert max(BATCHES) > 10  # prefetch raised past max_workers so batches fill
    assert sandbox.left_after_stopping(containers, PROBE.name, PROBE.retry_name) == 0  # all acked
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0


def queued_probe_events(sandbox, count, outages=0, busy=False):
    """``count`` probe events queued before any consumer runs, the probe's failures set, and a
    :class:`RetryRounds` counting what goes round the retry queue from now on."""
    POISON.clear(), HANDLED.clear(), BATCHES.clear()
    OUTAGES["left"], BUSY["on"] = outages, busy
    declare_probe_queue(sandbox)
    rounds = RetryRounds(sandbox)
    events = [new_event("probe.noted", {"n": n}, "test", "test") for n in range(count)]
    sandbox.publish_events(events)
    return events, rounds


def test_a_batch_failing_on_an_outage_waits_held_by_the_consumer_and_keeps_its_tries(sandbox, start):
    events, rounds = queued_probe_events(sandbox, 15, outages=1)
    containers = start(BatchProbe, TACOORD_RETRY_BASE_MS=50, TACOORD_MAX_ATTEMPTS=1)  # a used try would park
    wait_until(lambda: len(HANDLED) >= len(events), message="handled after the outage")
    assert sandbox.left_after_stopping(containers, PROBE.name, PROBE.retry_name) == 0  # all acked
    assert BATCHES[0] == len(events)
    assert Counter(HANDLED) == Counter(e["id"] for e in events)
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0
    # the wait was the consumer's (held, unacknowledged), not a round of the broker's retry queue, whose
    # dead-lettering back stopped forwarding on a cluster while a node rejoined
    assert rounds.count() == 0


def test_messages_held_waiting_when_their_instance_dies_are_redelivered_and_handled_once(sandbox, start):
    events, rounds = queued_probe_events(sandbox, 12, busy=True)
    [busy] = start(BatchProbe, TACOORD_RETRY_BASE_MS=200)
    wait_until(lambda: len(BATCHES) >= 2, message="the batch tried and held")
    assert sandbox.queue_depth(PROBE.name) == 0   # taken by the consumer, not acked
    busy.kill()
    BUSY["on"] = False
    containers = start(BatchProbe, TACOORD_RETRY_BASE_MS=50)
    wait_until(lambda: len(HANDLED) >= len(events), message="handled by the next instance")
    assert sandbox.left_after_stopping(containers, PROBE.name, PROBE.retry_name) == 0
    assert Counter(HANDLED) == Counter(e["id"] for e in events)   # each once, none lost
    assert rounds.count() == 0 and sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0


@pytest.mark.parametrize("options", [dict(batch_size=5, raw=True), dict(batch_size=5, keyed_by_event_id=True, raw=True),
                                     dict(batch_size=0, keyed_by_event_id=True),
                                     dict(batch_size=5, keyed_by_event_id=True, batch_wait=-1)])
def test_batches_are_refused_for_raw_messages_and_bad_sizes(options):
    with pytest.raises((TypeError, ValueError)):
        consume_events(PROBE, **options)(lambda self, events: None)


EAGER = topology.QueueSpec("probe.eager", topology.EVENTS, ("eager.#",))
EAGER_BATCHES = []


class EagerBatchProbe:
    name = "probe"

    @consume_events(EAGER, keyed_by_event_id=True, batch_size=50, batch_wait=0)
    def on_events(self, events):
        EAGER_BATCHES.append([e["id"] for e in events])


def test_with_no_wait_a_batch_takes_what_the_broker_handed_over_and_a_lone_event_goes_at_once(sandbox, start):
    EAGER_BATCHES.clear()
    with Connection(sandbox.amqp_uri) as connection:
        topology.declare(connection, (EAGER,))
    queued = [new_event("eager.noted", {"n": n}, "test", "test") for n in range(40)]
    sandbox.publish_events(queued)
    containers = start(EagerBatchProbe)
    wait_until(lambda: sum(map(len, EAGER_BATCHES)) >= len(queued), message="queued events handled")
    assert max(map(len, EAGER_BATCHES)) > 1  # what had arrived together was handled together

    lone = new_event("eager.noted", {"n": 99}, "test", "test")
    sandbox.publish_events([lone])
    wait_until(lambda: EAGER_BATCHES[-1] == [lone["id"]], timeout=5, message="the lone event, alone")
    assert sorted(i for batch in EAGER_BATCHES for i in batch) == sorted(e["id"] for e in queued + [lone])
    assert sandbox.left_after_stopping(containers, EAGER.name) == 0  # all acked


# -- batches with the inbox: applying an event twice would do harm ------------

INBOXED = topology.QueueSpec("probe.inboxed", topology.EVENTS, ("inboxed.#",))
INBOX_POISON = set()
INBOX_HANDLED = []  # ids handled successfully, one entry per handling
INBOX_BATCHES = []  # the ids of every batch the handler received


class InboxBatchProbe:
    name = "probe"

    @consume_events(INBOXED, batch_size=20, batch_wait=0)
    def on_events(self, events):
        INBOX_BATCHES.append([e["id"] for e in events])
        poisoned = [e["id"] for e in events if e["id"] in INBOX_POISON]
        if poisoned:
            raise Exception(f"poison pill {poisoned[0]}")
        INBOX_HANDLED.extend(e["id"] for e in events)


def inbox_setup(sandbox):
    INBOX_POISON.clear(), INBOX_HANDLED.clear(), INBOX_BATCHES.clear()
    with Connection(sandbox.amqp_uri) as connection:
        topology.declare(connection, (INBOXED,))
    return sandbox.db("probe")[PROCESSED]


def inbox_claims(inbox, state):
    prefix = f"{INBOXED.name}:"
    return sorted(c["_id"][len(prefix):] for c in inbox.find({"state": state}))




def test_an_inbox_batch_consumer_handles_a_backlog_with_copies_exactly_once(sandbox, start):
    inbox = inbox_setup(sandbox)
    events = [new_event("inboxed.noted", {"n": n}, "test", "test") for n in range(30)]
    backlog = []
    for n, event in enumerate(events):
        backlog += [event, event] if n % 6 == 0 else [event]  # five copies right behind their originals
    sandbox.publish_events(backlog)
    duplicates_before = consumed("probe", "duplicate")

    containers = start(InboxBatchProbe, TACOORD_RETRY_BASE_MS=50)
    wait_until(lambda: len(INBOX_HANDLED) >= len(events), message="backlog handled")
    sandbox.publish_events(events[10:15])  # copies arriving after their originals were done
    wait_until(lambda: consumed("probe", "duplicate") - duplicates_before >= 10, message="copies skipped")
    assert sandbox.left_after_stopping(containers, INBOXED.name, INBOXED.retry_name) == 0  # all acked

    assert Counter(INBOX_HANDLED) == Counter(e["id"] for e in events)  # each exactly once
    assert all(len(set(batch)) == len(batch) for batch in INBOX_BATCHES)  # copies never share a batch
    assert max(map(len, INBOX_BATCHES)) > 1
    assert inbox_claims(inbox, "done") == sorted(e["id"] for e in events)
    assert inbox_claims(inbox, "processing") == []
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0


def test_an_inbox_batch_waits_for_a_fresh_claim_and_takes_over_a_stale_one(sandbox, start):
    inbox = inbox_setup(sandbox)
    fresh, stale, *others = [new_event("inboxed.noted", {"n": n}, "test", "test") for n in range(6)]
    now = time.time()
    inbox.insert_many([  # left 'processing' by workers that died
        {"_id": f"{INBOXED.name}:{fresh['id']}", "state": "processing", "claimed_at": now},
        {"_id": f"{INBOXED.name}:{stale['id']}", "state": "processing", "claimed_at": now - 600}])
    sandbox.publish_events([fresh, stale, *others])

    containers = start(InboxBatchProbe, TACOORD_RETRY_BASE_MS=100, TACOORD_INBOX_LEASE_SECONDS=5)
    wait_until(lambda: stale["id"] in INBOX_HANDLED, message="the stale claim taken over")
    assert fresh["id"] not in INBOX_HANDLED  # another worker may still be on it
    wait_until(lambda: fresh["id"] in INBOX_HANDLED, timeout=20, message="the fresh claim, once its lease ran out")
    assert sandbox.left_after_stopping(containers, INBOXED.name, INBOXED.retry_name) == 0  # all acked

    assert time.time() - now >= 5
    assert Counter(INBOX_HANDLED) == Counter(e["id"] for e in [fresh, stale, *others])
    assert fresh["id"] not in INBOX_BATCHES[0]
    assert inbox_claims(inbox, "done") == sorted(e["id"] for e in [fresh, stale, *others])
    assert inbox_claims(inbox, "processing") == []


def test_a_poison_event_in_an_inbox_batch_is_parked_alone_and_the_inbox_holds_only_the_handled(sandbox, start):
    inbox = inbox_setup(sandbox)
    good = [new_event("inboxed.noted", {"n": n}, "test", "test") for n in range(15)]
    poison = new_event("inboxed.noted", {"n": 666}, "test", "test")
    INBOX_POISON.add(poison["id"])
    sandbox.publish_events(good[:7] + [poison] + good[7:])

    containers = start(InboxBatchProbe, TACOORD_RETRY_BASE_MS=50, TACOORD_MAX_ATTEMPTS=3)
    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, timeout=30, message="poison parked")
    wait_until(lambda: len(INBOX_HANDLED) >= len(good), message="good events handled")
    assert sandbox.left_after_stopping(containers, INBOXED.name, INBOXED.retry_name) == 0  # all acked

    [(body, headers)] = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    assert body["id"] == poison["id"]
    assert headers[REASON] == f"failed 3 time(s); last error: Exception: poison pill {poison['id']}"
    assert headers[ALONE] == 1
    assert Counter(INBOX_HANDLED) == Counter(e["id"] for e in good)
    assert any(poison["id"] in batch and len(batch) > 1 for batch in INBOX_BATCHES)  # failed with others first
    assert inbox_claims(inbox, "done") == sorted(e["id"] for e in good)
    assert inbox_claims(inbox, "processing") == []


PICKY = topology.QueueSpec("probe.picky", topology.EVENTS, ("picky.#",))
PICKY_SEEN = []


class PickyBatchProbe:
    """An inbox batch consumer that knows which of its events failed."""
    name = "probe"

    @consume_events(PICKY, batch_size=50, batch_wait=0)
    def on_events(self, events):
        def handle(event):
            PICKY_SEEN.append(event["id"])
            if event["data"].get("bad"):
                raise Rejected("this one cannot be applied", "data.bad")
        return apply_each(events, handle)


def test_events_a_batch_handler_reports_as_failed_are_settled_alone_and_the_rest_recorded_done(sandbox, start):
    PICKY_SEEN.clear()
    with Connection(sandbox.amqp_uri) as connection:
        topology.declare(connection, (PICKY,))
    good = [new_event("picky.noted", {"n": n}, "test", "test") for n in range(12)]
    bad = new_event("picky.noted", {"n": 99, "bad": True}, "test", "test")
    sandbox.publish_events(good[:6] + [bad] + good[6:])
    containers = start(PickyBatchProbe, TACOORD_RETRY_BASE_MS=50)

    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1, message="the bad one parked")
    wait_until(lambda: len(PICKY_SEEN) >= len(good) + 1, message="all applied")
    assert sandbox.left_after_stopping(containers, PICKY.name, PICKY.retry_name) == 0  # the rest acked
    [(body, headers)] = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    assert body["id"] == bad["id"]
    assert headers[REASON] == "this one cannot be applied" and headers[KIND] == "rejected"
    assert Counter(PICKY_SEEN) == Counter(e["id"] for e in good + [bad])  # each applied once, no retry
    inbox = {d["_id"].split(":", 1)[1]: d["state"] for d in sandbox.db("probe").processed_events.find()}
    assert inbox == {e["id"]: "done" for e in good}  # the bad one's claim released


def test_apply_each_stops_at_an_outage_and_hands_the_rest_back_unapplied():
    events = [new_event("probe.noted", {"n": n}, "test", "test") for n in range(5)]
    applied = []

    def handle(event):
        if event["data"]["n"] == 1:
            raise Rejected("bad payload")
        if event["data"]["n"] == 3:
            raise AutoReconnect("database unreachable")
        applied.append(event["data"]["n"])

    failed = apply_each(events, handle)

    assert applied == [0, 2]  # 4 is not tried: it would only wait for the database too
    assert set(failed) == {events[1]["id"], events[3]["id"], events[4]["id"]}
    assert isinstance(failed[events[1]["id"]], Rejected)
    assert failed[events[4]["id"]] is failed[events[3]["id"]]
