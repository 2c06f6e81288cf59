"""Each service's ops port: /metrics that promtool accepts, liveness, readiness naming what fails."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from services.supply.service import SupplyService
from tacoord.ops import OpsServer
from tacoord.testing import free_port, wait_until

PROMTOOL = shutil.which("promtool")
SERVICES = (AuditService, NeedsService, SupplyService, MatchingService, NotifyService, RequestsService)


def ops_url(container, path):
    [ops] = [d for d in container.dependencies if isinstance(d, OpsServer)]
    return f"http://127.0.0.1:{ops.port}{path}"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_the_metrics_of_every_service_pass_promtool(sandbox, start):
    containers = start(*SERVICES)
    sandbox.publish("need.submitted", {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1,
                                       "description": "Procurement", "checklist_round": "2026-1"})
    wait_until(lambda: sandbox.db("audit").audit.count_documents({}) >= 1, message="one event through")
    for container in containers:
        service = container.service_name
        response = requests.get(ops_url(container, "/metrics"), timeout=5)
        assert response.status_code == 200
        assert f"tacoord_{service}_events_consumed_total" in response.text
        assert f"tacoord_{service}_dead_letters_total" in response.text
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=response.text, capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, f"{service}: {check.stdout}{check.stderr}"


def test_a_running_service_is_live_and_ready(start):
    [needs] = start(NeedsService)
    live = requests.get(ops_url(needs, "/health/live"), timeout=5)
    assert (live.status_code, live.json()) == (200, {"status": "alive", "service": "needs"})
    ready = requests.get(ops_url(needs, "/health/ready"), timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": ["broker", "database"]}


@pytest.fixture
def own_database(tmp_path):
    """A MongoDB-protocol server of this test's own (nx-27017), to stop while a service uses it."""
    port = free_port()
    nx = Path(sys.executable).parent / "nx-27017"
    process = subprocess.Popen([str(nx), "--data-dir", str(tmp_path), "--host", "127.0.0.1", "-p", str(port),
                                "--log-file", str(tmp_path / "nx.log"), "--pid-file", str(tmp_path / "nx.pid")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"mongodb://127.0.0.1:{port}/"
    wait_until(lambda: _pings(uri), timeout=15, message="own nx-27017 to answer")
    yield uri, process
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def _pings(uri):
    try:
        return MongoClient(uri, serverSelectionTimeoutMS=300).admin.command("ping")["ok"]
    except PyMongoError:
        return False


def test_readiness_fails_naming_the_database_when_it_stops_answering(sandbox, container_factory,
                                                                    own_database):
    uri, database = own_database
    needs = container_factory(NeedsService, {**sandbox.config("needs"), "MONGO_URI": uri})
    needs.start()
    assert requests.get(ops_url(needs, "/health/ready"), timeout=10).status_code == 200

    database.terminate()
    database.wait(timeout=10)

    assert requests.get(ops_url(needs, "/health/live"), timeout=5).status_code == 200
    ready = requests.get(ops_url(needs, "/health/ready"), timeout=15)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert list(body["failing"]) == ["database"]
    assert str(uri.split("//")[1].rstrip("/")) in body["failing"]["database"]
