"""What an operator sees, on the demo scenario: the six services run as their own processes
(``python -m services.run NAME``, as the stack runs them), a real Prometheus (the Debian
daemon, started by the test on loopback) scraping their ``/metrics`` with the project's alert
rules, the demo loaded over HTTP. Then: every event type is named in every process's metrics,
the logs are JSON lines with ids (a refused request one line, no traceback), ``tacoord trace``
follows a need across the services, every panel of both Grafana dashboards has data, and the
coordination KPIs say what the databases say."""
import datetime
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from services.needs import parties as needs_parties
from tacoord import config
from tacoord.testing import Sandbox, ServiceProcess, free_port, sample, stack_problem, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "infra" / "grafana" / "dashboards"
PROMETHEUS = shutil.which("prometheus")
SERVICES = ("audit", "needs", "supply", "matching", "notify", "requests")
FAST = {"TACOORD_KPI_SECONDS": 1, "TACOORD_QUEUE_POLL_SECONDS": 1, "TACOORD_AUDIT_VERIFY_SECONDS": 2,
        "TACOORD_GAP_AFTER_SECONDS": 1}

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus)")


class Prometheus:
    """The Prometheus daemon as a plain process: its own data directory and loopback port,
    scraping the given ops ports every second (one job per service, as infra/prometheus.yml)."""

    def __init__(self, directory, targets):
        self.port = free_port()
        rules = directory / "alerts.yml"
        shutil.copy(ROOT / "infra" / "alerts.yml", rules)
        scrape = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                                                           "labels": {"service": job}}]}
                                     for job, port in targets.items()]}
        (directory / "prometheus.yml").write_text(yaml.safe_dump(scrape))
        self.log = open(directory / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr):
        response = requests.get(f"http://127.0.0.1:{self.port}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def answers(self):
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    problem = stack_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    directory = tmp_path_factory.mktemp("operator")
    (directory / "run").mkdir()
    sandbox = Sandbox()
    processes, prometheus = {}, None
    try:
        for name in SERVICES:
            processes[name] = ServiceProcess(sandbox, name, directory / "run" / f"{name}.log",
                                             TACOORD_STATE_DIR=directory, **FAST)
        for process in processes.values():
            wait_until(process.ready, timeout=120, interval=0.5, message=f"{process.name} ready")
        prometheus = Prometheus(directory, {name: p.ops_port for name, p in processes.items()})
        env = {"TACOORD_STATE_DIR": str(directory), "TACOORD_DB_PREFIX": sandbox.prefix,
               "MONGO_URI": config.mongo_uri(),
               **{f"TACOORD_{name.upper()}_HTTP_PORT": str(sandbox.http_ports[name]) for name in SERVICES}}
        loaded = subprocess.run([sys.executable, "-m", "infra.demo", "--states", "8"], cwd=ROOT, capture_output=True,
                                text=True, timeout=120, env={**_environ(), **env})
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        keys = json.loads((directory / "demo-keys.json").read_text())
        wait_until(prometheus.answers, timeout=30, message="prometheus ready")
        yield {"sandbox": sandbox, "processes": processes, "prometheus": prometheus, "keys": keys,
               "directory": directory, "env": env}
    finally:
        if prometheus is not None:
            prometheus.stop()
        for process in processes.values():
            process.stop()
        sandbox.close()


def _environ():
    import os
    return dict(os.environ)


def settled(demo):
    """Wait until the demo's events went everywhere: the duplication alert is stored and audited."""
    sandbox = demo["sandbox"]
    wait_until(lambda: sandbox.db("matching").alerts.count_documents({"alert": "duplication"}) >= 1, timeout=60,
               message="the demo's duplication alert")
    wait_until(lambda: sandbox.db("audit").audit.count_documents({"type": "duplication.detected"}) >= 1,
               timeout=60, message="the duplication audited")


def test_every_service_process_names_the_event_types_it_consumes(demo):
    settled(demo)
    expected = {"matching": "need.submitted", "notify": "match.proposed", "audit": "need.submitted",
                "requests": "workshop.participants_proposed"}
    for name, event_type in expected.items():
        metrics = wait_until(lambda: (lambda m: m if sample(m, f"tacoord_{name}_events_consumed_total",
                                                            type=event_type, outcome="ok") else None)(
            demo["processes"][name].metrics()), timeout=30, message=f"{name} counting {event_type}")
        others = {labels: value for (metric, labels), value in metrics.items()
                  if metric == f"tacoord_{name}_events_consumed_total" and dict(labels)["type"] == "other"}
        assert not any(others.values()), f"{name} counts events as 'other': {others}"
        timings = [dict(labels)["type"] for (metric, labels), _ in metrics.items()
                   if metric == f"tacoord_{name}_handler_seconds_count"]
        assert event_type in timings and "other" not in timings


def test_logs_are_json_lines_with_ids_and_a_refused_request_is_one_line_without_traceback(demo):
    sandbox, keys = demo["sandbox"], demo["keys"]
    state, key = next(iter(keys["states"].items()))
    other = next(s for s in keys["states"] if s != state)
    refused = requests.post(sandbox.url("needs", "/needs"), timeout=10, headers={
        "Authorization": f"Bearer {key}", "X-Request-Id": "req-refused-1"},
        json={"state": other, "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1})
    assert refused.status_code == 403
    missing = requests.get(sandbox.url("needs", "/needs/NOPE-1-0"), headers={"Authorization": f"Bearer {key}"},
                           timeout=10)
    assert missing.status_code == 404
    needs = demo["processes"]["needs"]

    def refusal_lines():
        lines = [json.loads(line) for line in needs.log_lines() if line.startswith("{")]
        return [line for line in lines if line.get("status") in (403, 404)] or None
    lines = wait_until(refusal_lines, timeout=10, message="the refusals logged")
    forbidden = [line for line in lines if line.get("request_id") == "req-refused-1"]
    assert len(forbidden) == 1
    assert forbidden[0]["level"] == "WARNING" and forbidden[0]["route"] == "/needs"
    assert forbidden[0]["role"] == "state" and forbidden[0]["actor"] == f"state:{state}"
    assert f"may not act on needs of {other}" in forbidden[0]["reason"] and "exc_info" not in forbidden[0]
    [not_found] = [line for line in lines if line["status"] == 404]
    assert not_found["level"] == "INFO" and "no need" in not_found["reason"] and not_found["request_id"]
    for name, process in demo["processes"].items():
        records = [line for line in process.log_lines() if line.strip() and not line.startswith(f"{name}: starting")]
        assert records, f"{name} logged nothing"
        for line in records:
            entry = json.loads(line)  # one JSON object per line, nothing else
            assert entry["service"] == name and entry["level"] and entry["time"] and "message" in entry
            assert not (entry["level"] == "ERROR" and "Forbidden" in entry.get("exc_info", "")), entry


def test_trace_follows_a_need_through_the_services_in_time_order(demo):
    settled(demo)
    sandbox = demo["sandbox"]
    need = sandbox.db("needs").needs.find_one({"state": "KEN", "article": 15})
    traced = subprocess.run(
        [sys.executable, "-m", "services.cli", "--db-prefix", sandbox.prefix, "trace", f"need:{need['_id']}",
         "--logs", str(demo["directory"] / "run"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**_environ(), **demo["env"]})
    assert traced.returncode == 0, traced.stderr
    entries = json.loads(traced.stdout)["entries"]
    audited = [e for e in entries if e["from"] == "audit"]
    assert audited[0]["what"] == "need.submitted" and audited[0]["service"] == "needs"
    assert audited[0]["actor"] == "state:KEN"
    whats = {e["what"] for e in audited}
    assert {"need.submitted", "match.proposed", "duplication.detected"} <= whats
    assert {e["service"] for e in audited} >= {"needs", "matching"}
    times = [e["at"] for e in entries]
    assert times == sorted(times, key=lambda t: t.replace("Z", "+00:00"))
    # one story by its correlation id: an offer published, the match it made with this need
    match = sandbox.db("audit").audit.find_one({"type": "match.proposed", "entities": f"need:{need['_id']}"})
    story = sorted(sandbox.db("audit").audit.find({"correlation_id": match["correlation_id"]}), key=lambda r: r["seq"])
    text = subprocess.run([sys.executable, "-m", "services.cli", "--db-prefix", sandbox.prefix, "trace",
                           match["correlation_id"], "--logs", ""],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env={**_environ(), **demo["env"]})
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == len(story) and lines[0].split()[1:3] == ["supply", story[0]["type"]]
    assert story[0]["type"].startswith("offer.") and any(" match.proposed " in line for line in lines)
    assert all(record["event_id"] in text.stdout for record in story)


def panel_queries():
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                yield path.stem, panel["title"], target["expr"]


def test_both_dashboards_exist():
    assert {stem for stem, _, _ in panel_queries()} == {"tacoord-overview", "tacoord-coordination"}


def test_every_panel_of_both_dashboards_has_data_on_the_demo(demo):
    settled(demo)
    prometheus = demo["prometheus"]
    wait_until(lambda: len([r for r in prometheus.query("up") if r["value"][1] == "1"]) == len(SERVICES),
               timeout=60, message="every service scraped")
    time.sleep(3)  # a few scrapes after the demo, for rate() and increase()
    empty = []
    deadline = time.monotonic() + 60
    for dashboard, title, expr in panel_queries():
        while not prometheus.query(expr) and time.monotonic() < deadline:
            time.sleep(1)
        if not prometheus.query(expr):
            empty.append(f"{dashboard}: {title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_the_coordination_kpis_say_what_the_databases_say(demo):
    settled(demo)
    sandbox, prometheus = demo["sandbox"], demo["prometheus"]
    needs = list(sandbox.db("needs").needs.find({}, {"status": 1, "priority": 1, "chapter": 1, "state": 1,
                                                    "checklist_round": 1}))
    open_needs = [n for n in needs if n["status"] in ("open", "in_progress")]
    by_priority = {str(p): sum(1 for n in open_needs if n["priority"] == p) for p in (1, 2, 3)}
    # the denominator is the States parties on the day (the labelled parties list), not the reference's countries
    parties = set(needs_parties.parties_on(needs_parties.all_parties({}), datetime.date.today()))
    reported = {n["state"] for n in needs if n.get("checklist_round") == "2026-1"} & parties

    def values(expr):
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in prometheus.query(expr)}

    def figures():
        return (values("sum by (priority) (tacoord_needs_open_needs)"),
                values("sum by (checklist_round) (tacoord_needs_reporting_states)"))
    expected = ({(("priority", p),): float(n) for p, n in by_priority.items() if n},
                {(("checklist_round", "2026-1"),): float(len(reported))})
    try:
        wait_until(lambda: figures() == expected, timeout=30, message="open needs and reporting states")
    finally:
        assert figures() == expected
    [coverage] = prometheus.query("tacoord_needs_reporting_coverage_ratio")
    assert float(coverage["value"][1]) == pytest.approx(len(reported) / len(parties), abs=0.001)

    matches = sandbox.db("matching").matches
    statuses = {s: matches.count_documents({"status": s}) for s in matches.distinct("status")}
    assert statuses.get("active")
    wait_until(lambda: {dict(k)["status"]: v for k, v in values("sum by (status) (tacoord_matching_matches_stored)")
                        .items()} == {s: float(n) for s, n in statuses.items()},
               timeout=30, message="matches by state as stored")
    open_duplications = values('sum(tacoord_matching_alerts_stored{kind="duplication", status="open"})')
    assert list(open_duplications.values())[0] >= 1
    unmet = sum(1 for n in open_needs if n["priority"] == 1
                and not matches.count_documents({"need_id": n["_id"], "status": "active"}))
    wait_until(lambda: list(values("tacoord_matching_unmet_priority_needs").values()) == [float(unmet)],
               timeout=30, message="unmet priority needs as in matching's store")
    [age] = prometheus.query("tacoord_matching_oldest_unmet_priority_need_age_seconds")
    assert (float(age["value"][1]) > 0) == (unmet > 0)
    [intact] = prometheus.query("tacoord_audit_chain_intact")
    assert intact["value"][1] == "1"
