"""The pika partner client against the real broker, as a partner user."""
import time

import pytest
from marshmallow import ValidationError
from pika.exceptions import ProbableAuthenticationError

from infra.partners import add_partner, remove_partner
from services.needs.service import NeedsService
from tacoord import config, envelope
from tacoord.partner import PartnerClient, PublishRefused
from tacoord.testing import free_port, unique, wait_until


@pytest.fixture
def partner_url(sandbox):
    name = unique("client-")
    add_partner(name, "pw", vhost=sandbox.vhost)
    yield f"amqp://{name}:pw@127.0.0.1:{config.amqp_port()}/{sandbox.vhost}"
    remove_partner(name)


def test_needs_published_by_the_client_are_filed_in_the_partners_name(sandbox, start, partner_url):
    start(NeedsService)
    with PartnerClient(partner_url) as client:
        for article in (9, 46):
            client.publish("need.submitted", {"state": "KEN", "article": article, "forms": ["LEGAL_ADVICE"],
                                              "priority": 2})
    wait_until(lambda: sandbox.db("needs").needs.count_documents({}) == 2, message="two needs")
    assert sandbox.queue_depth("tacoord.dead-letters") == 0


def test_the_client_refuses_an_invalid_need_before_sending_it(sandbox, partner_url):
    with PartnerClient(partner_url) as client:
        with pytest.raises(ValidationError) as refused:
            client.publish("need.submitted", {"state": "XXX", "article": 99, "forms": [], "priority": 1})
    assert set(refused.value.messages["data"]) == {"state", "article", "forms"}
    assert sandbox.queue_depth("needs.ingress") == 0


def test_the_client_reconnects_when_its_connection_is_lost(sandbox, start, partner_url):
    start(NeedsService)
    with PartnerClient(partner_url) as client:
        client._connection.close()
        client.publish("need.submitted", {"state": "PER", "article": 5, "forms": ["ACTION_PLAN"], "priority": 1})
    wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "PER"}), message="need after reconnect")


def test_given_every_node_of_a_cluster_the_client_connects_to_one_that_answers(sandbox, start, partner_url):
    start(NeedsService)
    down = partner_url.replace(f":{config.amqp_port()}/", f":{free_port()}/")   # a node that is down
    with PartnerClient(f"{down};{partner_url}") as client:
        client.publish("need.submitted", {"state": "BRA", "article": 5, "forms": ["ACTION_PLAN"], "priority": 1})
    wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "BRA"}), message="need through the live node")


def test_the_client_knows_every_intake_type_and_offers_reach_supply(sandbox, partner_url):
    with PartnerClient(partner_url) as client:
        client.publish("offer.submitted", {"provider": "GB-GOV-1", "level": "bilateral", "scope_states": ["KEN"],
                                           "articles": [9], "forms": ["LEGAL_ADVICE"],
                                           "period_start": "2026-01-01", "period_end": "2027-12-31"})
        client.publish("checklist_assistance.submitted", {"state": "PER", "expected_outcomes": "Checklist help",
                                                          "language": "es", "support_received": []})
    wait_until(lambda: sandbox.queue_depth("supply.ingress") == 1 and sandbox.queue_depth("requests.ingress") == 1,
               message="one message in each ingress queue")


def test_a_routing_key_the_partner_may_not_use_is_refused_at_once(sandbox, partner_url):
    with PartnerClient(partner_url) as client:
        event = envelope.new_event("match.proposed", {}, client.source)
        with pytest.raises(PublishRefused, match="403"):
            client._send(event)
        client.publish("need.withdrawn", {"need_id": "KEN-9-x"})  # the client recovers a channel
    wait_until(lambda: sandbox.queue_depth("needs.ingress") == 1, message="the later message")


def test_a_user_id_other_than_the_connections_user_is_refused_by_the_broker(sandbox, partner_url):
    with PartnerClient(partner_url) as client:
        client.user = "someone-else"
        with pytest.raises(PublishRefused, match="406"):
            client.publish("need.withdrawn", {"need_id": "KEN-9-x"})
    assert sandbox.queue_depth("needs.ingress") == 0


def test_wrong_credentials_fail_at_once_without_retrying(partner_url):
    started = time.monotonic()
    with pytest.raises(ProbableAuthenticationError):
        PartnerClient(partner_url.replace(":pw@", ":wrong@")).__enter__()
    assert time.monotonic() - started < 5
