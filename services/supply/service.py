"""Supply service: donors' offers (HTTP, AMQP, bulk, IATI XML) and the expert roster."""
import csv
import io
import json
import os
import uuid

from marshmallow import ValidationError
from nameko.dependency_providers import Config
from nameko.timer import timer
from pymongo.errors import DuplicateKeyError

from services.supply import domain, iati
from services.supply.schemas import (ExpertSchema, ExpertUpdateSchema, OfferSchema, OfferUpdateSchema,
                                     TransitionSchema)
from tacoord import reference, topology
from tacoord.consumer import apply_each, consume_events
from tacoord.envelope import describe_errors, new_event, utcnow
from tacoord.errors import Conflict, Forbidden, NotFound, Rejected
from tacoord.ops import OpsServer, metric
from tacoord.outbox import staged, staged_insert, strip
from tacoord.safety import json_loads, reject_unsafe_keys
from tacoord.store import MongoStore, Repository
from tacoord.web import BadRequest, api, query_args, read_body, read_json, require_scope

OFFERS = "offers"
EXPERTS = "experts"
OUTBOX_COLLECTIONS = (OFFERS, EXPERTS)
SOURCE = "supply"
MAX_IMPORT_ROWS = 5000
LIST_LIMIT = 1000
INGRESS_BATCH = 50
EXPIRY_CHECK_SECONDS = 3600
SECTOR_MAP_KEY = "TACOORD_IATI_SECTOR_MAP"
VALIDITY_KEY = "TACOORD_EXPERT_VALIDITY_DAYS"

OFFER_FIELDS = domain.OFFER_EVENT_FIELDS + ("external_ref", "withdrawal_reason")
# What anyone may see of a searchable expert; the nominator and operators see the whole record.
PUBLIC_EXPERT_FIELDS = ("expert_id", "title", "nationality", "country_of_residence", "current_position",
                        "employer_type", "expertise", "thematic_areas", "forms", "legal_systems", "languages",
                        "regions", "countries", "years_of_experience", "years_anti_corruption",
                        "irm_experience", "availability", "vetting_status", "expires_at", "updated_at")
NAMED_FIELDS = ("family_name", "given_names", "display_name", "employer")   # only if publish_profile

IATI_OUTCOMES = metric("counter", SOURCE, "iati_activities_total",
                       "IATI activities read by the importer, by outcome", ("outcome",))
IMPORT_ROWS = metric("counter", SOURCE, "import_rows_total", "Bulk-import rows, by outcome", ("outcome",))


def public_offer(document):
    return {k: document.get(k) for k in OFFER_FIELDS} if document else None


def full_expert(document):
    return {k: v for k, v in strip(document).items() if k != "_id"} if document else None


def public_expert(document):
    view = {k: document.get(k) for k in PUBLIC_EXPERT_FIELDS}
    if (document.get("consent") or {}).get("publish_profile"):
        view.update({k: document.get(k) for k in NAMED_FIELDS})
    return view


