"""Needs service: States' technical-assistance needs, filed over HTTP or AMQP."""
from pymongo.errors import DuplicateKeyError

from services.needs import domain
from services.needs.schemas import NeedSchema, NeedUpdateSchema, STATUSES
from tacoord import reference, topology
from tacoord.consumer import consume_events
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Conflict, NotFound, Rejected
from tacoord.ops import OpsServer
from tacoord.outbox import staged, staged_insert, strip
from tacoord.store import MongoStore, Repository
from tacoord.web import api, query_args, read_json, require_scope

NEEDS = "needs"
OPEN = ("open", "in_progress")
PUBLIC_FIELDS = ("need_id", "state", "regional_group", "article", "chapter", "paragraph", "forms",
                 "other_text", "priority", "description", "checklist_round", "languages",
                 "external_ref", "status", "created_at", "updated_at")


def public(document):
    return {k: document.get(k) for k in PUBLIC_FIELDS} if document else None


class NeedsRepository(Repository):

    def get(self, need_id):
        need = public(self.db[NEEDS].find_one({"_id": need_id}))
        if need is None:
            raise NotFound(f"no need {need_id!r}")
        return need

    def file(self, filed, source, actor, cause=None):
        """Store a filing: a new need, or an update of the same open need. Returns (need, event)."""
        now = utcnow().isoformat()
        need = domain.new_need(filed, now)
        for _ in range(3):
            existing = self.db[NEEDS].find_one({"_id": need["need_id"]})
            if existing is None:
                event = new_event("need.submitted", public(need), source, actor, cause=cause)
                try:
                    self.db[NEEDS].insert_one(staged_insert({"_id": need["need_id"], **need}, [event]))
                except DuplicateKeyError:
                    continue  # filed concurrently: update it instead
            else:
                kind = "need.updated" if existing["status"] in OPEN else "need.submitted"
                need = {**need, "created_at": existing["created_at"]}
                event = new_event(kind, public(need), source, actor, cause=cause)
                self.db[NEEDS].update_one({"_id": need["need_id"]}, staged({"$set": need}, [event]))
            self.relay.relay(NEEDS, need["need_id"], [event])
            return public(need), event
        raise Conflict("the need kept changing while it was filed; try again")

    def change(self, need_id, changes, source, actor, kind="need.updated", cause=None):
        existing = self.db[NEEDS].find_one({"_id": need_id})
        if existing is None:
            raise NotFound(f"no need {need_id!r}")
        if existing["status"] == "withdrawn":
            raise Conflict(f"need {need_id} is withdrawn; file it again to reopen it")
        need = {**strip(existing), **changes, "updated_at": utcnow().isoformat()}
        event = new_event(kind, public(need), source, actor, cause=cause)
        self.db[NEEDS].update_one({"_id": need_id}, staged({"$set": {**changes, "updated_at": need["updated_at"]}},
                                                           [event]))
        self.relay.relay(NEEDS, need_id, [event])
        return public(need)

    def find(self, filters, limit=1000):
        query = {}
        for key in ("state", "regional_group", "status"):
            if key in filters:
                query[key] = filters[key]
        for key in ("article", "chapter", "priority"):
            if key in filters:
                query[key] = int(filters[key])
        if "form" in filters:
            query["forms"] = filters["form"]
        return [public(d) for d in self.db[NEEDS].find(query, sort=[("_id", 1)], limit=limit)]


class NeedsStore(MongoStore):
    repository = NeedsRepository
    outbox_collections = (NEEDS,)


FILTERS = ("state", "regional_group", "article", "chapter", "form", "status", "priority")


def check_filters(filters):
    for key in ("article", "chapter", "priority"):
        if key in filters and not filters[key].isdigit():
            raise Rejected(f"{key} must be a number", key)
    if "status" in filters and filters["status"] not in STATUSES:
        raise Rejected(f"status must be one of {', '.join(STATUSES)}", "status")
    if "state" in filters:
        filters["state"] = filters["state"].upper()
    return filters


class NeedsService:
    name = "needs"

    store = NeedsStore()
    ops = OpsServer()

    @consume_events(topology.NEEDS_INGRESS)
    def on_ingress(self, message):
        data = message["data"]
        if message["type"] == "need.submitted":
            self.store.file(data, "needs", message["source"], cause=message)
        elif message["type"] == "need.withdrawn":
            need = self.store.get(data["need_id"])
            if need["status"] != "withdrawn":
                self.store.change(data["need_id"], {"status": "withdrawn", "withdrawal_reason": data["reason"]},
                                  "needs", message["source"], kind="need.withdrawn", cause=message)

    @api("POST", "/needs", roles=("state", "operator"))
    def file_need(self, request):
        filed = read_json(request, NeedSchema())
        require_scope(request.principal, filed["state"], "needs")
        need, event = self.store.file(filed, "needs", request.principal.actor)
        return (201 if event["type"] == "need.submitted" else 200), need

    @api("GET", "/needs")
    def list_needs(self, request):
        filters = check_filters(query_args(request, FILTERS))
        needs = self.store.find(filters)
        return {"count": len(needs), "needs": needs}

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
        return self.store.change(need_id, {"status": "withdrawn"}, "needs", request.principal.actor,
                                 kind="need.withdrawn")

    @api("GET", "/reference/states")
    def states(self, request):
        return [{"iso3": c["iso3"], "name": c["name"], "regional_group": c.get("regional_group")}
                for c in reference.states().values()]


SERVICE = NeedsService
