"""Notify's delivery channels (HTTP webhooks, SMTP e-mail, AMQP): one notification sent over a
subscription's channel with bounded retries (tenacity), what could not be delivered parked on the
dead-letter exchange, from where the operator's replay sends it back to notify
(``topology.NOTIFY_RESEND``). The store is in ``dependencies.py``.
"""
import json
import logging
import smtplib
import socket
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid

import requests
from kombu import Connection, Exchange, Queue
from nameko.amqp.publish import Publisher, UndeliverableMessage
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider
from tenacity import (RetryError, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay,
                      wait_exponential_jitter)

from services.notify import domain, messages
from tacoord import config, headers, topology, workspace
from tacoord.config import setting
from tacoord.envelope import utcnow
from tacoord.ops import metric
from tacoord.publisher import ConfirmedPublisher, encode
from tacoord.store import service_name

log = logging.getLogger(__name__)

MAX_TRIES_KEY = "TACOORD_NOTIFY_MAX_TRIES"
BACKOFF_BASE_KEY = "TACOORD_NOTIFY_BACKOFF_BASE"
MAX_SECONDS_KEY = "TACOORD_NOTIFY_MAX_SECONDS"
TIMEOUT_KEY = "TACOORD_NOTIFY_TIMEOUT"
WEBHOOK_ALLOW_KEY = "TACOORD_WEBHOOK_ALLOW"
SMTP_HOST_KEY = "TACOORD_SMTP_HOST"
SMTP_PORT_KEY = "TACOORD_SMTP_PORT"
SMTP_FROM_KEY = "TACOORD_SMTP_FROM"
SMTP_USER_KEY = "TACOORD_SMTP_USER"
SMTP_PASSWORD_KEY = "TACOORD_SMTP_PASSWORD"
SMTP_STARTTLS_KEY = "TACOORD_SMTP_STARTTLS"
PUBLIC_URL_KEY = "TACOORD_NOTIFY_PUBLIC_URL"
DIGEST_SECONDS_KEY = "TACOORD_NOTIFY_DIGEST_SECONDS"
LEASE_SECONDS_KEY = "TACOORD_NOTIFY_LEASE_SECONDS"


# -- metrics (created once per process) ----------------------------------------

DELIVERIES_TOTAL = metric("counter", "notify", "deliveries_total",
                          "Notifications by channel and outcome (delivered, failed)", ("channel", "outcome"))
DELIVERY_SECONDS = metric("histogram", "notify", "delivery_seconds",
                          "Time to deliver one notification, retries included", ("channel",))
# tacoord_notify_retries_total{type} is already the consumer's counter (tacoord.ops.metrics_for)
DELIVERY_RETRIES = metric("counter", "notify", "delivery_retries_total",
                          "Delivery attempts that failed transiently and were retried", ("channel",))
for _channel in domain.CHANNELS:  # every channel and outcome at 0: the first failure is an increase
    for _outcome in ("delivered", "failed"):
        DELIVERIES_TOTAL.labels(channel=_channel, outcome=_outcome)


# -- the channels ---------------------------------------------------------------

class Retryable(Exception):
    """Transient: 5xx, 429, timeout, connection error, SMTP 4xx."""


class Permanent(Exception):
    """Final: 4xx, refused target, SMTP 5xx."""


@dataclass
class Outcome:
    ok: bool
    attempts: int
    error: str = None
    latency_ms: int = 0
    extra: dict = field(default_factory=dict)


