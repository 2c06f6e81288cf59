"""The fault suite's driver: publish a stream of events while killing things, then count.

    /work/main/.venv/bin/python bench/faults.py --events 2000            # own broker + database, faults on
    /work/main/.venv/bin/python bench/faults.py --events 100000 --settle 5400 --fault-gap 30
    /work/main/.venv/bin/python bench/faults.py --events 500 --no-faults # the same stream, nothing broken
    /work/main/.venv/bin/python bench/faults.py --cluster --events 2000  # 3 broker nodes, two of each service

What it does, in order:

1. Starts its **own** RabbitMQ node and MongoDB-protocol server (``infra.stack
   up`` with free ports and a temporary ``TACOORD_STATE_DIR``; the shared stack
   on 5673/27027 is never touched), then the six services as real OS
   processes (``python -m services.run NAME``, own HTTP/ops ports and database
   prefix).
2. Subscribes a webhook receiver (a local HTTP server in this process) in
   notify for every ``match.proposed`` of the generated provider.
3. Publishes N ingress events like a partner (persistent, confirmed, broker
   ``user_id``): N/2 ``need.submitted`` and N/2 ``offer.submitted``, shuffled.
   Need *i* and offer *i* share one (State, article, form) that no other pair
   uses, so every pair makes exactly one match whatever the order of arrival:
   N/2 matches and N/2 notifications are expected.
4. Meanwhile (unless ``--no-faults``): SIGKILLs each service in turn and
   restarts it, restarts the RabbitMQ node (``infra.stack restart-rabbit``),
   and freezes the database for 10 s (SIGSTOP/SIGCONT of its process).

   ``--cluster``: a three-node RabbitMQ cluster instead (``infra.cluster
   up``: quorum queues, own node names, ports and epmd), two instances
   of every service given all three nodes; the faults SIGKILL one instance of
   every service (restarted), stop node 1 of 3 (the first address of every
   URI, so every connection fails over) during the stream and start it again
   after the SIGKILLs (the restarted instances start without it), and freeze
   the database 10 s.
5. Waits (bounded by ``--settle``) until every queue is empty and every
   outbox relayed, then checks and prints ``lost / duplicated / stuck``:

   - each ingress event has exactly one audit record of what it caused
     (``need.submitted`` / ``offer.published`` with ``causation_id`` = its id);
   - each expected match exists (``matches`` collection, status ``proposed``: nobody moves it further
     in the run) and was proposed by exactly one ``match.proposed`` in the audit log;
   - each expected notification reached the webhook receiver exactly once
     (counted by ``X-Tacoord-Notification-Id``), and each notification received
     has exactly one ``notification.delivered`` record in the audit log;
   - stuck: messages ready in any queue other than the dead
     letters, dead letters (this run publishes no bad message, so any is a
     failure), outbox entries not relayed, deliveries still ``pending``.

The last line printed is the summary as JSON (``tests/faults`` parses it).
Exit status 0 when lost, duplicated and stuck are all 0, else 1.
"""
import argparse
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from kombu import Connection, Producer  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from tacoord import envelope, reference, topology  # noqa: E402

SERVICES = ("audit", "needs", "supply", "requests", "matching", "notify")
PROVIDER = "XM-FLT-1"
FORMS = [f for f in reference.assistance_forms() if f != "OTHER"]
ARTICLES = list(range(5, 63))
ADMIN = ("tacoord", "tacoord")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the world under test ----------------------------------------------------------------------

