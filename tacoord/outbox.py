"""The outbox: a state change and the events it causes are one MongoDB write.

How it works. A write to an entity's document also pushes the new events
onto an ``_outbox`` array inside that same document (and increments
``_outbox_pending``); one single-document update is atomic in MongoDB, so the
change and its events are stored together or not at all. Right after the
write, the relay publishes each event (confirmed) and pulls it from the
array. If the process dies between the write and the pull, a sweeper thread
in every instance finds documents with ``_outbox_pending > 0`` older than a
few seconds and publishes them again. An event can therefore be published
twice, never zero times; consumers skip repeats by event id.

No multi-document transaction is needed, so this works the same on a single
MongoDB, a replica set, and the MongoDB-protocol server used in development.
"""
import json
import logging
from datetime import timedelta

import eventlet
from pymongo import UpdateOne

from tacoord.envelope import utcnow

log = logging.getLogger(__name__)

OUTBOX = "_outbox"
PENDING = "_outbox_pending"


def staged(update, events):
    """Add ``events`` to a MongoDB update document (no I/O)."""
    update = dict(update)
    if events:
        update["$push"] = {**update.get("$push", {}), OUTBOX: {"$each": list(events)}}
        update["$inc"] = {**update.get("$inc", {}), PENDING: len(events)}
    return update


def staged_insert(document, events):
    """A new document carrying its first events."""
    return {**document, OUTBOX: list(events), PENDING: len(events)}


def strip(document):
    """A stored document without its outbox bookkeeping."""
    if document is None:
        return None
    return {k: v for k, v in document.items() if k not in (OUTBOX, PENDING)}


def decoded(entry):
    """An outbox entry as a dict. nx-27017 returns entries added by ``$push`` to an
    existing array as JSON text; MongoDB returns documents. Accept both."""
    return json.loads(entry) if isinstance(entry, str) else entry


class Relay:
    """Publishes staged events and removes them from their documents."""

    def __init__(self, database, publisher, collections, metrics):
        self.database = database
        self.publisher = publisher
        self.collections = collections
        self.metrics = metrics

    def relay(self, collection, document_id, events):
        for event in events:
            self.publisher.publish_event(event)
            self.database[collection].update_one(
                {"_id": document_id, f"{OUTBOX}.id": event["id"]},
                {"$pull": {OUTBOX: {"id": event["id"]}}, "$inc": {PENDING: -1}})

    def relay_many(self, staged_events):
        """Relay ``[(collection, document_id, event)]`` in the order given with one confirmed
        batch publish, then one bulk write per collection to pull them."""
        if not staged_events:
            return
        self.publisher.publish_events([event for _, _, event in staged_events])
        pulls = {}
        for collection, document_id, event in staged_events:
            pulls.setdefault(collection, []).append(
                UpdateOne({"_id": document_id, f"{OUTBOX}.id": event["id"]},
                          {"$pull": {OUTBOX: {"id": event["id"]}}, "$inc": {PENDING: -1}}))
        for collection, updates in pulls.items():
            self.database[collection].bulk_write(updates, ordered=False)

    def sweep(self, older_than=timedelta(seconds=5)):
        """Publish what a crashed writer left behind. Returns how many."""
        cutoff = (utcnow() - older_than).isoformat()
        relayed = 0
        backlog = 0
        for collection in self.collections:
            for document in self.database[collection].find({PENDING: {"$gt": 0}}, {OUTBOX: 1}):
                pending = [decoded(e) for e in document.get(OUTBOX, [])]
                stale = [e for e in pending if e["occurred_at"] <= cutoff]
                backlog += len(pending)
                self.relay(collection, document["_id"], stale)
                relayed += len(stale)
        self.metrics.outbox_backlog.set(backlog - relayed)
        return relayed

    def sweep_forever(self, interval):
        while True:
            eventlet.sleep(interval)
            try:
                count = self.sweep()
                if count:
                    log.warning("outbox relay published %d event(s) left by an earlier writer", count)
            except Exception as exc:  # keep sweeping: the next pass retries
                log.warning("outbox sweep failed, will retry: %s", exc)
