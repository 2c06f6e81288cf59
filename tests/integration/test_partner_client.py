"""The pika partner client against the real broker, as a partner user."""
import pytest
from marshmallow import ValidationError

from infra.partners import add_partner, remove_partner
from services.needs.service import NeedsService
from tacoord import config
from tacoord.partner import PartnerClient
from tacoord.testing import unique, wait_until


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
