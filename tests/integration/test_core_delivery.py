"""The core's delivery guarantees, against the real broker and database.

A probe service consumes matching's queue with a handler whose behaviour
each test sets; nothing here is mocked.
"""
from datetime import timedelta

from services.audit.service import AuditService
from services.needs.domain import new_need
from services.needs.service import NeedsService
from tacoord import topology
from tacoord.consumer import consume_events
from tacoord.envelope import new_event, utcnow
from tacoord.headers import QUEUE, REASON
from tacoord.outbox import staged_insert
from tacoord.testing import consumed, wait_until

CALLS = []
BEHAVIOUR = {"fail_times": 0}


class ProbeService:
    name = "probe"

    @consume_events(topology.MATCHING_EVENTS)
    def on_event(self, event):
        CALLS.append(event["id"])
        if CALLS.count(event["id"]) <= BEHAVIOUR["fail_times"]:
            raise RuntimeError("downstream unavailable")


def reset(fail_times):
    CALLS.clear()
    BEHAVIOUR["fail_times"] = fail_times


def a_need_event():
    need = new_need({"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
                     "description": "", "paragraph": None, "other_text": None, "checklist_round": None,
                     "languages": [], "external_ref": None}, utcnow().isoformat())
    return new_event("need.submitted", need, "test")


def test_a_redelivered_event_is_handled_once(sandbox, start):
    reset(fail_times=0)
    containers = start(ProbeService)
    duplicates = consumed("probe", "duplicate")
    event = a_need_event()
    sandbox.publish("need.submitted", None, exchange=topology.EVENTS, event=event)
    sandbox.publish("need.submitted", None, exchange=topology.EVENTS, event=event)
    # The copy is acked as a duplicate once the inbox has the id done (until then it goes round
    # the retry queue, where a ready-only queue depth does not see it).
    wait_until(lambda: consumed("probe", "duplicate") - duplicates == 1, message="the copy skipped as done")
    assert sandbox.left_after_stopping(containers, "matching.events", "matching.events.retry") == 0
    assert CALLS == [event["id"]]


def test_a_handler_that_fails_twice_is_retried_through_the_broker_and_succeeds_once(sandbox, start):
    reset(fail_times=2)
    start(ProbeService, TACOORD_RETRY_BASE_MS=50, TACOORD_MAX_ATTEMPTS=5)
    event = sandbox.publish("need.submitted", None, exchange=topology.EVENTS, event=a_need_event())
    wait_until(lambda: len(CALLS) == 3, message="three attempts")
    wait_until(lambda: sandbox.db("probe").processed_events.count_documents({"state": "done"}) == 1,
               message="recorded done")
    assert CALLS == [event["id"]] * 3
    assert sandbox.queue_depth("tacoord.dead-letters") == 0


def test_a_handler_that_keeps_failing_is_parked_with_its_reason_after_the_last_try(sandbox, start):
    reset(fail_times=99)
    start(ProbeService, TACOORD_RETRY_BASE_MS=50, TACOORD_MAX_ATTEMPTS=3)
    sandbox.publish("need.submitted", None, exchange=topology.EVENTS, event=a_need_event())
    wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 1, message="parked message")
    [(body, headers)] = sandbox.get_messages("tacoord.dead-letters")
    assert len(CALLS) == 3
    assert headers[REASON] == "failed 3 time(s); last error: RuntimeError: downstream unavailable"
    assert headers[QUEUE] == "matching.events"
    assert body["type"] == "need.submitted"


def test_an_ingress_message_without_user_id_is_refused(sandbox, start):
    start(NeedsService)
    sandbox.publish("need.submitted", {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1},
                    user_id="")
    wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 1, message="parked message")
    [(_, headers)] = sandbox.get_messages("tacoord.dead-letters")
    assert "user_id" in headers[REASON]


def test_a_message_nobody_is_bound_for_is_kept_not_dropped(sandbox):
    sandbox.publish("nobody.listens", {"x": 1})
    wait_until(lambda: sandbox.queue_depth("tacoord.unrouted") == 1, message="unrouted message kept")


def test_events_a_crashed_writer_left_in_the_outbox_are_published(sandbox, start):
    """The write happened, the process died before publishing: the sweeper sends it."""
    old = (utcnow() - timedelta(minutes=1)).isoformat()
    event = a_need_event()
    event["occurred_at"] = old
    need_id = event["data"]["need_id"]
    sandbox.db("needs").needs.insert_one(staged_insert({"_id": need_id, **event["data"]}, [event]))
    start(AuditService, NeedsService)
    wait_until(lambda: sandbox.db("audit").audit.find_one({"event_id": event["id"]}), message="audited")
    stored = wait_until(lambda: sandbox.db("needs").needs.find_one({"_id": need_id, "_outbox_pending": 0}),
                        message="outbox emptied")
    assert stored["_outbox"] == []


def test_a_body_that_is_not_json_is_parked_and_audited(sandbox, start):
    start(AuditService, NeedsService)
    sandbox.publish("need.submitted", None, raw_body="{not json")
    record = wait_until(lambda: sandbox.db("audit").audit.find_one({"kind": "rejection"}), message="audited")
    assert "could not be decoded" in record["reason"]
    assert sandbox.queue_depth("tacoord.dead-letters") == 1


class FlakyNeeds(NeedsService):
    """The needs service, with a store that fails on the first try of each filing."""
    failures = set()

    def _ingress(self, message):
        if message["id"] not in self.failures:
            self.failures.add(message["id"])
            raise RuntimeError("database hiccup")
        return super()._ingress(message)


def test_a_partner_message_that_failed_once_keeps_its_partner_on_retry(sandbox, start):
    start(AuditService, FlakyNeeds, TACOORD_RETRY_BASE_MS=50)
    sandbox.publish("need.submitted", {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1})
    record = wait_until(lambda: sandbox.db("audit").audit.find_one({"type": "need.submitted"}), message="audited")
    assert record["actor"] == "partner:tacoord"
    assert record["causation_id"] in FlakyNeeds.failures  # the first try did fail
    assert sandbox.queue_depth("tacoord.dead-letters") == 0


def test_batches_of_events_are_confirmed_on_one_kept_channel_and_sent_again_after_the_connection_broke(sandbox):
    from kombu import Connection, Queue

    from tacoord.publisher import ConfirmedPublisher
    with Connection(sandbox.amqp_uri) as connection:
        Queue("test.batches", exchange=topology.EXCHANGES[topology.EVENTS], routing_key="need.#",
              durable=True).bind(connection.default_channel).declare()
    publisher = ConfirmedPublisher(sandbox.amqp_uri, "test")
    first = [a_need_event() for _ in range(5)]
    second = [a_need_event() for _ in range(3)]

    publisher.publish_events(first)
    kept = publisher._batch_channel[0]
    publisher.publish_events(second)
    assert publisher._batch_channel[0] is kept  # no new connection per batch
    kept.connection.transport.sock.close()  # the connection breaks under the publisher
    third = [a_need_event() for _ in range(4)]
    publisher.publish_events(third)

    assert publisher._batch_channel[0] is not kept
    got = sorted(body["id"] for body, _ in sandbox.get_messages("test.batches"))
    assert got == sorted(e["id"] for e in first + second + third)
