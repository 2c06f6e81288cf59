"""Restore the matching store from the audit service's event feed (``GET /audit/events``).

    tacoord matching rebuild --audit-url http://127.0.0.1:8006 --key tck_… [--yes] [--replace] [--force]

(the operator's command keeps the name operators know; what it does is this
module's :func:`restore`). Matching never reads another service's
collections: the events come over HTTP from the audit service (an operator
key), are replayed through the same rules
(:class:`services.matching.replay.StoreReplay`), and the documents the
service would have stored are written to its own collections, with its inbox
of processed event ids. A service started on that store loads the same model
and emits nothing twice. Refused while a matching service is running (its
queue has consumers, or its ops port answers) and when the store is not
empty, unless told otherwise (``--force``, ``--replace``).

With ``TACOORD_MATCHING_REPLAY_URL`` (and ``TACOORD_MATCHING_REPLAY_KEY``) set,
the service does the same by itself when it starts on an empty store
(:func:`restore_if_empty`).
"""
import logging
from datetime import datetime, timezone

import requests
from kombu import Connection
from pymongo.errors import BulkWriteError

from services.matching.replay import REPLAYED, StoreReplay
from services.matching.settings import ALERTS, MATCHES, PROPOSALS, VIEWS, settings_from
from tacoord import indexes, topology
from tacoord.asyncapi import topic_matches
from tacoord.indexes import PROCESSED

log = logging.getLogger(__name__)

FEED_PATH = "/audit/events"
PAGE_SIZE = 1000
BATCH = 1000
MODEL_COLLECTIONS = tuple(VIEWS.values()) + (MATCHES, ALERTS, PROPOSALS)
COLLECTIONS = MODEL_COLLECTIONS + (PROCESSED,)


class RestoreError(Exception):
    """Why the restore will not (or could not) run, in one sentence for the operator."""


class AuditFeed:
    """Pages through the audit service's event feed."""

    def __init__(self, base_url, api_key, page_size=PAGE_SIZE, timeout=60, session=None):
        if not api_key:
            raise RestoreError("an operator API key is needed to read the audit feed (--key or TACOORD_API_KEY)")
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.page_size = page_size
        self.timeout = timeout
        self.session = session or requests.Session()

    def page(self, after=0, types=REPLAYED):
        url = f"{self.base_url}{FEED_PATH}"
        try:
            response = self.session.get(url, headers=self.headers, timeout=self.timeout, params={
                "after": after, "limit": self.page_size, "types": ",".join(types)})
        except requests.RequestException as exc:
            raise RestoreError(f"cannot reach the audit service at {self.base_url}: {exc}")
        if response.status_code == 200:
            return response.json()
        try:
            detail = response.json().get("error")
        except ValueError:
            detail = response.reason
        hint = {401: " (is the API key right?)", 403: " (an operator key is needed)",
                404: " (is it an audit service with the event feed?)"}.get(response.status_code, "")
        raise RestoreError(f"the audit feed refused the request ({response.status_code}): {detail}{hint}")

    def pages(self, after=0, types=REPLAYED):
        """Yield pages until the feed says there is no more."""
        while True:
            page = self.page(after, types)
            yield page
            if not page["more"] or page["next"] <= after:
                return
            after = page["next"]


# --- checks --------------------------------------------------------------------

def running_instances(amqp_uri=None, ops_url=None):
    """Reasons to believe a matching service is running (empty when none is seen)."""
    reasons = []
    if amqp_uri:
        try:
            with Connection(amqp_uri, connect_timeout=5) as connection:
                _, _, consumers = connection.channel().queue_declare(
                    topology.MATCHING_EVENTS.name, passive=True)
            if consumers:
                reasons.append(f"{consumers} consumer(s) on queue {topology.MATCHING_EVENTS.name}")
        except Exception as exc:  # no queue yet is fine; an unreachable broker is reported
            if "NOT_FOUND" not in str(exc) and "404" not in str(exc):
                reasons.append(f"could not ask the broker whether matching consumes ({exc})")
    if ops_url:
        try:
            answer = requests.get(f"{ops_url.rstrip('/')}/health/live", timeout=3)
        except requests.RequestException:
            answer = None
        try:
            other = answer is not None and answer.json().get("service") not in (None, "matching")
        except (ValueError, AttributeError):
            other = False
        if answer is not None and not other:
            reasons.append(f"{ops_url}/health/live answers ({answer.status_code})")
    return reasons


