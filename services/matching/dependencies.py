"""The matching service's I/O: its repository and the store provider holding the in-memory model.

:class:`MatchingStore` (one per container) holds the read model
(:class:`services.matching.domain.Matcher`) in memory. Events are applied in
order under a lock, then the documents and events they produced are written
with one bulk write per collection (events through the outbox) and relayed
with one confirmed publish, before the messages are acknowledged. On start
the model is loaded from the service's own collections (:meth:`reload`),
after restoring an empty store from the audit feed when
``TACOORD_MATCHING_REPLAY_URL`` is set; a failed apply or write reloads it,
so memory never runs ahead of the store. A managed thread sweeps for gaps.
Several instances: each batch and sweep is a turn under the writer lease, on a
model reloaded first if another instance wrote since; a standby refreshes its
model for the routes it serves (:mod:`services.matching.writer`).
:class:`MatchingRepository` is what a worker gets: the batch handler and
the named reads of the HTTP routes.
"""
import gc
import logging
import time
from contextlib import contextmanager
from datetime import timezone

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from pymongo import ReplaceOne, UpdateOne

from services.matching import alerts as alert_steps
from services.matching import changes as changes_since
from services.matching import restore
from services.matching.alert_book import KEPT_FIELDS as ALERT_FIELDS
from services.matching.domain import Matcher
from services.matching.settings import (ALERTS, GAP_SWEEP_KEY, MATCHES, PROPOSALS, REPLAY_KEY_KEY, REPLAY_URL_KEY,
                                        STANDBY_REFRESH_KEY, STANDBY_REFRESH_SECONDS, VIEWS, settings_from)
from services.matching.writer import LEASE_KEY, LEASE_SECONDS, WriterLease
from tacoord.config import setting
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Busy, Conflict, Rejected
from tacoord.ops import metric
from tacoord.outbox import staged, strip
from tacoord.store import MongoStore, Repository

log = logging.getLogger(__name__)

SOURCE = "matching"
ACTOR = "service:matching"

APPLY_SECONDS = metric("histogram", "matching", "apply_seconds",
                       "Time to apply one event to the read model (pure matching, no I/O)", ["family"])
FREEZE_FROM_ITEMS = 10_000
MODEL_SIZE = metric("gauge", "matching", "read_model_items", "Items held in the in-memory read model", ["kind"])
MATCH_CHANGES = metric("counter", "matching", "matches_total", "Matches proposed and retracted", ["change"])
GAPS = metric("counter", "matching", "gaps_detected_total", "Assistance gaps detected, by kind", ["kind"])
DUPLICATIONS = metric("counter", "matching", "duplications_detected_total",
                      "State x article x form combinations found covered by two or more providers")
ALERT_STEPS = metric("counter", "matching", "alert_steps_total",
                     "Alerts acknowledged or resolved, by people or by matching (their cause went)", ["step", "by"])


def count_alerts_and_matches(envelopes):
    for event in envelopes:
        if event["type"] in ("match.proposed", "match.retracted"):
            MATCH_CHANGES.labels(change=event["type"].split(".")[1]).inc()
        elif event["type"] == "gap.detected":
            GAPS.labels(kind=event["data"]["kind"]).inc()
        elif event["type"] == "duplication.detected":
            DUPLICATIONS.inc()
        elif event["type"] in ("alert.acknowledged", "alert.resolved"):
            ALERT_STEPS.labels(step=event["data"]["status"], by="matching" if event["data"].get("automatic")
                               else "people").inc()


def public(document):
    document = strip(document)
    if document is not None:
        document.pop("_id", None)
    return document