class SupplyRepository(Repository):

    # -- offers ------------------------------------------------------------------------------

    def get_offer(self, the_id):
        offer = public_offer(self.db[OFFERS].find_one({"_id": the_id}))
        if offer is None:
            raise NotFound(f"no offer {the_id!r}")
        return offer

    def file_offer(self, filed, key, actor, cause=None):
        """Store a filing: a new offer, or (same provider × key) an update. Returns (offer, event or None)."""
        the_id = (domain.iati_offer_id(filed["iati_identifier"]) if filed.get("iati_identifier")
                  else domain.offer_id(filed["provider"], key))
        now = utcnow().isoformat()
        offer = domain.new_offer(filed, the_id, now)
        marker = {"cause_id": cause["id"]} if cause is not None else {}
        for _ in range(3):
            existing = self.db[OFFERS].find_one({"_id": the_id})
            if existing is None:
                event = new_event("offer.published", domain.event_data(offer), SOURCE, actor, cause=cause)
                try:
                    self.db[OFFERS].insert_one(staged_insert({"_id": the_id, **offer, **marker}, [event]))
                except DuplicateKeyError:
                    continue
            else:
                if cause is not None and existing.get("cause_id") == cause["id"]:
                    return public_offer(existing), None  # the same ingress event, redelivered
                kind = "offer.updated" if existing["status"] != "withdrawn" else "offer.published"
                offer = {**offer, "created_at": existing["created_at"]}
                event = new_event(kind, domain.event_data(offer), SOURCE, actor, cause=cause)
                self.db[OFFERS].update_one({"_id": the_id}, staged({"$set": {**offer, **marker}}, [event]))
            self.relay.relay(OFFERS, the_id, [event])
            return public_offer(offer), event
        raise Conflict("the offer kept changing while it was filed; try again")

    def change_offer(self, the_id, changes, actor, kind="offer.updated", cause=None):
        existing = self.db[OFFERS].find_one({"_id": the_id})
        if existing is None:
            raise NotFound(f"no offer {the_id!r}")
        if existing["status"] == "withdrawn":
            raise Conflict(f"offer {the_id} is withdrawn; file it again to publish it")
        merged = domain.normalized({**strip(existing), **changes})
        problems = domain.offer_problems(merged)
        if problems:
            raise ValidationError({field: [message] for field, message in problems})
        merged["updated_at"] = utcnow().isoformat()
        event = new_event(kind, domain.event_data(merged), SOURCE, actor, cause=cause)
        updates = {k: merged[k] for k in set(changes) | {"updated_at"}}
        self.db[OFFERS].update_one({"_id": the_id}, staged({"$set": updates}, [event]))
        self.relay.relay(OFFERS, the_id, [event])
        return public_offer(merged)

    def withdraw_offer(self, the_id, reason, actor, cause=None):
        existing = self.get_offer(the_id)
        if existing["status"] == "withdrawn":
            return existing
        return self.change_offer(the_id, {"status": "withdrawn", "withdrawal_reason": reason}, actor,
                                 kind="offer.withdrawn", cause=cause)

    def find_offers(self, filters, limit=LIST_LIMIT):
        query = {key: filters[key] for key in ("provider", "level", "status") if key in filters}
        if "form" in filters:
            query["forms"] = filters["form"]
        found = []
        for document in self.db[OFFERS].find(query, sort=[("_id", 1)]):
            if domain.offer_matches(document, filters):
                found.append(public_offer(document))
                if len(found) >= limit:
                    break
        return found

    def import_iati(self, xml_bytes, sector_map, actor, only_provider=None):
        """Import activities; per activity 'imported' (with offer_id) or 'skipped' (with reason)."""
        _, activities = iati.parse(xml_bytes)
        results, seen = [], {}
        for activity in activities:
            result = self._import_activity(activity, sector_map, actor, only_provider, seen)
            seen.setdefault(activity["iati_identifier"], (activity["position"], result["outcome"]))
            IATI_OUTCOMES.labels(outcome=result["outcome"]).inc()
            results.append(result)
        return iati.summary(results)

    def _import_activity(self, activity, sector_map, actor, only_provider, seen):
        identifier = activity["iati_identifier"]
        result = {"position": activity["position"], "iati_identifier": identifier, "outcome": "skipped"}
        if identifier in seen:
            position, outcome = seen[identifier]
            what = "already imported" if outcome == "imported" else "was skipped"
            return {**result, "reason": f"duplicate iati-identifier: {what} (activity {position} of this file)"}
        if identifier:
            existing = self.db[OFFERS].find_one({"_id": domain.iati_offer_id(identifier)}, {"_id": 1})
            if existing is not None:
                return {**result, "offer_id": existing["_id"], "reason": "already imported"}
        filing, reason = domain.offer_from_activity(activity, sector_map)
        if filing is None:
            return {**result, "reason": reason}
        if only_provider is not None and filing["provider"] != only_provider:
            return {**result, "reason": f"reporting-org {filing['provider']!r} is not your organisation "
                                        f"({only_provider}); a donor imports its own activities"}
        try:
            filed = OfferSchema().load(filing)
        except ValidationError as exc:
            return {**result, "reason": "; ".join(describe_errors(exc.messages))}
        offer, _ = self.file_offer(filed, identifier, actor)
        return {**result, "outcome": "imported", "offer_id": offer["offer_id"]}

    # -- experts ------------------------------------------------------------------------------

    def _expert_document(self, the_id):
        document = self.db[EXPERTS].find_one({"_id": the_id})
        if document is None:
            raise NotFound(f"no expert {the_id!r}")
        return strip(document)

    def get_expert(self, the_id):
        return full_expert(self._expert_document(the_id))

    def register_expert(self, cv, nominated_by, actor):
        now = utcnow().isoformat()
        the_id = f"exp-{uuid.uuid4().hex[:14]}"
        expert = domain.new_expert(cv, the_id, nominated_by, now)
        event = new_event("expert.registered", domain.expert_event_data(expert), SOURCE, actor)
        self.db[EXPERTS].insert_one(staged_insert({"_id": the_id, **expert}, [event]))
        self.relay.relay(EXPERTS, the_id, [event])
        return full_expert(expert)

    def update_expert(self, the_id, changes, actor):
        existing = self._expert_document(the_id)
        now = utcnow()
        changes = {**changes, "updated_at": now.isoformat()}
        consequence = domain.update_consequence(existing, changes)
        kind = "expert.updated"
        if consequence == "expired":
            changes.update({"vetting_status": "expired", "expired_at": now.isoformat()})
            kind = "expert.expired"
        expert = {**existing, **changes}
        event = new_event(kind, domain.expert_event_data(expert), SOURCE, actor)
        self.db[EXPERTS].update_one({"_id": the_id}, staged({"$set": changes}, [event]))
        self.relay.relay(EXPERTS, the_id, [event])
        return full_expert(expert)

    def transition_expert(self, the_id, to, note, principal, validity_days=domain.DEFAULT_VALIDITY_DAYS):
        existing = self._expert_document(the_id)
        now = utcnow()
        changes, kind = domain.transition(existing, to, principal.role, principal.subject == existing["owner"],
                                          now, validity_days)
        if to == "validated":
            changes["validated_by"] = principal.actor
        expert = {**existing, **changes}
        event = new_event(kind, domain.expert_event_data(expert), SOURCE, principal.actor)
        history = {"from": existing["vetting_status"], "to": to, "by": principal.actor, "at": changes["updated_at"],
                   "note": note}
        # The whole list is $set (guarded by the status read above), not $push'ed: the
        # MongoDB-protocol server used in development stores $push'ed documents as JSON text.
        changes["vetting_history"] = existing.get("vetting_history", []) + [history]
        result = self.db[EXPERTS].update_one(
            {"_id": the_id, "vetting_status": existing["vetting_status"]}, staged({"$set": changes}, [event]))
        if result.matched_count == 0:
            raise Conflict(f"expert {the_id} changed status meanwhile; read it again")
        self.relay.relay(EXPERTS, the_id, [event])
        return full_expert({**expert, **changes})

    def expire_due(self, actor="supply:expiry"):
        """Expire every active expert whose expires_at has passed. Returns their ids."""
        now = utcnow()
        expired = []
        for document in self.db[EXPERTS].find({"vetting_status": "active"}):
            if domain.due_for_expiry(document, now):
                changes = {"vetting_status": "expired", "expired_at": now.isoformat(), "updated_at": now.isoformat()}
                expert = {**strip(document), **changes}
                event = new_event("expert.expired", domain.expert_event_data(expert), SOURCE, actor)
                result = self.db[EXPERTS].update_one({"_id": document["_id"], "vetting_status": "active"},
                                                     staged({"$set": changes}, [event]))
                if result.matched_count:
                    self.relay.relay(EXPERTS, document["_id"], [event])
                    expired.append(document["_id"])
        return expired

    def experts(self, query=None):
        return [strip(d) for d in self.db[EXPERTS].find(query or {}, sort=[("_id", 1)])]


