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
:class:`MatchingRepository` is what a worker gets: the batch handler, a
person's step on a match (:meth:`MatchingRepository.move`: a conditional
update on the match's stored status, its event in the same write) and the
named reads of the HTTP routes. The model learns of a step by consuming its
event, whichever instance took it; the model's own writes of a match are
conditional on the status it believes is stored
(:mod:`services.matching.match_writes`), so they never overwrite a step.
Several instances: each batch and sweep is a turn under the writer lease, on a
model reloaded first if another instance wrote since; a standby refreshes its
model for the routes it serves (:mod:`services.matching.writer`). A person's
step needs no turn: it is a write of the store, and the model learns of it
from its event, in the active instance's turn like any other.
"""
import gc
import logging
import time
from contextlib import contextmanager
from datetime import timezone
from itertools import islice

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from pymongo import ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from services.matching import alerts as alert_steps
from services.matching import changes as changes_since
from services.matching import kpis, lifecycle, restore
from services.matching.alert_book import KEPT_FIELDS as ALERT_FIELDS
from services.matching.domain import Matcher
from services.matching.match_writes import Write, condition, fold
from services.matching.settings import (ALERTS, GAP_SWEEP_KEY, MATCHES, PROPOSALS, REPLAY_KEY_KEY, REPLAY_URL_KEY,
                                        STANDBY_REFRESH_KEY, STANDBY_REFRESH_SECONDS, VIEWS, settings_from)
from services.matching.writer import LEASE_KEY, LEASE_SECONDS, WriterLease
from tacoord.config import setting
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Busy, Conflict, Rejected
from tacoord.kpis import Kpis, replace
from tacoord.ops import metric
from tacoord.outbox import staged, strip
from tacoord.store import DUPLICATE_KEY_CODES, MongoStore, Repository

log = logging.getLogger(__name__)

SOURCE = "matching"
LEGACY_ACTIVE = "active"   # the stored status of a standing match before matches had a lifecycle
ACTOR = "service:matching"
EXCHANGE_RATES, CURRENT_RATES = "exchange_rates", "current"   # one table: the one in force

APPLY_SECONDS = metric("histogram", "matching", "apply_seconds",
                       "Time to apply one event to the read model (pure matching, no I/O)", ["family"])
FREEZE_FROM_ITEMS = 10_000
MODEL_SIZE = metric("gauge", "matching", "read_model_items", "Items held in the in-memory read model", ["kind"])
MATCH_CHANGES = metric("counter", "matching", "matches_total",
                       "Match events emitted: proposed, retracted, withdrawn, rescored, and people's steps", ["change"])
WRITES_MISSED = metric("counter", "matching", "match_writes_missed_total",
                      "Writes of a match the model skipped because a person had moved it meanwhile")
GAPS = metric("counter", "matching", "gaps_detected_total", "Assistance gaps detected, by kind", ["kind"])
DUPLICATIONS = metric("counter", "matching", "duplications_detected_total",
                      "State x article x form combinations found covered by two or more providers")
ALERT_STEPS = metric("counter", "matching", "alert_steps_total",
                     "Alerts acknowledged or resolved, by people or by matching (their cause went)", ["step", "by"])
for _kind in ("unmatched_priority_need", "no_supply"):  # at 0 from the start: a first gap is an increase
    GAPS.labels(kind=_kind)


def count_alerts_and_matches(envelopes):
    for event in envelopes:
        if event["type"].startswith("match."):
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

    def _started(self):
        """Wait for the store's start-up (a restore from the audit feed, the migration of old matches,
        the model's load): before it, the collections may not be what the service serves."""
        if self.provider is not None:
            self.provider.loaded.wait()

    def matches(self, filters, limit=1000):
        self._started()
        if filters.get("status") == lifecycle.ACTIVE:
            filters = {**filters, "status": {"$in": list(lifecycle.HELD)}}
        return [public(d) for d in self.db[MATCHES].find(filters, sort=[("_id", 1)], limit=limit)]

    def move(self, match_id, target, reason, principal):
        """A person's step: checked by :func:`lifecycle.move`, written only if the match's status is still
        the one read (else read and decided again), its event staged in the same write, then relayed.
        ``NotFound``, ``Forbidden``, :class:`lifecycle.IllegalMove` or ``Rejected`` when refused."""
        self._started()

        def decide(match):
            return lifecycle.move(match, target, principal.role, principal.subject, reason, principal.actor,
                                  utcnow().isoformat())
        match, envelopes = self._change_and_relay(MATCHES, match_id, "match", decide, SOURCE, principal.actor,
                                                  guard=("status",))
        count_alerts_and_matches(envelopes)
        return public(match)

    def alerts(self, filters, limit=1000):
        self._started()
        query = alert_steps.alerts_query(filters)
        return [alert_steps.public(public(d)) for d in self.db[ALERTS].find(query, sort=[("_id", 1)], limit=limit)]

    def alert(self, alert_id):
        self._started()
        return alert_steps.public(public(self._load(ALERTS, alert_id, "alert")))

    def take_alert_step(self, alert_id, principal, step, **params):
        """A person acknowledges or resolves an alert: one write guarded by the status it was read
        with, the event staged in it (``alert_steps.acknowledge``/``resolve`` decide, and raise
        403, 409 or 422). The read model learns of it from the event."""
        self._started()
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
        bound = changes_since.lower_bound(since)
        matches = [public(d) for d in islice(
            (d for d in self.db[MATCHES].find(changes_since.matches_query(scope, states, bound),
                                              sort=[("proposed_at", 1), ("_id", 1)])
             if changes_since.changed(d, changes_since.MATCH_TIMES, since)), limit)]
        alerts = [alert_steps.public(public(d)) for d in islice(
            (d for d in self.db[ALERTS].find(changes_since.alerts_query(scope, states, bound),
                                             sort=[("detected_at", 1), ("_id", 1)])
             if changes_since.changed(d, changes_since.ALERT_TIMES, since)), limit)]
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

    # -- funding: the operator's exchange-rate table (services/matching/funding.py) ---------------

    def exchange_rates(self):
        """The table loaded with ``PUT /funding/rates``, or None."""
        return public(self.db[EXCHANGE_RATES].find_one({"_id": CURRENT_RATES}))

    def set_exchange_rates(self, table, actor):
        document = {**table, "loaded_by": actor, "loaded_at": utcnow().isoformat()}
        self.db[EXCHANGE_RATES].replace_one({"_id": CURRENT_RATES}, {"_id": CURRENT_RATES, **document}, upsert=True)
        return document


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
        # Before the lifecycle a match that stood was stored as "active": it is a proposal.
        self.database[MATCHES].update_many({"status": LEGACY_ACTIVE}, {"$set": {"status": "proposed"}})
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
            workshops=docs(VIEWS["workshops"]), matches=docs(MATCHES, {"status": {"$in": list(lifecycle.HELD)}}),
            alerts=[d["_id"] for d in db[ALERTS].find({}, {"_id": 1})],
            alert_docs=db[ALERTS].find({}, {field: 1 for field in (*ALERT_FIELDS, "resolved")}),
            proposals=[d["_id"] for d in db[PROPOSALS].find({}, {"_id": 1})],
            refused=[d["_id"] for d in db[MATCHES].find({"status": {"$in": list(lifecycle.REFUSED)}}, {"_id": 1})])
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
        collection (a later document of an entity wins; its events are concatenated, each caused by its
        own event), then relay every event in the order one-by-one handling would have: one confirmed
        publish, one bulk pull per collection. A match's writes are folded into one conditional write
        (:func:`match_writes.fold`); one that misses the stored document (a person moved the match
        meanwhile) is skipped with its events, and the step's event settles the model. Matching's
        closings of alerts are written last, each only while the alert is unresolved
        (:meth:`_write_steps`)."""
        entities, docs, match_entries, relayed, steps = {}, {}, {}, [], []
        for outcome, cause in outcomes:
            entities.update(outcome.entities)
            # in the outcome's order of documents (as one-by-one handling relayed them); steps alone last
            steps_only = [(MATCHES, m) for m in outcome.writes if (MATCHES, m) not in outcome.docs]
            for collection, doc_id in (*outcome.docs, *steps_only):
                if collection == MATCHES:
                    for entry in outcome.writes[doc_id]:
                        if isinstance(entry, Write) and entry.event is not None:
                            entry = Write(entry.fields, entry.allowed, self._envelope(entry.event, cause))
                            relayed.append((MATCHES, doc_id, entry.event))
                        match_entries.setdefault(doc_id, []).append(entry)
                    continue
                document, events = outcome.docs[(collection, doc_id)]
                envelopes = [self._envelope(event, cause) for event in events]
                slot = docs.setdefault((collection, doc_id), [None, []])
                slot[0] = document
                slot[1].extend(envelopes)
                relayed.extend((collection, doc_id, envelope) for envelope in envelopes)
            for alert_id, changes, event in outcome.steps:
                envelope = self._envelope(event, cause)
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
        match_writes, skipped = [], set()
        for match_id, entries in match_entries.items():
            folded = fold(entries)
            if folded is None:
                continue
            fields, allowed, envelopes, dropped = folded
            skipped.update(e["id"] for e in dropped if e is not None)
            envelopes = [e for e in envelopes if e is not None]
            if allowed:
                match_writes.append((UpdateOne(condition(match_id, allowed), staged({"$set": fields}, envelopes),
                                               upsert=True), envelopes))
        self.wrote = self.wrote or bool(views or collections or steps or match_writes)
        try:
            for collection, writes in (*views.items(), *collections.items()):
                self.database[collection].bulk_write(writes, ordered=False)
            skipped.update(self._write_matches(match_writes))
            skipped.update(self._write_steps(steps))
        except Exception:
            log.warning("could not store an outcome; reloading the read model from the store")
            self.reload_after_failure()
            raise
        relayed = [item for item in relayed if item[2]["id"] not in skipped]
        count_alerts_and_matches(envelope for _, _, envelope in relayed)
        for kind in ("needs", "offers", "experts", "matches"):
            MODEL_SIZE.labels(kind=kind).set(len(getattr(self.model, kind)))
        self.relay.relay_many(relayed)

    @staticmethod
    def _envelope(event, cause):
        event_type, data, own_cause = event
        return new_event(event_type, data, SOURCE, ACTOR, cause=own_cause or cause)

    def _write_matches(self, writes):
        """The folded match writes, unordered; returns the ids of the events of those that missed (a
        duplicate key: the upsert found the match at a status the write may not apply to)."""
        if not writes:
            return set()
        try:
            self.database[MATCHES].bulk_write([op for op, _ in writes], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            if any(e.get("code") not in DUPLICATE_KEY_CODES for e in errors):
                raise
            WRITES_MISSED.inc(len(errors))
            log.info("%d match write(s) skipped: a person moved the match meanwhile; its step's event "
                     "settles the model", len(errors))
            return {envelope["id"] for e in errors for envelope in writes[e["index"]][1]}
        return set()

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


# -- coordination KPIs (kpis.py computes them) ---------------------------------------

UNMET_PRIORITY = metric("gauge", "matching", "unmet_priority_needs",
                        "Open priority-1 needs without a match")
OLDEST_UNMET = metric("gauge", "matching", "oldest_unmet_priority_need_age_seconds",
                      "How long the oldest open priority-1 need has been without a match (0: none)")
MATCHES_BY_STATUS = metric("gauge", "matching", "matches_stored", "Stored matches by lifecycle state", ["status"])
ALERTS_BY_STATUS = metric("gauge", "matching", "alerts_stored", "Stored gap and duplication alerts by kind and state",
                          ["kind", "status"])


class MatchingKpis(Kpis):
    """Unmet priority needs from the in-memory model (once it is loaded); matches by state and
    alerts by kind and state with one grouping query each (grouped by the database)."""

    def refresh(self):
        store = self.provider(MatchingStore)
        store.loaded.wait()
        count, age = kpis.unmet_priority_needs(store.model, utcnow())
        matches = self.database[MATCHES].aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
        alerts = {kind: list(self.database[ALERTS].aggregate([{"$match": {"alert": kind}},
                                                               {"$group": {"_id": "$status", "n": {"$sum": 1}}}]))
                  for kind in kpis.ALERT_KINDS}
        UNMET_PRIORITY.set(count)
        OLDEST_UNMET.set(age)
        replace(MATCHES_BY_STATUS, kpis.status_counts(matches))
        replace(ALERTS_BY_STATUS, kpis.alert_counts(alerts))
