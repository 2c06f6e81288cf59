"""Supply service: donors' offers (HTTP, AMQP, bulk, IATI XML) and the expert roster.

Entrypoints only: the ingress consumer, the HTTP routes and the expiry timer. The rules are in
``domain`` (offers) and ``experts`` (the roster), the I/O in ``dependencies``, the request formats in ``schemas``, ``filters``,
``bulk`` and ``iati``.
"""
import uuid

from nameko.timer import timer

from services.supply import bulk, expert_template, experts, iati
from services.supply.dependencies import LIST_LIMIT, SupplySettings, SupplyStore
from services.supply.filters import EXPERT_FILTERS, OFFER_FILTERS, check_expert_filters, check_offer_filters
from services.supply.schemas import (ExpertSchema, ExpertUpdateSchema, OfferEventSchema, OfferSchema,
                                     OfferUpdateSchema, TransitionSchema)
from tacoord import topology
from tacoord.consumer import consume_each
from tacoord.envelope import utcnow
from tacoord.errors import Conflict, Forbidden, NotFound, Rejected
from tacoord.ops import OpsServer
from tacoord.routes import listing
from tacoord.web import BadRequest, api, query_args, read_body, read_json, require_scope

EXPIRY_CHECK_SECONDS = 3600
OFFERS_FILE = {"text/csv": "a header line naming the columns, then one offer per line (services/supply/bulk.py)",
               "application/json": OfferSchema(many=True)}
IATI_FILE = {"application/xml": "an IATI 2.03 <iati-activities> document"}