class Stack:
    """Own RabbitMQ node + database (via infra.stack), and the six services as OS processes
    (``instances`` of each: two on the cluster)."""

    instances = 1

    def __init__(self, state_dir=None, ports=None, prefix=None):
        self.own_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="tacoord-faults-"))
        os.chmod(self.state_dir, 0o755)  # RabbitMQ runs as user rabbitmq and must reach its files
        ports = ports or {}
        self.amqp_port = ports.get("amqp") or free_port()
        self.mgmt_port = ports.get("mgmt") or free_port()
        self.mongo_port = ports.get("mongo") or free_port()
        self.env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            TACOORD_STATE_DIR=str(self.state_dir),
            TACOORD_AMQP_PORT=str(self.amqp_port),
            TACOORD_AMQP_MGMT_PORT=str(self.mgmt_port),
            TACOORD_AMQP_DIST_PORT=str(ports.get("dist") or free_port()),
            TACOORD_EPMD_PORT=str(ports.get("epmd") or free_port()),
            TACOORD_MONGO_PORT=str(self.mongo_port),
            # its own gateway too: the shared stack's nginx may hold 8080
            TACOORD_GATEWAY_PORT=str(ports.get("gateway") or free_port()),
            TACOORD_RABBIT_NODE=ports.get("node") or f"faults{uuid.uuid4().hex[:6]}@localhost",
        )
        for key in ("AMQP_URI", "MONGO_URI"):
            self.env.pop(key, None)
        self.prefix = prefix or f"flt{uuid.uuid4().hex[:8]}"
        self.amqp_uri = f"pyamqp://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{self.amqp_port}/tacoord"
        self.mongo_uri = f"mongodb://127.0.0.1:{self.mongo_port}/"
        self.service_env = dict(
            self.env, AMQP_URI=self.amqp_uri, MONGO_URI=self.mongo_uri, TACOORD_DB_PREFIX=self.prefix,
            TACOORD_RETRY_BASE_MS="200", TACOORD_OUTBOX_RELAY_SECONDS="2",
            TACOORD_INBOX_LEASE_SECONDS="20",
            TACOORD_WEBHOOK_ALLOW="127.0.0.0/8", TACOORD_NOTIFY_BACKOFF_BASE="0.2",
            TACOORD_NOTIFY_PUBLIC_URL="http://127.0.0.1/")
        self.ports = {(name, i): {"HTTP": free_port(), "OPS": free_port()}
                      for name in SERVICES for i in range(self.instances)}
        self.processes = {}
        self.started_infra = False

    # infrastructure
    def _infra(self, command, timeout=180):
        result = subprocess.run([sys.executable, "-m", "infra.stack", command], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"infra.stack {command} failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
        return result.stdout

    def up(self):
        log(f"starting own RabbitMQ (amqp {self.amqp_port}) and database ({self.mongo_port}) in {self.state_dir}")
        self.started_infra = True
        self._infra("up")

    def restart_rabbit(self):
        self._infra("restart-rabbit")

    def mongo_pid(self):
        return int((self.state_dir / "mongo.pid").read_text().strip())

    def down(self):
        self.stop_services()
        if self.started_infra:
            try:
                self._infra("down", timeout=120)
            except Exception as exc:  # keep tearing down
                log(f"stack down: {exc}")
        if self.own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # services
    def port(self, name, kind="HTTP", instance=0):
        return self.ports[(name, instance)][kind]

    @staticmethod
    def label(name, instance=0):
        return name if instance == 0 else f"{name}-{instance + 1}"

    def start_service(self, name, instance=0):
        logs = self.state_dir / "services"
        logs.mkdir(exist_ok=True)
        env = dict(self.service_env, **{f"TACOORD_{name.upper()}_{kind}_PORT": str(port)
                                        for kind, port in self.ports[(name, instance)].items()})
        with open(logs / f"{self.label(name, instance)}.log", "ab") as out:
            self.processes[(name, instance)] = subprocess.Popen(
                [sys.executable, "-m", "services.run", name], cwd=ROOT, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start_all(self):
        for name in SERVICES:
            for instance in range(self.instances):
                self.start_service(name, instance)
        for name in SERVICES:
            for instance in range(self.instances):
                self.wait_ready(name, instance)

    def wait_ready(self, name, instance=0, timeout=90):
        from infra.stack import wait_until_ready
        process = self.processes[(name, instance)]
        wait_until_ready(self.label(name, instance), self.port(name, "OPS", instance), lambda: process.poll() is None,
                         self.state_dir / "services" / f"{self.label(name, instance)}.log", timeout)

    def kill_service(self, name, instance=0):
        process = self.processes[(name, instance)]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def stop_services(self):
        for (name, instance), process in self.processes.items():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    self.kill_service(name, instance)

    def exited_services(self):
        return {self.label(*key): p.returncode for key, p in self.processes.items() if p.poll() is not None}

    def service_log(self, name, lines=40, instance=0):
        path = self.state_dir / "services" / f"{self.label(name, instance)}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # observation
    def mongo(self):
        return MongoClient(self.mongo_uri, serverSelectionTimeoutMS=20000)

    def db(self, client, service):
        return client[f"{self.prefix}_{service}"]

    def mgmt_ports(self):
        return [self.mgmt_port]

    def queues(self):
        """The vhost's queues, from the first management API that answers."""
        for port in self.mgmt_ports():
            try:
                response = requests.get(f"http://127.0.0.1:{port}/api/queues/tacoord", auth=ADMIN, timeout=10,
                                        params={"columns": "name,messages,messages_ready,messages_unacknowledged,"
                                                                   "messages_dlx"})
                response.raise_for_status()
            except requests.RequestException:
                if port == self.mgmt_ports()[-1]:
                    raise
                continue
            return {q["name"]: q for q in response.json()}

    def queue_depths(self, unacked=False):
        """Messages ready in each queue (exact: a passive declare per queue); ``unacked``: plus those
        a consumer holds unacknowledged and those a quorum queue has expired but not yet
        dead-lettered (the management API's figures, a few seconds late, for telling when things
        are quiet). A queue of the topology that cannot be read raises (the
        caller asks again): skipping it would make a backlog look like quiet."""
        required = {spec.name for spec in topology.ALL_QUEUES} | {
            spec.retry_name for spec in topology.ALL_QUEUES if spec.retry}
        depths = {}
        with Connection(self.amqp_uri, connect_timeout=5) as connection:
            channel = connection.channel()
            for name, stats in self.queues().items():
                try:
                    ready = channel.queue_declare(name, passive=True).message_count
                except Exception:
                    if name in required:
                        raise
                    channel = connection.channel()   # gone meanwhile (a subscriber's queue)
                    continue
                held = (stats.get("messages_unacknowledged") or 0) + (stats.get("messages_dlx") or 0)
                depths[name] = ready + (held if unacked else 0)
        return depths


def free_run(count):
    """The first of ``count`` consecutive free loopback ports (nodes take base, base + 1, …)."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        if all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def _free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class ClusterStack(Stack):
    """A three-node RabbitMQ cluster (``infra.cluster up``: quorum queues, own node names,
    ports and epmd) + the database, and two instances of each service, given every node."""

    instances = 2

    def __init__(self, state_dir=None, prefix=None):
        super().__init__(state_dir=state_dir, prefix=prefix)
        self.node_ports = {"amqp": free_run(3), "mgmt": free_run(3), "dist": free_run(3)}
        self.env.update(
            TACOORD_CLUSTER_AMQP_PORT=str(self.node_ports["amqp"]), TACOORD_CLUSTER_MGMT_PORT=str(self.node_ports["mgmt"]),
            TACOORD_CLUSTER_DIST_PORT=str(self.node_ports["dist"]), TACOORD_CLUSTER_EPMD_PORT=str(free_port()),
            TACOORD_CLUSTER_NODE_PREFIX=f"faults{uuid.uuid4().hex[:6]}-")
        self.amqp_port, self.mgmt_port = self.node_ports["amqp"], self.node_ports["mgmt"]
        self.amqp_uri = ";".join(f"pyamqp://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{self.amqp_port + i}/tacoord"
                                 for i in range(3))
        self.service_env.update(self.env, AMQP_URI=self.amqp_uri, MONGO_URI=self.mongo_uri, TACOORD_QUEUE_TYPE="quorum")

    def _infra(self, command, timeout=300):
        result = subprocess.run([sys.executable, "-m", "infra.cluster", *command.split()], cwd=ROOT,
                                env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"infra.cluster {command} failed: {result.stdout[-2000:]} {result.stderr[-2000:]}")
        return result.stdout

    def up(self):
        log(f"starting own 3-node RabbitMQ cluster (amqp {self.amqp_port}-{self.amqp_port + 2}) and database "
            f"({self.mongo_port}) in {self.state_dir}")
        self.started_infra = True
        self._infra("up")

    def stop_node(self, index):
        self._infra(f"node-stop {index}")

    def start_node(self, index):
        self._infra(f"node-start {index}")

    def mgmt_ports(self):
        return [self.mgmt_port + i for i in range(3)]


# --- the webhook receiver ------------------------------------------------------------------------

class Receiver:
    """Counts notifications by X-Tacoord-Notification-Id, and the notification ids seen per match
    (answers 200 at once)."""

    def __init__(self):
        self.counts = Counter()
        self.by_match = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                notification = self.headers.get("X-Tacoord-Notification-Id")
                try:
                    match = json.loads(body)["event"]["data"]["match_id"]
                except (ValueError, KeyError, TypeError):
                    match = None
                with receiver.lock:
                    receiver.counts[notification] += 1
                    receiver.by_match.setdefault(match, set()).add(notification)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return Counter(self.counts), {m: set(ids) for m, ids in self.by_match.items()}

    def close(self):
        self.server.shutdown()


# --- the stream ----------------------------------------------------------------------------------

def generate(count, seed=7):
    """``count`` ingress events: needs and offers in pairs on distinct (State, article, form)."""
    from services.matching.read_model import match_id
    from services.needs.domain import need_id
    from services.supply.domain import offer_id

    rng = random.Random(seed)
    states = sorted(c["iso3"] for c in reference.data()["countries"])
    pairs = count // 2
    triples = [(s, a, f) for s in states for a in ARTICLES for f in FORMS]
    if pairs > len(triples):
        raise SystemExit(f"at most {2 * len(triples)} events (distinct State × article × form)")
    chosen = rng.sample(triples, pairs)
    events, expected_matches = [], {}
    for i, (state, article, form) in enumerate(chosen):
        need = {"state": state, "article": article, "forms": [form], "priority": 2,
                "description": f"fault suite need {i}", "languages": ["en"], "external_ref": f"need-{i}"}
        offer = {"provider": PROVIDER, "provider_name": "Fault suite donor", "level": "bilateral",
                 "scope_states": [state], "articles": [article], "forms": [form], "capacity": 1,
                 "period_start": "2025-01-01", "period_end": "2030-12-31", "languages": ["en"],
                 "external_ref": f"offer-{i}"}
        events.append(envelope.new_event("need.submitted", need, "partner"))
        events.append(envelope.new_event("offer.submitted", offer, "partner"))
        expected_matches[match_id(need_id(state, article, [form]), offer_id(PROVIDER, f"offer-{i}"))] = i
    rng.shuffle(events)
    return events, expected_matches


class StreamPublisher:
    """Publishes like a partner (persistent, confirmed, ``user_id``); rides out a broker restart by
    reconnecting and republishing the message whose confirm it did not get (consumers dedupe by id)."""

    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.published = 0
        self.republished = 0
        self.connection = None

    def _producer(self):
        if self.connection is None:
            self.connection = Connection(self.amqp_uri, transport_options={"confirm_publish": True},
                                         connect_timeout=5)
            self.connection.ensure_connection(max_retries=1)
            self.producer = Producer(self.connection)
        return self.producer

    def publish(self, event, deadline=120):
        give_up = time.monotonic() + deadline
        while True:
            try:
                self._producer().publish(
                    json.dumps(event), exchange=topology.EXCHANGES[topology.INGRESS], routing_key=event["type"],
                    delivery_mode=2, content_type="application/json", user_id=ADMIN[0], message_id=event["id"])
                self.published += 1
                return
            except Exception as exc:
                self.close()
                if time.monotonic() > give_up:
                    raise RuntimeError(f"could not publish for {deadline}s: {exc}")
                self.republished += 1
                time.sleep(0.5)

    def close(self):
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:
                pass
        self.connection = None


# --- faults --------------------------------------------------------------------------------------

class Faults:
    """SIGKILL + restart each service, restart the broker, freeze the database 10 s; a log of what was done."""

    def __init__(self, stack, gap=3.0, mongo_pause=10.0):
        self.stack = stack
        self.gap = gap
        self.mongo_pause = mongo_pause
        self.done = []
        self.error = None

    def _note(self, what, started):
        took = time.monotonic() - started
        self.done.append({"fault": what, "seconds": round(took, 1)})
        log(f"fault: {what} ({took:.1f}s)")

    def run(self):
        cluster = isinstance(self.stack, ClusterStack)
        try:
            if cluster:
                # node 1 is the first address of every URI: every connection fails over, while the
                # stream is published, and the instances restarted below start without it
                time.sleep(self.gap)
                started = time.monotonic()
                self.stack.stop_node(1)
                self._note("RabbitMQ node 1 of 3 stopped", started)
            for name in SERVICES:
                time.sleep(self.gap)
                started = time.monotonic()
                self.stack.kill_service(name)   # on the cluster: the first of its two instances
                time.sleep(0.5)
                self.stack.start_service(name)
                self.stack.wait_ready(name)
                self._note(f"SIGKILL {name}, restarted", started)
            time.sleep(self.gap)
            started = time.monotonic()
            if cluster:
                self.stack.start_node(1)
                self._note("RabbitMQ node 1 of 3 started again (it rejoined the cluster)", started)
            else:
                self.stack.restart_rabbit()
                self._note("RabbitMQ node restarted (infra.stack restart-rabbit)", started)
            time.sleep(self.gap)
            started = time.monotonic()
            pid = self.stack.mongo_pid()
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(self.mongo_pause)
            finally:
                os.kill(pid, signal.SIGCONT)
            self._note(f"database frozen {self.mongo_pause:g}s (SIGSTOP/SIGCONT pid {pid})", started)
        except (Exception, SystemExit) as exc:  # infra.stack reports with StackError (a SystemExit)
            self.error = f"{type(exc).__name__}: {exc}"
            log(f"fault schedule failed: {self.error}")


# --- checking ------------------------------------------------------------------------------------

DERIVED = {"need.submitted": "need.submitted", "offer.submitted": "offer.published"}


def observe(stack, client, receiver, subscription_id, events, expected_matches):
    """Counts of what reached the end of each path, and what is still in flight."""
    audit = stack.db(client, "audit")["audit"]
    by_cause = Counter()
    proposals = Counter()
    delivered = Counter()  # notification id -> notification.delivered audit records
    for record in audit.find({"kind": "event"}, {"type": 1, "causation_id": 1, "event_id": 1, "entities": 1}):
        kind = record.get("type")
        if kind in ("need.submitted", "offer.published"):
            by_cause[(kind, record.get("causation_id"))] += 1
        elif kind == "match.proposed":
            match = next(e[6:] for e in record["entities"] if e.startswith("match:"))
            proposals[match] += 1
        elif kind == "notification.delivered":
            notification = next((e[13:] for e in record["entities"] if e.startswith("notification:")), None)
            delivered[notification] += 1
    rejections = audit.count_documents({"kind": "rejection"})
    matches = {d["_id"]: d.get("status") for d in stack.db(client, "matching")["matches"].find({}, {"status": 1})}
    received, received_by_match = receiver.snapshot()

    lost, duplicated = Counter(), Counter()
    for event in events:
        n = by_cause[(DERIVED[event["type"]], event["id"])]
        if n == 0:
            lost["audit records of ingress events"] += 1
        elif n > 1:
            duplicated["audit records of ingress events"] += n - 1
    for match in expected_matches:
        if matches.get(match) != "proposed":
            lost["matches"] += 1
        if proposals[match] == 0:
            lost["match.proposed audit records"] += 1
        elif proposals[match] > 1:
            duplicated["match.proposed audit records"] += proposals[match] - 1
        notifications = received_by_match.get(match, set())
        if not notifications:
            lost["notifications"] += 1
        elif len(notifications) > 1:
            duplicated["notifications (one match notified under several ids)"] += len(notifications) - 1
    unexpected = set(matches) - set(expected_matches)
    if unexpected:
        duplicated["unexpected matches"] += len(unexpected)
    # notify is at least once under one notification id (receivers dedupe on it): a repeat of
    # the same id is reported, not counted as a duplicate; a second id for one match is.
    resent_same_id = sum(n - 1 for n in received.values() if n > 1)
    # every notification the receiver got is recorded as delivered exactly once (an outcome that
    # never reached the audit log is lost, even though the notification itself arrived)
    for notification in received:
        if delivered[notification] == 0:
            lost["notification.delivered audit records"] += 1
        elif delivered[notification] > 1:
            duplicated["notification.delivered audit records"] += delivered[notification] - 1
    unreceived = set(delivered) - set(received)
    if unreceived:
        duplicated["notification.delivered records of notifications never received"] += len(unreceived)
    strays = set(received_by_match) - set(expected_matches)
    if strays:
        duplicated["unexpected notifications"] += sum(len(received_by_match[m]) for m in strays)

    stuck = Counter()
    depths = stack.queue_depths()
    for name, depth in depths.items():
        if depth and name != topology.DEAD_LETTERS_QUEUE and not name.startswith("notify.sub."):
            stuck[f"queue {name}"] += depth
    # a quorum queue's expired messages waiting to be dead-lettered are not ready: counted apart,
    # or a retry queue that stopped forwarding (seen on RabbitMQ 3.10 after a node rejoined) would
    # pass for quiet and its messages for lost
    for name, stats in stack.queues().items():
        if stats.get("messages_dlx"):
            stuck[f"queue {name} (expired, not yet dead-lettered)"] += stats["messages_dlx"]
    dead = depths.get(topology.DEAD_LETTERS_QUEUE, 0)
    if dead:
        stuck["dead letters"] += dead
    for service, collections in (("needs", ["needs"]), ("supply", ["offers", "experts"]),
                                 ("matching", ["matches", "alerts", "proposals"]), ("notify", ["deliveries"]),
                                 ("requests", ["workshop_requests"])):
        for collection in collections:
            pending = stack.db(client, service)[collection].count_documents({"_outbox_pending": {"$gt": 0}})
            if pending:
                stuck[f"outbox {service}.{collection}"] += pending
    pending_deliveries = stack.db(client, "notify")["deliveries"].count_documents({"status": "pending"})
    if pending_deliveries:
        stuck["notify deliveries pending"] += pending_deliveries
    return {
        "lost": sum(lost.values()), "duplicated": sum(duplicated.values()), "stuck": sum(stuck.values()),
        "lost_detail": dict(lost), "duplicated_detail": dict(duplicated), "stuck_detail": dict(stuck),
        "audit_event_records": sum(by_cause.values()) + sum(proposals.values()) + sum(delivered.values()),
        "matches_active": sum(1 for s in matches.values() if s == "proposed"),
        "notifications_received": sum(received.values()), "notifications_distinct": len(received),
        "notifications_resent_same_id": resent_same_id,
        "notification_delivered_records": sum(delivered.values()), "rejection_records": rejections,
    }


def settle(stack, client, receiver, subscription_id, events, expected_matches, timeout, quiet_for=12.0,
           confirm_after=5.0):
    """Poll until everything expected arrived and nothing is in flight, or until quiet for ``quiet_for``
    seconds (nothing in any queue or outbox), or ``timeout``. Returns the last observation."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    last_report = 0
    while True:
        try:
            # cheap first: while messages wait in queues, do not scan the audit log (that
            # would slow down the services being measured)
            busy = {name: depth for name, depth in stack.queue_depths(unacked=True).items()
                    if depth and name != topology.DEAD_LETTERS_QUEUE and not name.startswith("notify.sub.")}
            if busy and time.monotonic() < deadline:
                quiet_since = None
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    log(f"settling: in queues {busy}")
                time.sleep(3)
                continue
            result = observe(stack, client, receiver, subscription_id, events, expected_matches)
        except Exception as exc:  # broker/database still coming back
            log(f"observe failed ({type(exc).__name__}: {exc}); retrying")
            time.sleep(2)
            if time.monotonic() > deadline:
                raise
            continue
        done = result["lost"] == 0 and result["stuck"] == 0
        if done:
            # Once more after a pause: a queue depth counts only ready messages, so a copy a
            # service still holds (unacked) could add a duplicate after this observation.
            time.sleep(confirm_after)
            again = observe(stack, client, receiver, subscription_id, events, expected_matches)
            if again["lost"] == 0 and again["stuck"] == 0:
                return again
            result = again
        idle = not result["stuck_detail"] or set(result["stuck_detail"]) <= {"dead letters"}
        now = time.monotonic()
        quiet_since = (quiet_since or now) if idle else None
        if quiet_since and now - quiet_since >= quiet_for:
            return result
        if now > deadline:
            result["timed_out"] = True
            return result
        if now - last_report > 15:
            last_report = now
            log(f"settling: lost so far {result['lost_detail']}, in flight {result['stuck_detail']}")
        time.sleep(2)


# --- the run -------------------------------------------------------------------------------------

def run(events_count, faults=True, settle_timeout=300, seed=7, publish_seconds=None, fault_gap=3.0,
        state_dir=None, keep=False, cluster=False, keep_on_failure=False):
    started = time.monotonic()
    events, expected_matches = generate(events_count, seed)
    stack = (ClusterStack if cluster else Stack)(state_dir=state_dir)
    receiver = Receiver()
    summary = {"events": len(events), "expected_matches": len(expected_matches), "faults_enabled": faults,
               "cluster": cluster, "instances_per_service": stack.instances}
    try:
        stack.up()
        stack.start_all()
        log(f"services ready ({stack.instances} of each): " + ", ".join(SERVICES))
        client = stack.mongo()
        from tacoord import auth
        key = auth.issue(auth.auth_db(client, stack.prefix), "operator", "*", label="fault suite")
        response = requests.post(
            f"http://127.0.0.1:{stack.port('notify')}/subscriptions", headers={"Authorization": f"Bearer {key}"},
            json={"channel": "webhook", "url": receiver.url, "kind": "donor", "subject": PROVIDER,
                  "filter": {"types": ["match.proposed"]}}, timeout=30)
        response.raise_for_status()
        subscription_id = response.json()["subscription_id"]

        fault_thread = injector = None
        if faults:
            injector = Faults(stack, gap=fault_gap)
            fault_thread = threading.Thread(target=injector.run, daemon=True)
            fault_thread.start()
        publisher = StreamPublisher(stack.amqp_uri)
        pause = (publish_seconds / len(events)) if publish_seconds else 0
        t0 = time.monotonic()
        for i, event in enumerate(events):
            publisher.publish(event)
            if pause:
                time.sleep(pause)
            if i and i % 10000 == 0:
                log(f"published {i}")
        publisher.close()
        summary["publish_seconds"] = round(time.monotonic() - t0, 1)
        summary["republished_after_broker_errors"] = publisher.republished
        log(f"published {len(events)} events in {summary['publish_seconds']}s "
            f"({publisher.republished} republished after broker errors)")
        if fault_thread:
            fault_thread.join(timeout=600)
            summary["faults"] = injector.done
            summary["fault_error"] = injector.error
        t1 = time.monotonic()
        result = settle(stack, client, receiver, subscription_id, events, expected_matches, settle_timeout)
        summary.update(result)
        summary["settle_seconds"] = round(time.monotonic() - t1, 1)
        summary["exited_services"] = stack.exited_services()
        if summary["exited_services"]:
            summary["stuck"] += len(summary["exited_services"])
            summary["stuck_detail"]["services exited on their own"] = len(summary["exited_services"])
        summary["total_seconds"] = round(time.monotonic() - started, 1)
        summary["events_per_second_end_to_end"] = round(len(events) / max(1e-9, time.monotonic() - t0), 1)
        if summary["lost"] or summary["duplicated"] or summary["stuck"]:
            keep = keep or keep_on_failure
            kept = ROOT / "artifacts" / "faults" / time.strftime("%Y%m%d-%H%M%S")
            shutil.copytree(stack.state_dir / "services", kept, dirs_exist_ok=True)
            summary["service_logs"] = str(kept)
            log(f"service logs kept in {kept}")
        return summary
    finally:
        receiver.close()
        if keep:
            stack.stop_services()
            log(f"kept the broker and database up in {stack.state_dir} (environment: {stack.state_dir}/env.json)")
            (stack.state_dir / "env.json").write_text(json.dumps(
                {k: v for k, v in stack.env.items() if k.startswith("TACOORD_")}, indent=1))
        else:
            stack.down()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=int(os.environ.get("TACOORD_FAULT_EVENTS", 2000)))
    parser.add_argument("--no-faults", action="store_true", help="publish and check without breaking anything")
    parser.add_argument("--settle", type=float, default=300, help="max seconds to wait for quiet after publishing")
    parser.add_argument("--publish-seconds", type=float, default=None,
                        help="spread publishing over this many seconds (default: as fast as confirms allow)")
    parser.add_argument("--fault-gap", type=float, default=3.0, help="seconds between two faults")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--state-dir", default=None, help="stack state directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="leave broker and database running (debugging)")
    parser.add_argument("--keep-on-failure", action="store_true",
                        help="leave broker and database running when something was lost, doubled or stuck")
    parser.add_argument("--cluster", action="store_true",
                        help="a 3-node RabbitMQ cluster (quorum queues) and two instances of each service; the "
                             "broker fault stops node 1 of 3 and starts it again")
    args = parser.parse_args(argv)
    summary = run(args.events, faults=not args.no_faults, settle_timeout=args.settle, seed=args.seed,
                  publish_seconds=args.publish_seconds, fault_gap=args.fault_gap, state_dir=args.state_dir,
                  keep=args.keep, cluster=args.cluster, keep_on_failure=args.keep_on_failure)
    print(f"lost {summary['lost']} / duplicated {summary['duplicated']} / stuck {summary['stuck']}  "
          f"({summary['events']} events, {summary['expected_matches']} matches expected, "
          f"{summary['total_seconds']}s)", flush=True)
    print("SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
    return 0 if not (summary["lost"] or summary["duplicated"] or summary["stuck"]) else 1


if __name__ == "__main__":
    sys.exit(main())
