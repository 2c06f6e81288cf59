"""A service started before its database answers waits for it instead of stopping.

The database is reached through a loopback forwarder that listens only after a delay longer than
the client's 5 s server selection: until then every connection is refused, as when the database
is still starting or too loaded to answer (a loaded test run once failed a container's start on
exactly this).
"""
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import requests

from services.needs.service import NeedsService
from tacoord import config
from tacoord.testing import free_port, wait_until


def ready(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False

NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Procurement",
        "checklist_round": "2026-1"}


# Its own process, so that its sockets and threads end with it (inside this eventlet-patched process
# a reader left blocked on a closed socket would clash with the next test's socket on the same fd).
FORWARDER = """
import socket, sys, threading, time
port, host, target_port, delay = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(delay)
server = socket.create_server(("127.0.0.1", port))
print("listening", flush=True)
def pipe(source, sink):
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        source.close(); sink.close()
while True:
    client, _ = server.accept()
    upstream = socket.create_connection((host, target_port))
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"""


class LateForwarder:
    """Accepts on ``port`` only after ``delay`` seconds, then pipes each connection to ``target``."""

    def __init__(self, target, delay):
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-c", FORWARDER, str(self.port), target[0], str(target[1]),
                                         str(delay)], stdout=subprocess.PIPE, text=True)

    def has_listened(self):
        """Whether it began to listen (its one line of output; waits out the rest of the delay)."""
        return self.process.stdout.readline().strip() == "listening" if self.process.poll() is None else False

    def close(self):
        self.process.kill()
        self.process.wait(10)


def test_a_service_started_before_its_database_answers_waits_for_it_and_then_works(sandbox, start):
    address = urlsplit(config.mongo_uri())
    forwarder = LateForwarder((address.hostname, address.port or 27017), delay=7)
    try:
        started = time.monotonic()
        start(NeedsService, MONGO_URI=f"mongodb://127.0.0.1:{forwarder.port}/?directConnection=true")
        assert forwarder.has_listened(), "the service started without its database"
        assert time.monotonic() - started >= 7
        response = requests.post(sandbox.url("needs", "/needs"), json=NEED,
                                 headers=sandbox.headers("operator", "ops"), timeout=30)
        assert response.status_code == 201, response.text
        need_id = response.json()["need_id"]
        wait_until(lambda: sandbox.db("needs").needs.find_one({"_id": need_id}) is not None,
                   message="the need stored through the database that answered late")
    finally:
        forwarder.close()


def test_a_service_process_started_before_its_database_answers_waits_for_it_and_becomes_ready(sandbox, tmp_path):
    address = urlsplit(config.mongo_uri())
    forwarder = LateForwarder((address.hostname, address.port or 27017), delay=7)
    ops_port = free_port()
    env = {**os.environ, "AMQP_URI": sandbox.amqp_uri, "TACOORD_DB_PREFIX": sandbox.prefix,
           "MONGO_URI": f"mongodb://127.0.0.1:{forwarder.port}/?directConnection=true",
           "TACOORD_NEEDS_HTTP_PORT": str(free_port()), "TACOORD_NEEDS_OPS_PORT": str(ops_port)}
    log = tmp_path / "needs.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "services.run", "needs"], env=env, cwd=config.PROJECT_ROOT,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or ready(ops_port), timeout=90,
                   message="the needs process ready or ended")
        assert process.poll() is None, f"the process ended ({process.returncode}): {log.read_text()[-2000:]}"
        assert forwarder.has_listened()
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        forwarder.close()
