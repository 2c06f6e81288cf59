"""Audit's I/O: the append-only, hash-chained log in MongoDB and its chain head anchor.

``AuditStore`` gives each worker an ``AuditLog`` (named operations over the log).
:func:`verify` and :func:`history` take a database, so an operator command reads the log
with the same code as the routes, without a container.

The anchor is one document in its own collection (``audit_head``): the ``seq`` and
``hash`` of the last record, moved forward after every append. Deleting records from
``audit`` does not reach it, so a log cut short at its end no longer verifies
(services/audit/README.md says what it does and does not protect against).
"""
import logging
import time
from contextlib import contextmanager

from amqp.exceptions import AMQPError
from eventlet.semaphore import Semaphore
from kombu.exceptions import OperationalError
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.audit import domain
from services.audit.schemas import FEED_MAX_LIMIT
from tacoord import config
from tacoord.deadletters import DeadLetters
from tacoord.envelope import utcnow
from tacoord.kpis import Kpis
from tacoord.ops import metric
from tacoord.store import DUPLICATE_KEY_CODES, MongoStore, Repository

log = logging.getLogger(__name__)

AUDIT = "audit"
HEAD = "audit_head"      # the chain head anchor: one document, out of reach of a delete on AUDIT
HEAD_ID = "head"
HISTORY_LIMIT = 1000


def clean(record):
    return {k: v for k, v in record.items() if k != "_id"}


def read_anchor(database):
    """``{"seq", "hash"}`` of the chain head anchor, or None (an empty log, or one written before it)."""
    anchor = database[HEAD].find_one({"_id": HEAD_ID})
    return {"seq": anchor["seq"], "hash": anchor["hash"]} if anchor else None


def read_tip(database):
    """``{"seq", "hash"}`` of the record with the highest seq, or None."""
    return database[AUDIT].find_one({}, {"_id": 0, "seq": 1, "hash": 1}, sort=[("seq", DESCENDING)])


def advance_anchor(database, record):
    """Move the anchor to ``record`` unless it is there or further already (another recorder
    appended after it): it only moves forward, so two recorders cannot set it back or fork it."""
    try:
        database[HEAD].update_one({"_id": HEAD_ID, "seq": {"$lt": record["seq"]}},
                                  {"$set": {"seq": record["seq"], "hash": record["hash"],
                                            "updated_at": utcnow().isoformat()}}, upsert=True)
    except DuplicateKeyError:
        pass  # the anchor exists with a seq at or past this one: no upsert, nothing to move


def verify(database):
    """Check the whole log: its links and its end against the anchor. The first problem as
    ``{"seq", "problem"}``, or None."""
    return checked(database)[0]


def checked(database):
    """``(first problem or None, the anchor it was checked against)``. The anchor is read
    first: it moves only after the records it names are written, so an append in flight
    cannot look like a missing end."""
    anchor = read_anchor(database)
    return domain.verify_log(database[AUDIT].find({}, sort=[("seq", ASCENDING)]), anchor), anchor


def history(database, entity, limit=HISTORY_LIMIT, events_only=False):
    """Every record about ``entity`` (the first ``limit`` recorded; None: all), in the order
    things happened (:func:`domain.in_order_of_happening`), each event with what it changed
    (:func:`domain.with_changes`)."""
    query = {"entities": entity, **({"kind": "event"} if events_only else {})}
    records = [clean(r) for r in database[AUDIT].find(query, sort=[("seq", ASCENDING)], limit=limit or 0)]
    return domain.with_changes(domain.in_order_of_happening(records))


def story(database, correlation_id, limit=HISTORY_LIMIT):
    """Every record of one story (events and rejections carrying ``correlation_id``), in ``seq`` order."""
    return [clean(r) for r in database[AUDIT].find({"correlation_id": correlation_id}, sort=[("seq", ASCENDING)],
                                                   limit=limit or 0)]


