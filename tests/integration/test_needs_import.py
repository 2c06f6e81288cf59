"""Bulk import of self-assessment checklist exports (CSV and JSON), over HTTP and from the command line."""
import json
import random
import time
from collections import Counter

import pytest
import requests

from services.needs import checklist, demo, importer
from services.needs.service import NeedsService
from tacoord import reference
from tacoord.testing import wait_until
from tests.integration.needs_helpers import emitted, states_parties_on, tap

UN_MEMBERS = [c["iso3"] for c in reference.data()["countries"]]
HEADER = "state,article,paragraph,forms,other_text,priority,description,checklist_round,languages\n"


def post_import(sandbox, body, content_type, role="operator", subject="*"):
    return requests.post(sandbox.url("needs", "/needs/import"), data=body.encode(), timeout=120,
                         headers={**sandbox.headers(role, subject), "Content-Type": content_type})


def test_a_csv_checklist_is_imported_with_row_errors_reported_by_line(sandbox, start):
    events = tap(sandbox)
    start(NeedsService)
    body = HEADER + (
        "KEN,9,,LEGAL_ADVICE,,1,Procurement,2026-1,en\n"
        "KEN,99,,LEGAL_ADVICE,,1,No such article,2026-1,en\n"
        "XXX,9,,LEGAL_ADVICE,,1,No such State,2026-1,en\n"
        "GHA,15,,OTHER,,2,Other without text,2026-1,en\n"
        "GHA,15,,OTHER;LEGAL_ADVICE,Peer review,2,Bribery,2026-1,en\n"
        "GHA,15,,LEGAL_ADVICE;OTHER,Peer review,3,Bribery (revised),2026-1,en\n")
    response = post_import(sandbox, body, "text/csv; charset=utf-8")
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["accepted"], summary["updated"], summary["unchanged"]) == (2, 1, 0)
    assert [(r["line"], r["reason"].split(":")[0]) for r in summary["rejected"]] == \
        [(3, "article"), (4, "state"), (5, "other_text")]
    assert {e["type"] for e in emitted(sandbox, events)} == {"need.submitted"}
    assert sandbox.db("needs").needs.find_one({"state": "GHA"})["priority"] == 3

    again = post_import(sandbox, body, "text/csv").json()
    # Row 7 still differs from row 6 (same key, counted as updated), but nothing stored changes.
    assert (again["accepted"], again["updated"], again["unchanged"]) == (0, 1, 2)
    assert emitted(sandbox, events) == []


def test_a_json_checklist_updates_true_duplicates_only(sandbox, start):
    events = tap(sandbox)
    start(NeedsService)
    rows = demo.generate_checklist(random.Random(5), ["KEN", "FRA"], articles=(9, 46))
    assert post_import(sandbox, checklist.to_json(rows), "application/json").json()["accepted"] == 4
    rows[0]["priority"] = 3 if rows[0]["priority"] != 3 else 1
    rows.append({"state": "BRA", "article": "5", "forms": ["LEGAL_ADVICE"], "priority": 1})
    summary = post_import(sandbox, checklist.to_json(rows), "application/json").json()
    assert (summary["accepted"], summary["updated"], summary["unchanged"]) == (0, 1, 3)
    assert summary["rejected"] == [{"line": 5, "reason": "article: Not a valid integer."}]
    assert Counter(e["type"] for e in emitted(sandbox, events)) == {"need.submitted": 4, "need.updated": 1}


