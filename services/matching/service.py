"""Matching service: needs against supply, incrementally, with the needs-vs-supply matrix.

The read model (``domain.ReadModel``) lives in memory in the store provider,
one per container. Events are consumed in batches of what the broker has
handed over (up to 50, claimed in the inbox together): they are applied in
order under a lock, then the documents and events they produced are written
with one bulk write per collection (events through the outbox) and relayed
with one confirmed publish, before the messages are acknowledged. On start
the model is loaded from the service's own collections; a failed apply or
write reloads it from there, so memory never runs ahead of the store, and the
batch's events are retried each on its own (a malformed one is parked).
"""
import csv
import gc
import io
import logging
import time
from pathlib import Path

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore
from pymongo import ReplaceOne, UpdateOne
from werkzeug.wrappers import Response

from services.matching import domain
from services.matching.schemas import (AlertsQuerySchema, CellQuerySchema, MatchesQuerySchema,
                                       MatrixQuerySchema)
from tacoord import topology
from tacoord.config import setting
from tacoord.consumer import consume_events
from tacoord.envelope import new_event, utcnow
from tacoord.errors import NotFound, Rejected
from tacoord.ops import OpsServer, metric
from tacoord.outbox import staged, strip
from tacoord.store import MongoStore, Repository
from tacoord.web import PUBLIC, api, query_args

log = logging.getLogger(__name__)

SOURCE = "matching"
ACTOR = "service:matching"
MATCHES, ALERTS, PROPOSALS = "matches", "alerts", "proposals"
STATIC_DIR = Path(__file__).parent / "static"
# The matrix page's files, by name: nothing else is served from the directory.
STATIC_FILES = {"matrix.html": "text/html", "matrix.js": "text/javascript", "matrix.css": "text/css"}
# The page runs only its own script and style and talks only to this service.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
}
VIEWS = {"needs": "needs_view", "offers": "offers_view", "experts": "experts_view",
         "workshops": "workshops_view"}

GAP_AFTER_KEY = "TACOORD_GAP_AFTER_SECONDS"
GAP_SWEEP_KEY = "TACOORD_GAP_SWEEP_SECONDS"
MAX_PER_NEED_KEY = "TACOORD_MATCH_MAX_PER_NEED"
SCAN_LIMIT_KEY = "TACOORD_MATCH_SCAN_LIMIT"
PRIORITY_WEIGHTS_KEY = "TACOORD_MATCH_PRIORITY_WEIGHTS"   # "1:1.0,2:0.6,3:0.3"
CHAPTER_WEIGHTS_KEY = "TACOORD_MATCH_CHAPTER_WEIGHTS"     # "2:1.0,4:1.0"
DEFAULT_CHAPTER_WEIGHT_KEY = "TACOORD_MATCH_DEFAULT_CHAPTER_WEIGHT"
REPLAY_URL_KEY = "TACOORD_MATCHING_REPLAY_URL"    # the audit service: rebuild from its feed when the store is empty
REPLAY_KEY_KEY = "TACOORD_MATCHING_REPLAY_KEY"    # an operator API key for that feed

APPLY_SECONDS = metric("histogram", "matching", "apply_seconds",
                       "Time to apply one event to the read model (pure matching, no I/O)", ["family"])
FREEZE_FROM_ITEMS = 10_000
MODEL_SIZE = metric("gauge", "matching", "read_model_items", "Items held in the in-memory read model", ["kind"])
MATCH_CHANGES = metric("counter", "matching", "matches_total", "Matches proposed and retracted", ["change"])
GAPS = metric("counter", "matching", "gaps_detected_total", "Assistance gaps detected, by kind", ["kind"])
DUPLICATIONS = metric("counter", "matching", "duplications_detected_total",
                      "State x article x form combinations found covered by two or more providers")


def count_alerts_and_matches(envelopes):
    for event in envelopes:
        if event["type"] in ("match.proposed", "match.retracted"):
            MATCH_CHANGES.labels(change=event["type"].split(".")[1]).inc()
        elif event["type"] == "gap.detected":
            GAPS.labels(kind=event["data"]["kind"]).inc()
        elif event["type"] == "duplication.detected":
            DUPLICATIONS.inc()


def _weights(value):
    if isinstance(value, dict):
        return {int(k): float(v) for k, v in value.items()}
    return {int(k): float(v) for k, v in (item.split(":") for item in str(value).split(",") if item)}


