"""Matching's store is lost; it is rebuilt from the audit service's event feed (over HTTP, never from
the audit collection), and the restarted service shows the same matrix and matches, emits nothing it
had emitted already, and goes on matching new needs."""
import json
import time

import pytest
import requests
from click.testing import CliRunner

from services.audit.service import AuditService
from services.cli import main
from services.matching import restore
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.supply.service import SupplyService
from tacoord.ops import OpsServer
from tacoord.testing import wait_until
from tests.integration.test_matching_service import Collector

NEED = {"article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Public procurement reform",
        "languages": ["en"]}
OFFER = {"articles": [9], "forms": ["LEGAL_ADVICE"], "capacity": 5, "period_start": "2026-01-01",
         "period_end": "2027-12-31", "languages": ["en"]}
OWN = ("match.*", "duplication.detected", "gap.detected", "workshop.participants_proposed", "alert.acknowledged",
       "alert.resolved")


def read(sandbox, path, **params):
    response = requests.get(sandbox.url("matching", path), params=params, timeout=10,
                            headers=sandbox.headers("operator"))
    assert response.status_code == 200, response.text
    return response.json()


def snapshot(sandbox):
    return {"matrix": read(sandbox, "/matrix"), "by_group": read(sandbox, "/matrix", rows="chapter",
                                                                 cols="regional_group"),
            "matches": read(sandbox, "/matches"), "alerts": read(sandbox, "/alerts"),
            "allocations": read(sandbox, "/allocations")}


def audited(sandbox, event_type):
    return sandbox.db("audit").audit.count_documents({"type": event_type})


def file_offer(sandbox, provider, **scope):
    response = requests.post(sandbox.url("supply", "/offers"), json={**OFFER, "provider": provider, **scope},
                             headers=sandbox.headers("donor", provider), timeout=10)
    assert response.status_code == 201, response.text


def file_need(sandbox, state):
    sandbox.publish("need.submitted", {**NEED, "state": state})
    return wait_until(lambda: sandbox.db("needs").needs.find_one({"state": state}), message=f"{state} need")


def move(sandbox, match, to, role, subject, reason=None):
    response = requests.post(sandbox.url("matching", f"/matches/{match['match_id']}/transitions"),
                             json={"to": to, "reason": reason}, headers=sandbox.headers(role, subject), timeout=10)
    assert response.status_code == 200, response.text


def cli(sandbox, key, *args):
    return CliRunner().invoke(main, ["--vhost", sandbox.vhost, "--db-prefix", sandbox.prefix, "matching", "rebuild",
                                     "--audit-url", sandbox.url("audit", ""), "--key", key, "--ops-url", "",
                                     "--quiet", *args])