class SupplyService:
    name = "supply"

    store = SupplyStore()
    settings = SupplySettings()
    ops = OpsServer()

    # -- AMQP ingress ---------------------------------------------------------------------------

    @consume_each(topology.SUPPLY_INGRESS)
    def on_ingress(self, message):
        data = message["data"]
        if message["type"] == "offer.submitted":
            key = data.get("external_ref") or f"event:{message['id']}"
            self.store.file_offer(data, key, message["actor"], cause=message)
        elif message["type"] == "offer.withdrawn":
            try:
                self.store.withdraw_offer(data["offer_id"], data["reason"], message["actor"], cause=message)
            except NotFound as exc:   # waiting cannot make an unknown offer appear: park it now
                raise Rejected(str(exc), "data.offer_id")

    # -- offers over HTTP -----------------------------------------------------------------------

    @api("POST", "/offers", roles=("donor", "operator"), body=OfferSchema, response=OfferEventSchema)
    def publish_offer(self, request):
        filed = read_json(request)
        require_scope(request.principal, filed["provider"], "offers")
        offer, event = self.store.file_offer(filed, filed.get("external_ref") or uuid.uuid4().hex,
                                             request.principal.actor)
        return (201 if event["type"] == "offer.published" else 200), offer

    @api("GET", "/offers", query=OFFER_FILTERS, response=listing("offers", OfferEventSchema))
    def list_offers(self, request):
        filters = check_offer_filters(query_args(request, OFFER_FILTERS))
        offers = self.store.find_offers(filters)
        return {"count": len(offers), "offers": offers}

    @api("GET", "/offers/<string:offer_id>", response=OfferEventSchema)
    def get_offer(self, request, offer_id):
        return self.store.get_offer(offer_id)

    @api("PATCH", "/offers/<string:offer_id>", roles=("donor", "operator"), body=OfferUpdateSchema,
         response=OfferEventSchema)
    def update_offer(self, request, offer_id):
        changes = read_json(request)
        require_scope(request.principal, self.store.get_offer(offer_id)["provider"], "offers")
        if not changes:
            raise BadRequest("nothing to change: send at least one field")
        return self.store.change_offer(offer_id, changes, request.principal.actor)

    @api("DELETE", "/offers/<string:offer_id>", roles=("donor", "operator"), query=("reason",),
         response=OfferEventSchema)
    def withdraw_offer(self, request, offer_id):
        require_scope(request.principal, self.store.get_offer(offer_id)["provider"], "offers")
        reason = query_args(request, ("reason",)).get("reason", "")[:1000]
        return self.store.withdraw_offer(offer_id, reason, request.principal.actor)

    @api("POST", "/offers/import", roles=("donor", "partner", "operator"), body=OFFERS_FILE)
    def import_offers(self, request):
        """Bulk import: CSV (text/csv) or a JSON array; one summary, one reason per rejected line."""
        raw = read_body(request)
        if not raw.strip():
            raise BadRequest("request body is empty; send CSV (text/csv) or a JSON array")
        is_csv = "csv" in (request.mimetype or "")
        rows = bulk.csv_rows(raw) if is_csv else bulk.json_rows(raw)
        summary = self.store.import_offers(bulk.filings(rows, request.principal), request.principal.actor)
        return {"format": "csv" if is_csv else "json", **summary}

    @api("POST", "/offers/import/iati", roles=("donor", "operator"), body=IATI_FILE, query=("dry_run",))
    def import_iati(self, request):
        """IATI 2.03 activity XML; a donor imports the activities it reports itself.

        ``?dry_run=1``: the report of what the import would do, storing nothing (``tacoord import iati
        --dry-run``'s code path, with this service's sector map)."""
        dry_run = query_args(request, ("dry_run",)).get("dry_run", "0")
        if dry_run not in ("0", "1", "true", "false"):
            raise Rejected("dry_run must be 1 or 0", "dry_run")
        raw = read_body(request)
        if not raw.strip():
            raise BadRequest("request body is empty; send an IATI 2.03 <iati-activities> document")
        only = None if request.principal.is_operator() else request.principal.subject
        sector_map = self.settings.sector_map()
        try:
            if dry_run in ("1", "true"):
                return iati.dry_run(raw, sector_map, only_provider=only)
            _, activities = iati.parse(raw)
        except iati.IatiError as exc:
            raise Rejected(str(exc), "body")
        return self.store.import_iati(activities, sector_map, request.principal.actor, only_provider=only)

    # -- experts ---------------------------------------------------------------------------------

    @api("POST", "/experts", roles=("donor", "state", "operator"), body=ExpertSchema)
    def register_expert(self, request):
        cv = ExpertSchema().dump(read_json(request))
        principal = request.principal
        if principal.is_operator():
            nominated_by = cv.get("nominated_by") or principal.subject
        else:
            if cv.get("nominated_by") not in (None, principal.subject):
                raise Forbidden(f"{principal.actor} nominates experts in its own name, not {cv['nominated_by']}")
            nominated_by = principal.subject
        cv.pop("nominated_by", None)
        return 201, self.store.register_expert(cv, nominated_by, principal.actor)

    @api("GET", "/experts", query=EXPERT_FILTERS)
    def search_experts(self, request):
        filters = check_expert_filters(query_args(request, EXPERT_FILTERS))
        principal = request.principal
        if not principal.is_operator() and "vetting_status" in filters:
            raise Forbidden("only operators filter by vetting_status; others see active experts only")
        found = experts.visible_experts(self.store.experts(), filters, principal.role, principal.subject,
                                       utcnow(), LIST_LIMIT)
        return {"count": len(found), "experts": found}

    @api("GET", "/experts/template")
    def cv_template(self, request):
        query_args(request, ())
        return expert_template.template()

    @api("GET", "/experts/balance")
    def balance(self, request):
        now = utcnow()
        nationalities = [e["nationality"] for e in self.store.experts({"vetting_status": "active"})
                         if experts.searchable(e, now)]
        return experts.balance(nationalities)

    @api("POST", "/experts/expire-due", roles=("operator",), body=None)
    def expire_due_now(self, request):
        expired = self.store.expire_due(request.principal.actor)
        return {"expired": expired}

    @api("GET", "/experts/<string:expert_id>")
    def get_expert(self, request, expert_id):
        principal = request.principal
        view = experts.expert_view(self.store.get_expert(expert_id), principal.role, principal.subject, utcnow())
        if view is None:
            raise NotFound(f"no expert {expert_id!r}")
        return view

    @api("PATCH", "/experts/<string:expert_id>", roles=("donor", "state", "operator"), body=ExpertUpdateSchema)
    def update_expert(self, request, expert_id):
        changes = ExpertUpdateSchema().dump(read_json(request))
        expert = self.store.get_expert(expert_id)
        require_scope(request.principal, expert["owner"], "experts")
        if "expires_at" in changes and not request.principal.is_operator():
            raise Forbidden("only an operator may move expires_at")
        if "nominated_by" in changes and not request.principal.is_operator():
            raise Forbidden("only an operator may change nominated_by")
        if not changes:
            raise BadRequest("nothing to change: send at least one field")
        if expert["vetting_status"] == "expired" and not request.principal.is_operator():
            raise Conflict(f"expert {expert_id} is expired; re-submit it (transition to 'submitted') first")
        return self.store.update_expert(expert_id, changes, request.principal.actor)

    @api("POST", "/experts/<string:expert_id>/transition", roles=("donor", "state", "operator"),
         body=TransitionSchema)
    def transition_expert(self, request, expert_id):
        body = read_json(request)
        expert = self.store.get_expert(expert_id)
        require_scope(request.principal, expert["owner"], "experts")
        return self.store.transition_expert(expert_id, body["to"], body["note"], request.principal,
                                            self.settings.validity_days())

    @timer(interval=EXPIRY_CHECK_SECONDS)
    def expire_lapsed_experts(self):
        self.store.expire_due()


SERVICE = SupplyService
