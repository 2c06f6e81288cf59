"""One writer of matching's model at a time: a lease and a version, in the store.

Two matching instances each hold the read model in memory. RabbitMQ's single
active consumer on ``matching.events`` (``tacoord/topology.py``) hands the events
to one of them at a time, in order; the other stands by, serving HTTP from a model
it refreshes. This module keeps that correct at the edges, where the broker's view
and the store's can differ:

- the instance applying a batch (or a gap sweep) first **takes the writer lease**
  (one document, ``model_writer``), moving the store's **version** on, holds it while
  it applies the events and stores what they did, and gives it back after;
- if the version before its own is not the one its model was loaded or last written
  at, another instance wrote since: it **reloads the model from the store** first.
  This is how a standby taking over notices: on its first delivery;
- an instance whose channel closed (its broker node stopped) may still be storing a
  batch while the broker hands the same messages, and the next ones, to the other
  instance. It holds the lease until it has stored, so the other waits
  (:class:`~tacoord.errors.Busy`: the consumer holds the messages and tries again, without
  using a try), then reloads what it stored. An instance killed in the middle of a
  batch leaves the lease to run out (``TACOORD_MATCHING_WRITER_LEASE_SECONDS``).

Why the reloaded model is complete: an instance stores everything a batch did
(documents and outbox) before its messages are acknowledged, and only inside its
turn; so when a turn starts, every write of every earlier turn is in the store. A
model loaded outside a turn (at start, a standby's refresh) counts as current only
if no turn was on while it was read and the version did not move meanwhile. A turn
that outlives its lease (the database stalled longer than that) can still be
writing when the other instance starts one: the lease must be longer than a
batch can take.

The lease's clock is the instances' own (``time.time()``): instances on several
machines need clocks within a small part of the lease of each other.
"""
import time
import uuid

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from tacoord.errors import Busy

WRITER = "model_writer"
WRITER_ID = "writer"
LEASE_KEY = "TACOORD_MATCHING_WRITER_LEASE_SECONDS"
LEASE_SECONDS = 30.0


class WriterLease:
    """The lease document: ``owner`` (an instance id or None), ``until`` (epoch seconds) and
    ``version``, moved on when a turn starts (so a turn that dies half-way has moved it too) and
    moved back by a turn that ends having written nothing."""

    def __init__(self, database, lease_seconds=LEASE_SECONDS, instance=None):
        self.collection = database[WRITER]
        self.lease_seconds = float(lease_seconds)
        self.instance = instance or uuid.uuid4().hex

    def take(self):
        """Start a turn: take the lease and move the version on; returns the new version (the
        model must be at the one before it). :class:`Busy` while another instance holds it."""
        for _ in range(2):
            now = time.time()
            free = {"_id": WRITER_ID, "$or": [{"owner": None}, {"owner": self.instance}, {"until": {"$lt": now}}]}
            held = self.collection.find_one_and_update(
                free, {"$set": {"owner": self.instance, "until": now + self.lease_seconds}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER)
            if held is not None:
                return held["version"]
            try:   # the first turn ever: make the document, then take it
                self.collection.insert_one({"_id": WRITER_ID, "owner": None, "until": 0, "version": 0})
            except DuplicateKeyError:   # it exists: another instance holds the lease
                break
        raise Busy("another matching instance is applying events")

    def renew(self):
        """Hold the lease longer (after a long reload); False when it was lost meanwhile."""
        return self.collection.update_one({"_id": WRITER_ID, "owner": self.instance},
                                          {"$set": {"until": time.time() + self.lease_seconds}}).matched_count == 1

    def give_back(self, wrote):
        """End the turn; one that wrote nothing moves the version back. False when the lease ran
        out and another instance took it meanwhile (the version it moved on stays)."""
        update = {"$set": {"owner": None, "until": 0}}
        if not wrote:
            update["$inc"] = {"version": -1}
        return self.collection.update_one({"_id": WRITER_ID, "owner": self.instance}, update).matched_count == 1

    def state(self):
        """``(version, busy)``: ``busy`` while a turn is on (or one died without giving the lease
        back), so what the store holds may be half of a turn's writes."""
        document = self.collection.find_one({"_id": WRITER_ID}) or {}
        return document.get("version", 0), document.get("owner") is not None
