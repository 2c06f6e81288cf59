"""Matching service: needs against supply, incrementally, with the needs-vs-supply matrix.

Entrypoints only: the batch consumer of ``matching.events`` and the HTTP
routes. The rules are in :mod:`services.matching.domain` (and the modules it
builds on), the in-memory model and every write in
:mod:`services.matching.dependencies`.
"""
from pathlib import Path

from werkzeug.wrappers import Response

from services.matching import funding
from services.matching.dependencies import MatchingKpis, MatchingStore
from services.matching.lifecycle import IllegalMove
from services.matching.matrix import matrix, matrix_cell, matrix_csv, matrix_reference
from services.matching.schemas import (AcknowledgeSchema, AlertsQuerySchema, CellQuerySchema, ChangesQuerySchema,
                                       ExchangeRatesSchema, FundingQuerySchema, MatchesQuerySchema,
                                       MatrixQuerySchema, ResolveSchema, TransitionSchema, WorklistQuerySchema)
from services.matching.worklists import unmet_needs, worklist_csv
from tacoord import topology
from tacoord.consumer import consume_events
from tacoord.envelope import utcnow
from tacoord.errors import NotFound
from tacoord.ops import OpsServer
from tacoord.web import PUBLIC, api, json_response, query_args, read_json

STATIC_DIR = Path(__file__).parent / "static"
# The matrix page's files, by name: nothing else is served from the directory.
STATIC_FILES = {"matrix.html": "text/html", "matrix.js": "text/javascript", "matrix.css": "text/css"}
# The page runs only its own script and style and talks only to this service.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
}


def _load_query(request, schema):
    names = [name for name, f in schema.fields.items() if not f.dump_only]
    return schema.load(query_args(request, names))


def _static(name):
    if name not in STATIC_FILES:
        raise NotFound(f"no static file {name!r}")
    return Response((STATIC_DIR / name).read_bytes(), status=200, headers=PAGE_HEADERS,
                    content_type=f"{STATIC_FILES[name]}; charset=utf-8")


def _rates_label(table):
    """Which table and years convert the amounts (None: amounts per currency only)."""
    if table is None:
        return None
    return {"source": table["source"], "base": table["base"], "years": sorted(table["rates"]),
            "loaded_at": table.get("loaded_at")}


def _filters(query):
    return {k: query[k] for k in ("article", "chapter", "state", "regional_group", "form", "priority", "status")
            if k in query}


def _optional_json(request, schema):
    """A JSON body that may be left out (then ``{}``)."""
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return schema.load({})
    return read_json(request, schema)


def _worklist(store, request):
    query = _load_query(request, WorklistQuerySchema())
    filters = {k: v for k, v in query.items() if k != "limit"}
    return filters, unmet_needs(store.model, filters, utcnow(), query["limit"])


