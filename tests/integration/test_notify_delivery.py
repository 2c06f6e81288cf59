"""Notify against the real broker and database, real webhook receivers (http.server on
loopback) and a real SMTP server (aiosmtpd, in its own process, writing a Maildir)."""
import json
import mailbox
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from kombu import Connection, Queue
from prometheus_client import REGISTRY

from services.notify.domain import SIGNATURE_HEADER, verify_signature
from services.notify.service import NotifyService
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import free_port, wait_until

FAST = {"TACOORD_WEBHOOK_ALLOW": "127.0.0.0/8", "TACOORD_NOTIFY_MAX_TRIES": 3,
        "TACOORD_NOTIFY_BACKOFF_BASE": 0.05}

KENYA_MATCH = {
    "match_id": "match-1", "need_id": "KEN-9-abc", "offer_id": "offer-1", "provider": "GB-GOV-1",
    "state": "KEN", "regional_group": "AFRICAN", "article": 9, "chapter": 2, "forms": ["LEGAL_ADVICE"],
    "priority": 1, "level": "bilateral", "score": 0.82,
    "explanation": {"constraints_met": ["article", "state in scope"], "score_parts": {"forms": 1.0}}}


class Receiver:
    """A webhook endpoint on loopback answering the given statuses in turn, then ``then``;
    with a ``gate`` (a threading.Event), each answer waits until it is set (at most 10 s)."""

    def __init__(self, statuses=(), then=200, gate=None):
        self.statuses = list(statuses)
        self.then = then
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                if gate is not None:
                    gate.wait(10)
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.then
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(*statuses, then=200, gate=None):
        made.append(Receiver(statuses, then, gate))
        return made[-1]
    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def smtp(tmp_path):
    """A real SMTP server (aiosmtpd) on loopback delivering into a Maildir."""
    port = free_port()
    maildir = tmp_path / "maildir"
    process = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                                "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_until(listening, timeout=15, message="aiosmtpd listening")

    class Smtp:
        def __init__(self):
            self.port = port

        def messages(self):
            return list(mailbox.Maildir(str(maildir)).values()) if maildir.exists() else []
    yield Smtp()
    process.terminate()
    process.wait(timeout=10)


def subscribe(sandbox, role, subject, body, expect=201):
    response = requests.post(sandbox.url("notify", "/subscriptions"), json=body,
                             headers=sandbox.headers(role, subject), timeout=5)
    assert response.status_code == expect, response.text
    return response.json()


def deliveries(sandbox, subscription_id, role="operator", subject="*"):
    response = requests.get(sandbox.url("notify", f"/subscriptions/{subscription_id}/deliveries"),
                            headers=sandbox.headers(role, subject), timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


def publish(sandbox, event_type, data, event=None):
    event = event or new_event(event_type, data, "matching")
    sandbox.publish(event_type, data, exchange=topology.EVENTS, event=event)
    return event


def listen(sandbox, routing_key, name="test.capture"):
    """A queue on tacoord.events catching ``routing_key`` (read with sandbox.get_messages)."""
    with Connection(sandbox.amqp_uri) as connection:
        Queue(name, exchange=topology.EXCHANGES[topology.EVENTS], routing_key=routing_key,
              durable=True).bind(connection.default_channel).declare()
    return name


def handled(event_type="match.proposed"):
    """Events of this type notify has handled in this process (its consumer's counter: notify keeps
    no inbox, its deliveries are keyed by event id)."""
    return REGISTRY.get_sample_value("tacoord_notify_events_consumed_total",
                                     {"type": event_type, "outcome": "ok"}) or 0.0


def test_a_kenyan_match_reaches_the_donor_webhook_and_the_african_network_mailbox_once(
        sandbox, start, receivers, smtp):
    start(NotifyService, TACOORD_SMTP_PORT=smtp.port, **FAST)
    donor_hook, other_hook = receivers(), receivers()
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": donor_hook.url,
                                                     "filter": {"types": ["match.*"]}})
    other = subscribe(sandbox, "donor", "US-GOV-1", {"channel": "webhook", "url": other_hook.url})
    network = subscribe(sandbox, "network", "AFRICAN", {"channel": "email", "email": "desk@african.example"})
    subscribe(sandbox, "network", "WEOG", {"channel": "email", "email": "desk@weog.example"})
    assert donor["secret"].startswith("whsec_") and "secret" not in network

    event = publish(sandbox, "match.proposed", KENYA_MATCH)

    wait_until(lambda: len(donor_hook.received) == 1 and len(smtp.messages()) == 1, message="webhook and e-mail")
    wait_until(lambda: [d["status"] for d in deliveries(sandbox, donor["subscription_id"])] == ["delivered"],
               message="webhook delivery logged")

    hook = donor_hook.received[0]
    assert verify_signature(donor["secret"], hook["headers"][SIGNATURE_HEADER], hook["body"], now=time.time())
    assert not verify_signature(other["secret"], hook["headers"][SIGNATURE_HEADER], hook["body"], now=time.time())
    payload = json.loads(hook["body"])
    assert payload["event"]["id"] == event["id"]
    assert payload["subscription_id"] == donor["subscription_id"]
    assert payload["unsubscribe_url"] == donor["unsubscribe_url"]

    mail = smtp.messages()[0]
    assert mail["To"] == "desk@african.example"
    assert "match.proposed" in mail["Subject"] and "KEN" in mail["Subject"]
    assert [part.get_content_type() for part in mail.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert network["unsubscribe_url"] in mail.get_payload()[0].get_payload(decode=True).decode()

    wait_until(lambda: [d["status"] for d in deliveries(sandbox, network["subscription_id"])] == ["delivered"],
               message="e-mail delivery logged")
    logged = deliveries(sandbox, donor["subscription_id"], "donor", "GB-GOV-1")[0]
    assert logged["attempts"] == 1 and logged["event_id"] == event["id"] and logged["latency_ms"] >= 0
    assert other_hook.received == []
    denied = requests.get(sandbox.url("notify", f"/subscriptions/{donor['subscription_id']}/deliveries"),
                          headers=sandbox.headers("donor", "US-GOV-1"), timeout=5)
    assert denied.status_code == 403

    # The same event twice again (a partner or the broker repeating it): the deliveries'
    # unique notification ids hold, nothing is sent twice.
    before = handled()
    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)
    publish(sandbox, "match.proposed", KENYA_MATCH, event=event)
    wait_until(lambda: handled() >= before + 2, message="both copies handled")
    time.sleep(0.5)
    assert len(donor_hook.received) == 1
    assert len(smtp.messages()) == 1
    assert len(deliveries(sandbox, donor["subscription_id"])) == 1


