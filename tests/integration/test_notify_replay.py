"""A notification that could not be delivered is parked; the operator's replay of its dead
letter (`tacoord deadletters replay`) sends it again, once, under the same notification id:
real broker, database, webhook receiver, and the command line as the operator runs it."""
import json

from kombu import Connection, Producer
from prometheus_client import REGISTRY

from services.notify.service import NotifyService
from tacoord import topology
from tacoord.testing import wait_until
from tests.integration.test_cli_deadletters import cli, dead_letters
from tests.integration.test_notify_delivery import (  # noqa: F401 (receivers is a fixture)
    FAST, KENYA_MATCH, deliveries, listen, publish, receivers, subscribe)

DLQ = topology.DEAD_LETTERS_QUEUE


def resends_handled():
    """Replayed notifications notify's resend consumer has settled in this process."""
    return REGISTRY.get_sample_value("tacoord_notify_events_consumed_total", {"type": "other", "outcome": "ok"}) or 0.0


def parked_notification(sandbox):
    wait_until(lambda: sandbox.queue_depth(DLQ) == 1, message="the undeliverable notification parked")
    [letter] = dead_letters(sandbox)["dead_letters"]
    return letter


def test_a_parked_notification_replayed_is_delivered_once_under_the_same_notification_id(sandbox, start, receivers):
    start(NotifyService, **FAST)
    outcomes = listen(sandbox, "notification.*")
    hook = receivers(then=500)
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    event = publish(sandbox, "match.proposed", KENYA_MATCH)

    letter = parked_notification(sandbox)
    assert (letter["exchange"], letter["routing_key"], letter["type"]) == (
        topology.REQUEUE, topology.NOTIFY_RESEND.name, "notification.undeliverable")
    [failed] = deliveries(sandbox, donor["subscription_id"])
    assert failed["status"] == "failed" and len(hook.received) == 3

    hook.then = 200   # the subscriber fixed its endpoint
    handled_before = resends_handled()
    replayed = cli(sandbox, "deadletters", "replay", letter["id"])
    assert replayed.exit_code == 0, replayed.output

    wait_until(lambda: deliveries(sandbox, donor["subscription_id"])[0]["status"] == "delivered",
               message="delivered on the replay")
    [delivered] = deliveries(sandbox, donor["subscription_id"])
    assert (delivered["notification_id"], delivered["resends"], delivered["attempts"]) == (
        failed["notification_id"], 1, 1)
    assert len(hook.received) == 4
    assert {r["headers"]["X-Tacoord-Notification-Id"] for r in hook.received} == {failed["notification_id"]}
    assert json.loads(hook.received[-1]["body"])["event"]["id"] == event["id"]
    sent = wait_until(lambda: [b for b, _ in sandbox.get_messages(outcomes)] or None, message="outcome events")
    sent += [b for b, _ in sandbox.get_messages(outcomes)]
    delivered_event = next(b for b in sent if b["type"] == "notification.delivered")
    assert delivered_event["causation_id"] == event["id"]
    assert delivered_event["id"] not in {b["id"] for b in sent if b["type"] == "notification.failed"}

    # A second copy of the replay (the operator replays a stale copy, or the broker redelivers):
    # the delivery is not failed any more, so nothing is sent again.
    wait_until(lambda: resends_handled() >= handled_before + 1, message="the replay settled")
    with Connection(sandbox.amqp_uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection).publish(json.dumps(letter["body"]), exchange=topology.EXCHANGES[topology.REQUEUE],
                                     routing_key=topology.NOTIFY_RESEND.name, content_type="application/json",
                                     delivery_mode=2)
    wait_until(lambda: resends_handled() >= handled_before + 2, message="the copy settled")
    assert len(hook.received) == 4
    assert sandbox.queue_depth(DLQ) == 0 and sandbox.queue_depth(topology.NOTIFY_RESEND.name) == 0


def test_a_replayed_notification_that_fails_again_is_parked_again_and_can_be_replayed_again(sandbox, start, receivers):
    start(NotifyService, **FAST)
    hook = receivers(then=404)   # final at once: one attempt per round
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    publish(sandbox, "match.proposed", KENYA_MATCH)
    first = parked_notification(sandbox)

    assert cli(sandbox, "deadletters", "replay", first["id"]).exit_code == 0
    wait_until(lambda: len(hook.received) == 2, message="sent again")
    second = parked_notification(sandbox)
    assert second["id"] != first["id"] and second["body"]["data"] == first["body"]["data"]
    assert deliveries(sandbox, donor["subscription_id"])[0]["resends"] == 1

    hook.then = 200
    assert cli(sandbox, "deadletters", "replay", "--all").exit_code == 0
    wait_until(lambda: deliveries(sandbox, donor["subscription_id"])[0]["status"] == "delivered",
               message="delivered on the second replay")
    assert deliveries(sandbox, donor["subscription_id"])[0]["resends"] == 2 and len(hook.received) == 3


def test_a_replay_for_an_ended_subscription_sends_nothing_and_says_why(sandbox, start, receivers):
    import requests
    start(NotifyService, **FAST)
    hook = receivers(then=500)
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    publish(sandbox, "match.proposed", KENYA_MATCH)
    letter = parked_notification(sandbox)
    assert requests.get(donor["unsubscribe_url"], timeout=5).status_code == 200

    assert cli(sandbox, "deadletters", "replay", letter["id"]).exit_code == 0
    wait_until(lambda: deliveries(sandbox, donor["subscription_id"])[0]["last_error"].startswith(
        "the subscription ended"), message="the replay recorded as failed")
    assert len(hook.received) == 3 and sandbox.queue_depth(DLQ) == 0
