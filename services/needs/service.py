"""Needs service: States' technical-assistance needs, filed over HTTP, AMQP or a checklist file."""
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.needs import checklist, domain
from services.needs.schemas import NeedSchema, NeedUpdateSchema, STATUSES
from tacoord import reference, topology
from tacoord.consumer import apply_each, consume_events
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Conflict, NotFound, Rejected
from tacoord.ops import OpsServer, metric
from tacoord.outbox import staged, staged_insert, strip
from tacoord.store import MongoStore, Repository
from tacoord.web import api, error_body, query_args, read_body, read_json, require_scope

NEEDS = "needs"
SERVICE_NAME = "needs"
IMPORT_CHUNK = 500
INGRESS_BATCH = 50
PUBLIC_FIELDS = ("need_id", "state", "regional_group", "article", "chapter", "paragraph", "forms",
                 "other_text", "priority", "description", "checklist_round", "languages",
                 "external_ref", "status", "created_at", "updated_at")


def public(document):
    return {k: document.get(k) for k in PUBLIC_FIELDS} if document else None


def imported_rows():
    return metric("counter", SERVICE_NAME, "imported_rows_total",
                  "Checklist rows imported, by outcome (accepted, updated, unchanged, rejected)", ["outcome"])


class NeedsRepository(Repository):
    """Named operations on the ``needs`` collection; every change stages its event in the outbox."""

    def _load(self, need_id):
        existing = self.db[NEEDS].find_one({"_id": need_id})
        if existing is None:
            raise NotFound(f"no need {need_id!r}")
        return strip(existing)

    def get(self, need_id):
        return public(self._load(need_id))

    def file(self, filed, source, actor, cause=None):
        """Store a filing: a new need, an update of the same need, or nothing when it repeats it.

        Returns ``(need, event or None)``.
        """
        for _ in range(3):
            existing = self.db[NEEDS].find_one({"_id": domain.need_id(filed["state"], filed["article"],
                                                                      filed["forms"])})
            need, kind = domain.file_need(strip(existing), filed, utcnow().isoformat())
            if kind is None:
                return public(need), None
            event = new_event(kind, public(need), source, actor, cause=cause)
            if existing is None:
                try:
                    self.db[NEEDS].insert_one(staged_insert({"_id": need["need_id"], **need}, [event]))
                except DuplicateKeyError:
                    continue  # filed concurrently: update it instead
            else:
                self.db[NEEDS].update_one({"_id": need["need_id"]}, staged({"$set": need}, [event]))
            self.relay.relay(NEEDS, need["need_id"], [event])
            return public(need), event
        raise Conflict("the need kept changing while it was filed; try again")

    def change(self, need_id, changes, source, actor, cause=None):
        existing = self._load(need_id)
        changes, kind = domain.change(existing, changes, utcnow().isoformat())
        return self._apply(existing, changes, kind, source, actor, cause)

    def withdraw(self, need_id, reason, source, actor, cause=None):
        existing = self._load(need_id)
        changes, kind = domain.withdraw(existing, reason, utcnow().isoformat())
        return self._apply(existing, changes, kind, source, actor, cause)

    def _apply(self, existing, changes, kind, source, actor, cause):
        need = {**existing, **changes}
        if kind is None:
            return public(need)
        event = new_event(kind, public(need), source, actor, cause=cause)
        self.db[NEEDS].update_one({"_id": existing["need_id"]}, staged({"$set": changes}, [event]))
        self.relay.relay(NEEDS, existing["need_id"], [event])
        return public(need)

    def find(self, filters, limit=1000):
        return [public(d) for d in self.db[NEEDS].find(_query(filters), sort=[("_id", 1)], limit=limit)]

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

    def import_needs(self, filings, source, actor):
        """Store many validated filings at once. Returns counts {accepted, updated, unchanged}.

        One query loads the stored needs the filings touch; new needs go in with
        ``insert_many`` (each carrying its ``need.submitted`` in its outbox);
        only true duplicates are updated, one by one. Each chunk's events are
        then relayed in one confirmed batch (the sweeper republishes any that
        a crash leaves behind).
        """
        now = utcnow().isoformat()
        ids = sorted({domain.need_id(f["state"], f["article"], f["forms"]) for f in filings})
        existing = {}
        for start in range(0, len(ids), 1000):
            for doc in self.db[NEEDS].find({"_id": {"$in": ids[start:start + 1000]}}):
                existing[doc["_id"]] = strip(doc)
        inserts, updates, counts = domain.plan_import(filings, existing, now)
        for start in range(0, len(inserts), IMPORT_CHUNK):
            documents, staged_events = [], []
            for need in inserts[start:start + IMPORT_CHUNK]:
                event = new_event("need.submitted", public(need), source, actor)
                staged_events.append((need["need_id"], event))
                documents.append(staged_insert({"_id": need["need_id"], **need}, [event]))
            try:
                self.db[NEEDS].insert_many(documents, ordered=False)
            except BulkWriteError as exc:
                staged_events = self._after_clashes(exc, documents, staged_events, source, actor)
            self.relay.relay_many([(NEEDS, need_id, event) for need_id, event in staged_events])
        for start in range(0, len(updates), IMPORT_CHUNK):
            staged_events = []
            for need, kind in updates[start:start + IMPORT_CHUNK]:
                event = new_event(kind, public(need), source, actor)
                self.db[NEEDS].update_one({"_id": need["need_id"]}, staged({"$set": need}, [event]))
                staged_events.append((need["need_id"], event))
            self.relay.relay_many([(NEEDS, need_id, event) for need_id, event in staged_events])
        return counts

    def _after_clashes(self, exc, documents, staged_events, source, actor):
        """Needs filed by someone else since the lookup: file those one by one instead."""
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise exc
        clashes = {e["op"]["_id"] for e in errors}
        for document in documents:
            if document["_id"] in clashes:
                self.file({k: document[k] for k in NeedSchema().fields if k in document}, source, actor)
        return [(nid, event) for nid, event in staged_events if nid not in clashes]


