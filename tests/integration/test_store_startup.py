"""A service started before its database answers waits for it instead of stopping.

The database is reached through a loopback forwarder that listens only after a delay longer than
the client's 5 s server selection: until then every connection is refused, as when the database
is still starting or too loaded to answer (a loaded test run once failed a container's start on
exactly this).
"""
import socket
import threading
import time
from urllib.parse import urlsplit

import requests

from services.needs.service import NeedsService
from tacoord import config
from tacoord.testing import free_port, wait_until

NEED = {"state": "KEN", "article": 9, "forms": ["LEGAL_ADVICE"], "priority": 1, "description": "Procurement",
        "checklist_round": "2026-1"}


class LateForwarder:
    """Accepts on ``port`` only after ``delay`` seconds, then pipes each connection to ``target``."""

    def __init__(self, target, delay):
        self.port, self.target, self.delay = free_port(), target, delay
        self.listening_at = None
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        time.sleep(self.delay)
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.listening_at = time.monotonic()
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        if self.listening_at is not None:
            self.server.close()


def test_a_service_started_before_its_database_answers_waits_for_it_and_then_works(sandbox, start):
    address = urlsplit(config.mongo_uri())
    forwarder = LateForwarder((address.hostname, address.port or 27017), delay=7)
    try:
        started = time.monotonic()
        start(NeedsService, MONGO_URI=f"mongodb://127.0.0.1:{forwarder.port}/?directConnection=true")
        assert forwarder.listening_at is not None, "the service started without its database"
        assert time.monotonic() - started >= 7
        response = requests.post(sandbox.url("needs", "/needs"), json=NEED,
                                 headers=sandbox.headers("operator", "ops"), timeout=30)
        assert response.status_code == 201, response.text
        need_id = response.json()["need_id"]
        wait_until(lambda: sandbox.db("needs").needs.find_one({"_id": need_id}) is not None,
                   message="the need stored through the database that answered late")
    finally:
        forwarder.close()
