"""IATI activity XML import: over HTTP and with the CLI, against the real broker and database."""
import json
import os
import subprocess
import sys
from pathlib import Path

import requests
from click.testing import CliRunner

from services.cli import main
from services.supply import iati
from services.supply.service import SupplyService
from tacoord import config, envelope
from tacoord.testing import wait_until

FIXTURES = Path(__file__).parent.parent / "fixtures"
FIXTURE = FIXTURES / "iati_activities.xml"
IATI = FIXTURES / "iati"
XML = {"Content-Type": "application/xml"}
ROOT = Path(__file__).parent.parent.parent


def post_iati(sandbox, body, role="operator", subject="*", query=""):
    return requests.post(sandbox.url("supply", "/offers/import/iati" + query), data=body, timeout=30,
                         headers={**sandbox.headers(role, subject), **XML})


def emitted(sandbox, count):
    seen = []

    def enough():
        seen.extend(body for body, _ in sandbox.get_messages("matching.events"))
        return seen if len(seen) >= count else None
    return wait_until(enough, message=f"{count} emitted event(s)")


def test_an_iati_file_becomes_offers_and_the_same_file_again_adds_nothing(sandbox, start):
    start(SupplyService)
    response = post_iati(sandbox, FIXTURE.read_bytes())
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["activities"], report["imported"], report["skipped"]) == (5, 2, 3)
    outcome = {r["position"]: r for r in report["results"]}
    assert outcome[1]["outcome"] == outcome[2]["outcome"] == "imported"
    assert "11220" in outcome[3]["reason"]
    assert "'UK'" in outcome[4]["reason"]
    assert outcome[5]["reason"].startswith("duplicate iati-identifier: activity 1 of this file")
    assert (outcome[1]["states"], outcome[1]["share"]) == (["KEN"], 1.0)
    assert outcome[1]["amounts"] == {"GBP": {"budget": 1500000.0, "planned": 0.0, "committed": 0.0,
                                             "disbursed": 0.0, "incoming": 0.0}}

    kenya = requests.get(sandbox.url("supply", f"/offers/{outcome[1]['offer_id']}"), timeout=5,
                         headers=sandbox.headers("state", "KEN")).json()
    assert kenya["iati_identifier"] == "GB-GOV-1-300123"
    assert (kenya["level"], kenya["scope_states"], kenya["status"]) == ("bilateral", ["KEN"], "active")
    assert kenya["budget"][0]["value"] == 1500000.0 and kenya["iati_warnings"] == []
    found = requests.get(sandbox.url("supply", "/offers?state=KEN&article=46"), timeout=5,
                         headers=sandbox.headers("state", "KEN")).json()["offers"]
    assert [o["iati_identifier"] for o in found] == ["XM-DAC-41114-00098765"]   # regional, via AFRICAN

    events = emitted(sandbox, 2)
    again = post_iati(sandbox, FIXTURE.read_bytes()).json()
    assert (again["imported"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert {r["position"]: r["outcome"] for r in again["results"]}[1] == "unchanged"
    assert sandbox.db("supply").offers.count_documents({}) == 2
    assert sorted(e["data"]["iati_identifier"] for e in events) == ["GB-GOV-1-300123", "XM-DAC-41114-00098765"]
    assert events[0]["data"]["budget"] or events[1]["data"]["budget"]
    assert sandbox.queue_depth("matching.events") == 0   # the identical import emitted nothing


def test_a_newer_version_updates_the_offer_and_emits_offer_updated_an_older_one_is_kept_out(sandbox, start):
    start(SupplyService)
    first = post_iati(sandbox, (IATI / "reimport_v1.xml").read_bytes()).json()
    assert first["imported"] == 2
    emitted(sandbox, 2)
    second = post_iati(sandbox, (IATI / "reimport_v2.xml").read_bytes()).json()
    assert (second["imported"], second["updated"], second["unchanged"]) == (0, 1, 1), second
    [event] = emitted(sandbox, 1)
    envelope.load(event)
    data = event["data"]
    assert event["type"] == "offer.updated" and data["iati_identifier"] == "GB-GOV-1-400001"
    assert (data["status"], data["period_end"], data["level"], data["scope_states"]) == \
        ("closed", "2028-06-30", "regional", ["KEN", "UGA"])
    assert [b["type"] for b in data["budget"]] == ["original", "revised"]
    assert [t["type"] for t in data["transactions"]] == ["outgoing_commitment", "disbursement"]
    stored = sandbox.db("supply").offers.find_one({"iati_identifier": "GB-GOV-1-400001"})
    assert stored["iati_last_updated"] == "2026-10-31T09:15:00Z"

    older = post_iati(sandbox, (IATI / "reimport_v1.xml").read_bytes()).json()
    reasons = {r["iati_identifier"]: (r["outcome"], r.get("reason")) for r in older["results"]}
    assert reasons["GB-GOV-1-400001"][0] == "skipped" and "older version" in reasons["GB-GOV-1-400001"][1]
    assert reasons["GB-GOV-1-400002"] == ("unchanged", None)
    assert sandbox.db("supply").offers.find_one({"iati_identifier": "GB-GOV-1-400001"})["status"] == "closed"


def test_a_cancelled_activity_withdraws_the_offer_it_made(sandbox, start):
    start(SupplyService)
    text = (IATI / "reimport_v1.xml").read_bytes()
    post_iati(sandbox, text)
    emitted(sandbox, 2)
    cancelled = text.replace(b'<activity-status code="2"/>', b'<activity-status code="5"/>', 1)
    report = post_iati(sandbox, cancelled).json()
    assert report["results"][0]["outcome"] == "updated" and "cancelled" in report["results"][0]["reason"]
    [event] = emitted(sandbox, 1)
    assert (event["type"], event["data"]["iati_identifier"]) == ("offer.withdrawn", "GB-GOV-1-400001")


def test_the_real_world_shapes_are_imported_with_their_warnings(sandbox, start):
    start(SupplyService)
    report = post_iati(sandbox, (IATI / "refs_scope_dates.xml").read_bytes()).json()
    assert report["imported"] == 6, report
    by_id = {r["iati_identifier"]: r for r in report["results"]}
    historical = sandbox.db("supply").offers.find_one({"_id": by_id["41114-SL-2019-0042"]["offer_id"]})
    assert historical["provider"] == "41114" and "not of the {agency}-{number} shape" in historical["iati_warnings"][0]
    ongoing = sandbox.db("supply").offers.find_one({"_id": by_id["FR-3-CZZ-2026-0007"]["offer_id"]})
    assert (ongoing["period_end"], ongoing["level"]) == (None, "regional")
    events = emitted(sandbox, 6)
    for event in events:
        envelope.load(event)   # a historical ref and an open period honour the event contract
    money = post_iati(sandbox, (IATI / "sectors.xml").read_bytes()).json()
    assert [r["share"] for r in money["results"]] == [0.6, 0.84, 0.5]


def test_a_donor_imports_only_the_activities_it_reports(sandbox, start):
    start(SupplyService)
    report = post_iati(sandbox, FIXTURE.read_bytes(), "donor", "GB-GOV-1").json()
    outcome = {r["position"]: r for r in report["results"]}
    assert outcome[1]["outcome"] == "imported"
    assert "not your organisation" in outcome[2]["reason"]
    assert post_iati(sandbox, FIXTURE.read_bytes(), "partner", "p").status_code == 403


def test_a_dry_run_over_http_reports_what_the_import_would_do_and_stores_nothing(sandbox, start):
    start(SupplyService)
    dry = post_iati(sandbox, FIXTURE.read_bytes(), "donor", "GB-GOV-1", "?dry_run=1")
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert report == iati.dry_run(FIXTURE.read_bytes(), iati.load_map(None), only_provider="GB-GOV-1")
    outcome = {r["position"]: r for r in report["results"]}
    assert outcome[1]["outcome"] == "would import" and "offer_id" not in outcome[1]
    assert outcome[2]["outcome"] == "skipped" and "not your organisation" in outcome[2]["reason"]
    assert sandbox.db("supply").offers.count_documents({}) == 0
    assert sandbox.get_messages("matching.events") == []
    imported = post_iati(sandbox, FIXTURE.read_bytes(), "donor", "GB-GOV-1", "?dry_run=0").json()
    assert [r["outcome"] for r in imported["results"]] == [
        "imported" if r["outcome"] == "would import" else r["outcome"] for r in report["results"]]
    refused = post_iati(sandbox, FIXTURE.read_bytes(), query="?dry_run=maybe")
    assert refused.status_code == 422 and "dry_run" in refused.json()["fields"]


def test_unsafe_or_wrong_xml_is_refused_with_a_reason(sandbox, start):
    start(SupplyService)
    bomb = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b'<iati-activities version="2.03"><iati-activity>&e;</iati-activity></iati-activities>')
    response = post_iati(sandbox, bomb)
    assert response.status_code == 422 and "unsafe XML" in response.json()["error"]
    response = post_iati(sandbox, (IATI / "version_1_01.xml").read_bytes())
    assert response.status_code == 422 and "1.01" in response.json()["error"]
    response = post_iati(sandbox, (IATI / "no_version.xml").read_bytes())
    assert response.status_code == 422 and "no version" in response.json()["error"]
    assert post_iati(sandbox, b"").status_code == 400


def test_a_configured_sector_map_brings_in_other_sectors(sandbox, start):
    start(SupplyService, TACOORD_IATI_SECTOR_MAP=json.dumps(
        {"11220": {"articles": [13], "forms": ["GOOD_PRACTICES"]}}))
    outcome = {r["position"]: r for r in post_iati(sandbox, FIXTURE.read_bytes()).json()["results"]}
    assert outcome[3]["outcome"] == "imported"


def test_the_cli_imports_directly_and_prints_a_report(sandbox):
    argv = ["--amqp-uri", sandbox.amqp_uri, "--mongo-uri", config.mongo_uri(), "--db-prefix", sandbox.prefix,
            "import", "iati", str(FIXTURE), "--direct"]
    first = CliRunner().invoke(main, argv)
    assert first.exit_code == 0, first.output
    assert "5 activities: 2 imported, 0 updated, 0 unchanged, 3 skipped" in first.output
    assert "unknown recipient-country code 'UK'" in first.output
    again = CliRunner().invoke(main, argv + ["--json"])
    assert json.loads(again.output)["unchanged"] == 2
    assert sandbox.db("supply").offers.count_documents({"_outbox_pending": {"$gt": 0}}) == 0
    assert sandbox.queue_depth("matching.events") == 2


def test_the_dry_run_works_offline_with_no_stack():
    """A subprocess with the broker and the database pointed at nothing: the dry run needs neither."""
    env = {**os.environ, "AMQP_URI": "pyamqp://nobody:nothing@127.0.0.1:1/none", "MONGO_URI": "mongodb://127.0.0.1:1/",
           "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "services.cli", "import", "iati", str(IATI / "sectors.xml"),
                          "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "3 activities: 3 would be imported" in run.stdout
    assert "anti-corruption share 60%" in run.stdout and "EUR budget 2,400,000.00" in run.stdout
    assert "add up to 80" in run.stdout
    as_json = subprocess.run([sys.executable, "-m", "services.cli", "import", "iati",
                              str(IATI / "identifiers_and_values.xml"), "--dry-run", "--json"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(as_json.stdout)
    assert [r["outcome"] for r in report["results"]] == ["would import", "skipped"]
    assert any("xs:decimal" in w for w in report["results"][0]["warnings"])
    refused = subprocess.run([sys.executable, "-m", "services.cli", "import", "iati", str(IATI / "version_1_01.xml"),
                              "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "1.0x" in refused.stderr
