"""The inbox: the message ids a service has processed, per queue (``processed_events``).

A consumer claims the ids of what it is about to handle, records them done
when the handler succeeded and releases them when it failed, each for a whole
batch with one round trip (a single message is a batch of one)::

    claims = inbox.claim_many(queue, ids)   # {id: 'new' | 'done' | 'busy'}
    ...                                     # run the handler for the 'new' ones
    inbox.record_many(queue, [(id, event_type), ...])   # or, on failure:
    inbox.release_many(queue, ids)

One document per queue and id (unique ``_id``): ``state`` is ``processing``
while a worker holds the claim, ``done`` once recorded. A claim means two
copies handled at once by two workers cannot both run. A claim older than the
lease (its worker died) may be taken over; a fresh one means "another worker
is on it", and the consumer holds that copy and tries it again later rather than
dropping it, in case that worker fails.
"""
import time
from datetime import datetime, timezone

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from tacoord import config
from tacoord.indexes import PROCESSED
from tacoord.store import inserted_or_existing

CLAIM_ROUNDS = 3  # a claim released while we looked at it is claimed again, at most this often


class Inbox:

    LEASE_SECONDS = config.INBOX_LEASE_SECONDS

    def __init__(self, database, lease_seconds=LEASE_SECONDS):
        self.collection = database[PROCESSED]
        self.lease_seconds = lease_seconds

    @staticmethod
    def key(queue, message_id):
        return f"{queue}:{message_id}"

    def claim_many(self, queue, message_ids):
        """Claim distinct ids: ``{id: 'new' | 'done' | 'busy'}``.

        'new': claimed, run the handler; 'done': a duplicate; 'busy': another worker
        holds a fresh claim. One round trip when none was claimed before, two when some
        were; an id whose claim is released while we look at it is claimed again (at
        most ``CLAIM_ROUNDS`` times, then 'busy'). If the claim fails, the claims it
        made are given back and the error raised."""
        by_key = {self.key(queue, message_id): message_id for message_id in message_ids}
        if len(by_key) != len(message_ids):
            raise ValueError("claim_many needs distinct message ids")
        now = time.time()
        outcome = {message_id: "busy" for message_id in message_ids}
        made, pending = [], list(by_key)
        try:
            for _ in range(CLAIM_ROUNDS):
                if not pending:
                    break
                try:
                    existing = inserted_or_existing(
                        self.collection, [{"_id": key, "state": "processing", "claimed_at": now}
                                          for key in pending])
                except BulkWriteError as exc:  # not only duplicates: keep track of the claims that were made
                    failed = {error.get("index") for error in exc.details.get("writeErrors", [])}
                    made += [key for index, key in enumerate(pending) if index not in failed]
                    raise
                made += [key for key in pending if key not in existing]
                claims = ({claim["_id"]: claim for claim in self.collection.find({"_id": {"$in": sorted(existing)}})}
                          if existing else {})
                for key, claim in claims.items():
                    state = self._classify(key, claim, now)
                    if state == "new":
                        made.append(key)
                    else:
                        outcome[by_key[key]] = state
                pending = [key for key in existing if key not in claims]  # released meanwhile: claim again
        except Exception:
            try:
                self._release_keys(made)
            except Exception:  # the database is gone too: those claims lapse after the lease
                pass
            raise
        for key in made:
            outcome[by_key[key]] = "new"
        return outcome

    def _classify(self, key, claim, now):
        """An existing claim: 'done', 'busy' (fresh) or, older than the lease, taken over ('new')."""
        if claim.get("state", "done") == "done":
            return "done"
        if now - claim.get("claimed_at", 0) < self.lease_seconds:
            return "busy"
        taken = self.collection.update_one({"_id": key, "claimed_at": claim.get("claimed_at")},
                                           {"$set": {"claimed_at": now}})
        return "new" if taken.modified_count else "busy"

    def record_many(self, queue, done_ids):
        """Mark ``[(message_id, event_type)]`` done with one bulk write.

        The claims are there (:meth:`claim_many` inserted them): plain updates, which
        nx-27017 does about three times faster than upserts; upserts only for a claim
        that went missing."""
        if not done_ids:
            return
        at = datetime.now(timezone.utc).isoformat()
        updates = {self.key(queue, message_id): {"state": "done", "type": event_type, "processed_at": at}
                   for message_id, event_type in done_ids}
        result = self.collection.bulk_write([UpdateOne({"_id": key}, {"$set": done})
                                             for key, done in updates.items()], ordered=False)
        if result.matched_count < len(updates):  # a claim went missing (rare): upsert those
            present = {d["_id"] for d in self.collection.find({"_id": {"$in": list(updates)}}, {"_id": 1})}
            missing = [UpdateOne({"_id": key}, {"$set": done}, upsert=True)
                       for key, done in updates.items() if key not in present]
            if missing:
                self.collection.bulk_write(missing, ordered=False)

    def release_many(self, queue, message_ids):
        """Give back claims (a failed handler): the ids may be claimed again. Done ids stay done."""
        self._release_keys([self.key(queue, message_id) for message_id in message_ids])

    def _release_keys(self, keys):
        if keys:
            self.collection.delete_many({"_id": {"$in": keys}, "state": "processing"})
