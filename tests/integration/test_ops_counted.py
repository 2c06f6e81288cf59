"""The metrics count what happened and the log says what was refused, read where an operator
reads them: the service's own /metrics (its ops port) and its log lines."""
import logging
import time

import requests

from services.needs import domain
from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from tacoord import logs, topology
from tacoord.envelope import new_event
from tacoord.testing import ops_url, sample, scrape, wait_until
from tests.integration.needs_helpers import KENYA_NEED
from tests.integration.test_notify_delivery import FAST, KENYA_MATCH, Receiver, publish, subscribe


def dead_letters(container, reason):
    return sample(scrape(ops_url(container)), f"tacoord_{container.service_name}_dead_letters_total",
                  reason=reason) or 0.0


def test_an_undeliverable_notification_is_counted_as_a_dead_letter_of_notify(sandbox, start):
    [notify] = start(NotifyService, **FAST)
    before = scrape(ops_url(notify))
    assert sample(before, "tacoord_notify_dead_letters_total", reason="undeliverable") is not None  # at 0 already
    gone = Receiver(then=404)
    try:
        subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": gone.url})
        publish(sandbox, "match.proposed", KENYA_MATCH)
        wait_until(lambda: sandbox.queue_depth("tacoord.dead-letters") == 1, message="the notification parked")
    finally:
        gone.close()
    after = scrape(ops_url(notify))
    grown = {reason: sample(after, "tacoord_notify_dead_letters_total", reason=reason)
             - sample(before, "tacoord_notify_dead_letters_total", reason=reason)
             for reason in ("undeliverable", "rejected", "invalid", "exhausted")}
    assert grown == {"undeliverable": 1, "rejected": 0, "invalid": 0, "exhausted": 0}
    assert sample(after, "tacoord_notify_deliveries_total", channel="webhook", outcome="failed") >= 1


def test_a_message_sent_round_to_wait_for_another_worker_is_counted_as_a_retry(sandbox, start):
    [needs] = start(NeedsService)
    envelope = new_event("need.submitted", KENYA_NEED, "partner-system")
    claim = {"_id": f"needs.ingress:{envelope['id']}", "state": "processing", "claimed_at": time.time()}
    sandbox.db("needs").processed_events.insert_one(claim)  # another worker is on it

    def counted():
        metrics = scrape(ops_url(needs))
        return (sample(metrics, "tacoord_needs_events_consumed_total", type="need.submitted", outcome="retried") or 0,
                sample(metrics, "tacoord_needs_retries_total", type="need.submitted") or 0)
    rounds_before, retries_before = counted()
    sandbox.publish("need.submitted", None, event=envelope)
    wait_until(lambda: counted()[0] - rounds_before >= 2, message="two rounds waiting for the claim")
    sandbox.db("needs").processed_events.delete_one({"_id": claim["_id"]})  # that worker gave up
    need_id = domain.need_id("KEN", 9, KENYA_NEED["forms"])
    wait_until(lambda: sandbox.db("needs").needs.find_one({"_id": need_id}), timeout=30, message="the need filed")
    rounds, retries = counted()
    assert rounds - rounds_before >= 2
    assert retries - retries_before == rounds - rounds_before


def test_refused_requests_are_one_line_each_with_route_status_role_and_reason_and_no_traceback(
        sandbox, start, caplog):
    start(NeedsService)
    caplog.handler.addFilter(logs.ContextFilter("needs"))
    url = sandbox.url("needs", "/needs")
    kenya = sandbox.headers("state", "KEN")
    filed = requests.post(url, json=KENYA_NEED, headers=kenya, timeout=10).json()
    requests.delete(f"{url}/{filed['need_id']}", headers=kenya, timeout=10)
    with caplog.at_level(logging.INFO):
        caplog.clear()
        refused = [
            requests.post(url, json={**KENYA_NEED, "state": "GHA"}, headers=kenya, timeout=10),      # 403
            requests.get(f"{url}/KEN-9-nothing", headers=kenya, timeout=10),                           # 404
            requests.patch(f"{url}/{filed['need_id']}", json={"priority": 2}, headers=kenya, timeout=10),  # 409
            requests.post(url, json={**KENYA_NEED, "priority": 7}, headers=kenya, timeout=10),        # 422
            requests.get(url, timeout=10),                                                               # 401
        ]
        assert [r.status_code for r in refused] == [403, 404, 409, 422, 401]
        wait_until(lambda: len([r for r in caplog.records if hasattr(r, "status")]) >= 5, message="five lines")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a refusal logged as an error"
    assert not [r for r in caplog.records if r.exc_info], "a refusal logged with a traceback"
    lines = {r.status: r for r in caplog.records if hasattr(r, "status")}
    assert sorted(lines) == [401, 403, 404, 409, 422]
    assert len([r for r in caplog.records if hasattr(r, "status")]) == 5
    assert {lines[s].levelname for s in (403, 401)} == {"WARNING"}
    assert {lines[s].levelname for s in (404, 409, 422)} == {"INFO"}
    assert lines[403].route == "/needs" and lines[403].role == "state" and "GHA" in lines[403].reason
    assert lines[404].route == "/needs/<string:need_id>" and "no need" in lines[404].reason
    assert lines[409].role == "state" and lines[409].actor == "state:KEN"
    assert "priority" in lines[422].reason and lines[422].role == "state"
    assert lines[401].role is None and "API key" in lines[401].reason
    assert all(getattr(r, "request_id", None) for r in lines.values())


def test_a_refused_message_is_a_warning_with_its_ids_not_a_worker_traceback(sandbox, start, caplog):
    [requests_service] = start(RequestsService)
    caplog.handler.addFilter(logs.ContextFilter("requests"))
    refused = new_event("workshop.participants_proposed", {
        "request_id": "REQ-KEN-unknown", "regional_group": "AFRICAN", "states_completed": [], "states_upcoming": [],
        "donors": []}, "matching")
    with caplog.at_level(logging.INFO):
        sandbox.publish(refused["type"], None, exchange=topology.EVENTS, event=refused)
        wait_until(lambda: dead_letters(requests_service, "rejected") >= 1, message="the message parked")
        wait_until(lambda: [r for r in caplog.records if "parked" in r.getMessage()], message="the parking logged")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    [parked] = [r for r in caplog.records if "parked" in r.getMessage()]
    assert parked.levelname == "WARNING" and "no request 'REQ-KEN-unknown'" in parked.getMessage()
    assert parked.event_id == refused["id"] and parked.event_type == "workshop.participants_proposed"
    assert parked.correlation_id == refused["correlation_id"] and parked.queue == "requests.events"
