"""IATI activity XML import: over HTTP and with the CLI, against the real broker and database."""
import json
from pathlib import Path

import requests

from services.supply import iati
from services.supply.service import SupplyService
from tacoord import config
from tacoord.testing import wait_until

FIXTURE = Path(__file__).parent.parent / "fixtures" / "iati_activities.xml"
XML = {"Content-Type": "application/xml"}


def post_iati(sandbox, body, role="operator", subject="*"):
    return requests.post(sandbox.url("supply", "/offers/import/iati"), data=body, timeout=20,
                         headers={**sandbox.headers(role, subject), **XML})


def test_an_iati_file_becomes_offers_and_a_reimport_skips_them(sandbox, start):
    start(SupplyService)
    response = post_iati(sandbox, FIXTURE.read_bytes())
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["activities"], report["imported"], report["skipped"]) == (5, 2, 3)
    outcome = {r["position"]: r for r in report["results"]}
    assert outcome[1]["outcome"] == outcome[2]["outcome"] == "imported"
    assert "11220" in outcome[3]["reason"]
    assert "'UK'" in outcome[4]["reason"]
    assert outcome[5]["reason"] == "duplicate iati-identifier: already imported (activity 1 of this file)"

    kenya = requests.get(sandbox.url("supply", f"/offers/{outcome[1]['offer_id']}"), timeout=5,
                         headers=sandbox.headers("state", "KEN")).json()
    assert kenya["iati_identifier"] == "GB-GOV-1-300123"
    assert (kenya["level"], kenya["scope_states"], kenya["status"]) == ("bilateral", ["KEN"], "active")
    found = requests.get(sandbox.url("supply", "/offers?state=KEN&article=46"), timeout=5,
                         headers=sandbox.headers("state", "KEN")).json()["offers"]
    assert [o["iati_identifier"] for o in found] == ["XM-DAC-41114-00098765"]   # regional, via AFRICAN

    again = post_iati(sandbox, FIXTURE.read_bytes()).json()
    assert again["imported"] == 0
    reasons = {r["position"]: r["reason"] for r in again["results"]}
    assert reasons[1] == reasons[2] == "already imported"
    assert sandbox.db("supply").offers.count_documents({}) == 2
    events = wait_until(lambda: sandbox.queue_depth("matching.events") >= 2 and
                        sandbox.get_messages("matching.events"), message="published events")
    assert sorted(e["data"]["iati_identifier"] for e, _ in events) == ["GB-GOV-1-300123", "XM-DAC-41114-00098765"]


def test_a_donor_imports_only_the_activities_it_reports(sandbox, start):
    start(SupplyService)
    report = post_iati(sandbox, FIXTURE.read_bytes(), "donor", "GB-GOV-1").json()
    outcome = {r["position"]: r for r in report["results"]}
    assert outcome[1]["outcome"] == "imported"
    assert "not your organisation" in outcome[2]["reason"]
    assert post_iati(sandbox, FIXTURE.read_bytes(), "partner", "p").status_code == 403


def test_unsafe_or_wrong_xml_is_refused_with_a_reason(sandbox, start):
    start(SupplyService)
    bomb = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<iati-activities version="2.03"><iati-activity>&e;</iati-activity></iati-activities>')
    response = post_iati(sandbox, bomb)
    assert response.status_code == 422 and "unsafe XML" in response.json()["error"]
    response = post_iati(sandbox, b"<iati-activities version='1.05'/>")
    assert response.status_code == 422 and "1.05" in response.json()["error"]
    assert post_iati(sandbox, b"").status_code == 400


def test_a_configured_sector_map_brings_in_other_sectors(sandbox, start):
    start(SupplyService, TACOORD_IATI_SECTOR_MAP=json.dumps(
        {"11220": {"articles": [13], "forms": ["GOOD_PRACTICES"]}}))
    outcome = {r["position"]: r for r in post_iati(sandbox, FIXTURE.read_bytes()).json()["results"]}
    assert outcome[3]["outcome"] == "imported"


def test_the_cli_imports_and_prints_a_summary(sandbox, capsys):
    argv = [str(FIXTURE), "--amqp-uri", sandbox.amqp_uri, "--mongo-uri", config.mongo_uri(),
            "--db-prefix", sandbox.prefix]
    assert iati.main(argv) == 0
    first = capsys.readouterr().out
    assert "5 activities: 2 imported, 3 skipped" in first
    assert "unknown recipient-country code 'UK'" in first
    assert iati.main(argv) == 0
    assert "5 activities: 0 imported, 5 skipped" in capsys.readouterr().out
    assert sandbox.db("supply").offers.count_documents({"_outbox_pending": {"$gt": 0}}) == 0
    assert sandbox.queue_depth("matching.events") == 2
