"""Notify's I/O: its MongoDB store and its delivery channels (HTTP, SMTP, AMQP).

``NotifyStore`` exposes named operations over the service's collections
(subscriptions, networks, deliveries, digest_items, facts). ``Channels`` sends one
notification over a subscription's channel with bounded retries (tenacity)
and parks what could not be delivered on the dead-letter exchange, from where
the operator's replay sends it back to notify (``topology.NOTIFY_RESEND``).
"""
import json
import logging
import smtplib
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import requests
from kombu import Connection, Exchange, Queue
from nameko.amqp.publish import Publisher, UndeliverableMessage
from nameko.constants import PERSISTENT
from nameko.extensions import DependencyProvider
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError
from tenacity import (RetryError, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay,
                      wait_exponential_jitter)

from services.notify import domain, messages
from tacoord import config, headers, topology, workspace
from tacoord.config import setting
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Busy, Conflict, NotFound, Rejected
from tacoord.ops import metric
from tacoord.outbox import strip
from tacoord.publisher import ConfirmedPublisher, encode
from tacoord.store import MongoStore, Repository, inserted_or_existing, service_name

log = logging.getLogger(__name__)

SUBSCRIPTIONS = "subscriptions"
NETWORKS = "networks"
DELIVERIES = "deliveries"
DIGEST_ITEMS = "digest_items"
FACTS = "facts"   # what earlier events said of a match or an offer (domain.facts_of)

# configuration keys (container config first, then the environment)
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
ROUTING_CACHE_SECONDS_KEY = "TACOORD_NOTIFY_ROUTING_CACHE_SECONDS"
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


# -- the store ------------------------------------------------------------------

def public_subscription(doc):
    if doc is None:
        return None
    hidden = ("_id", "secret", "unsubscribe_token", "_outbox", "_outbox_pending")
    return {k: v for k, v in doc.items() if k not in hidden}


def public_delivery(doc):
    keys = ("notification_id", "event_id", "event_type", "channel", "status", "attempts", "last_error",
            "latency_ms", "digest", "resends", "created_at", "finished_at")
    return {**{k: doc.get(k) for k in keys}, "test": bool(doc.get("test"))}