def _query(filters):
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
    outbox_collections = (NEEDS,)


FILTERS = ("state", "regional_group", "article", "chapter", "form", "status", "priority", "checklist_round")
OVERVIEW_FILTERS = ("status", "chapter", "form", "priority", "checklist_round")


def check_filters(filters, statuses=STATUSES):
    for key in ("article", "chapter", "priority"):
        if key in filters and not filters[key].isdigit():
            raise Rejected(f"{key} must be a number", key)
    if "status" in filters and filters["status"] not in statuses:
        raise Rejected(f"status must be one of {', '.join(statuses)}", "status")
    if "state" in filters:
        filters["state"] = filters["state"].upper()
    if "form" in filters:
        filters["form"] = filters["form"].upper()
        if filters["form"] not in reference.assistance_forms():
            raise Rejected(f"unknown form; one of {', '.join(reference.assistance_forms())}", "form")
    if "regional_group" in filters:
        filters["regional_group"] = filters["regional_group"].upper()
        if filters["regional_group"] not in reference.regional_groups():
            raise Rejected(f"unknown regional group; one of {', '.join(reference.regional_groups())}",
                           "regional_group")
    return filters


def un_member_parties():
    """The denominator of the reporting rate: UN member States, iso3 -> regional group."""
    return {c["iso3"]: c.get("regional_group") for c in reference.data()["countries"]}


def import_summary(counts, errors):
    summary = {**counts, "rejected": [e.as_dict() for e in errors]}
    metric_ = imported_rows()
    for outcome in ("accepted", "updated", "unchanged"):
        metric_.labels(outcome=outcome).inc(counts[outcome])
    metric_.labels(outcome="rejected").inc(len(errors))
    return summary


