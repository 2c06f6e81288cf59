"""TACOORD_QUEUE_TYPE=quorum declares every consumer queue as a quorum queue (for a cluster)."""
import requests

from services.needs.service import NeedsService
from tacoord import topology
from tacoord.testing import Sandbox, admin_auth, management_url, wait_until


def queue_type(vhost, name):
    return requests.get(management_url(f"queues/{vhost}/{name}"), auth=admin_auth(), timeout=5).json()["type"]


def test_the_quorum_switch_declares_quorum_queues_and_services_consume_them(stack, monkeypatch,
                                                                             container_factory):
    monkeypatch.setenv("TACOORD_QUEUE_TYPE", "quorum")
    box = Sandbox()
    try:
        assert {queue_type(box.vhost, spec.name) for spec in topology.CONSUMER_QUEUES} == {"quorum"}
        assert queue_type(box.vhost, topology.NEEDS_INGRESS.retry_name) == "quorum"
        container = container_factory(NeedsService, box.config("needs"))
        container.start()
        box.publish("need.submitted", {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1})
        wait_until(lambda: box.db("needs").needs.find_one({"state": "KEN"}), message="need via quorum queue")
        container.kill()
    finally:
        box.close()


def test_classic_durable_queues_are_the_default(sandbox):
    assert queue_type(sandbox.vhost, "needs.ingress") == "classic"
