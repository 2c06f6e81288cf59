"""Needs service: States' technical-assistance needs, filed over HTTP, AMQP or a checklist file.

Entrypoints only: the rules are in ``domain.py``, the storage in ``dependencies.py``.
"""
from services.needs import checklist, domain
from services.needs.dependencies import SERVICE_NAME, NeedsStore, import_summary
from services.needs.schemas import NeedSchema, NeedUpdateSchema
from tacoord import reference, topology
from tacoord.consumer import consume_each
from tacoord.errors import Conflict, NotFound, Rejected
from tacoord.ops import OpsServer
from tacoord.web import api, error_body, query_args, read_body, read_json, require_scope

FILTERS = ("state", "regional_group", "article", "chapter", "form", "status", "priority", "checklist_round")
OVERVIEW_FILTERS = ("status", "chapter", "form", "priority", "checklist_round")


class NeedsService:
    name = SERVICE_NAME

    store = NeedsStore()
    ops = OpsServer()

    @consume_each(topology.NEEDS_INGRESS)
    def on_ingress(self, message):
        try:
            self._ingress(message)
        except Conflict as exc:
            raise Rejected(str(exc))  # retrying cannot help

    def _ingress(self, message):
        data, actor = message["data"], message["actor"]  # partner_actor: who within the partner
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
        need, events = self.store.file(filed, "needs", request.principal.actor)
        return (201 if any(e["type"] == "need.submitted" for e in events) else 200), need

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
        needs = self.store.find(domain.check_filters(query_args(request, FILTERS)))
        return {"count": len(needs), "needs": needs}

    @api("GET", "/needs/overview")
    def overview(self, request):
        filters = domain.check_filters(query_args(request, OVERVIEW_FILTERS), domain.STATUSES + ("all",))
        return self.store.overview(filters)

    @api("GET", "/needs/reporting-rate")
    def reporting_rate(self, request):
        args = query_args(request, ("checklist_round",))
        rate = domain.reporting_rate(self.store.reporting_states(args.get("checklist_round")),
                                     domain.un_member_parties())
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