def test_a_lost_matching_store_is_rebuilt_from_the_audit_feed_and_nothing_is_emitted_twice(sandbox, start):
    *_, matching = start(AuditService, NeedsService, SupplyService, MatchingService)
    operator = sandbox.api_key("operator", "*")
    out = Collector(sandbox, *OWN)
    file_offer(sandbox, "GB-GOV-1", level="bilateral", scope_states=["KEN"])
    file_offer(sandbox, "DE-BMZ-1", level="regional", scope_groups=["AFRICAN"])
    kenya = file_need(sandbox, "KEN")
    uganda = file_need(sandbox, "UGA")
    out.wait_for("match.proposed", count=3)
    out.wait_for("duplication.detected")
    withdrawn = requests.delete(sandbox.url("needs", f"/needs/{uganda['need_id']}"), timeout=10,
                                headers=sandbox.headers("operator"))
    assert withdrawn.status_code in (200, 204), withdrawn.text
    out.wait_for("match.retracted")
    assert {c["status"] for c in read(sandbox, "/matrix")["cells"] if c["col"] == "KEN"} == {"duplicated"}
    duplication = out.of_type("duplication.detected")[0]["data"]["duplication_id"]
    acknowledged = requests.post(sandbox.url("matching", f"/alerts/{duplication}/acknowledge"), timeout=10,
                                 json={"note": "asking both donors"}, headers=sandbox.headers("donor", "GB-GOV-1"))
    assert acknowledged.status_code == 200, acknowledged.text
    # People's steps are replayed too: GB's match for Kenya accepted and agreed, DE's declined, which
    # resolves the duplication (DE is no longer matched to Kenya × 9 × LEGAL_ADVICE).
    for_kenya = {m["provider"]: m for m in read(sandbox, "/matches", need_id=kenya["need_id"])["matches"]}
    move(sandbox, for_kenya["GB-GOV-1"], "accepted", "donor", "GB-GOV-1")
    move(sandbox, for_kenya["GB-GOV-1"], "agreed", "state", "KEN")
    move(sandbox, for_kenya["DE-BMZ-1"], "declined", "donor", "DE-BMZ-1", reason="GB covers it")
    wait_until(lambda: (audited(sandbox, "match.proposed"), audited(sandbox, "match.retracted"),
                        audited(sandbox, "duplication.detected"), audited(sandbox, "alert.acknowledged"),
                        audited(sandbox, "match.accepted"), audited(sandbox, "match.agreed"),
                        audited(sandbox, "match.declined"), audited(sandbox, "alert.resolved")) ==
               (3, 1, 1, 1, 1, 1, 1, 1), message="matching's events audited")
    wait_until(lambda: {c["status"] for c in read(sandbox, "/matrix")["cells"] if c["col"] == "KEN"} == {"met"},
               message="the model followed the steps")
    before = snapshot(sandbox)
    assert before["matches"]["count"] == 3 and before["alerts"]["count"] == 1
    alert = before["alerts"]["alerts"][0]
    assert alert["acknowledged"]["by"] == "donor:GB-GOV-1"   # restored from its event
    assert (alert["status"], alert["resolved"]["resolution"], alert["resolved"]["automatic"]) == \
        ("resolved", "cause_gone", True)

    feed = restore.AuditFeed(sandbox.url("audit", ""), operator, page_size=2)
    with pytest.raises(restore.RestoreError, match="seems to be running .*consumer"):
        restore.restore(sandbox.db("matching"), feed, amqp_uri=sandbox.amqp_uri)
    ops = next(d for d in matching.dependencies if isinstance(d, OpsServer))
    assert "health/live answers (200)" in restore.running_instances(ops_url=f"http://127.0.0.1:{ops.port}")[0]

    matching.stop()
    sandbox.mongo.drop_database(sandbox.db("matching").name)
    summary = restore.restore(sandbox.db("matching"), feed, amqp_uri=sandbox.amqp_uri)
    assert (summary["needs"], summary["open_needs"], summary["offers"]) == (2, 1, 2)
    assert (summary["matches"], summary["active_matches"], summary["alerts"]) == (3, 1, 1)
    assert summary["differences"] == {"only_live": 0, "only_rebuilt": 0}
    assert summary["processed_ids"] >= 5 and summary["events_read"] > summary["processed_ids"]

    refused = cli(sandbox, operator)
    assert refused.exit_code == 1 and "is not empty" in refused.output and "--replace" in refused.output
    replaced = cli(sandbox, operator, "--replace", "--yes")
    assert replaced.exit_code == 0, replaced.output
    printed = json.loads(replaced.stdout)
    assert printed["replaced"]["matches"] == 3 and printed["replaced"]["needs_view"] == 2
    assert {**printed, "replaced": {}} == summary

    out.take()
    emitted_before = len(out.events)
    start(MatchingService)
    assert snapshot(sandbox) == before
    time.sleep(2)
    assert len(out.take()) == emitted_before, [e["type"] for e in out.events[emitted_before:]]

    assert {m["match_id"]: m["status"] for m in read(sandbox, "/matches")["matches"]} == \
        {m["match_id"]: m["status"] for m in before["matches"]["matches"]}
    tanzania = file_need(sandbox, "TZA")
    new = out.wait_for("match.proposed", count=4)[-1]
    assert new["data"]["need_id"] == tanzania["need_id"] and new["data"]["provider"] == "DE-BMZ-1"
    assert kenya["need_id"] in {m["need_id"] for m in read(sandbox, "/matches", status="active")["matches"]}


def test_a_matching_service_started_on_an_empty_store_rebuilds_it_from_the_feed_first(sandbox, start):
    *_, matching = start(AuditService, NeedsService, SupplyService, MatchingService)
    operator = sandbox.api_key("operator", "*")
    out = Collector(sandbox, *OWN)
    file_offer(sandbox, "GB-GOV-1", level="bilateral", scope_states=["KEN"])
    file_need(sandbox, "KEN")
    out.wait_for("match.proposed")
    wait_until(lambda: audited(sandbox, "match.proposed") == 1, message="the match audited")
    before = snapshot(sandbox)

    matching.stop()
    sandbox.mongo.drop_database(sandbox.db("matching").name)
    start(MatchingService, TACOORD_MATCHING_REPLAY_URL=sandbox.url("audit", ""), TACOORD_MATCHING_REPLAY_KEY=operator)

    assert snapshot(sandbox) == before
    assert sandbox.db("matching").processed_events.count_documents({"restored": True}) == 2
    file_need(sandbox, "UGA")  # GB's offer does not reach Uganda: nothing
    time.sleep(1.5)
    assert [e["type"] for e in out.take()] == ["match.proposed"]