class MatchingRepository(Repository):
    """Named operations over the read model and the service's collections."""

    def __init__(self, database, relay, provider):
        super().__init__(database, relay)
        self.provider = provider

    @property
    def model(self):
        self.provider.loaded.wait()
        return self.provider.model

    def handle_batch(self, events):
        """Apply events in order under the lock, then store and relay what they did together.

        Any failure reloads the model from the store before it is raised, so the
        events (retried each on its own) are applied to a model equal to the store."""
        self.provider.loaded.wait()
        with self.provider.lock, self.provider.turn():
            outcomes = []
            for event in events:
                started = time.perf_counter()
                try:
                    outcome = self.provider.model.apply(event)
                except (KeyError, ValueError, TypeError) as exc:
                    self.provider.reload_after_failure()
                    raise Rejected(f"cannot read {event['type']} payload: {type(exc).__name__}: {exc}")
                except Exception:
                    self.provider.reload_after_failure()
                    raise
                APPLY_SECONDS.labels(family=event["type"].split(".")[0]).observe(time.perf_counter() - started)
                outcomes.append((outcome, event))
            self.provider.persist_many(outcomes)

    def matches(self, filters, limit=1000):
        return [public(d) for d in self.db[MATCHES].find(filters, sort=[("_id", 1)], limit=limit)]

    def alerts(self, filters, limit=1000):
        query = alert_steps.alerts_query(filters)
        return [alert_steps.public(public(d)) for d in self.db[ALERTS].find(query, sort=[("_id", 1)], limit=limit)]

    def alert(self, alert_id):
        return alert_steps.public(public(self._load(ALERTS, alert_id, "alert")))

    def take_alert_step(self, alert_id, principal, step, **params):
        """A person acknowledges or resolves an alert: one write guarded by the status it was read
        with, the event staged in it (``alert_steps.acknowledge``/``resolve`` decide, and raise
        403, 409 or 422). The read model learns of it from the event."""
        decide_step = getattr(alert_steps, step)

        def decide(alert):
            return decide_step(alert, principal.role, principal.subject, now=utcnow().isoformat(), **params)
        alert, envelopes = self._change_and_relay(ALERTS, alert_id, "alert", decide, SOURCE, principal.actor,
                                                  guard=("status",))
        count_alerts_and_matches(envelopes)
        return alert_steps.public(public(alert))

    def changes(self, principal, query):
        """``GET /changes``: what is new or changed since ``query["since"]`` in the principal's scope
        (:mod:`services.matching.changes`)."""
        asked = {k: query[k] for k in ("state", "donor", "network") if k in query}
        scope = changes_since.scope_of(principal.role, principal.subject, asked)
        since = query["since"].astimezone(timezone.utc)
        model, limit = self.model, query["limit"]
        states = changes_since.states_of(model, scope)
        matches = [public(d) for d in self.db[MATCHES].find(
            changes_since.matches_query(scope, states, since.isoformat()), sort=[("proposed_at", 1), ("_id", 1)],
            limit=limit)]
        alerts = [alert_steps.public(public(d)) for d in self.db[ALERTS].find(
            changes_since.alerts_query(scope, states, since.isoformat()), sort=[("detected_at", 1), ("_id", 1)],
            limit=limit)]
        needs = changes_since.needs_changed(model, scope, states, since, {m["need_id"] for m in matches})[:limit]
        offers = changes_since.offers_changed(model, scope, states, since)[:limit]
        return {"since": since.isoformat(), "scope": scope, **({"states": states} if "network" in scope else {}),
                "counts": {"needs": len(needs), "offers": len(offers), "matches": len(matches), "alerts": len(alerts)},
                "needs": needs, "offers": offers, "matches": matches, "alerts": alerts}

    def detect_gaps(self):
        """Sweep for gaps now; returns the gap alerts raised by this sweep."""
        outcome = self.provider.sweep()
        return [alert_steps.public(dict(doc)) for (collection, _), (doc, _) in
                (outcome.docs.items() if outcome else ()) if collection == ALERTS]


