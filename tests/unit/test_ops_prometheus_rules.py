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


def test_the_alerts_cover_down_dead_letters_outbox_gaps_stalls_notifications_chain_and_unmet_needs():
    rules = yaml.safe_load((INFRA / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert names == {"TacoordServiceDown", "TacoordDeadLettersGrowing", "TacoordOutboxBacklog",
                     "TacoordGapsRising", "TacoordConsumerStalled", "TacoordNotificationsFailing",
                     "TacoordAuditChainBroken", "TacoordPriorityNeedUnmet"}


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((INFRA / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {case["alertname"] for test in ALERT_TESTS["tests"] for case in test["alert_rule_test"]
              if case["exp_alerts"]}
    assert tested == names


def stalled(job, queue, grown):
    return {"exp_labels": {"severity": "critical", "job": job, "queue": queue},
            "exp_annotations": {
                "summary": f"{job} settles nothing from {queue} while it grows",
                "description": f"{grown} more message(s) waiting in {queue} than 10 minutes ago and none settled "
                               f"by {job} meanwhile: its consumer is stuck (workers hung on a slow dependency, a "
                               f"lost channel) or cannot keep any message. Check the service log "
                               f"(.stack/run/{job}.log), /health/ready, and `rabbitmqctl list_queues name "
                               f"messages consumers`."}}


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
        {   # notify's dead letters count like everyone's (it parks undeliverable notifications)
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_notify_dead_letters_total{job="notify", instance="no", reason="undeliverable"}',
                 "values": "0 0 1 1 2"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TacoordDeadLettersGrowing", "exp_alerts": []},
                {"eval_time": "4m", "alertname": "TacoordDeadLettersGrowing", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "job": "notify", "reason": "undeliverable"},
                    "exp_annotations": {
                        "summary": "notify parked messages in the dead-letter queue (undeliverable)",
                        "description": "2 message(s) parked by notify in the last 10 minutes (kind "
                                       "undeliverable). Inspect with `tacoord deadletters list`, fix the sender "
                                       "or the data, then `tacoord deadletters replay ID`."}}]},
            ],
        },
        {   # notify.events grows and notify settles nothing; matching.events grows but is settled;
            # requests.ingress grows and then its consumer stops settling
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_notify_queue_messages{job="notify", instance="no", queue="notify.events"}',
                 "values": "0+5x30"},
                {"series": 'tacoord_notify_queue_settled_total{job="notify", instance="no", queue="notify.events"}',
                 "values": "7x30"},
                {"series": 'tacoord_matching_queue_messages{job="matching", instance="m", queue="matching.events"}',
                 "values": "0+5x30"},
                {"series": 'tacoord_matching_queue_settled_total{job="matching", instance="m", '
                           'queue="matching.events"}', "values": "0+100x30"},
                {"series": 'tacoord_requests_queue_messages{job="requests", instance="r", queue="requests.ingress"}',
                 "values": "0 0 0 0 0 0 0 0 0 0 0+2x20"},
                {"series": 'tacoord_requests_queue_settled_total{job="requests", instance="r", '
                           'queue="requests.ingress"}', "values": "0+10x10 100x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "TacoordConsumerStalled", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "TacoordConsumerStalled", "exp_alerts": [
                    stalled("notify", "notify.events", 50)]},
                {"eval_time": "28m", "alertname": "TacoordConsumerStalled", "exp_alerts": [
                    stalled("notify", "notify.events", 50), stalled("requests", "requests.ingress", 20)]},
            ],
        },
        {   # webhooks fail: 4 of 20 in 15 minutes; e-mail fails once in 100 (below the share)
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_notify_deliveries_total{job="notify", instance="no", channel="webhook", '
                           'outcome="failed"}', "values": "0x10 0+1x4 4x10"},
                {"series": 'tacoord_notify_deliveries_total{job="notify", instance="no", channel="webhook", '
                           'outcome="delivered"}', "values": "0+1x30"},
                {"series": 'tacoord_notify_deliveries_total{job="notify", instance="no", channel="email", '
                           'outcome="failed"}', "values": "0x10 1x20"},
                {"series": 'tacoord_notify_deliveries_total{job="notify", instance="no", channel="email", '
                           'outcome="delivered"}', "values": "0+7x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "TacoordNotificationsFailing", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "TacoordNotificationsFailing", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", "channel": "webhook"},
                    "exp_annotations": {
                        "summary": "notifications over webhook are failing",
                        "description": "More than 10% of the webhook notifications of the last 15 minutes failed "
                                       "after every try (at least 3). Failed ones are parked as undeliverable: "
                                       "`tacoord deadletters list`; the deliveries of a subscription at GET "
                                       "/subscriptions/ID/deliveries name the error."}}]},
            ],
        },
        {   # the periodic verify finds the chain intact, then broken
            "interval": "1m",
            "input_series": [
                {"series": 'tacoord_audit_chain_intact{job="audit", instance="a"}', "values": "1 1 1 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "TacoordAuditChainBroken", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "TacoordAuditChainBroken", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "job": "audit", "instance": "a"},
                    "exp_annotations": {
                        "summary": "the audit log's hash chain is broken",
                        "description": "The periodic verify of the audit log found a record altered, missing or "
                                       "out of order, or an end that does not match its head anchor. `tacoord "
                                       "audit verify` names the first broken seq; the audit service log says the "
                                       "same. Preserve the database for investigation before anything else."}}]},
            ],
        },
        {   # the oldest unmet priority need: 13 days, then 15
            "interval": "1d",
            "input_series": [
                {"series": 'tacoord_matching_oldest_unmet_priority_need_age_seconds{job="matching", instance="m"}',
                 "values": "1123200 1296000"},
            ],
            "alert_rule_test": [
                {"eval_time": "0d", "alertname": "TacoordPriorityNeedUnmet", "exp_alerts": []},
                {"eval_time": "1d", "alertname": "TacoordPriorityNeedUnmet", "exp_alerts": [{
                    "exp_labels": {"severity": "warning"},
                    "exp_annotations": {
                        "summary": "a priority need has had no match for 15d 0h 0m 0s",
                        "description": "The oldest open priority-1 need without a match has waited more than 14 "
                                       "days (tacoord_matching_unmet_priority_needs says how many wait). See the "
                                       "gap alerts (GET /alerts?kind=gap) and the matrix page, and look for "
                                       "supply."}}]},
            ],
        },
    ],
}


def test_each_alert_fires_when_its_condition_holds_and_not_before(tmp_path):
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(ALERT_TESTS, sort_keys=False))
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