def metric_value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_receiver_failing_twice_gets_exactly_one_successful_delivery_after_retries(sandbox, start, receivers):
    start(NotifyService, **FAST)
    retries_before = metric_value("tacoord_notify_delivery_retries_total", channel="webhook")
    delivered_before = metric_value("tacoord_notify_deliveries_total", channel="webhook", outcome="delivered")
    notifications = listen(sandbox, "notification.*")
    hook = receivers(500, 503)
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})

    publish(sandbox, "match.proposed", KENYA_MATCH)

    logged = wait_until(lambda: [d for d in deliveries(sandbox, donor["subscription_id"])
                                 if d["status"] != "pending"], message="delivery finished")
    assert logged[0]["status"] == "delivered"
    assert logged[0]["attempts"] == 3
    assert len(hook.received) == 3
    assert len({r["headers"]["X-Tacoord-Notification-Id"] for r in hook.received}) == 1
    events = wait_until(lambda: sandbox.get_messages(notifications), message="notification event")
    assert [body["type"] for body, _ in events] == ["notification.delivered"]
    assert events[0][0]["data"]["attempts"] == 3
    assert sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 0
    assert metric_value("tacoord_notify_delivery_retries_total", channel="webhook") - retries_before == 2
    assert metric_value("tacoord_notify_deliveries_total", channel="webhook", outcome="delivered") \
        - delivered_before == 1
    assert metric_value("tacoord_notify_delivery_seconds_count", channel="webhook") >= 1


def test_a_receiver_that_always_fails_ends_in_notification_failed_and_a_dead_letter(sandbox, start, receivers):
    start(NotifyService, **FAST)
    notifications = listen(sandbox, "notification.*")
    broken, gone = receivers(then=500), receivers(then=404)
    donor = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": broken.url})
    state = subscribe(sandbox, "state", "KEN", {"channel": "webhook", "url": gone.url})

    event = publish(sandbox, "match.proposed", KENYA_MATCH)

    wait_until(lambda: sandbox.queue_depth(topology.DEAD_LETTERS_QUEUE) == 2, message="two dead letters")
    assert len(broken.received) == 3  # TACOORD_NOTIFY_MAX_TRIES
    assert len(gone.received) == 1    # 404 is final: no retry
    failed = deliveries(sandbox, donor["subscription_id"])[0]
    assert failed["status"] == "failed" and failed["attempts"] == 3 and "HTTP 500" in failed["last_error"]
    assert deliveries(sandbox, state["subscription_id"])[0]["attempts"] == 1

    events = wait_until(lambda: sandbox.get_messages(notifications), message="notification events")
    assert sorted(body["type"] for body, _ in events) == ["notification.failed", "notification.failed"]
    assert {body["data"]["source_event_id"] for body, _ in events} == {event["id"]}
    assert all(body["causation_id"] == event["id"] for body, _ in events)

    parked = sandbox.get_messages(topology.DEAD_LETTERS_QUEUE)
    reasons = sorted(headers["x-tacoord-reason"] for _, headers in parked)
    assert "after 1 attempt(s) over webhook: HTTP 404" in reasons[0]
    assert "after 3 attempt(s) over webhook: HTTP 500" in reasons[1]
    assert {headers["x-tacoord-kind"] for _, headers in parked} == {"undeliverable"}
    assert all(headers["x-tacoord-dead-letter-id"] for _, headers in parked)
    assert {body["data"]["source_event_id"] for body, _ in parked} == {event["id"]}


