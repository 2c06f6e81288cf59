"""Notify's store: ``NotifyStore`` exposes named operations over the service's collections
(subscriptions, networks, deliveries, digest_items, facts). The delivery channels (HTTP,
SMTP, AMQP) are its other I/O, in ``channels.py``.
"""
import logging
import time
from datetime import timedelta

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from services.notify import domain
from tacoord.config import setting
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Busy, Conflict, NotFound, Rejected
from tacoord.outbox import strip
from tacoord.store import MongoStore, Repository, inserted_or_existing

log = logging.getLogger(__name__)

SUBSCRIPTIONS = "subscriptions"
NETWORKS = "networks"
DELIVERIES = "deliveries"
DIGEST_ITEMS = "digest_items"
FACTS = "facts"   # what earlier events said of a match or an offer (domain.facts_of)

# configuration keys (container config first, then the environment)
ROUTING_CACHE_SECONDS_KEY = "TACOORD_NOTIFY_ROUTING_CACHE_SECONDS"


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

    The batch handler returns it for that event; being ``tacoord.errors.Busy``, the copy is held
    by the consumer and tried again without using a try, and comes back to find the delivery finished (nothing to send) or, when that worker died, its
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
