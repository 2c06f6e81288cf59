"""Audit recorder: one append-only, hash-chained record per event and per rejection."""
import json

from eventlet.semaphore import Semaphore
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError

from services.audit import domain
from services.audit.schemas import FEED_MAX_LIMIT, FeedQuerySchema, parse_types, type_regex
from tacoord import topology
from tacoord.consumer import DEAD_LETTER_ID_HEADER, REASON_HEADER, consume_events
from tacoord.envelope import utcnow
from tacoord.errors import Forbidden, Rejected
from tacoord.ops import OpsServer
from tacoord.store import DUPLICATE_KEY_CODES, MongoStore, Repository
from tacoord.web import api, query_args

AUDIT = "audit"
HISTORY_LIMIT = 1000
OPERATOR_ONLY_ENTITIES = {"message", "event", "subscription", "notification"}
BATCH_SIZE = 50  # events recorded per database round trip, at most


class AuditLog(Repository):
    lock = Semaphore(1)  # one writer per process keeps the chain linear
    heads = {}  # database name -> (hash, seq) of the last record this process wrote

    def append(self, record):
        """Append unless this event id is already recorded; the stored record, or None."""
        stored = self.append_many([record])
        return stored[0] if stored else None

    def append_many(self, records):
        """Append the records whose event id is not recorded yet, in order, with one
        ordered ``insert_many`` (a round trip) in the usual case. Returns the stored records.

        Copies inside the batch are dropped (the first is kept). An ordered insert stores
        the records before the first failing one and reports its index: a record whose
        event id is already in the log is dropped; a seq taken by another recorder means
        the head moved; either way the rest are sealed again after the true head."""
        pending, seen = [], set()
        for record in records:
            if record["event_id"] not in seen:
                seen.add(record["event_id"])
                pending.append(record)
        stored = []
        with self.lock:
            for _ in range(20 + len(pending)):
                if not pending:
                    return stored
                prev_hash, last_seq = self.heads.get(self.db.name) or self.read_head()
                recorded_at = utcnow().isoformat()
                sealed = []
                for record in pending:
                    sealed.append(domain.seal({**record, "recorded_at": recorded_at}, prev_hash, last_seq + 1))
                    prev_hash, last_seq = sealed[-1]["hash"], sealed[-1]["seq"]
                try:
                    self.db[AUDIT].insert_many([dict(r) for r in sealed], ordered=True)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors") or []
                    if not errors or errors[0].get("code") not in DUPLICATE_KEY_CODES:
                        self.heads.pop(self.db.name, None)
                        raise
                    index, message = errors[0].get("index", 0), str(errors[0].get("errmsg", ""))
                    stored.extend(sealed[:index])
                    if index > 0:
                        self.heads[self.db.name] = (sealed[index - 1]["hash"], sealed[index - 1]["seq"])
                    failed, pending = pending[index], pending[index + 1:]
                    if "event_id" in message or self.recorded(failed["event_id"]):
                        continue  # already in the log (a redelivery): drop it, seal the rest after the head
                    self.heads.pop(self.db.name, None)  # another recorder took this seq: read the head again
                    pending.insert(0, failed)
                    continue
                except Exception:
                    self.heads.pop(self.db.name, None)  # the write may or may not have landed
                    raise
                stored.extend(sealed)
                self.heads[self.db.name] = (sealed[-1]["hash"], sealed[-1]["seq"])
                return stored
            self.heads.pop(self.db.name, None)
            raise RuntimeError("audit chain head kept moving; will retry")

    def read_head(self):
        last = self.db[AUDIT].find_one({}, {"hash": 1, "seq": 1}, sort=[("seq", DESCENDING)])
        return (last["hash"], last["seq"]) if last else (domain.GENESIS, 0)

    def recorded(self, event_id):
        return self.db[AUDIT].find_one({"event_id": event_id}, {"_id": 1}) is not None

    def history(self, entity, limit=HISTORY_LIMIT, events_only=False):
        query = {"entities": entity, **({"kind": "event"} if events_only else {})}
        return [clean(r) for r in self.db[AUDIT].find(query, sort=[("seq", ASCENDING)], limit=limit)]

    def rejections(self, limit=100):
        return [clean(r) for r in self.db[AUDIT].find({"kind": "rejection"}, sort=[("seq", DESCENDING)],
                                                     limit=limit)]

    def feed(self, after=0, limit=FEED_MAX_LIMIT, types=None):
        """Stored events with ``seq > after`` in ``seq`` order (types: a regex, or None for all).

        Returns ``(events, next, more)``: the envelopes, the seq to ask ``after`` next time,
        and whether more matching records follow."""
        query = {"kind": "event", "seq": {"$gt": after}}
        if types:
            query["type"] = {"$regex": types}
        records = list(self.db[AUDIT].find(query, {"seq": 1, "event": 1}, sort=[("seq", ASCENDING)],
                                           limit=limit + 1))
        more = len(records) > limit
        records = records[:limit]
        return [r["event"] for r in records], (records[-1]["seq"] if records else after), more

    def head(self):
        last = self.db[AUDIT].find_one({}, {"seq": 1}, sort=[("seq", DESCENDING)])
        return last["seq"] if last else 0

    def verify(self):
        records = self.db[AUDIT].find({}, sort=[("seq", ASCENDING)])
        problem = domain.verify_chain(records)
        return {"intact": problem is None, "records": self.db[AUDIT].count_documents({}),
                "first_break": problem}


