"""`tacoord audit`: an entity's history and the chain check, read from the audit database."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.audit.service import AuditService
from services.cli import main
from services.needs.service import NeedsService
from tacoord.testing import wait_until
from tests.integration.test_audit_chain import TAMPERINGS, noted

ROOT = Path(__file__).resolve().parents[2]

KENYA_NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
              "description": "Public procurement reform", "checklist_round": "2026-1"}


def cli(sandbox, *args):
    return CliRunner().invoke(main, ["--vhost", sandbox.vhost, "--db-prefix", sandbox.prefix, *args])


def test_audit_history_shows_what_happened_to_a_need(sandbox, start):
    start(AuditService, NeedsService)
    sent = sandbox.publish("need.submitted", KENYA_NEED)
    need = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")
    need_id = need["need_id"]
    wait_until(lambda: sandbox.db("audit").audit.find_one({"entities": f"need:{need_id}"}),
               message="audit record")

    history = cli(sandbox, "audit", "history", "need", need_id, "--json")
    assert history.exit_code == 0, history.output
    body = json.loads(history.stdout)
    assert (body["entity"], body["count"]) == (f"need:{need_id}", 1)
    assert body["records"][0]["type"] == "need.submitted"
    assert body["records"][0]["causation_id"] == sent["id"]

    table = cli(sandbox, "audit", "history", "need", need_id)
    assert "need.submitted  source=needs  actor=partner:tacoord" in table.stdout

    verified = cli(sandbox, "audit", "verify")
    assert verified.exit_code == 0 and "audit chain intact (1 records)" in verified.stdout

    nothing = cli(sandbox, "audit", "history", "need", "NOPE")
    assert nothing.exit_code == 1 and "no audit records about need:NOPE" in nothing.output


def test_audit_history_shows_what_each_step_changed(sandbox, start):
    start(AuditService, NeedsService)
    sandbox.publish("need.submitted", KENYA_NEED)
    need = wait_until(lambda: sandbox.db("needs").needs.find_one({"state": "KEN"}), message="stored need")
    sandbox.publish("need.updated", {"need_id": need["need_id"], "priority": 3, "description": "Procurement"})
    wait_until(lambda: sandbox.db("audit").audit.count_documents({"entities": f"need:{need['need_id']}"}) == 2,
               message="two audit records")

    table = cli(sandbox, "audit", "history", "need", need["need_id"])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    updated = next(i for i, line in enumerate(lines) if "  need.updated  " in line)
    assert lines[updated + 1:] == ["    priority: 1 → 3",
                                   "    description: Public procurement reform → Procurement"]
    assert "  need.submitted  " in lines[0] and "need.updated" in lines[1]   # nothing listed for the first
    records = json.loads(cli(sandbox, "audit", "history", "need", need["need_id"], "--json").stdout)["records"]
    assert [r["changes"] for r in records] == [None, [
        {"field": "priority", "old": 1, "new": 3},
        {"field": "description", "old": "Public procurement reform", "new": "Procurement"}]]


def cli_process(sandbox, *args):
    """`tacoord …` as an operator runs it: its own process, this checkout's code."""
    return subprocess.run([sys.executable, "-m", "services.cli", "--vhost", sandbox.vhost,
                           "--db-prefix", sandbox.prefix, *args],
                          cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_audit_verify_exits_1_naming_a_changed_a_deleted_or_a_missing_last_record(sandbox, start, tampering):
    start(AuditService)
    sandbox.publish_events([noted(n) for n in range(5)])
    audit = sandbox.db("audit")
    wait_until(lambda: audit.audit.count_documents({}) == 5 and audit.audit_head.find_one({"seq": 5}),
               message="five records, anchored")
    intact = cli_process(sandbox, "audit", "verify")
    assert (intact.returncode, intact.stdout.strip()) == (0, "audit chain intact (5 records)"), intact.stderr

    tamper, problem = TAMPERINGS[tampering]
    tamper(audit)
    broken = cli_process(sandbox, "audit", "verify")
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines() == [
        f"Error: audit chain broken at seq {problem['seq']}: {problem['problem']}"]
