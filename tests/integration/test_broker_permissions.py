"""Partners' broker users: publish intake messages as themselves, nothing else."""
import json

import pytest
import requests
from amqp.exceptions import AccessRefused, PreconditionFailed
from kombu import Connection, Producer

from infra.partners import add_partner, grant_queue, remove_partner
from services.audit.service import AuditService
from services.needs.service import NeedsService
from tacoord import config, envelope, topology
from tacoord.testing import unique, wait_until

NEED = {"state": "KEN", "article": 46, "forms": ["LEGAL_ADVICE"], "priority": 1}


@pytest.fixture
def partner(sandbox):
    name = unique("acme-")
    add_partner(name, "s3cret", vhost=sandbox.vhost)
    yield name
    remove_partner(name)


def publish_as(sandbox, partner, exchange, routing_key, user_id):
    uri = config.amqp_uri(vhost=sandbox.vhost, user=partner, password="s3cret")
    with Connection(uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection).publish(
            json.dumps(envelope.new_event(routing_key, NEED, "ignored")),
            exchange=topology.EXCHANGES[exchange], routing_key=routing_key, delivery_mode=2,
            content_type="application/json", user_id=user_id)


def test_a_partners_need_is_accepted_and_its_user_becomes_the_source(sandbox, start, partner):
    start(AuditService, NeedsService)
    publish_as(sandbox, partner, topology.INGRESS, "need.submitted", user_id=partner)
    record = wait_until(lambda: sandbox.db("audit").audit.find_one({"type": "need.submitted"}), message="audited")
    assert record["actor"] == f"partner:{partner}"


def test_a_partner_cannot_publish_in_another_partners_name(sandbox, partner):
    with pytest.raises(PreconditionFailed, match="user_id property set to 'other'"):
        publish_as(sandbox, partner, topology.INGRESS, "need.submitted", user_id="other")


def test_a_partner_cannot_publish_service_events(sandbox, partner):
    with pytest.raises(AccessRefused):
        publish_as(sandbox, partner, topology.EVENTS, "match.proposed", user_id=partner)


def test_a_partner_cannot_publish_routing_keys_outside_intake(sandbox, partner):
    with pytest.raises(AccessRefused):
        publish_as(sandbox, partner, topology.INGRESS, "match.proposed", user_id=partner)


def test_a_partner_cannot_read_service_queues(sandbox, partner):
    uri = config.amqp_uri(vhost=sandbox.vhost, user=partner, password="s3cret")
    with Connection(uri) as connection:
        queue = connection.SimpleQueue("needs.ingress", queue_opts={"no_declare": True})
        queue.queue.no_declare = True
        with pytest.raises(AccessRefused):
            queue.get(block=False)


def test_a_partner_cannot_publish_with_another_real_partners_user_id(sandbox, partner):
    other = unique("beta-")
    add_partner(other, "s3cret", vhost=sandbox.vhost)
    try:
        with pytest.raises(PreconditionFailed, match=f"user_id property set to '{other}'"):
            publish_as(sandbox, partner, topology.INGRESS, "need.submitted", user_id=other)
    finally:
        remove_partner(other)


@pytest.mark.parametrize("queue", ["notify.sub.partner-someone-else.x", topology.DEAD_LETTERS_QUEUE,
                                   topology.UNROUTED, "audit.events"])
def test_a_partner_cannot_read_other_queues(sandbox, partner, queue):
    uri = config.amqp_uri(vhost=sandbox.vhost, user=partner, password="s3cret")
    with Connection(uri) as connection:
        with pytest.raises(AccessRefused):
            connection.channel().basic_get(queue)


def test_a_partner_granted_a_subscription_queue_reads_it_and_no_other(sandbox, start, partner):
    from services.notify.service import NotifyService
    start(NotifyService)
    headers = sandbox.headers("donor", "GB-GOV-1")
    mine, other = (requests.post(sandbox.url("notify", "/subscriptions"), json={"channel": "amqp"}, headers=headers,
                                 timeout=10).json() for _ in range(2))
    uri = config.amqp_uri(vhost=sandbox.vhost, user=partner, password="s3cret")

    def can_read(queue):
        try:
            with Connection(uri) as connection:
                connection.channel().basic_get(queue)
            return True
        except AccessRefused:
            return False

    assert not can_read(mine["queue"])
    grant_queue(partner, mine["subscription_id"], vhost=sandbox.vhost)
    grant_queue(partner, mine["subscription_id"], vhost=sandbox.vhost)  # twice is harmless
    assert can_read(mine["queue"])
    assert not can_read(other["queue"])
    assert not can_read(topology.NOTIFY_EVENTS.name)
    with pytest.raises(SystemExit, match="no partner"):
        grant_queue("nobody-here", mine["subscription_id"], vhost=sandbox.vhost)
