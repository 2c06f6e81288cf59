"""Pipeline benchmark: partner ingress → needs → matching → notify (webhook) → audit, against raw pika.

    /work/main/.venv/bin/python bench/pipeline_bench.py [--events N] [--raw-events M] [--latency-events K]

Needs the local stack (RabbitMQ on TACOORD_AMQP_PORT, the database on MONGO_URI). Everything runs in
a fresh vhost and database prefix, deleted at the end. The services are real processes
(``python -m services.run NAME``, one per service, environment overrides for the vhost, the database
prefix and free ports), as in production; the bench process hosts the partner client and the webhook
receiver.

Printed:

1. raw pika, persistent, no confirms: one connection publishes M copies of a need envelope to a
   queue while another consumes (prefetch 200, ack each); msgs/s from the first publish to the last
   message consumed.
2. raw pika with publisher confirms (one confirm awaited per message, like the partner client),
   same consumer.
3. the pipeline: one offer (global, every chapter, capacity 10,000) from the donor GB-GOV-1 with a
   webhook subscription ``match.*``; then N needs published by ``PartnerClient`` as fast as it
   goes. Each need yields need.submitted, match.proposed (→ webhook → notification.delivered), all
   audited. Sustained throughput = N / (time from the first publish until the N-th webhook and the
   last of the 3N audit records). Ratio = pipeline / raw pika anchor (both anchors shown).
4. latency publish → webhook receipt at 20 % of the measured pipeline throughput (paced
   publishing, K needs): p50, p95, p99.
5. RSS (and peak RSS) of each service process (/proc).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import pika  # noqa: E402
import requests  # noqa: E402
from pymongo import MongoClient  # noqa: E402

import services  # noqa: E402
from infra.partners import add_partner, remove_partner  # noqa: E402
from infra.stack import wait_until_ready  # noqa: E402
from tacoord import auth, config, envelope, reference  # noqa: E402
from tacoord.partner import PartnerClient  # noqa: E402
from tacoord.testing import create_vhost, delete_vhost, free_port, stack_problem, unique  # noqa: E402

services.register_schemas()  # what the partner client validates against

SERVICES = ("audit", "needs", "supply", "matching", "notify")
DONOR = "GB-GOV-1"
STATES = sorted(code for code in reference.states() if code)
ARTICLES = list(range(5, 63))


def need(i):
    return {"state": STATES[i % len(STATES)], "article": ARTICLES[(i // len(STATES)) % len(ARTICLES)],
            "forms": ["LEGAL_ADVICE"], "priority": 1 + i % 3, "description": "Benchmark need"}


# --- raw pika anchors -----------------------------------------------------------------------

def raw_pika(url, count, confirms):
    params = pika.URLParameters(url)
    queue = unique("bench.raw.")
    body = json.dumps(envelope.new_event("need.submitted", need(0), "bench")).encode()
    setup = pika.BlockingConnection(params)
    setup.channel().queue_declare(queue, durable=True)
    setup.close()
    done = threading.Event()
    received = [0]
    finished = [0.0]

    def consume():
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=200)

        def on_message(ch, method, properties, payload):
            ch.basic_ack(method.delivery_tag)
            received[0] += 1
            if received[0] == count:
                finished[0] = time.perf_counter()
                ch.stop_consuming()

        channel.basic_consume(queue, on_message)
        ready.set()
        channel.start_consuming()
        connection.close()
        done.set()

    ready = threading.Event()
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(10)
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    if confirms:
        channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", queue, body, properties)
    published = time.perf_counter()
    done.wait(120)
    channel.queue_delete(queue)
    connection.close()
    return {"msgs_per_s": count / (finished[0] - started), "publish_per_s": count / (published - started)}


# --- webhook receiver -----------------------------------------------------------------------

class Receiver:
    def __init__(self):
        self.received = {}  # correlation id -> perf_counter at receipt
        self.lock = threading.Lock()
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                try:
                    event = json.loads(body).get("event") or {}
                except ValueError:
                    event = {}
                with receiver.lock:
                    receiver.received.setdefault(event.get("correlation_id"), now)
                    receiver.count += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


# --- the services as processes --------------------------------------------------------------

class Stack:
    def __init__(self, workdir):
        self.vhost = unique("bench_")
        self.prefix = unique("bdb_")
        self.amqp_uri = create_vhost(self.vhost)
        self.mongo = MongoClient(config.mongo_uri())
        self.workdir = workdir
        self.processes = {}
        self.http, self.ops = {}, {}
        self.partner = unique("bench-")
        add_partner(self.partner, "pw", vhost=self.vhost)
        self.partner_url = f"amqp://{self.partner}:pw@127.0.0.1:{config.amqp_port()}/{self.vhost}"
        mongo_port = int(config.mongo_uri().rsplit(":", 1)[1].split("/")[0]) if config.mongo_uri().count(":") >= 2 else 27017
        self.database_pid = listener_pid(mongo_port)
        self.broker_pid = listener_pid(config.amqp_port())

    def start(self, services, extra_env):
        for name in services:
            self.http[name], self.ops[name] = free_port(), free_port()
            env = {**os.environ, "AMQP_URI": self.amqp_uri, "MONGO_URI": config.mongo_uri(),
                   "TACOORD_DB_PREFIX": self.prefix, f"TACOORD_{name.upper()}_HTTP_PORT": str(self.http[name]),
                   f"TACOORD_{name.upper()}_OPS_PORT": str(self.ops[name]), **extra_env}
            log = open(self.workdir / f"{name}.log", "wb")
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "services.run", name], cwd=ROOT, env=env,
                                                    stdout=log, stderr=subprocess.STDOUT)
        for name in services:
            process = self.processes[name]
            wait_until_ready(name, self.ops[name], lambda: process.poll() is None, self.workdir / f"{name}.log")

    def url(self, service, path):
        return f"http://127.0.0.1:{self.http[service]}{path}"

    def profile(self, names, rate=200):
        """Record ``names`` with py-spy (collapsed stacks, ``<name>.folded`` in the work dir) until
        the returned function is called."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spies = [subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw", "-r", str(rate),
                                   "-o", str(self.workdir / f"{name}.folded"), "-p", str(self.processes[name].pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in names]
        time.sleep(1)

        def stop():
            for process in spies:
                process.send_signal(signal.SIGINT)
            for process in spies:
                process.wait(30)
        return stop

    def headers(self, role, subject):
        return {"Authorization": f"Bearer {auth.issue(auth.auth_db(self.mongo, self.prefix), role, subject)}"}

    def db(self, service):
        return self.mongo[config.db_name(service, self.prefix)]

    def rss(self):
        result = {}
        for name, process in self.processes.items():
            fields = {}
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        fields[key] = int(value.split()[0]) / 1024
            except OSError:
                pass
            result[name] = fields
        return result

    def cpu_seconds(self):
        result = {name: cpu_of(process.pid) for name, process in self.processes.items()}
        result["database server"] = cpu_of(self.database_pid)
        result["RabbitMQ"] = cpu_of(self.broker_pid)
        return result

    def close(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        remove_partner(self.partner)
        delete_vhost(self.vhost)
        for name in self.mongo.list_database_names():
            if name.startswith(self.prefix + "_"):
                self.mongo.drop_database(name)
        self.mongo.close()


def listener_pid(port):
    """The pid of the process listening on 127.0.0.1:port (the database, RabbitMQ), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def cpu_of(pid):
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError):
        return 0.0


def own_cpu():
    times = os.times()
    return times.user + times.system


def audit_count(stack):
    return stack.db("audit")["audit"].estimated_document_count()


def wait_for(predicate, timeout, what, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def run_pipeline(stack, receiver, count, timeout):
    """Publish ``count`` needs as fast as the client goes; (events/s, webhook-done s, audit-done s)."""
    base_audit = audit_count(stack)
    base_hooks = receiver.count
    started = time.perf_counter()
    with PartnerClient(stack.partner_url) as client:
        for i in range(count):
            client.publish("need.submitted", need(i))
    published = time.perf_counter()
    hooks_done = wait_for(lambda: receiver.count - base_hooks >= count, timeout, f"{count} webhooks")
    audit_done = wait_for(lambda: audit_count(stack) - base_audit >= 3 * count, timeout, f"{3 * count} audit records")
    end = max(hooks_done, audit_done)
    return {"events_per_s": count / (end - started), "publish_s": published - started,
            "webhooks_s": hooks_done - started, "audit_s": audit_done - started, "total_s": end - started}


def run_latency(stack, receiver, count, rate, offset, timeout):
    sent = {}
    interval = 1.0 / rate
    with PartnerClient(stack.partner_url) as client:
        start = time.perf_counter()
        for i in range(count):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t = time.perf_counter()
            event = client.publish("need.submitted", need(offset + i))
            sent[event["id"]] = t
    wait_for(lambda: all(key in receiver.received for key in sent), timeout, "every paced webhook")
    latencies = [(receiver.received[key] - t) * 1000 for key, t in sent.items()]
    return {"rate": rate, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99), "max": max(latencies), "n": len(latencies)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400, help="needs in the throughput run (default 400)")
    parser.add_argument("--raw-events", type=int, default=5000, help="messages per raw pika run (default 5000)")
    parser.add_argument("--latency-events", type=int, default=150,
                        help="needs in the paced run (default 150; fewer if that would take over 20 s, at least 30)")
    parser.add_argument("--profile", metavar="SERVICE", choices=SERVICES,
                        help="record SERVICE with py-spy during the throughput run (collapsed stacks in the log dir)")
    parser.add_argument("--keep-logs", action="store_true", help="print where the service logs are and keep them")
    args = parser.parse_args(argv)
    problem = stack_problem()
    if problem:
        raise SystemExit(problem)
    if args.events + args.latency_events + 10 > len(STATES) * len(ARTICLES):
        raise SystemExit(f"at most {len(STATES) * len(ARTICLES) - 10} events in all")

    workdir = Path(tempfile.mkdtemp(prefix="tacoord-bench-"))
    stack = Stack(workdir)
    receiver = Receiver()
    try:
        raw = raw_pika(stack.amqp_uri.replace("pyamqp://", "amqp://"), args.raw_events, confirms=False)
        broker_before, client_before = cpu_of(stack.broker_pid), own_cpu()
        raw_confirmed = raw_pika(stack.amqp_uri.replace("pyamqp://", "amqp://"), args.raw_events, confirms=True)
        raw_confirmed["broker_ms"] = (cpu_of(stack.broker_pid) - broker_before) * 1000 / args.raw_events
        raw_confirmed["client_ms"] = (own_cpu() - client_before) * 1000 / args.raw_events

        stack.start(SERVICES, {"TACOORD_WEBHOOK_ALLOW": "127.0.0.0/8", "TACOORD_OUTBOX_RELAY_SECONDS": "1"})
        response = requests.post(stack.url("notify", "/subscriptions"), timeout=10, headers=stack.headers("donor", DONOR),
                                 json={"channel": "webhook", "url": receiver.url, "filter": {"types": ["match.*"]}})
        response.raise_for_status()
        with PartnerClient(stack.partner_url) as client:
            client.publish("offer.submitted", {
                "provider": DONOR, "provider_name": "Benchmark donor", "level": "global", "chapters": [2, 3, 4, 5, 6],
                "forms": ["LEGAL_ADVICE"], "capacity": 10000, "period_start": "2026-01-01",
                "period_end": "2030-12-31"})
        wait_for(lambda: audit_count(stack) >= 1, 30, "the offer's audit record")
        # warm-up: a few needs through the whole path (imports, connections, caches)
        warm = run_pipeline_warmup(stack, receiver)
        stop_profile = None
        if args.profile:
            args.keep_logs = True
            stop_profile = stack.profile([args.profile])
        cpu_before, bench_before = stack.cpu_seconds(), own_cpu()
        pipeline = run_pipeline(stack, receiver, args.events, timeout=max(120, args.events))
        cpu_after, bench_cpu = stack.cpu_seconds(), own_cpu() - bench_before
        if stop_profile is not None:
            stop_profile()
        rate = max(1.0, 0.2 * pipeline["events_per_s"])
        paced = max(30, min(args.latency_events, int(rate * 20)))  # at most ~20 s of paced publishing
        latency = run_latency(stack, receiver, paced, rate, offset=args.events + warm, timeout=120)
        rss = stack.rss()
    finally:
        receiver.close()
        stack.close()
        if not args.keep_logs:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()

    print()
    print(f"tacoord pipeline benchmark — {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"services as processes (python -m services.run); load average at the end "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    rows = [
        ("raw pika publish→consume, persistent, no confirms", f"{raw['msgs_per_s']:,.0f} msgs/s"),
        ("raw pika publish→consume, persistent, confirms", f"{raw_confirmed['msgs_per_s']:,.0f} msgs/s"),
        (f"pipeline ingress→needs→matching→notify→audit (N={args.events})",
         f"{pipeline['events_per_s']:,.1f} events/s"),
        ("  publishing done / last webhook / last audit record",
         f"{pipeline['publish_s']:.2f} s / {pipeline['webhooks_s']:.2f} s / {pipeline['audit_s']:.2f} s"),
        ("ratio pipeline / raw pika with confirms", f"{pipeline['events_per_s'] / raw_confirmed['msgs_per_s']:.3f}"),
        ("ratio pipeline / raw pika without confirms", f"{pipeline['events_per_s'] / raw['msgs_per_s']:.3f}"),
        (f"latency publish→webhook at {latency['rate']:.1f}/s (20 %), n={latency['n']}",
         f"p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, p99 {latency['p99']:.1f} ms"),
    ]
    for name in SERVICES:
        info = rss.get(name, {})
        cpu = cpu_after.get(name, 0) - cpu_before.get(name, 0)
        rows.append((f"RSS {name} (peak); CPU s in the throughput run",
                     f"{info.get('VmRSS', 0):.0f} MB ({info.get('VmHWM', 0):.0f} MB); {cpu:.1f} s"))
    wall = pipeline["total_s"]
    for name in ("database server", "RabbitMQ"):
        cpu = cpu_after.get(name, 0) - cpu_before.get(name, 0)
        rows.append((f"CPU of the {name} in the throughput run", f"{cpu:.1f} s of {wall:.1f} s wall ({cpu / wall:.0%})"))
    # Where the CPU goes, per need through the whole pipeline, against one raw confirmed message:
    # on a machine whose cores are all busy, throughput is cores / CPU per event.
    per_event = {name: (cpu_after.get(name, 0) - cpu_before.get(name, 0)) * 1000 / args.events for name in cpu_after}
    services_ms = sum(v for k, v in per_event.items() if k in SERVICES)
    raw_ms = raw_confirmed["broker_ms"] + raw_confirmed["client_ms"]
    rows.append(("CPU per need: services / database / RabbitMQ / all",
                 f"{services_ms:.1f} / {per_event['database server']:.1f} / {per_event['RabbitMQ']:.1f} / "
                 f"{services_ms + per_event['database server'] + per_event['RabbitMQ']:.1f} ms"))
    rows.append(("CPU per raw confirmed message: RabbitMQ / pika client",
                 f"{raw_confirmed['broker_ms']:.2f} / {raw_confirmed['client_ms']:.2f} ms"))
    rows.append(("RabbitMQ work per need, in raw confirmed messages",
                 f"{per_event['RabbitMQ'] / max(raw_confirmed['broker_ms'], 1e-9):.1f}"))
    target_rate = 0.40 * raw_confirmed["msgs_per_s"]
    rows.append((f"RabbitMQ CPU the pipeline would need at ratio 0.40 ({target_rate:,.0f} needs/s)",
                 f"{target_rate * per_event['RabbitMQ'] / 1000:.1f} cores of {os.cpu_count()}"))
    # like for like: the raw figure counts its pika client, so this counts the bench process
    # (partner client and webhook receiver)
    bench_ms = bench_cpu * 1000 / args.events
    all_ms = services_ms + per_event["database server"] + per_event["RabbitMQ"] + bench_ms
    rows.append(("CPU per need incl. the bench process / CPU per raw confirmed message", f"{all_ms / max(raw_ms, 1e-9):.0f}"))
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    if args.keep_logs:
        print(f"\nservice logs: {workdir}")
    return 0


def run_pipeline_warmup(stack, receiver, count=10):
    base = receiver.count
    with PartnerClient(stack.partner_url) as client:
        for i in range(count):
            client.publish("need.submitted", need(len(STATES) * len(ARTICLES) - 1 - i))
    wait_for(lambda: receiver.count - base >= count, 60, "warm-up webhooks")
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 1.0:  # until the audit log stops growing
        current = audit_count(stack)
        if current != last:
            last, stable_since = current, time.monotonic()
        time.sleep(0.1)
    return count


if __name__ == "__main__":
    sys.exit(main())