def test_a_state_imports_its_own_rows_only_and_only_csv_or_json(sandbox, start):
    start(NeedsService)
    assert post_import(sandbox, "[]", "application/json", "donor", "GB-GOV-1").status_code == 403
    mixed = HEADER + ("KEN,9,,LEGAL_ADVICE,,1,Procurement,2026-1,en\n"
                      "FRA,9,,LEGAL_ADVICE,,1,Not Kenya's,2026-1,en\n"
                      "KEN,99,,LEGAL_ADVICE,,1,No such article,2026-1,en\n")
    summary = post_import(sandbox, mixed, "text/csv", "state", "KEN").json()
    assert summary["accepted"] == 1
    assert [(r["line"], r["reason"]) for r in summary["rejected"]] == [
        (3, "state: state:KEN imports only its own needs; this row is for FRA"),
        (4, summary["rejected"][1]["reason"])] and summary["rejected"][1]["reason"].startswith("article")
    assert [n["state"] for n in sandbox.db("needs").needs.find()] == ["KEN"]
    assert post_import(sandbox, "[]", "application/json", "partner", "uncac-coalition").status_code == 200
    assert post_import(sandbox, "state\tarticle", "text/plain").status_code == 415
    bad_header = post_import(sandbox, "state,article,forms,priority,$where\n", "text/csv")
    assert bad_header.status_code == 422 and "unknown column(s) '$where'" in bad_header.json()["error"]
    assert post_import(sandbox, '{"state": "KEN"}', "application/json").status_code == 422
    assert post_import(sandbox, "", "text/csv").status_code == 422


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_checklist_of_all_193_states_imports_quickly_and_the_overview_matches_it(sandbox, start, fmt):
    events = tap(sandbox)
    start(NeedsService)
    rows = demo.generate_checklist(random.Random(193), UN_MEMBERS)
    assert len(rows) == 193 * 15
    body = checklist.to_csv(rows) if fmt == "csv" else checklist.to_json(rows)

    began = time.monotonic()
    summary = post_import(sandbox, body, "text/csv" if fmt == "csv" else "application/json").json()
    elapsed = time.monotonic() - began
    print(f"imported {len(rows)} {fmt} rows ({len(body)} bytes) in {elapsed:.1f}s")
    assert (summary["accepted"], summary["updated"], summary["rejected"]) == (len(rows), 0, [])
    assert elapsed < 30

    expected = Counter((str(r["article"]), reference.regional_group_of(r["state"])) for r in rows)
    overview = requests.get(sandbox.url("needs", "/needs/overview"), headers=sandbox.headers("network", "AFRICAN"),
                            timeout=30).json()
    actual = Counter({(a, g): n for a, groups in overview["counts"].items() for g, n in groups.items() if n})
    assert actual == expected
    assert overview["total"] == len(rows)
    assert overview["group_totals"] == {"AFRICAN": 54 * 15, "ASIA_PACIFIC": 54 * 15, "EASTERN_EUROPEAN": 23 * 15,
                                        "GRULAC": 33 * 15, "WEOG": 29 * 15}
    rate = requests.get(sandbox.url("needs", "/needs/reporting-rate?checklist_round=2026-1"),
                        headers=sandbox.headers("operator"), timeout=10).json()
    parties_now = states_parties_on(rate["as_of"])
    members_now = {c for c in parties_now if reference.states()[c].get("un_member")}
    assert (rate["reported"], rate["parties"]) == (len(members_now), len(parties_now))
    assert {p["party"] for p in rate["not_reported"]} == parties_now - members_now   # the non-member parties
    assert set(rate["not_counted"]) == set(UN_MEMBERS) - parties_now                 # members that are no party
    wait_until(lambda: sandbox.queue_depth(events) >= len(rows), message="one need.submitted per row")
    assert sandbox.queue_depth(events) == len(rows)
    assert sandbox.db("needs").needs.count_documents({"_outbox_pending": {"$gt": 0}}) == 0


def test_the_command_line_importer_writes_straight_into_the_store(sandbox, start, tmp_path, monkeypatch, capsys):
    events = tap(sandbox)
    monkeypatch.setenv("AMQP_URI", sandbox.amqp_uri)
    monkeypatch.setenv("TACOORD_DB_PREFIX", sandbox.prefix)
    rows = demo.generate_checklist(random.Random(8), UN_MEMBERS[:20])
    path = tmp_path / "checklist.csv"
    path.write_text(checklist.to_csv(rows) + "KEN,7,,LEGAL_ADVICE,,4,bad priority,,,\n")

    status = importer.main([str(path), "--chunk", "100"])

    summary = json.loads(capsys.readouterr().out)
    assert status == 1
    assert (summary["accepted"], summary["updated"], summary["unchanged"]) == (300, 0, 0)
    assert [r["line"] for r in summary["rejected"]] == [302]
    assert sandbox.db("needs").needs.count_documents({}) == 300
    wait_until(lambda: sandbox.queue_depth(events) == 300, message="events relayed")


def test_the_command_line_importer_can_send_the_file_to_the_service(sandbox, start, tmp_path, capsys):
    start(NeedsService)
    rows = demo.generate_checklist(random.Random(9), ["KEN", "GHA", "FRA"])
    rows[4]["state"] = "XXX"
    path = tmp_path / "checklist.json"
    path.write_text(checklist.to_json(rows))
    key = sandbox.api_key("partner", "uncac-coalition")

    status = importer.main([str(path), "--url", sandbox.url("needs", ""), "--key", key, "--chunk", "10",
                            "--quiet"])

    summary = json.loads(capsys.readouterr().out)
    assert status == 1
    assert summary["accepted"] == 44
    assert summary["rejected"][0]["line"] == 5 and "unknown State 'XXX'" in summary["rejected"][0]["reason"]
    assert importer.main([str(tmp_path / "checklist.txt")]) == 2
