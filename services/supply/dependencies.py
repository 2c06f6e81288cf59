"""Supply's I/O: the repository over ``offers`` and ``experts`` and the service's settings.

``SupplyRepository`` reads the stored state, asks ``domain`` (offers) or ``experts`` (the
roster) for the new state and the events it causes, and hands both to the core
``Repository`` helpers, which write them in one document write (the outbox) and relay the
events. The service's workers get it through ``SupplyStore``; the IATI command gets
the same one through ``tacoord.store.opened(SupplyStore, ...)``.
"""
import json
import uuid

from nameko.extensions import DependencyProvider

from services.supply import domain, experts, iati, iati_mapping
from tacoord.config import setting
from tacoord.envelope import utcnow
from tacoord.errors import Conflict, Rejected
from tacoord.ops import metric
from tacoord.outbox import strip
from tacoord.store import MongoStore, Repository

OFFERS = "offers"
EXPERTS = "experts"
OUTBOX_COLLECTIONS = (OFFERS, EXPERTS)
SOURCE = "supply"
LIST_LIMIT = 1000
SECTOR_MAP_KEY = "TACOORD_IATI_SECTOR_MAP"
VALIDITY_KEY = "TACOORD_EXPERT_VALIDITY_DAYS"

OFFER_FIELDS = domain.OFFER_EVENT_FIELDS + ("external_ref", "withdrawal_reason", "iati_warnings",
                                           "iati_last_updated")

IATI_OUTCOMES = metric("counter", SOURCE, "iati_activities_total",
                       "IATI activities read by the importer, by outcome", ("outcome",))
IMPORT_ROWS = metric("counter", SOURCE, "import_rows_total", "Bulk-import rows, by outcome", ("outcome",))


def public_offer(document):
    """An offer as the service hands it out; one stored before offers carried money shows none."""
    return {k: document.get(k, domain.MONEY_DEFAULTS.get(k)) for k in OFFER_FIELDS} if document else None


def full_expert(document):
    """A stored expert as the service hands it out: no ``_id``, no outbox bookkeeping."""
    return {k: v for k, v in strip(document).items() if k != "_id"} if document else None


