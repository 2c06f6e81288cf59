"""A queue whose arguments changed between releases is moved, with its messages and bindings.

An existing queue cannot take new arguments (PRECONDITION_FAILED): matching's queue
made before it had a single active consumer, a stack switched to quorum queues.
``topology.declare(upgrade=True)`` (what ``tacoord stack up`` runs) moves it
(tacoord/queue_upgrade.py); without it, the error names what to do.
"""
import pytest
import requests
from kombu import Connection

from services.needs.service import NeedsService
from tacoord import queue_upgrade, topology
from tacoord.queue_upgrade import QueueInUse
from tacoord.testing import admin_auth, management_url, wait_until
from tests.integration.needs_helpers import KENYA_NEED, collect, tap


def queue(sandbox, name):
    response = requests.get(management_url(f"queues/{sandbox.vhost}/{name}"), auth=admin_auth(), timeout=5)
    return response.json() if response.status_code == 200 else None


def declare_as_before(sandbox, spec, **arguments):
    """``spec``'s queue as an older release declared it: same bindings, other arguments."""
    with Connection(sandbox.amqp_uri) as connection, connection.channel() as channel:
        channel.queue_delete(spec.name)
        old = topology.kombu_queue(spec)
        old.queue_arguments = arguments or None
        old.bind(channel).declare()


def all_arguments_current(sandbox):
    return {spec.name: topology.queue_arguments(spec) or {} for spec in topology.ALL_QUEUES} == {
        spec.name: {k: v for k, v in queue(sandbox, spec.name)["arguments"].items()} for spec in topology.ALL_QUEUES}


def test_matching_queue_made_before_single_active_consumer_is_moved_with_its_messages(sandbox):
    declare_as_before(sandbox, topology.MATCHING_EVENTS)
    sandbox.publish_events([{"id": f"e{i}", "type": "need.submitted", "data": {}} for i in range(5)])
    assert sandbox.queue_depth("matching.events") == 5
    with Connection(sandbox.amqp_uri) as connection:
        with pytest.raises(topology.QueueArgumentsChanged, match="matching.events.*tacoord stack up"):
            topology.declare_all(connection)
        topology.declare_all(connection, upgrade=True)
    assert queue(sandbox, "matching.events")["arguments"] == {"x-single-active-consumer": True}
    assert sandbox.queue_depth("matching.events") == 5
    assert queue(sandbox, "matching.events.upgrade") is None
    sandbox.publish_events([{"id": "after", "type": "offer.submitted", "data": {}}])   # still bound
    assert wait_until(lambda: sandbox.queue_depth("matching.events") == 6, timeout=5)
    assert sorted(body["id"] for body, _ in sandbox.get_messages("matching.events")) == [
        "after", "e0", "e1", "e2", "e3", "e4"]


def test_a_stack_switched_to_quorum_queues_keeps_its_messages_and_partners(sandbox, monkeypatch, container_factory):
    events = tap(sandbox)
    sent = sandbox.publish("need.submitted", KENYA_NEED)    # a partner's message (user_id), waiting in a classic queue
    sandbox.publish_events([{"id": "m1", "type": "need.submitted", "data": {}}])
    monkeypatch.setenv("TACOORD_QUEUE_TYPE", "quorum")
    with Connection(sandbox.amqp_uri) as connection:
        topology.declare_all(connection, upgrade=True)
    assert {queue(sandbox, spec.name)["type"] for spec in topology.ALL_QUEUES} == {"quorum"}
    assert all_arguments_current(sandbox)
    assert sandbox.queue_depth("needs.ingress") == 1 and sandbox.queue_depth("matching.events") == 1
    container = container_factory(NeedsService, sandbox.config("needs"))
    container.start()
    wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="the moved need")
    [submitted] = [e for e in collect(sandbox, events, 2) if e.get("causation_id") == sent["id"]]
    assert submitted["actor"] == "partner:tacoord"   # its partner came along (through tacoord.requeue)
    assert sandbox.queue_depth("tacoord.dead-letters") == 0


def test_a_queue_with_consumers_is_not_moved(sandbox, container_factory):
    container = container_factory(NeedsService, sandbox.config("needs"))
    container.start()
    with Connection(sandbox.amqp_uri) as connection:
        with pytest.raises(QueueInUse, match="needs.ingress has consumers"):
            queue_upgrade.move(connection, topology.kombu_queue(topology.NEEDS_INGRESS),
                               topology.EXCHANGES[topology.REQUEUE])
    assert queue(sandbox, "needs.ingress.upgrade") is None
