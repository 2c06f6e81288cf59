"""Notify service: tells donors, regional networks and States what concerns them,
by webhook, e-mail or their own AMQP queue — at least once per subscription and event, always
under the same notification id (receivers dedupe on it)."""
import logging
import time
import uuid

import eventlet
from marshmallow import ValidationError
from nameko.timer import Timer

from services.notify import domain
from services.notify.channels import DIGEST_SECONDS_KEY, Channels, Outcome
from services.notify.dependencies import NotifyStore, public_subscription
from services.notify.schemas import (NetworkSchema, SubscriptionSchema, SubscriptionStatusSchema, check_subject,
                                     load_parked)
from tacoord import topology
from tacoord.config import setting
from tacoord.consumer import consume_events
from tacoord.envelope import utcnow
from tacoord.errors import Forbidden, NotFound
from tacoord.ops import OpsServer
from tacoord.web import PUBLIC, api, query_args, read_json, require_scope

log = logging.getLogger(__name__)

SUBSCRIBERS = ("donor", "network", "state", "operator")
PARALLEL_DELIVERIES = 8
BATCH_SIZE = 50
DAY = 86400


class DigestTimer(Timer):
    """Ticks every min(period, 60 s); the period comes from TACOORD_NOTIFY_DIGEST_SECONDS."""

    def __init__(self, **kwargs):
        super().__init__(interval=60, **kwargs)

    def setup(self):
        self.period = float(setting(self.container.config, DIGEST_SECONDS_KEY, DAY))
        self.interval = min(self.period, 60.0)


digest_timer = DigestTimer.decorator