def settings_from(cfg):
    """domain.Settings from the container config (falling back to the environment)."""
    defaults = domain.Settings()
    return domain.Settings(
        gap_after_seconds=float(setting(cfg, GAP_AFTER_KEY, defaults.gap_after_seconds)),
        max_offer_matches_per_need=int(setting(cfg, MAX_PER_NEED_KEY, defaults.max_offer_matches_per_need)),
        scan_limit=int(setting(cfg, SCAN_LIMIT_KEY, defaults.scan_limit)),
        priority_weights=_weights(setting(cfg, PRIORITY_WEIGHTS_KEY, defaults.priority_weights)),
        chapter_weights=_weights(setting(cfg, CHAPTER_WEIGHTS_KEY, defaults.chapter_weights)),
        default_chapter_weight=float(setting(cfg, DEFAULT_CHAPTER_WEIGHT_KEY, defaults.default_chapter_weight)),
    )


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
        with self.provider.lock:
            self.provider.reload_if_stale()
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
        query = {"alert": filters["kind"]} if "kind" in filters else {}
        return [public(d) for d in self.db[ALERTS].find(query, sort=[("_id", 1)], limit=limit)]


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
        self.model = domain.ReadModel(self.settings)

    def start(self):
        super().start()
        replay_url = setting(self.container.config, REPLAY_URL_KEY, "")
        if replay_url:  # before loading: consumers wait for `loaded`, so nothing is applied meanwhile
            from services.matching import rebuild
            rebuild.rebuild_if_empty(self.database, replay_url,
                                     setting(self.container.config, REPLAY_KEY_KEY, ""), self.settings)
        self.reload()
        self.loaded.send(True)
        self.background(self._sweep_forever, "gap-sweeper")

    def reload(self):
        """Load the read model from the service's own collections."""
        db = self.database

        def docs(collection, query=None):
            return [public(d) for d in db[collection].find(query or {})]

        self.model = domain.ReadModel(self.settings).load(
            needs=docs(VIEWS["needs"]), offers=docs(VIEWS["offers"]), experts=docs(VIEWS["experts"]),
            workshops=docs(VIEWS["workshops"]), matches=docs(MATCHES, {"status": "active"}),
            alerts=[d["_id"] for d in db[ALERTS].find({}, {"_id": 1})],
            proposals=[d["_id"] for d in db[PROPOSALS].find({}, {"_id": 1})])
        for kind in ("needs", "offers", "experts", "matches"):
            MODEL_SIZE.labels(kind=kind).set(len(getattr(self.model, kind)))
        if len(self.model.offers) + len(self.model.needs) >= FREEZE_FROM_ITEMS:
            # A large, long-lived model: keep the cycle collector from rescanning it on every
            # full collection (bench/matching_bench.py measures with the same setting).
            gc.collect()
            gc.freeze()
        log.info("matching read model loaded: %d needs, %d offers, %d experts, %d active matches",
                 len(self.model.needs), len(self.model.offers), len(self.model.experts),
                 len(self.model.matches))

    def reload_after_failure(self):
        """The model may be ahead of the store: reload it (if the store is unreachable too,
        the next event or sweep reloads it first)."""
        self.stale = True
        try:
            self.reload()
            self.stale = False
        except Exception as exc:
            log.warning("could not reload the read model (%s); will reload before the next event", exc)

    def reload_if_stale(self):
        if self.stale:
            self.reload()
            self.stale = False

    def persist(self, outcome, cause=None):
        """Store an outcome's documents (events staged in their outbox), then relay the events."""
        self.persist_many([(outcome, cause)])

    def persist_many(self, outcomes):
        """Store what several events did, ``[(outcome, cause)]`` in order, with one bulk write per
        collection (a later document of an entity or match wins; its events are concatenated, each
        caused by its own event), then relay every event in the order one-by-one handling would
        have: one confirmed publish, one bulk pull per collection."""
        entities, docs, relayed = {}, {}, []
        for outcome, cause in outcomes:
            entities.update(outcome.entities)
            for (collection, doc_id), (document, events) in outcome.docs.items():
                envelopes = [new_event(event_type, data, SOURCE, ACTOR, cause=own_cause or cause)
                             for event_type, data, own_cause in events]
                slot = docs.setdefault((collection, doc_id), [None, []])
                slot[0] = document
                slot[1].extend(envelopes)
                relayed.extend((collection, doc_id, envelope) for envelope in envelopes)
        views, collections = {}, {}
        for (kind, entity_id), document in entities.items():
            views.setdefault(VIEWS[kind], []).append(
                ReplaceOne({"_id": entity_id}, {**document, "_id": entity_id}, upsert=True))
        for (collection, doc_id), (document, envelopes) in docs.items():
            collections.setdefault(collection, []).append(
                UpdateOne({"_id": doc_id}, staged({"$set": document}, envelopes), upsert=True))
        try:
            for collection, writes in (*views.items(), *collections.items()):
                self.database[collection].bulk_write(writes, ordered=False)
        except Exception:
            log.warning("could not store an outcome; reloading the read model from the store")
            self.reload_after_failure()
            raise
        count_alerts_and_matches(envelope for _, _, envelope in relayed)
        for kind in ("needs", "offers", "experts", "matches"):
            MODEL_SIZE.labels(kind=kind).set(len(getattr(self.model, kind)))
        self.relay.relay_many(relayed)

    def sweep(self, now=None):
        self.loaded.wait()
        with self.lock:
            self.reload_if_stale()
            outcome = self.model.sweep(now or utcnow())
            if outcome:
                self.persist(outcome)
            return outcome

    def _sweep_forever(self):
        while True:
            eventlet.sleep(self.sweep_every)
            try:
                self.sweep()
            except Exception as exc:  # keep sweeping: the next pass retries
                log.warning("gap sweep failed, will retry: %s", exc)

    def get_dependency(self, worker_ctx):
        return self.repository(self.database, self.relay, self)