class MatchingService:
    name = "matching"

    store = MatchingStore()
    ops = OpsServer()
    kpis = MatchingKpis()

    @consume_events(topology.MATCHING_EVENTS, batch_size=50, batch_wait=0)
    def on_events(self, events):
        """What the broker has handed over, up to 50 events: claimed in the inbox together
        (applying an event is not idempotent), applied in order, stored and relayed together."""
        self.store.handle_batch(events)

    @api("GET", "/matrix", query=MatrixQuerySchema)
    def get_matrix(self, request):
        query = _load_query(request, MatrixQuerySchema())
        cells = matrix(self.store.model, query["rows"], query["cols"], query.get("level"), _filters(query))
        cells = funding.annotate(cells, self._funding(query))
        return {"rows": query["rows"], "cols": query["cols"], "level": query.get("level"),
                "filters": _filters(query), "count": len(cells),
                "cells": [{k: v for k, v in c.items() if k != "_ids"} for c in cells]}

    def _funding(self, query):
        return funding.funding(list(self.store.model.offers.values()), query["rows"], query["cols"],
                               query.get("level"), _filters(query), self.store.exchange_rates())

    @api("GET", "/funding", query=FundingQuerySchema)
    def get_funding(self, request):
        """Committed and disbursed amounts per State × article (see services/matching/funding.py)."""
        query = _load_query(request, FundingQuerySchema())
        return {"rows": query["rows"], "cols": query["cols"], "level": query.get("level"),
                "filters": _filters(query), "exchange_rates": _rates_label(self.store.exchange_rates()),
                **self._funding(query)}

    @api("GET", "/funding/rates")
    def get_exchange_rates(self, request):
        table = self.store.exchange_rates()
        if table is None:
            raise NotFound("no exchange-rate table is loaded: an operator loads one with PUT /funding/rates")
        return table

    @api("PUT", "/funding/rates", roles=("operator",), body=ExchangeRatesSchema)
    def put_exchange_rates(self, request):
        """Load the table of annual exchange rates the funding view converts with (replaces the last)."""
        return self.store.set_exchange_rates(read_json(request, ExchangeRatesSchema()), request.principal.actor)

    @api("GET", "/matrix.csv", query=MatrixQuerySchema, response={"text/csv": "one line per cell"})
    def get_matrix_csv(self, request):
        query = _load_query(request, MatrixQuerySchema())
        cells = matrix(self.store.model, query["rows"], query["cols"], query.get("level"), _filters(query))
        text = matrix_csv(cells, query["rows"], query["cols"], query.get("level"))
        return Response(text, status=200, mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=matrix.csv"})

    @api("GET", "/matrix/reference", query=())
    def get_matrix_reference(self, request):
        query_args(request, ())
        return matrix_reference()

    @api("GET", "/matrix/page", roles=PUBLIC, response={"text/html": "the matrix page"})
    def get_matrix_page(self, request):
        """The matrix page: public HTML and script; the data it shows needs an API key."""
        return _static("matrix.html")

    @api("GET", "/matrix/static/<string:name>", roles=PUBLIC,
         response={f"{media}; charset=utf-8": name for name, media in STATIC_FILES.items()})
    def get_matrix_static(self, request, name):
        return _static(name)

    @api("GET", "/matrix/cell", query=CellQuerySchema)
    def get_cell(self, request):
        query = _load_query(request, CellQuerySchema())
        rows = "article" if "article" in query else "chapter"
        cols = "state" if "state" in query else "regional_group"
        return matrix_cell(self.store.model, rows, cols, query[rows], query[cols], query.get("level"),
                           _filters(query))

    @api("GET", "/matches", query=MatchesQuerySchema)
    def list_matches(self, request):
        query = _load_query(request, MatchesQuerySchema())
        matches = self.store.matches(query)
        return {"count": len(matches), "matches": matches}

    @api("GET", "/alerts", query=AlertsQuerySchema)
    def list_alerts(self, request):
        query = _load_query(request, AlertsQuerySchema())
        alerts = self.store.alerts(query)
        return {"count": len(alerts), "alerts": alerts}

    @api("GET", "/allocations", query=())
    def get_allocations(self, request):
        query_args(request, ())
        result = self.store.model.allocation()
        return {"covered_weight": result["covered_weight"], "count": len(result["assignments"]),
                "assignments": [{"need_id": n, "offer_id": o, "committed": n in result["committed"]}
                                for n, o in sorted(result["assignments"].items())]}

    @api("GET", "/matches/<string:match_id>")
    def get_match(self, request, match_id):
        found = self.store.matches({"_id": match_id}, limit=1)
        if not found:
            raise NotFound(f"no match {match_id!r}")
        return found[0]

    @api("POST", "/matches/<string:match_id>/transitions", roles=("donor", "state", "operator"), body=TransitionSchema)
    def move_match(self, request, match_id):
        """A person's step on a match (services/matching/lifecycle.py): ``{"to": "accepted", "reason": …}``.
        An illegal step is a 409 naming the match's status and the steps this caller may take."""
        query_args(request, ())
        asked = read_json(request, TransitionSchema())
        try:
            return self.store.move(match_id, asked["to"], asked["reason"], request.principal)
        except IllegalMove as exc:
            return json_response(409, exc.body())

    # -- the coordination workflow: alerts people close, worklists, changes since ----------

    @api("GET", "/alerts/<string:alert_id>")
    def get_alert(self, request, alert_id):
        query_args(request, ())
        return self.store.alert(alert_id)

    @api("POST", "/alerts/<string:alert_id>/acknowledge", roles=("operator", "donor", "state"), body=AcknowledgeSchema)
    def acknowledge_alert(self, request, alert_id):
        body = _optional_json(request, AcknowledgeSchema())
        return self.store.take_alert_step(alert_id, request.principal, "acknowledge", note=body["note"])

    @api("POST", "/alerts/<string:alert_id>/resolve", roles=("operator", "donor", "state"), body=ResolveSchema)
    def resolve_alert(self, request, alert_id):
        body = read_json(request, ResolveSchema())
        return self.store.take_alert_step(alert_id, request.principal, "resolve", resolution=body["resolution"],
                                          note=body["note"])

    @api("POST", "/gaps/detect", roles=("operator",), body=None)
    def detect_gaps(self, request):
        """Sweep for gaps now instead of at the sweeper's next pass."""
        query_args(request, ())
        detected = self.store.detect_gaps()
        current = self.store.alerts({"kind": "gap", "status": "open"}) + \
            self.store.alerts({"kind": "gap", "status": "acknowledged"})
        return {"gap_after_seconds": self.store.model.settings.gap_after_seconds, "detected": detected,
                "count": len(current), "gaps": sorted(current, key=lambda a: a["alert_id"])}

    @api("GET", "/worklist", query=WorklistQuerySchema)
    def get_worklist(self, request):
        filters, result = _worklist(self.store, request)
        return {"filters": filters, **result}

    @api("GET", "/worklist.csv", query=WorklistQuerySchema,
         response={"text/csv": "one line per unmet need, ranked"})
    def get_worklist_csv(self, request):
        _, result = _worklist(self.store, request)
        return Response(worklist_csv(result["needs"]), status=200, mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=worklist.csv"})

    @api("GET", "/changes", roles=("state", "donor", "network", "operator"), query=ChangesQuerySchema)
    def get_changes(self, request):
        return self.store.changes(request.principal, _load_query(request, ChangesQuerySchema()))


SERVICE = MatchingService