class Channels(DependencyProvider):
    """Sends notifications; injects itself. Each attempt is bounded by a 5 s timeout."""

    def setup(self):
        cfg = self.container.config
        self.service = service_name(self.container)
        self.amqp_uri = cfg[config.AMQP_URI_KEY]
        self.max_tries = int(setting(cfg, MAX_TRIES_KEY, 5))
        self.backoff_base = float(setting(cfg, BACKOFF_BASE_KEY, 0.5))
        self.max_seconds = float(setting(cfg, MAX_SECONDS_KEY, 60))
        self.timeout = float(setting(cfg, TIMEOUT_KEY, 5))
        self.allow = domain.parse_allow(setting(cfg, WEBHOOK_ALLOW_KEY, ""))
        self.smtp_host = setting(cfg, SMTP_HOST_KEY, "127.0.0.1")
        self.smtp_port = int(setting(cfg, SMTP_PORT_KEY, 25))
        self.smtp_from = setting(cfg, SMTP_FROM_KEY, "tacoord@localhost")
        self.smtp_user = setting(cfg, SMTP_USER_KEY, None)
        self.smtp_password = setting(cfg, SMTP_PASSWORD_KEY, None)
        self.smtp_starttls = str(setting(cfg, SMTP_STARTTLS_KEY, "")).lower() in ("1", "true", "yes")
        self.digest_period = float(setting(cfg, DIGEST_SECONDS_KEY, 86400))
        # The lease of a worker sending a notification: still pending after every try and
        # backoff could have run, its worker died (and another may send it again). Shorter
        # than one delivery can take, a slow delivery would be sent twice.
        self.lease_seconds = float(setting(cfg, LEASE_SECONDS_KEY,
                                           max(1.0, 2 * self.max_seconds + self.max_tries * self.timeout)))
        address = cfg.get("WEB_SERVER_ADDRESS", "127.0.0.1:8004")
        self.public_url = str(setting(cfg, PUBLIC_URL_KEY, f"http://{address}")).rstrip("/")
        self.workspace_url = setting(cfg, workspace.WORKSPACE_URL_KEY, workspace.DEFAULT_WORKSPACE_URL)
        self.exchange = Exchange(domain.NOTIFY_EXCHANGE, type="direct", durable=True)
        self.amqp = Publisher(self.amqp_uri, use_confirms=True, delivery_mode=PERSISTENT, serializer="json",
                              retry=False)
        self.dead = ConfirmedPublisher(self.amqp_uri, self.service)
        self.http = requests.Session()
        self.http.trust_env = False  # no proxies from the environment: the SSRF guard checks the real target

    def get_dependency(self, worker_ctx):
        return self

    # -- at subscription time ---------------------------------------------------

    def check_webhook(self, url):
        """Raise domain.UnsafeTarget unless ``url`` is an http(s) URL whose host resolves to allowed IPs."""
        host, port = domain.webhook_host(url)
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise domain.UnsafeTarget(f"host {host!r} does not resolve ({exc})")
        domain.check_addresses(host, sorted({info[4][0] for info in infos}), self.allow)

    def subscriber_queue(self, subscription_id):
        return Queue(domain.subscriber_queue(subscription_id), exchange=self.exchange,
                     routing_key=subscription_id, durable=True)

    def declare_queue(self, subscription_id):
        with Connection(self.amqp_uri) as connection:
            self.subscriber_queue(subscription_id).bind(connection.default_channel).declare()

    def unsubscribe_url(self, subscription):
        return f"{self.public_url}/unsubscribe/{subscription['unsubscribe_token']}"

    # -- delivery ---------------------------------------------------------------

    def send(self, subscription, notification_id, events, digest=False, known=None):
        """Deliver with bounded retries; returns an Outcome (never raises for delivery errors).
        ``known``: what notify knows of the matches and offers the events name (an e-mail says it)."""
        channel = subscription["channel"]
        sender = {"webhook": self._webhook, "email": self._email, "amqp": self._amqp}[channel]
        started = time.monotonic()
        attempts = 0

        def count_retry(retry_state):
            DELIVERY_RETRIES.labels(channel=channel).inc()

        retrying = Retrying(
            stop=stop_after_attempt(self.max_tries) | stop_after_delay(self.max_seconds),
            wait=wait_exponential_jitter(initial=self.backoff_base, max=30, jitter=self.backoff_base),
            retry=retry_if_exception_type(Retryable), before_sleep=count_retry, reraise=True)
        error = None
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    sender(subscription, notification_id, events, digest, known or {})
        except (Retryable, Permanent) as exc:
            error = str(exc)[:1000] or type(exc).__name__
        except RetryError as exc:  # pragma: no cover - reraise=True makes this unlikely
            error = str(exc)
        except Exception as exc:  # a bug in a sender must not lose the outcome
            log.exception("unexpected error delivering %s", notification_id)
            error = f"{type(exc).__name__}: {exc}"[:1000]
        elapsed = time.monotonic() - started
        outcome = Outcome(ok=error is None, attempts=attempts, error=error, latency_ms=int(elapsed * 1000))
        DELIVERIES_TOTAL.labels(channel=channel, outcome="delivered" if outcome.ok else "failed").inc()
        DELIVERY_SECONDS.labels(channel=channel).observe(elapsed)
        return outcome

    def try_once(self, subscription, notification_id, events):
        """One attempt, no retry (a person waits for a test-send's answer): an Outcome."""
        sender = {"webhook": self._webhook, "email": self._email, "amqp": self._amqp}[subscription["channel"]]
        started, error = time.monotonic(), None
        try:
            sender(subscription, notification_id, events, False, {})
        except (Retryable, Permanent) as exc:
            error = str(exc)[:1000] or type(exc).__name__
        return Outcome(ok=error is None, attempts=1, error=error,
                       latency_ms=int((time.monotonic() - started) * 1000))

    def _webhook(self, subscription, notification_id, events, digest, known):
        url = subscription["url"]
        try:
            self.check_webhook(url)  # again at delivery time: DNS may have changed since
        except domain.UnsafeTarget as exc:
            raise Permanent(f"webhook target refused: {exc}")
        body = encode(messages.webhook_body(notification_id, subscription, events,
                                            self.unsubscribe_url(subscription), digest)).encode()
        http_headers = {
            "Content-Type": "application/json",
            "User-Agent": "tacoord-notify/1",
            domain.SIGNATURE_HEADER: domain.signature_header(subscription["secret"], body, time.time()),
            "X-Tacoord-Notification-Id": notification_id,
            "X-Tacoord-Event-Type": "digest" if digest else events[0]["type"],
        }
        try:
            response = self.http.post(url, data=body, headers=http_headers, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout as exc:
            raise Retryable(f"timed out after {self.timeout:g}s: {exc}")
        except requests.ConnectionError as exc:
            raise Retryable(f"connection error: {exc}")
        except requests.RequestException as exc:
            raise Permanent(f"request failed: {exc}")
        outcome = domain.http_outcome(response.status_code)
        if outcome == "retry":
            raise Retryable(f"HTTP {response.status_code} from {url}")
        if outcome == "permanent":
            raise Permanent(f"HTTP {response.status_code} from {url}")

    def _email(self, subscription, notification_id, events, digest, known):
        subject, text, html = messages.render_email(subscription, [domain.completed(e, known) for e in events],
                                                    self.unsubscribe_url(subscription), self.workspace_url, digest)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.smtp_from
        message["To"] = subscription["email"]
        message["Message-ID"] = make_msgid(idstring=notification_id.replace(":", "."), domain="tacoord")
        message["List-Unsubscribe"] = f"<{self.unsubscribe_url(subscription)}>"
        message["X-Tacoord-Notification-Id"] = notification_id
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        try:
            with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout) as smtp:
                if self.smtp_starttls:
                    smtp.starttls()
                if self.smtp_user:
                    smtp.login(self.smtp_user, self.smtp_password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = f"recipient refused: {exc.recipients}"
            raise (Retryable(error) if all(domain.smtp_outcome(c) == "retry" for c in codes) else Permanent(error))
        except smtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            raise (Retryable(error) if domain.smtp_outcome(exc.smtp_code) == "retry" else Permanent(error))
        except (smtplib.SMTPException, OSError) as exc:  # disconnected, refused, timed out
            raise Retryable(f"SMTP {self.smtp_host}:{self.smtp_port}: {type(exc).__name__}: {exc}")

    def _amqp(self, subscription, notification_id, events, digest, known):
        body = messages.webhook_body(notification_id, subscription, events, self.unsubscribe_url(subscription), digest)
        queue = self.subscriber_queue(subscription["subscription_id"])
        try:
            self.amqp.publish(body, exchange=self.exchange, routing_key=subscription["subscription_id"],
                              declare=[queue], mandatory=True, message_id=notification_id,
                              headers={headers.NOTIFICATION_ID: notification_id},
                              type="digest" if digest else events[0]["type"])
        except UndeliverableMessage:
            raise Retryable(f"no queue bound for subscription {subscription['subscription_id']}")
        except Exception as exc:  # broker unreachable, channel error
            raise Retryable(f"AMQP publish failed: {type(exc).__name__}: {exc}")

    # -- what could not be delivered --------------------------------------------

    def park(self, delivery, subscription, events, error):
        """Publish a dead letter with the reason headers (as tacoord.consumer does), so it is audited.
        Its exchange and routing key are notify's resend queue's (``topology.NOTIFY_RESEND``), so the
        operator's replay (``tacoord deadletters replay``) sends the notification again."""
        body = {"id": delivery["_id"], "type": "notification.undeliverable",
                "occurred_at": utcnow().isoformat(), "source": "notify",
                "data": {"notification_id": delivery["_id"], "subscription_id": subscription["subscription_id"],
                         "channel": subscription["channel"], "attempts": delivery.get("attempts"),
                         "source_event_id": delivery["event_id"], "events": events}}
        parking = headers.parking(
            f"notification undeliverable after {delivery.get('attempts')} attempt(s) over "
            f"{subscription['channel']}: {error}", str(uuid.uuid4()), queue="notify.deliveries",
            routing_key=topology.NOTIFY_RESEND.name, exchange=topology.NOTIFY_RESEND.exchange,
            failed_at=utcnow().isoformat(), kind="undeliverable",
            **{headers.SUBSCRIPTION_ID: subscription["subscription_id"], headers.CHANNEL: subscription["channel"]})
        self.dead.park(json.loads(encode(body)), parking, delivery["event_type"], message_id=delivery["_id"])
