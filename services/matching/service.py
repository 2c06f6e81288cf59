"""Matching service: needs against supply, incrementally, with the needs-vs-supply matrix.

Entrypoints only: the batch consumer of ``matching.events`` and the HTTP
routes. The rules are in :mod:`services.matching.domain` (and the modules it
builds on), the in-memory model and every write in
:mod:`services.matching.dependencies`.
"""
from pathlib import Path

from werkzeug.wrappers import Response

from services.matching.dependencies import MatchingStore
from services.matching.matrix import matrix, matrix_cell, matrix_csv, matrix_reference
from services.matching.schemas import (AlertsQuerySchema, CellQuerySchema, MatchesQuerySchema,
                                       MatrixQuerySchema)
from tacoord import topology
from tacoord.consumer import consume_events
from tacoord.errors import NotFound
from tacoord.ops import OpsServer
from tacoord.web import PUBLIC, api, query_args

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

    @api("GET", "/matrix", query=MatrixQuerySchema)
    def get_matrix(self, request):
        query = _load_query(request, MatrixQuerySchema())
        cells = matrix(self.store.model, query["rows"], query["cols"], query.get("level"), _filters(query))
        return {"rows": query["rows"], "cols": query["cols"], "level": query.get("level"),
                "filters": _filters(query), "count": len(cells),
                "cells": [{k: v for k, v in c.items() if k != "_ids"} for c in cells]}

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
                "assignments": [{"need_id": n, "offer_id": o} for n, o in sorted(result["assignments"].items())]}

    @api("GET", "/matches/<string:match_id>")
    def get_match(self, request, match_id):
        found = self.store.matches({"_id": match_id}, limit=1)
        if not found:
            raise NotFound(f"no match {match_id!r}")
        return found[0]


SERVICE = MatchingService
