"""The audit service's event feed (GET /audit/events): what a read model is rebuilt from."""
import requests

from services.audit.service import AuditService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import wait_until
from tests.integration.test_matching_service import need_data, offer_data

PROPOSAL = {"request_id": "req-1", "regional_group": "AFRICAN", "states_completed": [], "states_upcoming": ["KEN"],
            "donors": []}


def emit(sandbox, event_type, data):
    event = new_event(event_type, data, "test", "test")
    sandbox.publish(event_type, data, exchange=topology.EVENTS, event=event)
    return event


def feed(sandbox, role="operator", subject="*", **params):
    return requests.get(sandbox.url("audit", "/audit/events"), params=params, timeout=10,
                        headers=sandbox.headers(role, subject))


def recorded(sandbox, count):
    return wait_until(lambda: sandbox.db("audit").audit.count_documents({}) >= count, message=f"{count} records")


def test_the_feed_pages_through_stored_envelopes_in_seq_order_filtered_by_type(sandbox, start):
    start(AuditService)
    sent = [emit(sandbox, "need.submitted", need_data(need_id=f"KEN-9-{i}")) if i % 2 == 0 else
            emit(sandbox, "offer.published", offer_data(offer_id=f"GB-1-{i}")) for i in range(7)]
    sent.append(emit(sandbox, "workshop.participants_proposed", PROPOSAL))
    emit(sandbox, "need.submitted", {"need_id": "not a need"})  # dead-lettered: a rejection record, not an event
    recorded(sandbox, 9)
    in_order = [r["event_id"] for r in sandbox.db("audit").audit.find({"kind": "event"}, sort=[("seq", 1)])]
    assert len(in_order) == 8

    seen, after, pages = [], 0, 0
    while True:
        page = feed(sandbox, after=after, limit=3, types="need.*,workshop.participants_proposed")
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["limit"] == 3 and body["head"] == 9 and body["count"] == len(body["events"]) <= 3
        seen += body["events"]
        after, pages = body["next"], pages + 1
        if not body["more"]:
            break
    wanted = [e for e in sent if e["type"] != "offer.published"]
    assert [e["id"] for e in seen] == [i for i in in_order if i in {w["id"] for w in wanted}]
    assert seen[0] == {**wanted[0], "occurred_at": seen[0]["occurred_at"]}  # the envelope as published
    assert pages == 2

    everything = feed(sandbox).json()
    assert [e["id"] for e in everything["events"]] == in_order and everything["more"] is False
    last = sandbox.db("audit").audit.find_one({"event_id": in_order[-1]})["seq"]
    assert everything["next"] == last and everything["types"] is None
    assert feed(sandbox, after=last).json() == {**everything, "after": last, "count": 0, "events": [], "next": last}


def test_the_feed_caps_the_page_size_and_names_bad_parameters(sandbox, start):
    start(AuditService)
    assert feed(sandbox, limit=100000).json()["limit"] == 1000
    for params, field in (({"after": "-1"}, "after"), ({"after": "x"}, "after"), ({"limit": "0"}, "limit"),
                          ({"after": str(10 ** 30)}, "after"), ({"types": "need.*,Need"}, "types"),
                          ({"types": ","}, "types"), ({"types": "#.need"}, "types")):
        response = feed(sandbox, **params)
        assert response.status_code == 422, (params, response.text)
        assert field in response.json()["fields"], (params, response.text)
    unknown = feed(sandbox, since=3)
    assert unknown.status_code == 400 and "since" in unknown.json()["error"]


def test_only_operators_read_the_feed(sandbox, start):
    start(AuditService)
    assert feed(sandbox, role="state", subject="KEN").status_code == 403
    assert requests.get(sandbox.url("audit", "/audit/events"), timeout=10).status_code == 401
