"""Needs' I/O: the ``needs`` collection behind named operations, and its storage provider.

Every change goes through the domain (``domain.py``), which returns the new
state and its events; the repository stores both in one write (the outbox)
and relays the events. Operator commands get the same repository through
:func:`opened`.
"""
from pymongo.errors import BulkWriteError

from services.needs import domain, parties
from services.needs.schemas import NeedSchema
from tacoord import config, reference, store
from tacoord.config import setting
from tacoord.envelope import utcnow
from tacoord.errors import NotFound
from tacoord.kpis import Kpis, replace
from tacoord.ops import metric
from tacoord.outbox import staged, staged_insert, strip
from tacoord.store import MongoStore, Repository

SERVICE_NAME = "needs"
NEEDS = "needs"
PARTY_CORRECTIONS = "party_corrections"   # operators' corrections of the shipped parties list, by party code
IMPORT_CHUNK = 500
LOOKUP_CHUNK = 1000


ROUND_KEY = "TACOORD_CHECKLIST_ROUND"  # the current round; default: the latest round any need names

OPEN_NEEDS = metric("gauge", SERVICE_NAME, "open_needs", "Open needs (open or in progress), by priority and chapter",
                    ["priority", "chapter"])
ROUND_REPORTED = metric("gauge", SERVICE_NAME, "reporting_states",
                        "UN member States that reported needs in the current checklist round", ["checklist_round"])
ROUND_COVERAGE = metric("gauge", SERVICE_NAME, "reporting_coverage_ratio",
                        "Share of UN member States that reported needs in the current checklist round (0-1)",
                        ["checklist_round"])
PARTIES = metric("gauge", SERVICE_NAME, "reporting_parties",
                 "States parties to the Convention today (the denominator of the coverage)")


def imported_rows():
    return metric("counter", SERVICE_NAME, "imported_rows_total",
                  "Checklist rows imported, by outcome (accepted, updated, unchanged, rejected)", ["outcome"])


def import_summary(counts, errors):
    """The answer of an import (counts and the rejected rows), counted in ``imported_rows_total``."""
    summary = {**counts, "rejected": [e.as_dict() for e in errors]}
    rows = imported_rows()
    for outcome in ("accepted", "updated", "unchanged"):
        rows.labels(outcome=outcome).inc(counts[outcome])
    rows.labels(outcome="rejected").inc(len(errors))
    return summary


