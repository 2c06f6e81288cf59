"""`tacoord stack` calls infra.stack (read-only here: the shared stack is never started or stopped)."""
from click.testing import CliRunner

from services.cli import main


def test_stack_status_reports_every_component_and_fails_when_the_broker_is_not_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("TACOORD_STATE_DIR", str(tmp_path))  # no PID files here: nothing of ours runs
    result = CliRunner().invoke(main, ["stack", "status"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["rabbitmq", "mongo", "audit", "needs", "supply", "requests",
                                                  "matching", "notify", "gateway"]
    assert lines[0].startswith("rabbitmq  down")