class AuditLog(Repository):
    """Appends to the chain. Several recorders (containers, processes) may append at once: each
    seals after the head it read, and the unique index on ``seq`` lets only one record take a
    place, so a recorder that lost the race reads the head again and seals after it (the chain
    never forks). ``lock`` and ``heads`` are a recorder's own: an ``AuditStore`` gives its logs
    its own pair; logs made outside a container share these."""
    lock = Semaphore(1)  # one append at a time per recorder keeps its batches in order
    heads = {}  # database name -> (hash, seq) of the last record this recorder wrote

    def append(self, record):
        """Append unless this event id is already recorded; the stored record, or None."""
        stored = self.append_many([record])
        return stored[0] if stored else None

    def append_many(self, records):
        """Append the records whose event id is not recorded yet, in order, with one
        ordered ``insert_many`` (a round trip) in the usual case, then move the chain head
        anchor to the last one. Returns the stored records.

        Copies inside the batch are dropped (the first is kept). An ordered insert stores
        the records before the first failing one and reports its index: a record whose
        event id is already in the log is dropped; a seq taken by another recorder means
        the head moved; either way the rest are sealed again after the true head."""
        pending, seen = [], set()
        for record in records:
            if record["event_id"] not in seen:
                seen.add(record["event_id"])
                pending.append(record)
        with self.lock:
            stored = self._insert_chained(pending)
            if stored:
                advance_anchor(self.db, stored[-1])
            return stored

    def _insert_chained(self, pending):
        stored = []
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
        """``(hash, seq)`` to seal the next record after (:func:`domain.next_position`)."""
        return domain.next_position(read_tip(self.db), read_anchor(self.db))

    def recorded(self, event_id):
        return self.db[AUDIT].find_one({"event_id": event_id}, {"_id": 1}) is not None

    def anchor_unanchored_log(self):
        """A log written before the anchor existed gets one at its last record (logged)."""
        tip = read_tip(self.db)
        if tip is not None and read_anchor(self.db) is None:
            log.warning("the audit log has no chain head anchor yet: anchoring it at seq %d", tip["seq"])
            advance_anchor(self.db, tip)

    def history(self, entity, limit=HISTORY_LIMIT, events_only=False):
        return history(self.db, entity, limit, events_only)

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
        tip = read_tip(self.db)
        return tip["seq"] if tip else 0

    def verify(self):
        """The route's report: ``intact``, ``records``, ``first_break`` and the ``anchor``
        (an operator who keeps its seq and hash elsewhere can detect a rewrite of the anchor too)."""
        problem, anchor = checked(self.db)
        return {"intact": problem is None, "records": self.db[AUDIT].count_documents({}),
                "first_break": problem, "anchor": anchor}


class AuditStore(MongoStore):
    repository = AuditLog

    def setup(self):
        super().setup()
        self.lock, self.heads = Semaphore(1), {}   # this recorder's own (two containers compete fairly)

    def start(self):
        super().start()
        self.repository(self.database, self.relay).anchor_unanchored_log()

    def get_dependency(self, worker_ctx):
        log = super().get_dependency(worker_ctx)
        log.lock, log.heads = self.lock, self.heads
        return log


VERIFY_SECONDS_KEY = "TACOORD_AUDIT_VERIFY_SECONDS"
CHAIN_INTACT = metric("gauge", "audit", "chain_intact",
                      "1 when the last periodic verify found the audit chain and its head anchor intact, else 0")
CHAIN_RECORDS = metric("gauge", "audit", "chain_verified_records", "Records in the log at the last periodic verify")
CHAIN_VERIFIED_AT = metric("gauge", "audit", "chain_verified_timestamp_seconds",
                           "When the last periodic verify finished (Unix time)")


class ChainCheck(Kpis):
    """Verifies the whole log and its anchor (:func:`checked`) at start and every
    ``TACOORD_AUDIT_VERIFY_SECONDS`` (600), for the chain-broken alert; a break is logged at
    ERROR once, naming its seq. ``tacoord audit verify`` runs the same check on demand."""

    interval_key, default_interval = VERIFY_SECONDS_KEY, 600.0

    def setup(self):
        super().setup()
        self.broken_at = None

    def refresh(self):
        problem, _ = checked(self.database)
        records = self.database[AUDIT].estimated_document_count()
        CHAIN_INTACT.set(0 if problem else 1)
        CHAIN_RECORDS.set(records)
        CHAIN_VERIFIED_AT.set(time.time())
        if problem and problem != self.broken_at:
            log.error("audit chain broken at seq %s: %s", problem["seq"], problem["problem"])
        self.broken_at = problem


DEAD_LETTERS_URI_KEY = "TACOORD_DEADLETTERS_AMQP_URI"   # tacoord.config.dead_letters_amqp_uri reads it too


class BrokerRefused(Exception):
    """The dead-letter queue cannot be read or replayed with the broker user this service has."""


class DeadLetterQueue(DependencyProvider):
    """The operator's dead-letter tool (``tacoord.deadletters``, as ``tacoord deadletters`` uses it)
    for the HTTP routes. Peeking the parked queue and republishing to any exchange are the
    operator's broker rights, not a service's least-privilege user's: the broker URI is
    ``TACOORD_DEADLETTERS_AMQP_URI`` (``infra.stack`` sets it to the operator's), else this
    service's own ``AMQP_URI``."""

    def setup(self):
        cfg = self.container.config
        self.amqp_uri = cfg.get(DEAD_LETTERS_URI_KEY) or config.dead_letters_amqp_uri() or cfg[config.AMQP_URI_KEY]

    def get_dependency(self, worker_ctx):
        return self

    @contextmanager
    def opened(self):
        try:
            with DeadLetters(self.amqp_uri) as queue:
                yield queue
        except (OSError, OperationalError, AMQPError) as exc:
            raise BrokerRefused(f"the dead letters cannot be read with this service's broker user "
                                f"({type(exc).__name__}: {exc}); set {DEAD_LETTERS_URI_KEY} to the "
                                "operator's broker URI")
