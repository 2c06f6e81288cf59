"""The whole chain with every real service: a partner's need for Kenya on ingress, a donor's offer
over HTTP, matching proposes, notify tells the donor (signed webhook) and the African network
(e-mail through a real SMTP server), and the audit log holds each event once. Redelivering the
partner's event sends nothing more. The match shows in the matrix (JSON and CSV); the State
withdrawing its need retracts it."""
import csv
import io
import json
import time

import requests

from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.notify.domain import SIGNATURE_HEADER, verify_signature
from services.notify.service import NotifyService
from services.supply.service import SupplyService
from tacoord import topology
from tacoord.testing import consumed, wait_until
from tests.integration.test_notify_delivery import FAST, deliveries, receivers, smtp, subscribe  # noqa: F401

DONOR = "GB-GOV-1"
KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
              "description": "Public procurement reform", "languages": ["en"]}
KENYA_OFFER = {"provider": DONOR, "provider_name": "FCDO", "level": "bilateral", "scope_states": ["KEN"],
               "articles": [9], "forms": ["LEGAL_ADVICE"], "capacity": 2,
               "period_start": "2026-01-01", "period_end": "2027-12-31", "languages": ["en"]}


def audit_count(sandbox, event_type):
    return sandbox.db("audit").audit.count_documents({"type": event_type})


def test_a_kenyan_need_matched_to_an_offer_notifies_the_donor_and_the_african_network_once(
        sandbox, start, receivers, smtp):
    start(AuditService, NeedsService, SupplyService, MatchingService, NotifyService,
          TACOORD_SMTP_PORT=smtp.port, **FAST)
    hook = receivers()
    donor = subscribe(sandbox, "donor", DONOR, {"channel": "webhook", "url": hook.url,
                                                "filter": {"types": ["match.proposed"]}})
    network = subscribe(sandbox, "network", "AFRICAN", {"channel": "email", "email": "desk@african.example",
                                                        "filter": {"types": ["match.proposed"]}})
    subscribe(sandbox, "network", "WEOG", {"channel": "email", "email": "desk@weog.example",
                                           "filter": {"types": ["match.proposed"]}})

    offer = requests.post(sandbox.url("supply", "/offers"), json=KENYA_OFFER,
                          headers=sandbox.headers("donor", DONOR), timeout=10)
    assert offer.status_code == 201, offer.text
    filed = sandbox.publish("need.submitted", KENYA_NEED)

    wait_until(lambda: len(hook.received) == 1 and len(smtp.messages()) == 1, timeout=30,
               message="donor webhook and network e-mail")
    body = hook.received[0]["body"]
    assert verify_signature(donor["secret"], hook.received[0]["headers"][SIGNATURE_HEADER], body, now=time.time())
    match = json.loads(body)["event"]
    assert match["type"] == "match.proposed" and match["source"] == "matching"
    assert match["correlation_id"] == filed["correlation_id"]
    assert (match["data"]["state"], match["data"]["article"], match["data"]["provider"]) == ("KEN", 9, DONOR)
    assert match["data"]["offer_id"] == offer.json()["offer_id"]
    assert "article" in " ".join(match["data"]["explanation"]["constraints_met"])

    mail = smtp.messages()[0]
    assert mail["To"] == "desk@african.example" and "KEN" in mail["Subject"]
    for subscription in (donor, network):
        wait_until(lambda: [d["status"] for d in deliveries(sandbox, subscription["subscription_id"])]
                   == ["delivered"], message="delivery logged")
    wait_until(lambda: audit_count(sandbox, "match.proposed") == 1, message="match audited")

    # The partner's broker redelivers the same event (same id): nothing new anywhere.
    duplicates = consumed("needs", "duplicate")
    sandbox.publish("need.submitted", None, event=filed)
    wait_until(lambda: consumed("needs", "duplicate") - duplicates == 1, message="redelivery skipped as done")
    time.sleep(2)
    assert len(hook.received) == 1 and len(smtp.messages()) == 1
    assert audit_count(sandbox, "need.submitted") == 1
    assert audit_count(sandbox, "match.proposed") == 1
    assert len(deliveries(sandbox, donor["subscription_id"])) == 1
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0

    # the matrix shows the match, as JSON and as CSV: proposed (it is "met" once agreed)
    operator = sandbox.headers("operator")
    cell = requests.get(sandbox.url("matching", "/matrix"), params={"state": "KEN", "article": 9},
                        headers=operator, timeout=5).json()["cells"]
    assert [(c["needs"], c["offers"], c["matches"], c["status"]) for c in cell] == [(1, 1, 1, "proposed")]
    exported = requests.get(sandbox.url("matching", "/matrix.csv"), params={"state": "KEN"}, headers=operator,
                            timeout=5)
    assert [(r["article"], r["status"]) for r in csv.DictReader(io.StringIO(exported.text))] == [("9", "proposed")]

    # Kenya withdraws the need: the match is retracted and the cell has nothing open
    need_id = match["data"]["need_id"]
    withdrawn = requests.delete(sandbox.url("needs", f"/needs/{need_id}"), params={"reason": "covered"},
                                headers=sandbox.headers("state", "KEN"), timeout=5)
    assert withdrawn.status_code == 200, withdrawn.text
    wait_until(lambda: audit_count(sandbox, "match.retracted") == 1, message="match retracted")
    retracted = sandbox.db("audit").audit.find_one({"type": "match.retracted"})["event"]
    assert retracted["data"]["match_id"] == match["data"]["match_id"]
    after = requests.get(sandbox.url("matching", "/matrix"), params={"state": "KEN", "article": 9},
                         headers=operator, timeout=5).json()["cells"]
    assert [(c["needs"], c["offers"], c["matches"], c["status"]) for c in after] == [(0, 1, 0, "no_need")]