def test_bad_subscriptions_are_refused_with_a_clear_4xx(sandbox, start, receivers):
    start(NotifyService, TACOORD_WEBHOOK_ALLOW="")
    hook = receivers()

    def refused(body, field, status=422, role="donor", subject="GB-GOV-1"):
        answer = subscribe(sandbox, role, subject, body, expect=status)
        if field:
            assert field in json.dumps(answer["fields"]), answer
        return answer

    refused({"channel": "webhook", "url": "https://93.184.216.34/x", "filter": {"articles": [99]}}, "articles")
    refused({"channel": "webhook", "url": "ftp://example.org/hook"}, "url")
    refused({"channel": "webhook", "url": "not a url"}, "url")
    answer = refused({"channel": "webhook", "url": hook.url}, "url")  # loopback, not allowed here
    assert "loopback" in answer["details"][0]
    assert "private" in refused({"channel": "webhook", "url": "http://10.0.0.1/x"}, "url")["details"][0]
    refused({"channel": "webhook", "url": "http://169.254.169.254/latest/meta-data"}, "url")
    refused({"channel": "pigeon"}, "channel")
    refused({"channel": "email"}, "email")
    refused({"channel": "email", "email": "nobody"}, "email")
    refused({"channel": "amqp", "filter": {"types": ["audit.*"]}}, "types")
    refused({"channel": "amqp", "filter": {"forms": ["BRIBES"]}}, "forms")
    refused({"channel": "amqp", "colour": "red"}, "colour")
    refused({"channel": "amqp", "subject": "US-GOV-1"}, None, status=403)
    refused({"channel": "amqp", "kind": "state"}, None, status=403)
    refused({"channel": "amqp"}, "subject", role="network", subject="NOWHERE")
    refused({"channel": "amqp"}, "kind", role="operator", subject="*")
    no_key = requests.post(sandbox.url("notify", "/subscriptions"), json={"channel": "amqp"}, timeout=5)
    assert no_key.status_code == 401
    assert sandbox.db("notify").subscriptions.count_documents({}) == 0


def test_an_amqp_subscriber_reads_its_own_queue_and_can_unsubscribe_by_link(sandbox, start):
    start(NotifyService, **FAST)
    created = requests.post(sandbox.url("notify", "/networks"), headers=sandbox.headers("operator"), timeout=5,
                            json={"network_id": "EAST_AFRICA", "name": "East African anti-corruption network",
                                  "states": ["KEN", "UGA", "TZA"],
                                  "contacts": [{"name": "Secretariat", "email": "sec@eaaca.example"}]})
    assert created.status_code == 201, created.text
    listed = requests.get(sandbox.url("notify", "/networks"), headers=sandbox.headers("donor", "GB-GOV-1"),
                          timeout=5).json()
    assert [n["network_id"] for n in listed["networks"]][:5] == ["AFRICAN", "ASIA_PACIFIC", "EASTERN_EUROPEAN",
                                                                "GRULAC", "WEOG"]
    assert "EAST_AFRICA" in [n["network_id"] for n in listed["networks"]]
    not_operator = requests.post(sandbox.url("notify", "/networks"), headers=sandbox.headers("network", "X"),
                                 json={"network_id": "X1", "name": "x", "states": ["KEN"]}, timeout=5)
    assert not_operator.status_code == 403

    sub = subscribe(sandbox, "network", "EAST_AFRICA", {"channel": "amqp"})
    assert sub["queue"] == f"notify.sub.{sub['subscription_id']}"
    assert sandbox.queue_depth(sub["queue"]) == 0  # declared at subscription time

    event = publish(sandbox, "match.proposed", KENYA_MATCH)
    wait_until(lambda: sandbox.queue_depth(sub["queue"]) == 1, message="message in the subscriber queue")
    [(body, headers)] = sandbox.get_messages(sub["queue"])
    assert body["event"]["id"] == event["id"] and body["subscription_id"] == sub["subscription_id"]

    # the unsubscribe link needs no credential and stops further notifications
    answer = requests.get(sub["unsubscribe_url"], timeout=5)
    assert answer.status_code == 200 and answer.json()["status"] == "unsubscribed"
    assert requests.get(sandbox.url("notify", "/unsubscribe/not-a-token"), timeout=5).status_code == 404
    before = handled()
    publish(sandbox, "match.proposed", {**KENYA_MATCH, "match_id": "match-2"})
    wait_until(lambda: handled() >= before + 1, message="second event handled")
    assert sandbox.queue_depth(sub["queue"]) == 0
    mine = requests.get(sandbox.url("notify", "/subscriptions"), headers=sandbox.headers("network", "EAST_AFRICA"),
                        timeout=5).json()
    assert [s["status"] for s in mine["subscriptions"]] == ["unsubscribed"]
    assert "secret" not in mine["subscriptions"][0] and "unsubscribe_token" not in mine["subscriptions"][0]