def stored_counts(database, collections=COLLECTIONS):
    """{collection: documents} for the matching collections that are not empty."""
    counts = {}
    for name in collections:
        if database[name].find_one({}, {"_id": 1}) is not None:
            counts[name] = database[name].count_documents({})
    return counts


# --- replay and write ------------------------------------------------------------

def replay_feed(feed, settings=None, progress=None):
    """Read the whole feed into a :class:`StoreReplay`. Returns ``(replay, processed, last_seq)``:
    ``processed`` lists ``(event id, type)`` of what the matching queue would have consumed."""
    result = StoreReplay(settings)
    processed, last = [], 0
    bindings = topology.MATCHING_EVENTS.routing_keys
    for page in feed.pages():
        for event in page["events"]:
            result.apply(event)
            if any(topic_matches(p, event["type"]) for p in bindings):
                processed.append((event["id"], event["type"]))
        last = page["next"]
        if progress is not None:
            progress(page)
    return result, processed, last


def _insert(collection, documents, skip_existing=False):
    documents = list(documents)
    for start in range(0, len(documents), BATCH):
        try:
            collection.insert_many(documents[start:start + BATCH], ordered=False)
        except BulkWriteError as exc:
            if not skip_existing or any(e.get("code") != 11000 for e in exc.details.get("writeErrors", ())):
                raise


def write_store(database, result, processed):
    """Write what the replay restored into the (empty) matching collections."""
    for kind, collection in VIEWS.items():
        _insert(database[collection], ({**doc, "_id": key} for key, doc in result.views[kind].items()))
    for collection in (MATCHES, ALERTS, PROPOSALS):
        _insert(database[collection], ({**doc, "_id": key} for key, doc in result.docs[collection].items()))
    now = datetime.now(timezone.utc).isoformat()
    queue = topology.MATCHING_EVENTS.name
    _insert(database[PROCESSED], ({"_id": f"{queue}:{event_id}", "state": "done", "type": event_type,
                                   "processed_at": now, "restored": True} for event_id, event_type in processed),
            skip_existing=True)  # a consumer may have claimed one already (the start-up path)
    indexes.apply(database, "matching")


def empty(database):
    for name in COLLECTIONS:
        database[name].drop()


def restore(database, feed, settings=None, amqp_uri=None, ops_url=None, force=False, replace=False,
            confirm=None, progress=None):
    """Check, replay the feed, write the store. Returns a summary; raises RestoreError when refused.

    ``confirm(summary)`` (optional) is asked before anything is written; False aborts.
    """
    if not force:
        reasons = running_instances(amqp_uri, ops_url)
        if reasons:
            raise RestoreError("the matching service seems to be running (" + "; ".join(reasons) +
                               "); stop it first, or pass --force if it is not")
    existing = stored_counts(database)
    if existing and not replace:
        raise RestoreError(f"the matching store {database.name} is not empty ("
                           + ", ".join(f"{k}: {v}" for k, v in existing.items())
                           + "); pass --replace to drop it and rebuild")
    return _replay_and_write(database, feed, settings, existing, confirm, progress)


def restore_if_empty(database, url, api_key, settings=None):
    """The service's start-up path: restore from the feed when the store holds no model. Returns the
    summary, or None when there was something to load. (The inbox is not looked at: a consumer that
    started alongside may have claimed a message already.)"""
    if stored_counts(database, MODEL_COLLECTIONS):
        return None
    summary = _replay_and_write(database, AuditFeed(url, api_key), settings, existing={})
    log.info("matching store restored from the audit feed at %s: %s", url, summary)
    return summary


def _replay_and_write(database, feed, settings, existing, confirm=None, progress=None):
    result, processed, last = replay_feed(feed, settings or settings_from({}), progress)
    differences = result.differences()
    summary = {**result.summary(), "processed_ids": len(processed), "last_seq": last, "database": database.name,
               "replaced": existing, "differences": {k: len(v) for k, v in differences.items()}}
    if differences["only_live"] or differences["only_rebuilt"]:
        summary["differing_matches"] = differences
    if confirm is not None and not confirm(summary):
        raise RestoreError("aborted; nothing was written")
    if existing:
        empty(database)
    write_store(database, result, processed)
    return summary

