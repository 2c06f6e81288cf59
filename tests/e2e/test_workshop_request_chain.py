"""A regional workshop request through every real service: the State files it, matching proposes
participants from what needs and supply know, notify tells the African network and the donor active in
the region, the operator approves and schedules, the State marks it held — and the request's audit
history shows every step in order."""
import json

import requests

from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from services.supply.service import SupplyService
from tacoord.testing import wait_until
from tests.integration.test_notify_delivery import FAST, receivers, subscribe  # noqa: F401

DONOR = "XM-DAC-41114"
REGIONAL = {
    "kind": "regional_workshop", "state": "KEN", "articles": [9],
    "expected_outcomes": "Gap analysis of public procurement rules against article 9",
    "preferred_dates": [{"from": "2027-05-10", "to": "2027-05-14"}], "language": "en",
    "support_received": [],
}
AFRICA_OFFER = {"provider": DONOR, "level": "regional", "scope_groups": ["AFRICAN"], "chapters": [2],
                "forms": ["CAPACITY_BUILDING"], "period_start": "2026-06-01", "period_end": "2028-05-31",
                "languages": ["en", "fr"]}


def test_a_regional_workshop_goes_from_filing_to_held_with_real_matching_and_notify(sandbox, start, receivers):
    start(AuditService, NeedsService, SupplyService, MatchingService, NotifyService, RequestsService, **FAST)
    operator, kenya = sandbox.headers("operator"), sandbox.headers("state", "KEN")
    network_hook, donor_hook = receivers(), receivers()
    proposals_only = {"types": ["workshop.participants_proposed"]}
    subscribe(sandbox, "network", "AFRICAN", {"channel": "webhook", "url": network_hook.url,
                                              "filter": proposals_only})
    subscribe(sandbox, "donor", DONOR, {"channel": "webhook", "url": donor_hook.url, "filter": proposals_only})

    # What matching knows before the request: Uganda completed a checklist round, Rwanda started one,
    # a UN agency offers regional support to Africa.
    sandbox.publish("need.submitted", {"state": "UGA", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
                                       "description": "Procurement law review", "checklist_round": "2026-1"})
    sandbox.publish("need.submitted", {"state": "RWA", "article": 10, "forms": ["ACTION_PLAN"], "priority": 2,
                                       "description": "Public reporting"})
    offer = requests.post(sandbox.url("supply", "/offers"), json=AFRICA_OFFER,
                          headers=sandbox.headers("donor", DONOR), timeout=10)
    assert offer.status_code == 201, offer.text
    wait_until(lambda: sandbox.db("matching").needs_view.count_documents({}) == 2
               and sandbox.db("matching").offers_view.count_documents({}) == 1, message="matching read model")

    filed = requests.post(sandbox.url("requests", "/requests"), json=REGIONAL, headers=kenya, timeout=5)
    assert filed.status_code == 201, filed.text
    request_id = filed.json()["request_id"]

    shown = wait_until(lambda: requests.get(sandbox.url("requests", f"/requests/{request_id}"), headers=kenya,
                                            timeout=5).json().get("proposed_participants"), message="participants")
    assert shown["states_completed"] == ["UGA"]
    assert shown["states_upcoming"] == ["KEN", "RWA"]
    assert shown["donors"] == [DONOR]

    wait_until(lambda: len(network_hook.received) == 1 and len(donor_hook.received) == 1,
               message="network and donor notified")
    told = json.loads(network_hook.received[0]["body"])["event"]
    assert told["type"] == "workshop.participants_proposed" and told["data"]["request_id"] == request_id

    def history():
        response = requests.get(sandbox.url("audit", f"/audit/entities/request/{request_id}"), headers=operator,
                                timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["records"]

    def move(who, **body):
        before = len(history())
        response = requests.post(sandbox.url("requests", f"/requests/{request_id}/transitions"), json=body,
                                 headers=who, timeout=5)
        assert response.status_code == 200, response.text
        wait_until(lambda: len(history()) == before + 1, message=f"audit record for {body['to']}")
        return response.json()

    wait_until(lambda: len(history()) == 2, message="request and proposal audited")
    move(operator, to="under_review")
    move(operator, to="approved")
    move(operator, to="scheduled", scheduled_for="2027-05-11")
    held = move(kenya, to="held", outcome_notes="Gap analysis agreed; follow-up needs filed")
    assert held["status"] == "held"

    records = history()
    assert [r["type"] for r in records] == [
        "workshop.requested", "workshop.participants_proposed", "workshop.under_review",
        "workshop.approved", "workshop.scheduled", "workshop.held"]
    assert [r["source"] for r in records] == ["requests", "matching", "requests", "requests", "requests",
                                              "requests"]
    assert records[1]["causation_id"] == records[0]["event"]["id"]
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert len(network_hook.received) == 1 and len(donor_hook.received) == 1


ARINSA = {"network_id": "ARINSA", "name": "Asset Recovery Inter-Agency Network of Southern Africa",
          "kind": "regional_network", "states": ["ZAF", "BWA", "NAM"], "focus_articles": [54],
          "website": "https://www.arinsa.org"}


def test_a_network_workshop_proposes_its_members_and_the_proposed_donor_reads_it_and_hears_the_dates(
        sandbox, start, receivers):
    start(AuditService, NeedsService, SupplyService, MatchingService, NotifyService, RequestsService, **FAST)
    operator, south_africa = sandbox.headers("operator"), sandbox.headers("state", "ZAF")
    asset_donor, other_donor = "CH-FDFA-1", "DE-BMZ-1"
    dates_hook, other_hook = receivers(), receivers()
    scheduled_only = {"types": ["workshop.scheduled"]}
    subscribe(sandbox, "donor", asset_donor, {"channel": "webhook", "url": dates_hook.url, "filter": scheduled_only})
    subscribe(sandbox, "donor", other_donor, {"channel": "webhook", "url": other_hook.url, "filter": scheduled_only})

    registered = requests.post(sandbox.url("requests", "/networks"), json=ARINSA, headers=operator, timeout=5)
    assert registered.status_code == 201, registered.text
    # Kenya (not a member) completed a round; South Africa too. Two African offers: asset recovery and procurement.
    sandbox.publish("need.submitted", {"state": "KEN", "article": 54, "forms": ["LEGAL_ADVICE"], "priority": 1,
                                       "checklist_round": "2026-1"})
    sandbox.publish("need.submitted", {"state": "ZAF", "article": 54, "forms": ["LEGAL_ADVICE"], "priority": 1,
                                       "checklist_round": "2026-1"})
    for donor, articles in ((asset_donor, [54, 57]), (other_donor, [9])):
        offer = requests.post(sandbox.url("supply", "/offers"), headers=sandbox.headers("donor", donor), timeout=10,
                              json={**AFRICA_OFFER, "provider": donor, "chapters": [], "articles": articles})
        assert offer.status_code == 201, offer.text
    wait_until(lambda: sandbox.db("matching").needs_view.count_documents({}) == 2
               and sandbox.db("matching").offers_view.count_documents({}) == 2, message="matching read model")

    filed = requests.post(sandbox.url("requests", "/requests"), headers=south_africa, timeout=5, json={
        **REGIONAL, "state": "ZAF", "network_id": "ARINSA", "articles": [54],
        "expected_outcomes": "A regional gap analysis of asset-recovery laws"})
    assert filed.status_code == 201, filed.text
    request_id = filed.json()["request_id"]
    assert filed.json()["network_states"] == ["BWA", "NAM", "ZAF"]      # from the directory, not asked again

    donor_view = sandbox.headers("donor", asset_donor)
    shown = wait_until(lambda: requests.get(sandbox.url("requests", f"/requests/{request_id}"), headers=donor_view,
                                            timeout=5).json().get("proposed_participants"),
                       message="the proposed donor reads the request")
    assert shown["states_completed"] == ["ZAF"] and shown["states_upcoming"] == []   # KEN is not a member
    assert shown["donors"] == [asset_donor]
    assert requests.get(sandbox.url("requests", f"/requests/{request_id}"), timeout=5,
                        headers=sandbox.headers("donor", other_donor)).status_code == 403

    for body in ({"to": "under_review"}, {"to": "approved"}, {"to": "scheduled", "scheduled_for": "2027-05-11"}):
        moved = requests.post(sandbox.url("requests", f"/requests/{request_id}/transitions"), json=body,
                              headers=operator, timeout=5)
        assert moved.status_code == 200, moved.text
    wait_until(lambda: len(dates_hook.received) == 1, message="the proposed donor hears the dates")
    told = json.loads(dates_hook.received[0]["body"])["event"]
    assert told["type"] == "workshop.scheduled" and told["data"]["scheduled_for"] == "2027-05-11"
    assert told["data"]["donors"] == [asset_donor] and told["data"]["preferred_dates"] == REGIONAL["preferred_dates"]
    assert other_hook.received == []