class SupplyStore(MongoStore):
    repository = SupplyRepository
    outbox_collections = OUTBOX_COLLECTIONS


# --- request helpers ----------------------------------------------------------------------------

OFFER_FILTERS = ("provider", "state", "article", "chapter", "form", "level", "status")
EXPERT_FILTERS = ("article", "language", "region", "country", "form", "vetting_status")


def check_offer_filters(filters):
    for key in ("article", "chapter"):
        if key in filters:
            if not filters[key].isdigit():
                raise Rejected(f"{key} must be a number", key)
            filters[key] = int(filters[key])
    if "article" in filters and filters["article"] not in reference.articles():
        raise Rejected("unknown UNCAC article (1–71)", "article")
    if "state" in filters:
        filters["state"] = filters["state"].upper()
        if not reference.is_known_state(filters["state"]):
            raise Rejected(f"unknown State {filters['state']!r}: use an ISO3 code such as 'KEN'", "state")
    if "level" in filters and filters["level"] not in domain.LEVELS:
        raise Rejected(f"level must be one of {', '.join(domain.LEVELS)}", "level")
    if "status" in filters and filters["status"] not in domain.OFFER_STATUSES:
        raise Rejected(f"status must be one of {', '.join(domain.OFFER_STATUSES)}", "status")
    if "form" in filters and filters["form"] not in reference.assistance_forms():
        raise Rejected("unknown form of assistance", "form")
    return filters