class NeedsRepository(Repository):
    """Named operations on the ``needs`` collection; every change stages its events in the outbox."""

    def get(self, need_id):
        return domain.public(self._load(NEEDS, need_id, "need"))

    def file(self, filed, source, actor, cause=None):
        """Store a filing: a new need, an update of the same need, or nothing when it repeats it.

        Returns ``(need, events)``: no events when nothing changed.
        """
        def decide(stored):
            return domain.file_need(stored, filed, utcnow().isoformat())
        need_id = domain.need_id(filed["state"], filed["article"], filed["forms"])
        need, events = self._file_and_relay(NEEDS, need_id, "need", decide, source, actor, cause)
        return domain.public(need), events

    def change(self, need_id, changes, source, actor, cause=None):
        def decide(need):
            return domain.change(need, changes, utcnow().isoformat())
        need, _ = self._change_and_relay(NEEDS, need_id, "need", decide, source, actor, cause)
        return domain.public(need)

    def withdraw(self, need_id, reason, source, actor, cause=None):
        def decide(need):
            return domain.withdraw(need, reason, utcnow().isoformat())
        need, _ = self._change_and_relay(NEEDS, need_id, "need", decide, source, actor, cause)
        return domain.public(need)

    def find(self, filters, limit=1000):
        return [domain.public(d) for d in self.db[NEEDS].find(_query(filters), sort=[("_id", 1)], limit=limit)]

    def overview(self, filters):
        query = _query(filters)
        if "status" not in filters:
            query["status"] = {"$in": ["open", "in_progress", "met"]}
        elif filters["status"] == "all":
            del query["status"]
        needs = self.db[NEEDS].find(query, {"article": 1, "regional_group": 1, "_id": 0})
        return domain.overview(needs)

    def reporting_states(self, checklist_round=None):
        query = {"checklist_round": checklist_round} if checklist_round else {}
        return self.db[NEEDS].distinct("state", query)

    # -- the parties to the Convention ----------------------------------------------

    def parties(self):
        """code -> the entry as it stands (the shipped list with operators' corrections)."""
        corrections = {d["_id"]: strip(d) for d in self.db[PARTY_CORRECTIONS].find({})}
        return parties.all_parties(corrections)

    def party(self, code):
        shipped = reference.parties().get(code)
        if shipped is None:
            raise NotFound(f"no party {code!r} in the parties list; see GET /parties")
        return parties.effective(shipped, strip(self.db[PARTY_CORRECTIONS].find_one({"_id": code})))

    def correct_party(self, code, changes, actor):
        """Store an operator's correction (``party.corrected``, audited). Returns ``(entry, events)``."""
        shipped = reference.parties().get(code)
        if shipped is None:
            raise NotFound(f"no party {code!r} in the parties list; see GET /parties")

        def decide(stored):
            return parties.correct(shipped, stored, changes, actor, utcnow().isoformat())
        correction, events = self._file_and_relay(PARTY_CORRECTIONS, code, "party correction", decide,
                                                  SERVICE_NAME, actor)
        return parties.effective(shipped, correction), events

    def import_needs(self, filings, source, actor):
        """Store many validated filings at once. Returns counts {accepted, updated, unchanged}.

        One query loads the stored needs the filings touch; new needs go in with
        ``insert_many`` (each carrying its ``need.submitted`` in its outbox);
        only true duplicates are updated, one by one. Each chunk's events are
        then relayed in one confirmed batch (the sweeper republishes any that
        a crash leaves behind).
        """
        ids = sorted({domain.need_id(f["state"], f["article"], f["forms"]) for f in filings})
        existing = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            for doc in self.db[NEEDS].find({"_id": {"$in": ids[start:start + LOOKUP_CHUNK]}}):
                existing[doc["_id"]] = strip(doc)
        inserts, updates, counts = domain.plan_import(filings, existing, utcnow().isoformat())
        for start in range(0, len(inserts), IMPORT_CHUNK):
            documents, relayed = [], []
            for need, events in inserts[start:start + IMPORT_CHUNK]:
                envelopes = self._envelopes(events, source, actor)
                relayed += [(need["need_id"], event) for event in envelopes]
                documents.append(staged_insert({"_id": need["need_id"], **need}, envelopes))
            try:
                self.db[NEEDS].insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                relayed = self._after_clashes(exc, documents, relayed, source, actor)
            self.relay.relay_many([(NEEDS, need_id, event) for need_id, event in relayed])
        for start in range(0, len(updates), IMPORT_CHUNK):
            relayed = []
            for need, events in updates[start:start + IMPORT_CHUNK]:
                envelopes = self._envelopes(events, source, actor)
                self.db[NEEDS].update_one({"_id": need["need_id"]}, staged({"$set": need}, envelopes))
                relayed += [(need["need_id"], event) for event in envelopes]
            self.relay.relay_many([(NEEDS, need_id, event) for need_id, event in relayed])
        return counts

    def _after_clashes(self, exc, documents, relayed, source, actor):
        """Needs filed by someone else since the lookup: file those one by one instead."""
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise exc
        clashes = {e["op"]["_id"] for e in errors}
        for document in documents:
            if document["_id"] in clashes:
                self.file({k: document[k] for k in NeedSchema().fields if k in document}, source, actor)
        return [(nid, event) for nid, event in relayed if nid not in clashes]


def _query(filters):
    """The MongoDB query of checked filters (``domain.check_filters``)."""
    query = {}
    for key in ("state", "regional_group", "status", "checklist_round"):
        if key in filters:
            query[key] = filters[key]
    for key in ("article", "chapter", "priority"):
        if key in filters:
            query[key] = int(filters[key])
    if "form" in filters:
        query["forms"] = filters["form"]
    return query


class NeedsStore(MongoStore):
    repository = NeedsRepository
    outbox_collections = (NEEDS, PARTY_CORRECTIONS)


class NeedsKpis(Kpis):
    """Open needs by priority and chapter, and the reporting coverage of the current round, from
    the ``needs`` collection every ``TACOORD_KPI_SECONDS``: one grouping query per priority and
    two ``distinct`` (on nx-27017 about 1 s for a full round of 32,000 needs, grouped in SQL)."""

    def refresh(self):
        needs = self.database[NEEDS]
        by_priority = {}
        for priority in domain.PRIORITIES:
            rows = needs.aggregate([{"$match": {"status": {"$in": list(domain.OPEN)}, "priority": priority}},
                                    {"$group": {"_id": "$chapter", "n": {"$sum": 1}}}])
            by_priority[priority] = {row["_id"]: row["n"] for row in rows}
        checklist_round = (setting(self.container.config, ROUND_KEY)
                           or domain.current_round(needs.distinct("checklist_round")))
        corrections = {d["_id"]: strip(d) for d in self.database[PARTY_CORRECTIONS].find({})}
        rate = parties.coverage(parties.all_parties(corrections),
                                needs.distinct("state", {"checklist_round": checklist_round})
                                if checklist_round else [], utcnow().date())
        replace(OPEN_NEEDS, domain.open_needs_counts(by_priority))
        replace(ROUND_REPORTED, {(checklist_round,): rate["reported"]} if checklist_round else {})
        replace(ROUND_COVERAGE, {(checklist_round,): rate["rate"]} if checklist_round else {})
        PARTIES.set(rate["parties"])


def opened():
    """The repository a needs worker gets, for an operator command on this host (closed on leaving)."""
    return store.opened(NeedsStore, config.service_config(SERVICE_NAME))
