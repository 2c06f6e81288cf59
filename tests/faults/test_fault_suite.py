"""Fault suite (tacoord issue 7): nothing lost, nothing doubled, nothing stuck while things break.

Both tests start their **own** RabbitMQ node and MongoDB-protocol server on
free ports in a temporary state directory (``bench/faults.py``'s ``Stack``),
so the shared stack other tests use is never restarted or paused. The services
run as real OS processes (``python -m services.run NAME``).

``TACOORD_FAULT_EVENTS`` (default 2000) sets the size of the stream, and
``TACOORD_FAULT_CLUSTER_EVENTS`` (2000) that of the cluster run (three RabbitMQ
nodes, two instances of each service); the larger runs are ``python
bench/faults.py --events 100000`` and ``--cluster --events 50000``.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
EVENTS = int(os.environ.get("TACOORD_FAULT_EVENTS", 2000))
CLUSTER_EVENTS = int(os.environ.get("TACOORD_FAULT_CLUSTER_EVENTS", 2000))

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(shutil.which("rabbitmq-server") is None or os.geteuid() != 0,
                       reason="needs rabbitmq-server and root (its own broker node, as infra.stack starts it)"),
]


def run_driver(*options, events=EVENTS, timeout=600):
    """Run bench/faults.py on a stream of ``events``; its summary (the last line, JSON)."""
    publish_seconds = max(20, min(60, events / 40))
    command = [sys.executable, str(ROOT / "bench" / "faults.py"), "--events", str(events),
               "--publish-seconds", str(publish_seconds), "--settle", "240", *options]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    print(result.stdout[-6000:], result.stderr[-3000:])
    summary_lines = [line for line in result.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert summary_lines, f"the driver printed no summary (exit {result.returncode}): {result.stderr[-3000:]}"
    return json.loads(summary_lines[-1][len("SUMMARY "):])


KILLED = [f"SIGKILL {name}, restarted" for name in ("audit", "needs", "supply", "requests", "matching", "notify")]


def assert_nothing_lost_doubled_or_stuck(summary, events, faults_before, faults_after):
    assert summary["fault_error"] is None
    faults = [f["fault"] for f in summary["faults"]]
    assert faults[:-1] == faults_before + KILLED + faults_after
    assert faults[-1].startswith("database frozen 10s")
    assert (summary["lost"], summary["duplicated"], summary["stuck"]) == (0, 0, 0), summary
    assert summary["matches_active"] == summary["expected_matches"] == events // 2
    assert summary["notifications_distinct"] == events // 2  # repeats of one id (at least once) are reported
    assert summary["audit_event_records"] == 2 * events  # need/offer + match + notification.delivered


def test_no_event_match_or_notification_is_lost_doubled_or_stuck_while_services_broker_and_database_fail():
    summary = run_driver()
    assert_nothing_lost_doubled_or_stuck(summary, EVENTS, [], ["RabbitMQ node restarted (infra.stack restart-rabbit)"])


def test_on_a_three_node_cluster_with_two_of_each_service_nothing_is_lost_doubled_or_stuck():
    """Two instances of each service on a three-node RabbitMQ cluster (quorum queues): node 1 of 3
    (every connection's first address) stopped during the stream, one instance of each service
    SIGKILLed and restarted meanwhile, node 1 started again, the database frozen 10 s."""
    summary = run_driver("--cluster", events=CLUSTER_EVENTS, timeout=900)
    assert summary["cluster"] and summary["instances_per_service"] == 2
    assert_nothing_lost_doubled_or_stuck(summary, CLUSTER_EVENTS, ["RabbitMQ node 1 of 3 stopped"],
                                         ["RabbitMQ node 1 of 3 started again (it rejoined the cluster)"])


def test_a_service_keeps_consuming_after_rabbitmq_restarts_without_operator_action():
    sys.path.insert(0, str(ROOT / "bench"))
    from faults import Stack, StreamPublisher, generate  # noqa: E402

    events, _ = generate(4, seed=11)
    needs = [e for e in events if e["type"] == "need.submitted"]
    stack = Stack()
    try:
        stack.up()
        for name in ("audit", "needs"):
            stack.start_service(name)
            stack.wait_ready(name)
        client = stack.mongo()
        audit = stack.db(client, "audit")["audit"]

        def audited(event, timeout=90):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if audit.find_one({"causation_id": event["id"], "type": "need.submitted"}):
                    return True
                time.sleep(0.5)
            return False

        publisher = StreamPublisher(stack.amqp_uri)
        publisher.publish(needs[0])
        assert audited(needs[0])

        stack.restart_rabbit()
        publisher.publish(needs[1])  # reconnects on its own

        assert audited(needs[1]), "needs or audit stopped consuming after the broker restart"
        assert stack.exited_services() == {}
        for name in ("audit", "needs"):
            ready = requests.get(f"http://127.0.0.1:{stack.port(name, 'OPS')}/health/ready", timeout=5)
            assert ready.status_code == 200, (name, ready.text)
        publisher.close()
    finally:
        stack.down()
