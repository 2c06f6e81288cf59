"""The Prometheus configs and alert rules are valid, and each alert fires when it should.

Uses ``promtool`` (Debian package ``prometheus``): ``check config``,
``check rules`` and ``test rules`` with synthetic series.
"""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")


def promtool(*args, cwd=INFRA):
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus.docker.yml"])
def test_prometheus_config_is_valid(name):
    result = promtool("check", "config", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_alert_rules_are_valid():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_cover_down_dead_letters_outbox_and_gaps():
    rules = yaml.safe_load((INFRA / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert names == {"TacoordServiceDown", "TacoordDeadLettersGrowing", "TacoordOutboxBacklog",
                     "TacoordGapsRising"}


ALERT_TESTS = {
    "rule_files": [str(INFRA / "alerts.yml")],
    "evaluation_interval": "1m",
    "tests": [
        {   # needs stops answering; audit keeps answering
            "interval": "1m",
            "input_series": [
                {"series": 'up{job="needs", instance="127.0.0.1:9101", service="needs"}', "values": "1 1 0 0 0"},
                {"series": 'up{job="audit", instance="127.0.0.1:9106", service="audit"}', "values": "1 1 1 1 1"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "TacoordServiceDown", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "TacoordServiceDown", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": "needs", "instance": "127.0.0.1:9101",
                                   "service": "needs"},
                    "exp_annotations": {
                        "summary": "tacoord service needs is down",
                        "description": "Prometheus could not scrape 127.0.0.1:9101 for 1 minute. Check "
                                       "`tacoord stack status` and the service log (.stack/run/needs.log), "
                                       "or /health/ready on its ops port."}}]},
            ],
        },
        {   # needs parks three invalid messages; supply parks none
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_needs_dead_letters_total{job="needs", instance="n", reason="invalid"}',
                 "values": "0 0 0 1 3 3"},
                {"series": 'tacoord_supply_dead_letters_total{job="supply", instance="s", reason="invalid"}',
                 "values": "0 0 0 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "TacoordDeadLettersGrowing", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "TacoordDeadLettersGrowing", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "needs", "reason": "invalid"},
                    "exp_annotations": {
                        "summary": "needs parked messages in the dead-letter queue (invalid)",
                        "description": "3 message(s) parked by needs in the last 10 minutes (kind invalid). "
                                       "Inspect with `tacoord deadletters list`, fix the sender or the data, "
                                       "then `tacoord deadletters replay ID`."}}]},
            ],
        },
        {   # the supply outbox stays non-empty (broker refusing); needs empties its own
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_supply_outbox_backlog{job="supply", instance="s"}', "values": "0 2 2 2 2 2 2 2 2"},
                {"series": 'tacoord_needs_outbox_backlog{job="needs", instance="n"}', "values": "0 3 0 0 0 0 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "TacoordOutboxBacklog", "exp_alerts": []},
                {"eval_time": "7m", "alertname": "TacoordOutboxBacklog", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "supply", "instance": "s"},
                    "exp_annotations": {
                        "summary": "supply has events stuck in its outbox",
                        "description": "2 stored event(s) not confirmed by the broker for 5 minutes: the "
                                       "service cannot publish (broker down, permissions, unroutable). Check "
                                       "the broker and the service log; the sweeper republishes once the "
                                       "broker accepts."}}]},
            ],
        },
        {   # matching detects a new gap every minute for an hour
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_matching_gaps_detected_total{job="matching", instance="m"}',
                 "values": "0+1x60"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "TacoordGapsRising", "exp_alerts": []},
                {"eval_time": "50m", "alertname": "TacoordGapsRising", "exp_alerts": [{
                    "exp_labels": {"severity": "info"},
                    "exp_annotations": {
                        "summary": "matching keeps detecting new assistance gaps",
                        "description": "New gaps (priority needs without matching supply) have been detected "
                                       "continuously for 30 minutes; about 15 in the last 15 minutes. Review "
                                       "the gap events in the audit log and the matching service's views."}}]},
            ],
        },
    ],
}


def test_each_alert_fires_when_its_condition_holds_and_not_before(tmp_path):
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(ALERT_TESTS, sort_keys=False))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
