"""Operations: Prometheus metrics and liveness/readiness, served outside the worker pool.

Each service process serves ``/metrics``, ``/health/live`` and
``/health/ready`` on its own ops port from an eventlet green thread, so a
scrape or a health check never waits behind busy workers (nameko shares one
pool between all entrypoints). Metric objects are created once per process.
"""
import json
import logging
import socket
from types import SimpleNamespace

import eventlet
import eventlet.wsgi
from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app

from tacoord import config, headers

log = logging.getLogger(__name__)
_METRICS = {}
_EXTRA = {}

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def metrics_for(service):
    """The metrics every service has, named ``tacoord_<service>_…``."""
    if service not in _METRICS:
        prefix = f"tacoord_{service}"
        _METRICS[service] = SimpleNamespace(
            events_consumed=Counter(f"{prefix}_events_consumed_total",
                                    "Events consumed, by type and outcome", ["type", "outcome"]),
            events_published=Counter(f"{prefix}_events_published_total",
                                     "Events published (confirmed by the broker), by type", ["type"]),
            handler_seconds=Histogram(f"{prefix}_handler_seconds",
                                      "Time to handle one consumed event", ["type"],
                                      buckets=LATENCY_BUCKETS),
            dead_letters=Counter(f"{prefix}_dead_letters_total",
                                 "Messages parked in the dead-letter queue, by reason kind", ["reason"]),
            retries=Counter(f"{prefix}_retries_total",
                            "Messages sent back for a delayed retry", ["type"]),
            outbox_backlog=Gauge(f"{prefix}_outbox_backlog",
                                 "Events stored in an outbox and not yet confirmed by the broker"),
            http_requests=Counter(f"{prefix}_http_requests_total",
                                  "HTTP requests, by method and status class", ["method", "status"]),
            queue_messages=Gauge(f"{prefix}_queue_messages",
                                 "Messages ready in a queue this service consumes (polled by its consumer)",
                                 ["queue"]),
            queue_settled=Counter(f"{prefix}_queue_settled_total",
                                  "Messages taken off a queue and settled (acked, sent round or parked)",
                                  ["queue"]),
        )
        # Every kind at 0 from the start: the first dead letter is then an increase that
        # rate()/increase() and the alert see, not the birth of a series they cannot compare.
        for kind in headers.DEAD_LETTER_KINDS:
            _METRICS[service].dead_letters.labels(reason=kind)
    return _METRICS[service]


def metric(kind, service, name, documentation, labels=()):
    """A service's own metric (``tacoord_<service>_<name>``), created once per process."""
    full = f"tacoord_{service}_{name}"
    if full not in _EXTRA:
        cls = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[kind]
        extra = {"buckets": LATENCY_BUCKETS} if kind == "histogram" else {}
        _EXTRA[full] = cls(full, documentation, list(labels), **extra)
    return _EXTRA[full]


class OpsServer(DependencyProvider):
    """Serves metrics and health for the container; injects nothing useful.

    Readiness runs every check registered with :meth:`add_check` (the store
    and the consumer register theirs) and answers 503 naming what failed.
    """

    def __init__(self):
        self.checks = {}

    def add_check(self, name, check):
        self.checks[name] = check

    def setup(self):
        cfg = self.container.config
        self.host = cfg.get(config.OPS_HOST_KEY, "127.0.0.1")
        self.port = int(cfg.get(config.OPS_PORT_KEY, 0))
        self.metrics_app = make_wsgi_app(REGISTRY)
        self.add_check("broker", self._check_broker)

    def _check_broker(self):
        from kombu import Connection
        with Connection(self.container.config[config.AMQP_URI_KEY], connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)

    def start(self):
        self.socket = eventlet.listen((self.host, self.port))
        self.port = self.socket.getsockname()[1]
        self.container.spawn_managed_thread(self._serve, identifier="ops-server")

    def stop(self):
        try:
            self.socket.close()
        except OSError:
            pass

    kill = stop

    def _serve(self):
        try:
            eventlet.wsgi.server(self.socket, self._app, log_output=False)
        except (OSError, socket.error):
            pass

    def readiness(self):
        failures = {}
        for name, check in self.checks.items():
            try:
                check()
            except Exception as exc:
                failures[name] = str(exc) or type(exc).__name__
        return failures

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self.metrics_app(environ, start_response)
        if path == "/health/live":
            return _json(start_response, 200, {"status": "alive", "service": self.container.service_name})
        if path == "/health/ready":
            failures = self.readiness()
            if failures:
                return _json(start_response, 503, {"status": "not ready", "failing": failures})
            return _json(start_response, 200, {"status": "ready", "checks": sorted(self.checks)})
        return _json(start_response, 404, {"error": "not found",
                                           "routes": ["/metrics", "/health/live", "/health/ready"]})

    def get_dependency(self, worker_ctx):
        return self


def _json(start_response, status, body):
    payload = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(payload)))])
    return [payload]