def _load_query(request, schema):
    names = [name for name, f in schema.fields.items() if not f.dump_only]
    return schema.load(query_args(request, names))


def _static(name):
    if name not in STATIC_FILES:
        raise NotFound(f"no static file {name!r}")
    return Response((STATIC_DIR / name).read_bytes(), status=200, headers=PAGE_HEADERS,
                    content_type=f"{STATIC_FILES[name]}; charset=utf-8")


def _filters(query):
    return {k: query[k] for k in ("article", "chapter", "state", "regional_group", "form") if k in query}


class MatchingService:
    name = "matching"

    store = MatchingStore()
    ops = OpsServer()

    @consume_events(topology.MATCHING_EVENTS, batch_size=50, batch_wait=0)
    def on_events(self, events):
        """What the broker has handed over, up to 50 events: claimed in the inbox together
        (applying an event is not idempotent), applied in order, stored and relayed together."""
        self.store.handle_batch(events)

    @api("GET", "/matrix")
    def get_matrix(self, request):
        query = _load_query(request, MatrixQuerySchema())
        cells = domain.matrix(self.store.model, query["rows"], query["cols"], query.get("level"), _filters(query))
        return {"rows": query["rows"], "cols": query["cols"], "level": query.get("level"),
                "filters": _filters(query), "count": len(cells),
                "cells": [{k: v for k, v in c.items() if k != "_ids"} for c in cells]}

    @api("GET", "/matrix.csv")
    def get_matrix_csv(self, request):
        query = _load_query(request, MatrixQuerySchema())
        cells = domain.matrix(self.store.model, query["rows"], query["cols"], query.get("level"), _filters(query))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([query["rows"], query["cols"], "level", "needs", "offers", "matches", "matched_needs",
                         "status"])
        for c in cells:
            writer.writerow([c["row"], c["col"], query.get("level") or "all", c["needs"], c["offers"],
                             c["matches"], c["matched_needs"], c["status"]])
        return Response(buffer.getvalue(), status=200, mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=matrix.csv"})

    @api("GET", "/matrix/reference")
    def get_matrix_reference(self, request):
        query_args(request, ())
        return domain.matrix_reference()

    @api("GET", "/", roles=PUBLIC)
    def index(self, request):
        return Response("", status=302, headers={"Location": "/matrix/page"})

    @api("GET", "/matrix/page", roles=PUBLIC)
    def get_matrix_page(self, request):
        """The matrix page: public HTML and script; the data it shows needs an API key."""
        return _static("matrix.html")

    @api("GET", "/matrix/static/<string:name>", roles=PUBLIC)
    def get_matrix_static(self, request, name):
        return _static(name)

    @api("GET", "/matrix/cell")
    def get_cell(self, request):
        query = _load_query(request, CellQuerySchema())
        rows = "article" if "article" in query else "chapter"
        cols = "state" if "state" in query else "regional_group"
        model = self.store.model
        cells = domain.matrix(model, rows, cols, query.get("level"), _filters(query))
        row, col = query[rows], query[cols]
        cell = next((c for c in cells if c["row"] == row and c["col"] == col),
                    {"needs": 0, "offers": 0, "matches": 0, "matched_needs": 0, "status": "empty",
                     "_ids": {"needs": [], "offers": [], "matches": []}})
        ids = cell["_ids"]
        return {"row": {rows: row}, "col": {cols: col}, "level": query.get("level"),
                "status": cell["status"], "counts": {k: cell[k] for k in ("needs", "offers", "matches",
                                                                           "matched_needs")},
                "needs": [model.needs[n] for n in ids["needs"]],
                "offers": [model.offers[o] for o in ids["offers"]],
                "matches": [model.matches[m] for m in ids["matches"]]}

    @api("GET", "/matches")
    def list_matches(self, request):
        query = _load_query(request, MatchesQuerySchema())
        matches = self.store.matches(query)
        return {"count": len(matches), "matches": matches}

    @api("GET", "/alerts")
    def list_alerts(self, request):
        query = _load_query(request, AlertsQuerySchema())
        alerts = self.store.alerts(query)
        return {"count": len(alerts), "alerts": alerts}

    @api("GET", "/allocations")
    def get_allocations(self, request):
        query_args(request, ())
        result = self.store.model.allocation()
        return {"covered_weight": result["covered_weight"], "count": len(result["assignments"]),
                "assignments": [{"need_id": n, "offer_id": o} for n, o in sorted(result["assignments"].items())]}

    @api("GET", "/matches/<string:match_id>")
    def get_match(self, request, match_id):
        found = self.store.matches({"_id": match_id}, limit=1)
        if not found:
            raise NotFound(f"no match {match_id!r}")
        return found[0]


SERVICE = MatchingService