class NeedsService:
    name = SERVICE_NAME

    store = NeedsStore()
    ops = OpsServer()

    # In batches of what the broker has handed over: one inbox claim and one record per batch.
    @consume_events(topology.NEEDS_INGRESS, batch_size=INGRESS_BATCH, batch_wait=0)
    def on_ingress(self, messages):
        return apply_each(messages, self._ingress_one)

    def _ingress_one(self, message):
        try:
            self._ingress(message)
        except Conflict as exc:
            raise Rejected(str(exc))  # retrying cannot help

    def _ingress(self, message):
        data, actor = message["data"], message["source"]
        if message["type"] == "need.submitted":
            self.store.file(data, "needs", actor, cause=message)
        elif message["type"] == "need.updated":
            changes = {k: v for k, v in data.items() if k != "need_id"}
            self._ingress_need(data["need_id"])
            self.store.change(data["need_id"], changes, "needs", actor, cause=message)
        elif message["type"] == "need.withdrawn":
            self._ingress_need(data["need_id"])
            self.store.withdraw(data["need_id"], data["reason"], "needs", actor, cause=message)

    def _ingress_need(self, need_id):
        try:
            return self.store.get(need_id)
        except NotFound:
            raise Rejected(f"no need {need_id!r}", "data.need_id")

    @api("POST", "/needs", roles=("state", "operator"))
    def file_need(self, request):
        filed = read_json(request, NeedSchema())
        require_scope(request.principal, filed["state"], "needs")
        need, event = self.store.file(filed, "needs", request.principal.actor)
        return (201 if event and event["type"] == "need.submitted" else 200), need

    @api("POST", "/needs/import", roles=("operator", "partner"))
    def import_checklist(self, request):
        fmt = checklist.format_of(content_type=request.headers.get("Content-Type"))
        if fmt is None:
            return 415, error_body(415, "send the checklist as 'Content-Type: text/csv' or 'application/json'")
        raw = read_body(request)
        if not raw.strip():
            raise Rejected("the checklist is empty", "body")
        rows, errors = checklist.parse_all(raw, fmt)
        counts = self.store.import_needs([r.need for r in rows], "needs", request.principal.actor)
        return import_summary(counts, errors)

    @api("GET", "/needs")
    def list_needs(self, request):
        filters = check_filters(query_args(request, FILTERS))
        needs = self.store.find(filters)
        return {"count": len(needs), "needs": needs}

    @api("GET", "/needs/overview")
    def overview(self, request):
        filters = check_filters(query_args(request, OVERVIEW_FILTERS), STATUSES + ("all",))
        return self.store.overview(filters)

    @api("GET", "/needs/reporting-rate")
    def reporting_rate(self, request):
        args = query_args(request, ("checklist_round",))
        rate = domain.reporting_rate(self.store.reporting_states(args.get("checklist_round")),
                                     un_member_parties())
        return {**rate, "checklist_round": args.get("checklist_round")}

    @api("GET", "/needs/<string:need_id>")
    def get_need(self, request, need_id):
        return self.store.get(need_id)

    @api("PATCH", "/needs/<string:need_id>", roles=("state", "operator"))
    def update_need(self, request, need_id):
        changes = read_json(request, NeedUpdateSchema())
        require_scope(request.principal, self.store.get(need_id)["state"], "needs")
        return self.store.change(need_id, changes, "needs", request.principal.actor)

    @api("DELETE", "/needs/<string:need_id>", roles=("state", "operator"))
    def withdraw_need(self, request, need_id):
        require_scope(request.principal, self.store.get(need_id)["state"], "needs")
        reason = request.args.get("reason", "")[:1000]
        return self.store.withdraw(need_id, reason, "needs", request.principal.actor)

    @api("GET", "/reference/states")
    def states(self, request):
        return [{"iso3": c["iso3"], "name": c["name"], "regional_group": c.get("regional_group")}
                for c in reference.states().values()]


SERVICE = NeedsService
