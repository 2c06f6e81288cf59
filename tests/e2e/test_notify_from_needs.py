"""From a partner's need on the ingress exchange to a State's webhook, and an
undeliverable notification parked and audited."""
import json
import time

import requests

from services.audit.service import AuditService
from services.needs.service import NeedsService
from services.notify.domain import SIGNATURE_HEADER, verify_signature
from services.notify.service import NotifyService
from tacoord import topology
from tacoord.testing import wait_until
from tests.integration.test_notify_delivery import FAST, receivers, subscribe  # noqa: F401 (fixture)

KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
              "description": "Public procurement reform"}


def test_a_need_filed_by_a_partner_reaches_the_state_webhook_and_a_failed_one_is_audited(
        sandbox, start, receivers):
    start(AuditService, NeedsService, NotifyService, **FAST)
    kenya, broken = receivers(), receivers(then=503)
    state = subscribe(sandbox, "state", "KEN", {"channel": "webhook", "url": kenya.url,
                                                "filter": {"types": ["need.*"], "priority": 2}})
    network = subscribe(sandbox, "network", "AFRICAN", {"channel": "webhook", "url": broken.url})
    subscribe(sandbox, "state", "UGA", {"channel": "webhook", "url": kenya.url})

    sandbox.publish("need.submitted", KENYA_NEED)

    wait_until(lambda: kenya.received, message="State webhook called")
    hook = kenya.received[0]
    assert verify_signature(state["secret"], hook["headers"][SIGNATURE_HEADER], hook["body"], now=time.time())
    event = json.loads(hook["body"])["event"]
    assert event["type"] == "need.submitted" and event["source"] == "needs"
    assert event["data"]["state"] == "KEN"

    rejections = wait_until(lambda: requests.get(
        sandbox.url("audit", "/audit/rejections"), headers=sandbox.headers("operator"),
        timeout=5).json()["records"], message="undeliverable notification audited")
    assert rejections[0]["rejected_kind"] == "undeliverable"
    assert "HTTP 503" in rejections[0]["reason"]
    assert f"subscription:{network['subscription_id']}" in rejections[0]["entities"]
    assert len(broken.received) == 3
    assert len(kenya.received) == 1  # UGA's subscription heard nothing
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 1