class MatchingStore(MongoStore):
    repository = MatchingRepository
    outbox_collections = (MATCHES, ALERTS, PROPOSALS)

    def setup(self):
        super().setup()
        cfg = self.container.config
        self.settings = settings_from(cfg)
        default_sweep = min(30.0, max(0.2, self.settings.gap_after_seconds / 4))
        self.sweep_every = float(setting(cfg, GAP_SWEEP_KEY, default_sweep))
        self.lock = Semaphore(1)
        self.stale = False  # a failure left the model ahead of the store and it could not be reloaded
        self.loaded = Event()
        self.model = Matcher(self.settings)
        # one writer at a time among the instances (services/matching/writer.py)
        self.writer = WriterLease(self.database, float(setting(cfg, LEASE_KEY, LEASE_SECONDS)))
        self.version = None  # the store's version the model is at (None: unknown, reload before a turn)
        self.refresh_every = float(setting(cfg, STANDBY_REFRESH_KEY, STANDBY_REFRESH_SECONDS))
        self.refreshed_at = 0.0
        self.wrote = False

    def start(self):
        super().start()
        replay_url = setting(self.container.config, REPLAY_URL_KEY, "")
        if replay_url:  # before loading: consumers wait for `loaded`, so nothing is applied meanwhile
            restore.restore_if_empty(self.database, replay_url,
                                     setting(self.container.config, REPLAY_KEY_KEY, ""), self.settings)
        self.refresh()
        self.loaded.send(True)
        self.background(self._sweep_forever, "gap-sweeper")

    @contextmanager
    def turn(self):
        """Apply and store as the one writer among the instances (services/matching/writer.py):
        under the writer lease, on a model reloaded first if another instance wrote since."""
        version = self.writer.take()
        self.wrote = False
        try:
            if self.stale or self.version != version - 1:
                self.reload(at_version=version)
                self.writer.renew()
            self.version = version
            yield
        except BaseException:
            self.wrote = True   # a failure may have stored part of what it did
            raise
        finally:
            try:
                if self.writer.give_back(self.wrote) and not self.wrote:
                    self.version = version - 1   # a turn that wrote nothing moved the version back
            except Exception as exc:  # the database went: the lease runs out by itself
                log.warning("could not give the writer lease back (%s)", exc)

    def refresh(self):
        """Reload the model outside a turn (a standby keeping warm); it counts as at the store's
        version only if no turn was on while it was read."""
        before = self.writer.state()
        self.reload()
        after = self.writer.state()
        self.version = before[0] if before == after and not before[1] else None

    def reload(self, at_version=None):
        """Load the read model from the service's own collections (``at_version``: in a turn, the
        version it is at)."""
        db = self.database

        def docs(collection, query=None):
            return [public(d) for d in db[collection].find(query or {})]

        self.model = Matcher(self.settings).load(
            needs=docs(VIEWS["needs"]), offers=docs(VIEWS["offers"]), experts=docs(VIEWS["experts"]),
            workshops=docs(VIEWS["workshops"]), matches=docs(MATCHES, {"status": "active"}),
            alerts=[d["_id"] for d in db[ALERTS].find({}, {"_id": 1})],
            alert_docs=db[ALERTS].find({}, {field: 1 for field in (*ALERT_FIELDS, "resolved")}),
            proposals=[d["_id"] for d in db[PROPOSALS].find({}, {"_id": 1})])
        for kind in ("needs", "offers", "experts", "matches"):
            MODEL_SIZE.labels(kind=kind).set(len(getattr(self.model, kind)))
        if len(self.model.offers) + len(self.model.needs) >= FREEZE_FROM_ITEMS:
            # A large, long-lived model: keep the cycle collector from rescanning it on every
            # full collection (bench/matching_bench.py measures with the same setting).
            gc.collect()
            gc.freeze()
        self.version, self.stale, self.refreshed_at = at_version, False, time.monotonic()
        log.info("matching read model loaded: %d needs, %d offers, %d experts, %d active matches",
                 len(self.model.needs), len(self.model.offers), len(self.model.experts),
                 len(self.model.matches))

    def reload_after_failure(self):
        """The model may be ahead of the store: reload it (if the store is unreachable too,
        the next event or sweep reloads it first)."""
        self.stale = True
        try:
            self.reload(at_version=self.version)   # in a turn: nobody else writes meanwhile
        except Exception as exc:
            log.warning("could not reload the read model (%s); will reload before the next event", exc)

    def persist(self, outcome, cause=None):
        """Store an outcome's documents (events staged in their outbox), then relay the events."""
        self.persist_many([(outcome, cause)])

    def persist_many(self, outcomes):
        """Store what several events did, ``[(outcome, cause)]`` in order, with one bulk write per
        collection (a later document of an entity or match wins; its events are concatenated, each
        caused by its own event), then relay every event in the order one-by-one handling would
        have: one confirmed publish, one bulk pull per collection."""
        entities, docs, relayed, steps = {}, {}, [], []
        for outcome, cause in outcomes:
            entities.update(outcome.entities)
            for (collection, doc_id), (document, events) in outcome.docs.items():
                envelopes = [new_event(event_type, data, SOURCE, ACTOR, cause=own_cause or cause)
                             for event_type, data, own_cause in events]
                slot = docs.setdefault((collection, doc_id), [None, []])
                slot[0] = document
                slot[1].extend(envelopes)
                relayed.extend((collection, doc_id, envelope) for envelope in envelopes)
            for alert_id, changes, (event_type, data, own_cause) in outcome.steps:
                envelope = new_event(event_type, data, SOURCE, ACTOR, cause=own_cause or cause)
                steps.append((alert_id, changes, envelope))
                relayed.append((ALERTS, alert_id, envelope))
        views, collections = {}, {}
        for (kind, entity_id), document in entities.items():
            views.setdefault(VIEWS[kind], []).append(
                ReplaceOne({"_id": entity_id}, {**document, "_id": entity_id}, upsert=True))
        for (collection, doc_id), (document, envelopes) in docs.items():
            update = alert_steps.upsert(document) if collection == ALERTS else {"$set": document}
            collections.setdefault(collection, []).append(
                UpdateOne({"_id": doc_id}, staged(update, envelopes), upsert=True))
        self.wrote = self.wrote or bool(views or collections or steps)
        try:
            for collection, writes in (*views.items(), *collections.items()):
                self.database[collection].bulk_write(writes, ordered=False)
            refused = self._write_steps(steps)
        except Exception:
            log.warning("could not store an outcome; reloading the read model from the store")
            self.reload_after_failure()
            raise
        relayed = [item for item in relayed if item[2]["id"] not in refused]
        count_alerts_and_matches(envelope for _, _, envelope in relayed)
        for kind in ("needs", "offers", "experts", "matches"):
            MODEL_SIZE.labels(kind=kind).set(len(getattr(self.model, kind)))
        self.relay.relay_many(relayed)

    def _write_steps(self, steps):
        """Matching's own closings, each guarded by the alert being still unresolved: a person who
        resolved it meanwhile wins, and the step is neither stored nor relayed. Returns the ids of
        the events refused so."""
        refused = set()
        for alert_id, changes, envelope in steps:
            written = self.database[ALERTS].update_one(
                {"_id": alert_id, "status": {"$in": [*alert_steps.UNRESOLVED, None]}},
                staged({"$set": changes}, [envelope]))
            if written.matched_count == 0:
                refused.add(envelope["id"])
        return refused

    def sweep(self, now=None, wait_seconds=10.0):
        """Sweep for gaps in a turn, waiting up to ``wait_seconds`` for another instance's turn to
        end (then ``Conflict``)."""
        self.loaded.wait()
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                with self.lock, self.turn():
                    outcome = self.model.sweep(now or utcnow())
                    if outcome:
                        self.persist(outcome)
                    return outcome
            except Busy:
                if time.monotonic() > deadline:
                    raise Conflict("another matching instance is applying events; try again")
                eventlet.sleep(0.2)

    def sweep_or_refresh(self):
        """The instance whose model is at the store's version sweeps (the active one, or any once
        the active stopped writing); a standby refreshes its model every
        ``TACOORD_MATCHING_STANDBY_REFRESH_SECONDS`` and sweeps once it is current."""
        version, busy = self.writer.state()
        if busy or version != self.version:
            if time.monotonic() - self.refreshed_at >= self.refresh_every:
                with self.lock:
                    self.refresh()
            return None
        try:
            return self.sweep(wait_seconds=0)
        except Conflict:   # the other instance started a turn meanwhile: it is the active one
            return None

    def _sweep_forever(self):
        while True:
            eventlet.sleep(self.sweep_every)
            try:
                self.sweep_or_refresh()
            except Exception as exc:  # keep sweeping: the next pass retries
                log.warning("gap sweep failed, will retry: %s", exc)

    def get_dependency(self, worker_ctx):
        return self.repository(self.database, self.relay, self)