class NotifyService:
    name = "notify"

    store = NotifyStore()
    channels = Channels()
    ops = OpsServer()

    # -- events -----------------------------------------------------------------

    # No inbox: every effect is keyed by the event id (a delivery's unique notification id
    # "<subscription>:<event>", a digest item's "<subscription>:<event>"), so a second copy of
    # an event sends nothing new; see NotifyRepository.claim_deliveries / finish_deliveries.
    # In batches of what the broker has handed over (no waiting): a few database writes and
    # one confirmed publish per batch instead of per event.
    @consume_events(topology.NOTIFY_EVENTS, keyed_by_event_id=True, batch_size=BATCH_SIZE, batch_wait=0)
    def on_events(self, events):
        self.store.learn(events)
        known = self.store.known(events)
        subscriptions, networks = self.store.routing_table()
        immediate, digest = domain.route(events, subscriptions, networks, known)
        self.store.add_digest_items(digest)
        claimed, in_flight = self.store.claim_deliveries(immediate, self.channels.lease_seconds)
        pool = eventlet.GreenPool(PARALLEL_DELIVERIES)
        outcomes = list(pool.imap(lambda c: self.channels.send(c[0], c[1]["_id"], [c[2]], known=known), claimed))
        finished = self.store.finish_deliveries([(subscription, delivery, outcome, event) for
                                                 (subscription, delivery, event), outcome in zip(claimed, outcomes)])
        for (subscription, _, event), outcome, (done, recorded) in zip(claimed, outcomes, finished):
            if not outcome.ok and recorded:
                self._park(done, subscription, [event], outcome.error)
        # Copies of events whose notification another worker is still sending: round the retry
        # queue (no try used); back, they find it finished, or its lease over (worker died).
        return in_flight

    # An undeliverable notification the operator replayed from the dead letters (its parked body,
    # ``notification.undeliverable``): sent again, under the same notification id, to the
    # subscription as it is now (its URL or address may have been corrected). The delivery's
    # status is the key: only a failed one is taken back, by one worker, so copies of the replay
    # send nothing more (no inbox).
    @consume_events(topology.NOTIFY_RESEND, raw=True, keyed_by_event_id=True)
    def on_resend(self, body, headers):
        parked = load_parked(body)
        delivery = self.store.claim_resend(parked["notification_id"])
        if delivery is None:
            log.info("notification %s was delivered already; the replay sends nothing", parked["notification_id"])
            return
        self._send_again(delivery, parked["events"], cause=None if delivery.get("digest") else parked["events"][0])

    def _send_again(self, delivery, events, cause=None):
        """A delivery taken back (a digest its worker left, a replayed dead letter): sent to its
        subscription as it is now, or recorded failed when that subscription ended meanwhile."""
        try:
            subscription = self.store.subscription(delivery["subscription_id"])
        except NotFound:
            subscription = None
        if subscription is None or subscription["status"] != "active":
            gone = Outcome(ok=False, attempts=0, error="the subscription ended before the notification was sent")
            self.store.finish_delivery(delivery, subscription or {"subscription_id": delivery["subscription_id"],
                                                                  "channel": delivery["channel"]}, gone)
            return
        self._deliver(subscription, delivery, events, cause=cause, digest=bool(delivery.get("digest")))

    def _deliver(self, subscription, delivery, events, cause=None, digest=False):
        outcome = self.channels.send(subscription, delivery["_id"], events, digest, known=self.store.known(events))
        done, recorded = self.store.finish_delivery(delivery, subscription, outcome, cause=cause)
        if not outcome.ok and recorded:
            self._park(done, subscription, events, outcome.error)

    def _park(self, delivery, subscription, events, error):
        try:
            self.channels.park(delivery, subscription, events, error)
        except Exception:
            log.exception("could not park undeliverable notification %s", delivery["_id"])

    @digest_timer()
    def send_digests(self):
        self._resend_stale_digests()
        period = self.channels.digest_period
        now = time.time()
        for subscription_id in self.store.pending_digest_subscriptions():
            try:
                subscription = self.store.subscription(subscription_id)
            except NotFound:
                continue
            if subscription["status"] != "active":
                continue
            if not domain.digest_due(subscription.get("last_digest_at"), now, period):
                continue
            digest_id = uuid.uuid4().hex[:16]
            notification_id = f"{subscription_id}:digest:{digest_id}"
            delivery = self.store.claim_delivery(notification_id, subscription, f"digest:{digest_id}", "digest",
                                                 digest=True)
            events = self.store.claim_digest(subscription_id, notification_id)
            self.store.mark_digest_sent(subscription_id, now)
            if events:
                self._deliver(subscription, delivery, events, digest=True)
            else:  # another instance took the items meanwhile
                self.store.drop_delivery(notification_id)

    def _resend_stale_digests(self):
        """A digest whose worker died after claiming its items is sent again under the same
        notification id (receivers drop the repeat): digests are at least once, like the rest."""
        for delivery in self.store.stale_digest_deliveries(self.channels.lease_seconds):
            events = self.store.digest_events(delivery["_id"])
            if not events:
                self.store.drop_delivery(delivery["_id"])
                continue
            self._send_again(delivery, events)

    # -- subscriptions ----------------------------------------------------------

    @api("POST", "/subscriptions", roles=SUBSCRIBERS, body=SubscriptionSchema)
    def subscribe(self, request):
        body = read_json(request)
        kind, subject = self._subscriber(request.principal, body)
        if kind == "network":
            try:
                self.store.network(subject)
            except NotFound as exc:
                raise ValidationError({"subject": [str(exc)]})
        if body["channel"] == "webhook":
            try:
                self.channels.check_webhook(body["url"])
            except domain.UnsafeTarget as exc:
                raise ValidationError({"url": [f"webhook target refused: {exc}"]})
        now = utcnow().isoformat()
        subscription = {
            "subscription_id": domain.new_id("sub"), "kind": kind, "subject": subject,
            "channel": body["channel"], "url": body["url"], "email": body["email"], "filter": body["filter"],
            "digest": body["digest"], "label": body["label"], "status": "active",
            "secret": domain.new_secret() if body["channel"] == "webhook" else None,
            "unsubscribe_token": domain.new_token(), "created_by": request.principal.actor,
            "created_at": now, "updated_at": now, "last_digest_at": time.time() if body["digest"] else None,
        }
        if body["channel"] == "amqp":
            self.channels.declare_queue(subscription["subscription_id"])
        self.store.add_subscription(subscription)
        created = {**public_subscription(subscription),
                   "unsubscribe_url": self.channels.unsubscribe_url(subscription)}
        if subscription["secret"]:
            created["secret"] = subscription["secret"]  # shown once, here
        if body["channel"] == "amqp":
            created["queue"] = domain.subscriber_queue(subscription["subscription_id"])
            created["exchange"] = domain.NOTIFY_EXCHANGE
        return 201, created

    @staticmethod
    def _subscriber(principal, body):
        if principal.is_operator():
            missing = {k: ["required when an operator subscribes for someone"]
                       for k in ("kind", "subject") if not body.get(k)}
            if missing:
                raise ValidationError(missing)
            return body["kind"], check_subject(body["kind"], body["subject"])
        kind = body.get("kind") or principal.role
        if kind != principal.role:
            raise Forbidden(f"{principal.actor} may only subscribe as a {principal.role}")
        subject = check_subject(kind, body.get("subject") or principal.subject)
        require_scope(principal, subject, "subscriptions")
        return kind, subject

    def _owned(self, principal, subscription_id):
        subscription = self.store.subscription(subscription_id)
        if not principal.is_operator() and (subscription["kind"], subscription["subject"]) != (
                principal.role, principal.subject):
            raise Forbidden(f"{principal.actor} may not see subscription {subscription_id}")
        return subscription

    @api("GET", "/subscriptions", roles=SUBSCRIBERS, query=("kind", "subject", "status", "channel"))
    def list_subscriptions(self, request):
        query = query_args(request, ("kind", "subject", "status", "channel"))
        if not request.principal.is_operator():
            query.update(kind=request.principal.role, subject=request.principal.subject)
        found = [public_subscription(s) for s in self.store.subscriptions(query)]
        return {"count": len(found), "subscriptions": found}

    @api("GET", "/subscriptions/<string:subscription_id>", roles=SUBSCRIBERS)
    def get_subscription(self, request, subscription_id):
        return public_subscription(self._owned(request.principal, subscription_id))

    @api("DELETE", "/subscriptions/<string:subscription_id>", roles=SUBSCRIBERS)
    def delete_subscription(self, request, subscription_id):
        self._owned(request.principal, subscription_id)
        self.store.set_status(subscription_id, "deleted")
        return {"subscription_id": subscription_id, "status": "deleted"}

    @api("GET", "/subscriptions/<string:subscription_id>/deliveries", roles=SUBSCRIBERS, query=())
    def deliveries(self, request, subscription_id):
        query_args(request, ())
        self._owned(request.principal, subscription_id)
        found = self.store.deliveries(subscription_id)
        return {"subscription_id": subscription_id, "count": len(found), "deliveries": found}

    @api("PATCH", "/subscriptions/<string:subscription_id>", roles=SUBSCRIBERS, body=SubscriptionStatusSchema)
    def pause_or_resume(self, request, subscription_id):
        """Pause a subscription (``{"status": "paused"}``: nothing is sent, nothing collected for its
        digest) or resume it (``"active"``); 409 once unsubscribed or deleted."""
        target = read_json(request)["status"]
        subscription = self._owned(request.principal, subscription_id)
        if domain.check_pause(subscription, target) and not self.store.pause_or_resume(subscription_id, target):
            domain.check_pause(self.store.subscription(subscription_id), target)  # ended meanwhile: its 409
        return public_subscription(self.store.subscription(subscription_id))

    @api("POST", "/subscriptions/<string:subscription_id>/test", roles=SUBSCRIBERS, body=None, query=())
    def test_send(self, request, subscription_id):
        """Send a test notification now, one attempt: did the channel take it? Listed among the
        deliveries (``test: true``); no event, no dead letter."""
        query_args(request, ())
        subscription = self._owned(request.principal, subscription_id)
        now = utcnow().isoformat()
        event = domain.test_event(subscription, now)
        notification_id = f"{subscription_id}:test:{event['id']}"
        outcome = self.channels.try_once(subscription, notification_id, [event])
        self.store.record_test(subscription, notification_id, outcome, now)
        return {"notification_id": notification_id, "ok": outcome.ok, "error": outcome.error,
                "latency_ms": outcome.latency_ms, "channel": subscription["channel"]}

    @api("GET", "/unsubscribe/<string:token>", roles=PUBLIC)
    def unsubscribe(self, request, token):
        subscription = self.store.unsubscribe(token)
        return {"subscription_id": subscription["subscription_id"], "status": "unsubscribed",
                "message": "You will receive no more notifications for this subscription."}

    # -- networks ---------------------------------------------------------------

    @api("GET", "/networks", query=())
    def list_networks(self, request):
        query_args(request, ())
        networks = sorted(self.store.networks().values(), key=lambda n: (not n.get("builtin"), n["network_id"]))
        return {"count": len(networks), "networks": networks}

    @api("GET", "/networks/<string:network_id>")
    def get_network(self, request, network_id):
        return self.store.network(network_id)

    @api("POST", "/networks", roles=("operator",), body=NetworkSchema)
    def create_network(self, request):
        network = read_json(request)
        network = {**network, "states": sorted(set(network["states"])), "builtin": False,
                   "created_at": utcnow().isoformat(), "created_by": request.principal.actor}
        return 201, self.store.add_network(network)


SERVICE = NotifyService