def check_expert_filters(filters):
    if "article" in filters:
        if not filters["article"].isdigit():
            raise Rejected("article must be a number", "article")
        filters["article"] = int(filters["article"])
    if "language" in filters:
        filters["language"] = filters["language"].lower()
    if "region" in filters and filters["region"] not in reference.regional_groups():
        raise Rejected(f"region must be one of {', '.join(sorted(reference.regional_groups()))}", "region")
    if "country" in filters:
        filters["country"] = filters["country"].upper()
    if "vetting_status" in filters and filters["vetting_status"] not in domain.VETTING_STATUSES:
        raise Rejected(f"vetting_status must be one of {', '.join(domain.VETTING_STATUSES)}", "vetting_status")
    return filters


LIST_COLUMNS = ("scope_states", "scope_groups", "articles", "chapters", "forms", "languages")
INT_COLUMNS = ("capacity",)


def _number(text):
    text = text.strip()
    return int(text) if text.isdigit() else text


def csv_rows(raw):
    """(line, row dict) per CSV data line; lists are ';'-separated, empty cells are left out."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("CSV must be UTF-8")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise BadRequest("CSV has no header line")
    for name in reader.fieldnames:
        reject_unsafe_keys({name.strip(): None})
    for row in reader:
        item = {}
        for key, value in row.items():
            if key is None:
                item["_extra"] = value   # more cells than header columns: the schema rejects it
                continue
            key, value = key.strip(), (value or "").strip()
            if value == "":
                continue
            if key in LIST_COLUMNS:
                parts = [p.strip() for p in value.split(";") if p.strip()]
                item[key] = [_number(p) for p in parts] if key in ("articles", "chapters") else parts
            elif key in INT_COLUMNS:
                item[key] = _number(value)
            else:
                item[key] = value
        yield reader.line_num, item


def json_rows(raw):
    try:
        payload = json_loads(raw)
    except ValueError as exc:  # UnicodeDecodeError too
        raise BadRequest(f"request body is not valid JSON: {exc}")
    if isinstance(payload, dict) and isinstance(payload.get("offers"), list):
        payload = payload["offers"]
    if not isinstance(payload, list):
        raise BadRequest("a JSON import is an array of offers (or {\"offers\": [...]})")
    for index, item in enumerate(payload, start=1):
        yield index, item


class SupplyService:
    name = "supply"

    store = SupplyStore()
    ops = OpsServer()
    config = Config()

    # -- AMQP ingress ---------------------------------------------------------------------------

    # In batches of what the broker has handed over: one inbox claim and one record per batch.
    @consume_events(topology.SUPPLY_INGRESS, batch_size=INGRESS_BATCH, batch_wait=0)
    def on_ingress(self, messages):
        return apply_each(messages, self._ingress_one)

    def _ingress_one(self, message):
        data = message["data"]
        if message["type"] == "offer.submitted":
            key = data.get("external_ref") or f"event:{message['id']}"
            self.store.file_offer(data, key, message["source"], cause=message)
        elif message["type"] == "offer.withdrawn":
            try:
                self.store.withdraw_offer(data["offer_id"], data["reason"], message["source"], cause=message)
            except NotFound as exc:   # waiting cannot make an unknown offer appear: park it now
                raise Rejected(str(exc), "data.offer_id")

    # -- offers over HTTP -----------------------------------------------------------------------

    @api("POST", "/offers", roles=("donor", "operator"))
    def publish_offer(self, request):
        filed = read_json(request, OfferSchema())
        require_scope(request.principal, filed["provider"], "offers")
        offer, event = self.store.file_offer(filed, filed.get("external_ref") or uuid.uuid4().hex,
                                             request.principal.actor)
        return (201 if event["type"] == "offer.published" else 200), offer

    @api("GET", "/offers")
    def list_offers(self, request):
        filters = check_offer_filters(query_args(request, OFFER_FILTERS))
        offers = self.store.find_offers(filters)
        return {"count": len(offers), "offers": offers}

    @api("GET", "/offers/<string:offer_id>")
    def get_offer(self, request, offer_id):
        return self.store.get_offer(offer_id)

    @api("PATCH", "/offers/<string:offer_id>", roles=("donor", "operator"))
    def update_offer(self, request, offer_id):
        changes = read_json(request, OfferUpdateSchema())
        require_scope(request.principal, self.store.get_offer(offer_id)["provider"], "offers")
        if not changes:
            raise BadRequest("nothing to change: send at least one field")
        return self.store.change_offer(offer_id, changes, request.principal.actor)

    @api("DELETE", "/offers/<string:offer_id>", roles=("donor", "operator"))
    def withdraw_offer(self, request, offer_id):
        require_scope(request.principal, self.store.get_offer(offer_id)["provider"], "offers")
        reason = query_args(request, ("reason",)).get("reason", "")[:1000]
        return self.store.withdraw_offer(offer_id, reason, request.principal.actor)

    @api("POST", "/offers/import", roles=("donor", "partner", "operator"))
    def import_offers(self, request):
        """Bulk import: CSV (text/csv) or a JSON array; one summary, one reason per rejected line."""
        raw = read_body(request)
        if not raw.strip():
            raise BadRequest("request body is empty; send CSV (text/csv) or a JSON array")
        is_csv = "csv" in (request.mimetype or "")
        rows = csv_rows(raw) if is_csv else json_rows(raw)
        accepted, rejected, offers = 0, [], []
        principal = request.principal
        for count, (line, row) in enumerate(rows, start=1):
            if count > MAX_IMPORT_ROWS:
                raise BadRequest(f"at most {MAX_IMPORT_ROWS} offers per import; split the file")
            try:
                if not isinstance(row, dict):
                    raise Rejected("each item must be a JSON object")
                reject_unsafe_keys(row)
                filed = OfferSchema().load(row)
                if principal.role == "donor" and filed["provider"] != principal.subject:
                    raise Rejected(f"provider {filed['provider']} is not your organisation ({principal.subject})",
                                   "provider")
                offer, _ = self.store.file_offer(filed, filed.get("external_ref") or uuid.uuid4().hex,
                                                 principal.actor)
            except ValidationError as exc:
                rejected.append({"line": line, "reason": "; ".join(describe_errors(exc.messages))})
                IMPORT_ROWS.labels(outcome="rejected").inc()
                continue
            except (Rejected, Conflict) as exc:
                rejected.append({"line": line, "reason": getattr(exc, "reason", str(exc))})
                IMPORT_ROWS.labels(outcome="rejected").inc()
                continue
            accepted += 1
            offers.append(offer["offer_id"])
            IMPORT_ROWS.labels(outcome="accepted").inc()
        return {"format": "csv" if is_csv else "json", "accepted": accepted, "rejected": rejected,
                "offers": offers}

    @api("POST", "/offers/import/iati", roles=("donor", "operator"))
    def import_iati(self, request):
        """IATI 2.03 activity XML; a donor imports the activities it reports itself."""
        raw = read_body(request)
        if not raw.strip():
            raise BadRequest("request body is empty; send an IATI 2.03 <iati-activities> document")
        only = None if request.principal.is_operator() else request.principal.subject
        try:
            return self.store.import_iati(raw, self._sector_map(), request.principal.actor, only_provider=only)
        except iati.IatiError as exc:
            raise Rejected(str(exc), "body")

    def _sector_map(self):
        return domain.merged_sector_map(self._config_map())

    def _config_map(self):
        value = (self.config.get(SECTOR_MAP_KEY)  # JSON: {"15130": {"articles": [...], ...}}
                 or os.environ.get(SECTOR_MAP_KEY))
        if not value:
            return {}
        mapping = json.loads(value) if isinstance(value, str) else value
        problems = domain.sector_map_problems(mapping)
        if problems:
            raise Rejected("TACOORD_IATI_SECTOR_MAP: " + "; ".join(f"{c}: {m}" for c, m in problems))
        return mapping

    # -- experts ---------------------------------------------------------------------------------

    @api("POST", "/experts", roles=("donor", "state", "operator"))
    def register_expert(self, request):
        schema = ExpertSchema()
        cv = schema.dump(read_json(request, schema))
        principal = request.principal
        if principal.is_operator():
            nominated_by = cv.get("nominated_by") or principal.subject
        else:
            if cv.get("nominated_by") not in (None, principal.subject):
                raise Forbidden(f"{principal.actor} nominates experts in its own name, not {cv['nominated_by']}")
            nominated_by = principal.subject
        cv.pop("nominated_by", None)
        return 201, self.store.register_expert(cv, nominated_by, principal.actor)

    @api("GET", "/experts")
    def search_experts(self, request):
        filters = check_expert_filters(query_args(request, EXPERT_FILTERS))
        principal = request.principal
        now = utcnow()
        if not principal.is_operator() and "vetting_status" in filters:
            raise Forbidden("only operators filter by vetting_status; others see active experts only")
        found = []
        for expert in self.store.experts():
            if not domain.expert_matches(expert, filters):
                continue
            if principal.is_operator():
                found.append(full_expert(expert))
            elif expert["owner"] == principal.subject:
                found.append(full_expert(expert))
            elif domain.searchable(expert, now):
                found.append(public_expert(expert))
            if len(found) >= LIST_LIMIT:
                break
        return {"count": len(found), "experts": found}

    @api("GET", "/experts/balance")
    def balance(self, request):
        now = utcnow()
        nationalities = [e["nationality"] for e in self.store.experts({"vetting_status": "active"})
                         if domain.searchable(e, now)]
        return domain.balance(nationalities)

    @api("POST", "/experts/expire-due", roles=("operator",))
    def expire_due_now(self, request):
        expired = self.store.expire_due(request.principal.actor)
        return {"expired": expired}

    @api("GET", "/experts/<string:expert_id>")
    def get_expert(self, request, expert_id):
        expert = self.store.get_expert(expert_id)
        principal = request.principal
        if principal.is_operator() or expert["owner"] == principal.subject:
            return expert
        if not domain.searchable(expert, utcnow()):
            raise NotFound(f"no expert {expert_id!r}")
        return public_expert(expert)

    @api("PATCH", "/experts/<string:expert_id>", roles=("donor", "state", "operator"))
    def update_expert(self, request, expert_id):
        schema = ExpertUpdateSchema()
        loaded = read_json(request, schema)
        changes = schema.dump(loaded)
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

    @api("POST", "/experts/<string:expert_id>/transition", roles=("donor", "state", "operator"))
    def transition_expert(self, request, expert_id):
        body = read_json(request, TransitionSchema())
        expert = self.store.get_expert(expert_id)
        require_scope(request.principal, expert["owner"], "experts")
        return self.store.transition_expert(expert_id, body["to"], body["note"], request.principal,
                                            self.validity_days)

    @timer(interval=EXPIRY_CHECK_SECONDS)
    def expire_lapsed_experts(self):
        self.store.expire_due()

    @property
    def validity_days(self):
        return int(self.config.get(VALIDITY_KEY) or os.environ.get(VALIDITY_KEY) or domain.DEFAULT_VALIDITY_DAYS)


SERVICE = SupplyService