def clean(record):
    return {k: v for k, v in record.items() if k != "_id"}


class AuditStore(MongoStore):
    repository = AuditLog


def event_record(event):
    return {"kind": "event", "event_id": event["id"], "type": event["type"],
            "occurred_at": event["occurred_at"], "source": event["source"], "actor": event["actor"],
            "correlation_id": event["correlation_id"], "causation_id": event["causation_id"],
            "entities": domain.entities_of(event), "event": event}


def rejection_record(body, headers):
    dead_letter_id = headers.get(DEAD_LETTER_ID_HEADER)
    if not dead_letter_id:
        raise Rejected("dead letter without an id header")
    parsed = body
    if isinstance(body, (bytes, str)):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"unparsed": body if isinstance(body, str) else body.decode("utf-8", "replace")}
    entities = domain.entities_of(parsed) + [f"message:{dead_letter_id}"]
    original_id = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(original_id, str):
        entities.append(f"event:{original_id}")
    return {"kind": "rejection", "event_id": f"dead-letter:{dead_letter_id}", "type": "message.rejected",
            "occurred_at": headers.get("x-tacoord-failed-at"), "source": headers.get("x-tacoord-queue"),
            "actor": headers.get("x-tacoord-user-id"), "reason": headers.get(REASON_HEADER),
            "rejected_kind": headers.get("x-tacoord-kind"), "entities": sorted(set(entities)),
            "routing_key": headers.get("x-tacoord-routing-key"), "event": parsed}


class AuditService:
    name = "audit"

    log = AuditStore()
    ops = OpsServer()

    # unique event_id index; one insert_many per batch
    @consume_events(topology.AUDIT_EVENTS, keyed_by_event_id=True, batch_size=BATCH_SIZE)
    def record_event(self, events):
        self.log.append_many([event_record(event) for event in events])

    @consume_events(topology.AUDIT_DEAD_LETTERS, raw=True, keyed_by_event_id=True)
    def record_rejection(self, body, headers):
        self.log.append(rejection_record(body, headers))

    @api("GET", "/audit/entities/<string:entity_type>/<string:entity_id>", query=())
    def entity_history(self, request, entity_type, entity_id):
        """Every role may follow the history of coordination data (needs, offers, matches,
        requests); dead letters (which hold other partners' rejected messages, like
        /audit/rejections) and subscriptions' deliveries are for operators."""
        query_args(request, ())
        operator = request.principal.is_operator()
        if not operator and entity_type in OPERATOR_ONLY_ENTITIES:
            raise Forbidden(f"the audit history of {entity_type} records is for operators"
                            + (" (a subscriber sees its own deliveries at notify's "
                               "/subscriptions/<id>/deliveries)" if entity_type != "message" else ""))
        records = self.log.history(f"{entity_type}:{entity_id}", events_only=not operator)
        return {"entity": f"{entity_type}:{entity_id}", "count": len(records), "records": records}

    @api("GET", "/audit/rejections", roles=("operator",))
    def recent_rejections(self, request):
        return {"records": self.log.rejections()}

    @api("GET", "/audit/events", roles=("operator",), query=FeedQuerySchema)
    def event_feed(self, request):
        query = FeedQuerySchema().load(query_args(request, ("after", "limit", "types")))
        limit = min(query["limit"], FEED_MAX_LIMIT)
        patterns = parse_types(query["types"]) if query["types"] else None
        head = self.log.head()
        events, cursor, more = self.log.feed(query["after"], limit, type_regex(patterns) if patterns else None)
        return {"after": query["after"], "limit": limit, "types": patterns, "count": len(events),
                "events": events, "next": cursor, "more": more, "head": head}

    @api("GET", "/audit/verify", roles=("operator",))
    def verify_chain(self, request):
        return self.log.verify()


SERVICE = AuditService