class SupplyRepository(Repository):

    # -- offers ------------------------------------------------------------------------------

    def get_offer(self, the_id):
        return public_offer(self._load(OFFERS, the_id, "offer"))

    def file_offer(self, filed, key, actor, cause=None):
        """Store a filing: a new offer, or (same provider × key) an update. Returns (offer, event or None):
        None when ``cause`` (an ingress event) filed it already."""
        the_id = domain.filed_offer_id(filed, key)

        def decide(stored):
            return domain.file_offer(stored, filed, the_id, utcnow().isoformat())
        offer, envelopes = self._file_and_relay(OFFERS, the_id, "offer", decide, SOURCE, actor, cause,
                                                once_per_cause=True)
        return public_offer(offer), (envelopes[0] if envelopes else None)

    def change_offer(self, the_id, changes, actor, cause=None):
        def decide(offer):
            return domain.change_offer(offer, changes, utcnow().isoformat())
        offer, _ = self._change_and_relay(OFFERS, the_id, "offer", decide, SOURCE, actor, cause)
        return public_offer(offer)

    def withdraw_offer(self, the_id, reason, actor, cause=None):
        def decide(offer):
            return domain.withdraw_offer(offer, reason, utcnow().isoformat())
        offer, _ = self._change_and_relay(OFFERS, the_id, "offer", decide, SOURCE, actor, cause)
        return public_offer(offer)

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

    def import_offers(self, filings, actor):
        """File each row of a bulk import, ``(line, filed, None)`` or ``(line, None, reason)`` (see
        ``bulk.filings``): ``{"accepted": n, "rejected": [{"line", "reason"}], "offers": [ids]}``."""
        accepted, rejected, offers = 0, [], []
        for line, filed, reason in filings:
            if filed is not None:
                try:
                    offer, _ = self.file_offer(filed, filed.get("external_ref") or uuid.uuid4().hex, actor)
                except Conflict as exc:
                    reason = str(exc)
            if reason is not None:
                rejected.append({"line": line, "reason": reason})
                IMPORT_ROWS.labels(outcome="rejected").inc()
                continue
            accepted += 1
            offers.append(offer["offer_id"])
            IMPORT_ROWS.labels(outcome="accepted").inc()
        return {"accepted": accepted, "rejected": rejected, "offers": offers}

    def import_iati(self, activities, sector_map, actor, only_provider=None):
        """Import parsed IATI activities (``iati.parse``). Per activity: 'imported' (a new offer),
        'updated' (a newer or different version: ``offer.updated``, or ``offer.withdrawn`` when it
        is now cancelled or suspended), 'unchanged' (the same content: nothing written, nothing
        emitted) or 'skipped' (with the reason), in ``iati_mapping.import_summary``'s report."""
        results = []
        for activity, filed, reason, warnings in iati.checked(activities, sector_map):
            result = self._import_activity(activity, filed, reason, warnings, actor, only_provider)
            IATI_OUTCOMES.labels(outcome=result["outcome"]).inc()
            results.append(result)
        return iati_mapping.import_summary(results)

    def _import_activity(self, activity, filed, reason, warnings, actor, only_provider):
        identifier = activity["iati_identifier"]
        foreign = iati.foreign_provider(activity, filed, only_provider)
        if foreign:
            return iati_mapping.report_entry(activity, "skipped", reason=foreign, warnings=warnings)
        if filed is None:
            if identifier and iati_mapping.is_cancelled(activity) and not reason.startswith("duplicate"):
                return self._withdraw_cancelled(activity, reason, warnings, actor)
            return iati_mapping.report_entry(activity, "skipped", reason=reason, warnings=warnings)
        the_id = domain.iati_offer_id(identifier)
        filed = {**filed, "iati_warnings": warnings, "iati_last_updated": activity.get("last_updated")}
        decided = {}

        def decide(stored):
            now = utcnow().isoformat()
            if stored is None:
                decided.update(outcome="imported", reason=None)
                return domain.file_offer(None, filed, the_id, now)
            outcome, why = iati_mapping.reimport_outcome(stored, domain.normalized(filed))
            decided.update(outcome=outcome, reason=why)
            if outcome != "updated":
                return stored, []
            return domain.file_offer(stored, filed, the_id, now)
        self._file_and_relay(OFFERS, the_id, "offer", decide, SOURCE, actor)
        return iati_mapping.report_entry(activity, decided["outcome"], filed, decided["reason"], warnings, the_id)

    def _withdraw_cancelled(self, activity, reason, warnings, actor):
        """A cancelled or suspended activity withdraws the offer an earlier import made of it."""
        the_id = domain.iati_offer_id(activity["iati_identifier"])
        stored = self.db[OFFERS].find_one({"_id": the_id}, {"status": 1})
        if stored is None or stored["status"] == "withdrawn":
            return iati_mapping.report_entry(activity, "skipped", reason=reason, warnings=warnings)
        self.withdraw_offer(the_id, f"IATI {reason}", actor)
        return iati_mapping.report_entry(activity, "updated", reason=f"offer withdrawn: {reason}",
                                         warnings=warnings, offer_id=the_id)

    # -- experts ------------------------------------------------------------------------------

    def get_expert(self, the_id):
        return full_expert(self._load(EXPERTS, the_id, "expert"))

    def register_expert(self, cv, nominated_by, actor):
        the_id = f"exp-{uuid.uuid4().hex[:14]}"
        expert, events = experts.register_expert(cv, the_id, nominated_by, utcnow().isoformat())
        self._insert_and_relay(EXPERTS, {"_id": the_id, **expert}, events, SOURCE, actor)
        return full_expert(expert)

    def update_expert(self, the_id, changes, actor):
        def decide(expert):
            return experts.update_expert(expert, changes, utcnow())
        expert, _ = self._change_and_relay(EXPERTS, the_id, "expert", decide, SOURCE, actor)
        return full_expert(expert)

    def transition_expert(self, the_id, to, note, principal, validity_days=experts.DEFAULT_VALIDITY_DAYS):
        def decide(expert):
            return experts.transition(expert, to, principal.role, principal.subject == expert["owner"], utcnow(),
                                      validity_days, by=principal.actor, note=note)
        # Guarded by the status it was decided on (decided again when another move came first): the
        # vetting history is $set whole, not $push'ed (the MongoDB-protocol server used in
        # development stores $push'ed documents as JSON text).
        expert, _ = self._change_and_relay(EXPERTS, the_id, "expert", decide, SOURCE, principal.actor,
                                           guard=("vetting_status",))
        return full_expert(expert)

    def expire_due(self, actor="supply:expiry"):
        """Expire every active expert whose expires_at has passed. Returns their ids."""
        now = utcnow()
        expired = []
        for document in self.db[EXPERTS].find({"vetting_status": "active"}):
            if experts.due_for_expiry(document, now):
                changes, events = experts.expire(strip(document), now)
                if self._update_and_relay(EXPERTS, {"_id": document["_id"], "vetting_status": "active"}, changes,
                                          events, SOURCE, actor) is not None:
                    expired.append(document["_id"])
        return expired

    def experts(self, query=None):
        return [full_expert(d) for d in self.db[EXPERTS].find(query or {}, sort=[("_id", 1)])]


class SupplyStore(MongoStore):
    repository = SupplyRepository
    outbox_collections = OUTBOX_COLLECTIONS


class SupplySettings(DependencyProvider):
    """The service's own settings: the container's config first, then the environment."""

    def get_dependency(self, worker_ctx):
        return Settings(self.container.config)


class Settings:

    def __init__(self, container_config):
        self.config = container_config

    def sector_map(self):
        """The IATI sector map: the default one, extended by ``TACOORD_IATI_SECTOR_MAP``
        (JSON text or, from a config.yml, a mapping: ``{"15130": {"articles": [...], ...}}``)."""
        value = setting(self.config, SECTOR_MAP_KEY)
        mapping = {} if value is None else json.loads(value) if isinstance(value, str) else value
        problems = iati_mapping.sector_map_problems(mapping)
        if problems:
            raise Rejected(f"{SECTOR_MAP_KEY}: " + "; ".join(f"{c}: {m}" for c, m in problems))
        return iati_mapping.merged_sector_map(mapping)

    def validity_days(self):
        return int(setting(self.config, VALIDITY_KEY, experts.DEFAULT_VALIDITY_DAYS))
