"""Bad needs on tacoord.ingress end in the dead-letter queue and in the audit log, with a clear reason."""
import pytest
import requests

from services.audit.service import AuditService
from services.needs.service import NeedsService
from tacoord.testing import wait_until
from tests.integration.needs_helpers import KENYA_NEED


def rejections(sandbox):
    response = requests.get(sandbox.url("audit", "/audit/rejections"), headers=sandbox.headers("operator"),
                            timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["records"]


@pytest.mark.parametrize("event_type, data, reason", [
    ("need.submitted", {**KENYA_NEED, "article": 3}, "data.article: UNCAC article must be between 5 and 62"),
    ("need.submitted", {**KENYA_NEED, "state": "ZZZ"}, "data.state: unknown State 'ZZZ'"),
    ("need.submitted", {**KENYA_NEED, "priority": "high"}, "data.priority: Not a valid integer."),
    ("need.submitted", {**KENYA_NEED, "$set": {"status": "met"}}, "data.$set: keys may not start with '$'"),
    ("need.updated", {"need_id": "KEN-9-x"}, "data: give at least one of"),
    ("need.met", {"need_id": "KEN-9-x"}, "type: unknown message type 'need.met'"),
])
def test_a_bad_need_on_ingress_is_dead_lettered_and_audited(sandbox, start, event_type, data, reason):
    start(AuditService, NeedsService)
    sandbox.publish(event_type, data)
    records = wait_until(lambda: rejections(sandbox), message="rejection record")
    assert reason in records[0]["reason"], records[0]["reason"]
    assert sandbox.queue_depth("tacoord.dead-letters") == 1
    assert sandbox.db("needs").needs.count_documents({}) == 0