class RoutingCache:
    """Active subscriptions and networks, read once per ``seconds`` instead of once per event.

    This process forgets them at once when it changes a subscription or a network; another
    notify instance sees such a change within ``seconds``."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.table = None
        self.loaded_at = 0.0

    def get(self, load):
        if self.table is None or time.monotonic() - self.loaded_at >= self.seconds:
            self.table, self.loaded_at = load(), time.monotonic()
        return self.table

    def forget(self):
        self.table = None


def pending_delivery(notification_id, subscription, event_id, event_type, digest=False):
    now = utcnow().isoformat()
    return {"_id": notification_id, "notification_id": notification_id,
            "subscription_id": subscription["subscription_id"], "event_id": event_id,
            "event_type": event_type, "channel": subscription["channel"], "digest": digest,
            "status": "pending", "attempts": 0, "last_error": None, "latency_ms": None,
            "created_at": now, "claimed_at": now, "finished_at": None}


class DeliveryInFlight(Busy):
    """A copy of an event came while a worker (of this instance or another) is still sending
    its notification: claimed less than a lease ago, not finished. It is not sent again now.

    The batch handler returns it for that event; being ``tacoord.errors.Busy``, the copy goes round the retry queue without using a try and
    comes back to find the delivery finished (nothing to send) or, when that worker died, its
    lease over (taken over and sent again under the same notification id: at least once)."""


IN_FLIGHT = object()  # _take_over: another worker holds the delivery's lease


class NotifyRepository(Repository):

    def __init__(self, database, relay, routing):
        super().__init__(database, relay)
        self.routing = routing

    def routing_table(self):
        """``(active subscriptions, {network id: network})`` for routing an event."""
        return self.routing.get(lambda: (self.active_subscriptions(), self.networks()))

    # facts: what earlier events said of the matches and offers later ones name only by id
    def learn(self, events):
        """Remember what these events say of matches and offers (one write for all, when any)."""
        now = utcnow().isoformat()
        learned = [UpdateOne({"_id": key}, {"$set": {**facts, "learned_at": now}}, upsert=True)
                   for event in events for key, facts in domain.facts_of(event)]
        if learned:
            self.db[FACTS].bulk_write(learned, ordered=False)

    def known(self, events):
        """``{key: facts}`` notify knows of the matches and offers these events name."""
        keys = domain.fact_keys(events)
        if not keys:
            return {}
        return {d["_id"]: {k: v for k, v in d.items() if k not in ("_id", "learned_at")}
                for d in self.db[FACTS].find({"_id": {"$in": keys}})}

    # subscriptions
    def add_subscription(self, subscription):
        self.db[SUBSCRIPTIONS].insert_one({"_id": subscription["subscription_id"], **subscription})
        self.routing.forget()
        return subscription

    def subscription(self, subscription_id):
        doc = self.db[SUBSCRIPTIONS].find_one({"_id": subscription_id, "status": {"$ne": "deleted"}})
        if doc is None:
            raise NotFound(f"no subscription {subscription_id!r}")
        return doc

    def subscriptions(self, query=None):
        query = {"status": {"$ne": "deleted"}, **(query or {})}
        return list(self.db[SUBSCRIPTIONS].find(query, sort=[("created_at", 1)]))

    def active_subscriptions(self):
        return list(self.db[SUBSCRIPTIONS].find({"status": "active"}))

    def set_status(self, subscription_id, status):
        now = utcnow().isoformat()
        self.db[SUBSCRIPTIONS].update_one({"_id": subscription_id}, {"$set": {"status": status, "updated_at": now}})
        self.routing.forget()

    def pause_or_resume(self, subscription_id, status):
        """Set ``status`` (paused, active) unless it was unsubscribed or deleted meanwhile: True if set."""
        changed = self.db[SUBSCRIPTIONS].update_one(
            {"_id": subscription_id, "status": {"$in": list(domain.PAUSABLE)}},
            {"$set": {"status": status, "updated_at": utcnow().isoformat()}})
        self.routing.forget()
        return changed.matched_count == 1

    def record_test(self, subscription, notification_id, outcome, now):
        """A test-send among the subscription's deliveries (no event: nothing happened)."""
        self.db[DELIVERIES].insert_one({
            **pending_delivery(notification_id, subscription, notification_id, domain.TEST_EVENT),
            "status": "delivered" if outcome.ok else "failed", "attempts": outcome.attempts,
            "last_error": outcome.error, "latency_ms": outcome.latency_ms, "finished_at": now, "test": True})

    def unsubscribe(self, token):
        doc = self.db[SUBSCRIPTIONS].find_one({"unsubscribe_token": token})
        if doc is None or doc["status"] == "deleted":
            raise NotFound("unknown or expired unsubscribe link")
        if doc["status"] == "active":
            self.set_status(doc["_id"], "unsubscribed")
        return {**doc, "status": "unsubscribed"}

    def mark_digest_sent(self, subscription_id, epoch):
        self.db[SUBSCRIPTIONS].update_one({"_id": subscription_id}, {"$set": {"last_digest_at": epoch}})

    # networks
    def networks(self):
        found = domain.builtin_networks()
        for doc in self.db[NETWORKS].find({}, sort=[("_id", 1)]):
            found[doc["_id"]] = {k: v for k, v in doc.items() if k != "_id"}
        return found

    def network(self, network_id):
        network = self.networks().get(network_id)
        if network is None:
            raise NotFound(f"no network {network_id!r}; see GET /networks")
        return network

    def add_network(self, network):
        if network["network_id"] in domain.builtin_networks():
            raise Conflict(f"{network['network_id']} is a built-in UN regional group")
        try:
            self.db[NETWORKS].insert_one({"_id": network["network_id"], **network})
        except DuplicateKeyError:
            raise Conflict(f"network {network['network_id']} exists already")
        self.routing.forget()
        return network

    # deliveries: the unique _id is the notification's idempotency key; ``claimed_at`` starts
    # the lease of the worker sending it
    def claim_delivery(self, notification_id, subscription, event_id, event_type, digest=False):
        """Insert a pending delivery of a fresh notification id (a digest) BEFORE sending it."""
        doc = pending_delivery(notification_id, subscription, event_id, event_type, digest)
        self.db[DELIVERIES].insert_one(doc)
        return doc

    def claim_deliveries(self, notifications, lease_seconds):
        """``[(subscription, event)]`` → ``([(subscription, delivery, event)] to send,
        {event id: DeliveryInFlight} to come back later)``, with one insert for all.

        To send: the new deliveries, and those still pending past their lease (the worker
        sending them died: sent again under the same notification id). Left out: finished ones
        (a redelivered event), copies within the list (sent once), and those another worker
        claimed less than ``lease_seconds`` ago (in flight): their events come back later."""
        claims = {}
        for subscription, event in notifications:
            notification_id = f"{subscription['subscription_id']}:{event['id']}"
            claims.setdefault(notification_id, (subscription, pending_delivery(
                notification_id, subscription, event["id"], event["type"]), event))
        if not claims:
            return [], {}
        taken = inserted_or_existing(self.db[DELIVERIES], [delivery for _, delivery, _ in claims.values()])
        in_flight = {}
        if taken:
            stored = {d["_id"]: d for d in self.db[DELIVERIES].find({"_id": {"$in": sorted(taken)}})}
            for notification_id in taken:
                subscription, _, event = claims[notification_id]
                resumed = self._take_over(stored.get(notification_id), lease_seconds)
                if resumed is IN_FLIGHT:
                    in_flight[event["id"]] = DeliveryInFlight(
                        f"notification {notification_id} is being sent by another worker")
                    resumed = None
                claims[notification_id] = (subscription, resumed, event) if resumed else None
        return [claim for claim in claims.values() if claim is not None], in_flight

    def _take_over(self, existing, lease_seconds):
        """An existing delivery: None when there is nothing to send (finished, or gone),
        IN_FLIGHT while its worker's lease runs (or another worker took it over first), else
        the delivery, now claimed by this worker, to send again under the same id."""
        if existing is None or existing.get("status") != "pending":
            return None
        now = utcnow()
        if not domain.lease_over(existing, now, lease_seconds):
            return IN_FLIGHT
        taken = self.db[DELIVERIES].update_one(
            {"_id": existing["_id"], "status": "pending", "claimed_at": existing.get("claimed_at")},
            {"$set": {"claimed_at": now.isoformat()}})
        if not taken.modified_count:
            return IN_FLIGHT
        log.warning("notification %s was still pending past its sender's lease (%gs: that worker died); "
                    "sending it again under the same id", existing["_id"], lease_seconds)
        return {**strip(existing), "claimed_at": now.isoformat()}

    def claim_resend(self, notification_id):
        """Take a failed delivery back to send it again (the operator replayed its dead letter):
        the delivery, now pending and claimed by this worker, with one more ``resends``; None when
        there is nothing to send (delivered meanwhile, or by an earlier copy of the replay).
        Raises ``DeliveryInFlight`` while another worker sends it, ``Rejected`` when unknown."""
        now = utcnow().isoformat()
        taken = self.db[DELIVERIES].find_one_and_update(
            {"_id": notification_id, "status": "failed"},
            {"$set": {"status": "pending", "claimed_at": now, "finished_at": None}, "$inc": {"resends": 1}},
            return_document=ReturnDocument.AFTER)
        if taken is not None:
            return strip(taken)
        existing = self.db[DELIVERIES].find_one({"_id": notification_id}, {"status": 1})
        if existing is None:
            raise Rejected(f"no delivery {notification_id!r} to send again", "data.notification_id")
        if existing["status"] == "pending":
            raise DeliveryInFlight(f"notification {notification_id} is being sent by another worker")
        return None

    def finish_delivery(self, delivery, subscription, outcome, cause=None):
        """One notification's outcome; see :meth:`finish_deliveries`."""
        return self.finish_deliveries([(subscription, delivery, outcome, cause)])[0]

    def finish_deliveries(self, finished):
        """Publish notification.delivered / .failed for ``[(subscription, delivery, outcome,
        cause)]`` (one confirmed batch), then record the outcomes.

        Returns ``[(delivery, recorded)]`` in order; ``recorded`` (asked only of failures,
        which are then parked) is False when another worker recorded that outcome first
        (two copies of one event handled at once).

        No outbox here: an outcome event's id is derived from the notification id and the
        status, and the outcome is stored only after the broker confirmed the event. A crash
        in between leaves the delivery ``pending``, so the event that caused it, redelivered,
        sends the notification again under the same id and publishes this same event id
        again, which consumers skip. One database write instead of three (stage, publish, pull).
        """
        done, events = [], []
        for subscription, delivery, outcome, cause in finished:
            status = "delivered" if outcome.ok else "failed"
            changes = {"status": status, "attempts": outcome.attempts, "last_error": outcome.error,
                       "latency_ms": outcome.latency_ms, "finished_at": utcnow().isoformat()}
            data = domain.notification_event_data({**delivery, **changes}, subscription, outcome.error)
            events.append(new_event(f"notification.{status}", data, "notify",
                                    f"subscription:{subscription['subscription_id']}", cause=cause,
                                    event_id=domain.outcome_event_id(delivery["_id"], status,
                                                                     delivery.get("resends") or 0)))
            done.append(({**delivery, **changes}, changes, outcome.ok))
        self.relay.publisher.publish_events(events)
        delivered = [UpdateOne({"_id": d["_id"], "status": "pending"}, {"$set": changes})
                     for d, changes, ok in done if ok]
        if delivered:
            self.db[DELIVERIES].bulk_write(delivered, ordered=False)
        results = []
        for delivery, changes, ok in done:
            if ok:
                results.append((delivery, True))
            else:
                stored = self.db[DELIVERIES].update_one({"_id": delivery["_id"], "status": "pending"},
                                                        {"$set": changes})
                results.append((delivery, stored.matched_count == 1))
        return results

    def deliveries(self, subscription_id, limit=500):
        return [public_delivery(d) for d in self.db[DELIVERIES].find(
            {"subscription_id": subscription_id}, sort=[("created_at", -1)], limit=limit)]

    # daily digests
    def add_digest_items(self, items):
        """Queue ``[(subscription, event)]`` for their digests (one insert; a redelivered event
        is queued already)."""
        now = utcnow().isoformat()
        inserted_or_existing(self.db[DIGEST_ITEMS], [
            {"_id": f"{s['subscription_id']}:{e['id']}", "subscription_id": s["subscription_id"], "event": e,
             "digest_id": None, "queued_at": now} for s, e in items])

    def claim_digest(self, subscription_id, digest_id):
        """Give every unclaimed item of this subscription to ``digest_id``; return their events."""
        self.db[DIGEST_ITEMS].update_many({"subscription_id": subscription_id, "digest_id": None},
                                          {"$set": {"digest_id": digest_id}})
        items = self.db[DIGEST_ITEMS].find({"subscription_id": subscription_id, "digest_id": digest_id},
                                           sort=[("queued_at", 1)])
        return [item["event"] for item in items]

    def digest_events(self, notification_id):
        """The events a digest delivery was given (by :meth:`claim_digest`), oldest first."""
        items = self.db[DIGEST_ITEMS].find({"digest_id": notification_id}, sort=[("queued_at", 1)])
        return [item["event"] for item in items]

    def stale_digest_deliveries(self, lease_seconds):
        """Digest deliveries still ``pending`` past their lease (their worker died), each now
        claimed by this worker: another instance's timer takes none of them over at once."""
        cutoff = (utcnow() - timedelta(seconds=lease_seconds)).isoformat()
        candidates = self.db[DELIVERIES].find({"digest": True, "status": "pending", "created_at": {"$lt": cutoff}},
                                              sort=[("created_at", 1)])
        taken = [self._take_over(d, lease_seconds) for d in candidates]
        return [d for d in taken if d is not None and d is not IN_FLIGHT]

    def drop_delivery(self, notification_id):
        """Forget a pending delivery that has nothing to send."""
        self.db[DELIVERIES].delete_one({"_id": notification_id, "status": "pending"})

    def pending_digest_subscriptions(self):
        return sorted(set(d["subscription_id"] for d in self.db[DIGEST_ITEMS].find({"digest_id": None},
                                                                                 {"subscription_id": 1})))


class NotifyStore(MongoStore):
    repository = NotifyRepository
    outbox_collections = (DELIVERIES,)  # outcomes staged by earlier versions are still relayed

    def setup(self):
        super().setup()
        self.routing = RoutingCache(float(setting(self.container.config, ROUTING_CACHE_SECONDS_KEY, 2)))

    def get_dependency(self, worker_ctx):
        return self.repository(self.database, self.relay, self.routing)


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