def test_a_digest_subscription_gets_one_message_per_period(sandbox, start, receivers):
    start(NotifyService, TACOORD_NOTIFY_DIGEST_SECONDS=1, **FAST)
    hook = receivers()
    sub = subscribe(sandbox, "state", "KEN", {"channel": "webhook", "url": hook.url, "digest": True})

    before = handled(), handled("gap.detected")
    first = publish(sandbox, "match.proposed", KENYA_MATCH)
    second = publish(sandbox, "gap.detected", {"gap_id": "gap-1", "kind": "no_supply", "state": "KEN",
                                               "need_id": None, "article": 15, "regional_group": "AFRICAN", "since": "2026-01-01"})
    wait_until(lambda: handled() >= before[0] + 1 and handled("gap.detected") >= before[1] + 1,
               message="both events queued")

    wait_until(lambda: hook.received, timeout=10, message="digest webhook")
    time.sleep(1.5)  # another period: nothing new was queued, so nothing more is sent
    assert len(hook.received) == 1
    payload = json.loads(hook.received[0]["body"])
    assert payload["digest"] is True
    assert sorted(e["id"] for e in payload["events"]) == sorted([first["id"], second["id"]])
    assert verify_signature(sub["secret"], hook.received[0]["headers"][SIGNATURE_HEADER], hook.received[0]["body"],
                            now=time.time())
    [logged] = deliveries(sandbox, sub["subscription_id"])
    assert logged["digest"] is True and logged["status"] == "delivered"


def test_a_subscriber_test_sends_pauses_and_resumes_its_subscription(sandbox, start, receivers):
    start(NotifyService, **FAST)
    hook, failing = receivers(), receivers(then=500)
    created = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": hook.url})
    broken = subscribe(sandbox, "donor", "GB-GOV-1", {"channel": "webhook", "url": failing.url})
    donor = sandbox.headers("donor", "GB-GOV-1")
    path = sandbox.url("notify", f"/subscriptions/{created['subscription_id']}")

    sent = requests.post(path + "/test", headers=donor, timeout=10).json()
    assert sent["ok"] is True and sent["error"] is None and len(hook.received) == 1
    assert json.loads(hook.received[0]["body"])["event"]["type"] == "notification.test"
    failed = requests.post(sandbox.url("notify", f"/subscriptions/{broken['subscription_id']}/test"),
                           headers=donor, timeout=10).json()
    assert failed["ok"] is False and "HTTP 500" in failed["error"] and len(failing.received) == 1  # one try
    [logged] = deliveries(sandbox, created["subscription_id"], "donor", "GB-GOV-1")
    assert (logged["status"], logged["test"], logged["event_type"]) == ("delivered", True, "notification.test")
    assert deliveries(sandbox, broken["subscription_id"])[0]["status"] == "failed"
    assert sandbox.get_messages(topology.DEAD_LETTERS_QUEUE) == []   # a failed test is no dead letter

    paused = requests.patch(path, json={"status": "paused"}, headers=donor, timeout=10)
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    publish(sandbox, "match.proposed", KENYA_MATCH)
    publish(sandbox, "match.proposed", {**KENYA_MATCH, "match_id": "match-2"})
    wait_until(lambda: len(failing.received) >= 2, message="the other subscription still hears events")
    time.sleep(0.3)
    assert len(hook.received) == 1                                   # paused: nothing sent
    assert requests.patch(path, json={"status": "active"}, headers=donor, timeout=10).json()["status"] == "active"
    publish(sandbox, "match.proposed", {**KENYA_MATCH, "match_id": "match-3"})
    wait_until(lambda: len(hook.received) == 2, message="resumed: notified again")

    bad = requests.patch(path, json={"status": "deleted"}, headers=donor, timeout=10)
    assert bad.status_code == 422 and "status" in bad.json()["fields"]
    other = requests.patch(path, json={"status": "paused"}, headers=sandbox.headers("donor", "US-GOV-1"), timeout=10)
    assert other.status_code == 403
    requests.delete(path, headers=donor, timeout=10)
    assert requests.patch(path, json={"status": "active"}, headers=donor, timeout=10).status_code == 404
