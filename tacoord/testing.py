"""Helpers for tests and benchmarks against the real local stack.

Isolation: every test gets its own RabbitMQ vhost (created through the
management API, topology declared) and its own database prefix, so tests
never see each other's messages or documents.
"""
import contextlib
import json
import socket
import time
import uuid

import requests
from kombu import Connection, Producer
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tacoord import auth, config, envelope, topology


def management_url(path):
    return config.amqp_mgmt_url(path)


def admin_auth():
    return config.amqp_admin()


def stack_problem():
    """None when RabbitMQ (with management) and the database answer, else why not."""
    try:
        requests.get(management_url("overview"), auth=admin_auth(), timeout=3).raise_for_status()
    except requests.RequestException as exc:
        return f"RabbitMQ management API not reachable ({exc}); run: python -m infra.stack up"
    try:
        MongoClient(config.mongo_uri(), serverSelectionTimeoutMS=3000).admin.command("ping")
    except Exception as exc:
        return f"database not reachable at {config.mongo_uri()} ({exc}); run: python -m infra.stack up"
    return None


def create_vhost(name):
    user, _ = admin_auth()
    requests.put(management_url(f"vhosts/{name}"), auth=admin_auth(), timeout=10).raise_for_status()
    requests.put(management_url(f"permissions/{name}/{user}"), auth=admin_auth(), timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
    uri = config.amqp_uri(vhost=name)
    with Connection(uri) as connection:
        topology.declare_all(connection)
    return uri


def delete_vhost(name):
    requests.delete(management_url(f"vhosts/{name}"), auth=admin_auth(), timeout=10)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique(prefix="t"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Sandbox:
    """One isolated world: a vhost, a database prefix, service configs, API keys."""

    def __init__(self):
        self.vhost = unique("tv_")
        self.prefix = unique("tdb_")
        self.amqp_uri = create_vhost(self.vhost)
        self.mongo = MongoClient(config.mongo_uri())
        self.http_ports = {}

    def config(self, service, **overrides):
        port = self.http_ports.setdefault(service, free_port())
        settings = dict(
            AMQP_URI=self.amqp_uri, MONGO_URI=config.mongo_uri(),
            TACOORD_DB=config.db_name(service, self.prefix), TACOORD_DB_PREFIX=self.prefix,
            WEB_SERVER_ADDRESS=f"127.0.0.1:{port}", TACOORD_OPS_PORT=0,
            TACOORD_RETRY_BASE_MS=100, TACOORD_OUTBOX_RELAY_SECONDS=1)
        settings.update(overrides)
        return config.service_config(service, **settings)

    def url(self, service, path):
        return f"http://127.0.0.1:{self.http_ports[service]}{path}"

    def db(self, service):
        return self.mongo[config.db_name(service, self.prefix)]

    def api_key(self, role, subject):
        return auth.issue(auth.auth_db(self.mongo, self.prefix), role, subject)

    def headers(self, role, subject="*"):
        return {"Authorization": f"Bearer {self.api_key(role, subject)}"}

    def publish_events(self, events, exchange=topology.EVENTS):
        """Publish many envelopes on one connection (persistent, confirmed), like a busy service."""
        with Connection(self.amqp_uri, transport_options={"confirm_publish": True}) as connection:
            producer = Producer(connection)
            for event in events:
                producer.publish(json.dumps(event), exchange=topology.EXCHANGES[exchange],
                                 routing_key=event["type"], delivery_mode=2, content_type="application/json")

    def publish(self, event_type, data, exchange=topology.INGRESS, user_id=None, event=None,
                raw_body=None):
        """Publish like a partner: persistent, confirmed, with the broker-checked user_id
        (the connection's user unless given; ``user_id=""`` sends none)."""
        if user_id is None:
            user_id = admin_auth()[0]
        properties = {"user_id": user_id} if user_id else {}
        body = raw_body if raw_body is not None else (event or envelope.new_event(event_type, data, "test"))
        with Connection(self.amqp_uri, transport_options={"confirm_publish": True}) as connection:
            producer = Producer(connection)
            producer.publish(body if isinstance(body, (bytes, str)) else json.dumps(body),
                             exchange=topology.EXCHANGES[exchange], routing_key=event_type,
                             delivery_mode=2, content_type="application/json", **properties)
        return body

    def left_after_stopping(self, containers, *queues):
        """Stop ``containers`` (their workers finish and settle; what a consumer took and never
        acked goes back to its queue), then count the messages in ``queues``. ``queue_depth``
        counts only ready messages, so this is how a test knows every message was settled."""
        for container in containers:
            container.stop()
        return sum(self.queue_depth(queue) for queue in queues)

    def queue_depth(self, queue):
        from kombu import Queue
        with Connection(self.amqp_uri) as connection:
            with connection.channel() as channel:
                return Queue(queue, channel=channel, no_declare=True).queue_declare(passive=True).message_count

    def get_messages(self, queue, limit=100):
        """Take up to ``limit`` messages off a queue (acked): [(body, headers)]."""
        messages = []
        with Connection(self.amqp_uri) as connection:
            simple = connection.SimpleQueue(queue, no_ack=False, queue_opts={"no_declare": True})
            simple.queue.no_declare = True
            for _ in range(limit):
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                messages.append((message.payload, dict(message.headers or {})))
                message.ack()
            simple.close()
        return messages

    def close(self):
        delete_vhost(self.vhost)
        # Listing every database is slow and racy on a server that many test runs share (one
        # dropped meanwhile fails the listing); so first the databases a sandbox makes, by name,
        # then any other with its prefix, as far as the listing goes.
        for service in (*config.SERVICES, "auth"):
            self.mongo.drop_database(config.db_name(service, self.prefix))
        try:
            others = [n for n in self.mongo.list_database_names() if n.startswith(self.prefix + "_")]
        except PyMongoError:
            others = []
        for name in others:
            self.mongo.drop_database(name)
        self.mongo.close()


@contextlib.contextmanager
def running_services(classes, **config_overrides):
    """A sandbox with these services started in this process, for a whole test module
    (pytest's ``container_factory`` is per test): ``with running_services(...) as (sandbox, containers)``."""
    from nameko.containers import ServiceContainer
    problem = stack_problem()
    if problem:
        raise RuntimeError(problem)
    sandbox = Sandbox()
    containers = []
    try:
        for cls in classes:
            container = ServiceContainer(cls, sandbox.config(cls.name, **config_overrides))
            container.start()
            containers.append(container)
        yield sandbox, containers
    finally:
        for container in containers:
            container.stop()
        sandbox.close()


def wait_until(predicate, timeout=15.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


def consumed(service, outcome):
    """How many messages the consumers of ``service`` in this process settled with ``outcome``
    (``ok``, ``duplicate``, ``retried``, ``dead_lettered``), all types together: the consumer's own
    counter, which counts a copy as ``duplicate`` only once the inbox says its id is done. The
    counter lives as long as the process: compare it with its value before the test published."""
    from prometheus_client import REGISTRY
    name = f"tacoord_{service}_events_consumed_total"
    return sum(sample.value for family in REGISTRY.collect() for sample in family.samples
               if sample.name == name and sample.labels.get("outcome") == outcome)


class ServiceProcess:
    """One service run as its own OS process (``python -m services.run NAME``), as the stack runs
    it, inside a sandbox: its vhost, its database prefix, ports of its own; stderr (its JSON log
    lines) and stdout go to ``log_path``. ``env``: more settings (``TACOORD_KPI_SECONDS=1`` …)."""

    def __init__(self, sandbox, name, log_path, **env):
        import os
        import subprocess
        import sys
        self.name, self.log_path = name, log_path
        self.ops_port = free_port()
        http_port = sandbox.http_ports.setdefault(name, free_port())
        settings = {**os.environ, "AMQP_URI": sandbox.amqp_uri, "MONGO_URI": config.mongo_uri(),
                    "TACOORD_DB_PREFIX": sandbox.prefix, "TACOORD_RETRY_BASE_MS": "100",
                    "TACOORD_OUTBOX_RELAY_SECONDS": "1", f"TACOORD_{name.upper()}_HTTP_PORT": str(http_port),
                    f"TACOORD_{name.upper()}_OPS_PORT": str(self.ops_port),
                    **{key: str(value) for key, value in env.items()}}
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "services.run", name], cwd=str(config.PROJECT_ROOT),
                                        env=settings, stdout=self._log, stderr=subprocess.STDOUT)

    def url(self, path):
        return f"http://127.0.0.1:{self.ops_port}{path}"

    def ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"service {self.name} exited ({self.process.returncode}); see {self.log_path}")
        try:
            return requests.get(self.url("/health/ready"), timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def metrics(self):
        return scrape(self.url("/metrics"))

    def log_lines(self):
        return self.log_path.read_text(errors="replace").splitlines()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except Exception:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def scrape(url):
    """One scrape of a ``/metrics`` endpoint: ``{(name, frozenset(labels.items())): value}``."""
    from prometheus_client.parser import text_string_to_metric_families
    text = requests.get(url, timeout=5).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def ops_url(container, path="/metrics"):
    """The URL of an in-process container's ops port (its ``OpsServer``)."""
    from tacoord.ops import OpsServer
    [ops] = [d for d in container.dependencies if isinstance(d, OpsServer)]
    return f"http://127.0.0.1:{ops.port}{path}"


def sample(metrics, name, **labels):
    """The value of one sample of :func:`scrape` (None when absent)."""
    return metrics.get((name, frozenset(labels.items())))
