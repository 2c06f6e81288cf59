"""Needs service: States' technical-assistance needs, filed over HTTP, AMQP or a checklist file.

Entrypoints only: the rules are in ``domain.py``, the storage in ``dependencies.py``.
"""
from datetime import date

from services.needs import checklist, domain, parties
from services.needs.dependencies import SERVICE_NAME, NeedsKpis, NeedsStore, import_summary
from services.needs.schemas import NeedEventSchema, NeedSchema, NeedUpdateSchema, PartyCorrectionSchema
from tacoord import reference, topology
from tacoord.consumer import consume_each
from tacoord.errors import Conflict, NotFound, Rejected
from tacoord.ops import OpsServer
from tacoord.routes import listing
from tacoord.web import api, error_body, query_args, read_body, read_json, require_scope

FILTERS = ("state", "regional_group", "article", "chapter", "form", "status", "priority", "checklist_round")
OVERVIEW_FILTERS = ("status", "chapter", "form", "priority", "checklist_round")
CHECKLIST = {"text/csv": "a header line naming the columns, then one need per line (services/needs/checklist.py)",
             "application/json": NeedSchema(many=True)}


class NeedsService:
    name = SERVICE_NAME

    store = NeedsStore()
    ops = OpsServer()
    kpis = NeedsKpis()

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

    @api("POST", "/needs", roles=("state", "operator"), body=NeedSchema, response=NeedEventSchema)
    def file_need(self, request):
        filed = read_json(request)
        require_scope(request.principal, filed["state"], "needs")
        need, events = self.store.file(filed, "needs", request.principal.actor)
        return (201 if any(e["type"] == "need.submitted" for e in events) else 200), need

    @api("POST", "/needs/import", roles=("operator", "partner", "state"), body=CHECKLIST)
    def import_checklist(self, request):
        """A checklist export: one summary, one reason per rejected row. A State imports its own
        rows; a row for another State is rejected with its line."""
        fmt = checklist.format_of(content_type=request.headers.get("Content-Type"))
        if fmt is None:
            return 415, error_body(415, "send the checklist as 'Content-Type: text/csv' or 'application/json'")
        raw = read_body(request)
        if not raw.strip():
            raise Rejected("the checklist is empty", "body")
        rows, errors = checklist.parse_all(raw, fmt)
        if request.principal.role == "state":
            rows, foreign = checklist.own_rows(rows, request.principal.subject)
            errors = sorted(errors + foreign, key=lambda e: e.line)
        counts = self.store.import_needs([r.need for r in rows], "needs", request.principal.actor)
        return import_summary(counts, errors)

    @api("GET", "/needs", query=FILTERS, response=listing("needs", NeedEventSchema))
    def list_needs(self, request):
        needs = self.store.find(domain.check_filters(query_args(request, FILTERS)))
        return {"count": len(needs), "needs": needs}

    @api("GET", "/needs/overview", query=OVERVIEW_FILTERS)
    def overview(self, request):
        filters = domain.check_filters(query_args(request, OVERVIEW_FILTERS), domain.STATUSES + ("all",))
        return self.store.overview(filters)

    @api("GET", "/needs/reporting-rate", query=("checklist_round", "as_of"))
    def reporting_rate(self, request):
        args = query_args(request, ("checklist_round", "as_of"))
        as_of = parties.check_date(args["as_of"]) if "as_of" in args else date.today()
        rate = parties.coverage(self.store.parties(), self.store.reporting_states(args.get("checklist_round")),
                                as_of)
        return {**rate, "checklist_round": args.get("checklist_round")}

    @api("GET", "/needs/<string:need_id>", response=NeedEventSchema)
    def get_need(self, request, need_id):
        return self.store.get(need_id)

    @api("PATCH", "/needs/<string:need_id>", roles=("state", "operator"), body=NeedUpdateSchema,
         response=NeedEventSchema)
    def update_need(self, request, need_id):
        changes = read_json(request)
        require_scope(request.principal, self.store.get(need_id)["state"], "needs")
        return self.store.change(need_id, changes, "needs", request.principal.actor)

    @api("DELETE", "/needs/<string:need_id>", roles=("state", "operator"), query=("reason",),
         response=NeedEventSchema)
    def withdraw_need(self, request, need_id):
        require_scope(request.principal, self.store.get(need_id)["state"], "needs")
        reason = request.args.get("reason", "")[:1000]
        return self.store.withdraw(need_id, reason, "needs", request.principal.actor)

    # -- the parties to the Convention -------------------------------------------------

    @api("GET", "/parties", query=("as_of", "status", "regional_group", "verification"))
    def list_parties(self, request):
        args = query_args(request, ("as_of", "status", "regional_group", "verification"))
        filters = parties.check_filters(args)
        entries = self.store.parties()
        if "as_of" in filters:
            entries = parties.parties_on(entries, filters["as_of"])
        found = [e for _, e in sorted(entries.items()) if parties.passes(e, filters)]
        return {"count": len(found), "parties": found, "legend": reference.parties_data()["_meta"]}

    @api("GET", "/parties/<string:code>")
    def get_party(self, request, code):
        return self.store.party(code.upper())

    @api("PUT", "/parties/<string:code>", roles=("operator",), body=PartyCorrectionSchema)
    def correct_party(self, request, code):
        changes = read_json(request, PartyCorrectionSchema())
        entry, events = self.store.correct_party(code.upper(), changes, request.principal.actor)
        return {**entry, "changed": bool(events)}

    @api("GET", "/whoami", query=())
    def whoami(self, request):
        """Who this API key is: its role and the subject it acts for (the workspace asks this at sign-in)."""
        query_args(request, ())
        principal = request.principal
        state = reference.states().get(principal.subject) if principal.role == "state" else None
        return {"role": principal.role, "subject": principal.subject, "actor": principal.actor,
                "key_id": principal.key_id, "name": state["name"] if state else None}

    @api("GET", "/reference/states")
    def states(self, request):
        return [{"iso3": c["iso3"], "name": c["name"], "regional_group": c.get("regional_group")}
                for c in reference.states().values()]


SERVICE = NeedsService
