"""MongoDB as a nameko DependencyProvider, with the outbox built in.

A service subclasses :class:`MongoStore`, names its repository class (named
operations over its own collections) and the collections that carry an
outbox. One ``MongoClient`` per container (:class:`DatabaseClient`, shared by the
store, the consumers' inboxes and the HTTP credentials); each worker gets a repository, whose
base (:class:`Repository`) stores a change and the events the domain returned with it in one
document write, then relays them.
"""
import logging
from contextlib import contextmanager

from nameko.extensions import DependencyProvider, SharedExtension
from pymongo import MongoClient
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_exponential

from tacoord import config, indexes
from tacoord.envelope import new_event
from tacoord.errors import Conflict, NotFound
from tacoord.ops import metrics_for
from tacoord.outbox import Relay, staged, staged_insert, strip
from tacoord.publisher import ConfirmedPublisher


log = logging.getLogger(__name__)

DUPLICATE_KEY_CODES = (11000, 11001)
CAUSE_ID = "cause_id"   # see Repository._file_and_relay(once_per_cause=True)


def inserted_or_existing(collection, documents):
    """Insert ``documents`` with one unordered insert; returns the ``_id``s that existed already.
    Any error other than a duplicate key is raised (the others were inserted)."""
    if not documents:
        return set()
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors") or []
        if not errors or any(e.get("code") not in DUPLICATE_KEY_CODES for e in errors):
            raise
        return {documents[e["index"]]["_id"] for e in errors}
    return set()


class Repository:
    """Base of every service repository: the database, the outbox relay, and the one way a change
    and its events are written.

    A service's domain returns the new state and its events as ``(type, data)`` pairs; the
    helpers below wrap them in envelopes, stage them in the same single-document write as the
    change (:mod:`tacoord.outbox`), then relay them. A change or filing the domain gave no
    events for writes nothing.
    """

    def __init__(self, database, relay):
        self.db = database
        self.relay = relay

    def _load(self, collection, document_id, what):
        """The stored document without its outbox bookkeeping; ``NotFound("no <what> '<id>'")``."""
        document = strip(self.db[collection].find_one({"_id": document_id}))
        if document is None:
            raise NotFound(f"no {what} {document_id!r}")
        return document

    @staticmethod
    def _envelopes(events, source, actor, cause=None):
        return [new_event(event_type, data, source, actor, cause=cause) for event_type, data in events]

    def _insert_and_relay(self, collection, document, events, source, actor, cause=None):
        """Insert ``document`` with its events in its outbox, then relay them; returns the envelopes.
        ``DuplicateKeyError`` when its ``_id`` is taken (nothing stored, nothing relayed)."""
        envelopes = self._envelopes(events, source, actor, cause)
        self.db[collection].insert_one(staged_insert(document, envelopes))
        self.relay.relay(collection, document["_id"], envelopes)
        return envelopes

    def _update_and_relay(self, collection, query, changes, events, source, actor, cause=None):
        """``$set`` ``changes`` on the document ``query`` (which names its ``_id``) matches, with the
        events staged in the same write, then relay them. Returns the envelopes, or None when
        ``query`` matched nothing (nothing written)."""
        envelopes = self._envelopes(events, source, actor, cause)
        changes = {k: v for k, v in changes.items() if k != "_id"}
        if self.db[collection].update_one(query, staged({"$set": changes}, envelopes)).matched_count == 0:
            return None
        self.relay.relay(collection, query["_id"], envelopes)
        return envelopes

    def _change_and_relay(self, collection, document_id, what, decide, source, actor, cause=None,
                          guard=(), tries=5):
        """Load (or ``NotFound``), ``decide(document)`` (pure: ``(changes, events)``), write, relay.

        ``guard``: fields the write requires unchanged since the read; when another writer moved
        one meanwhile the document is read and decided again, ``Conflict`` after ``tries``.
        Returns ``(the changed document, envelopes)``.
        """
        for _ in range(tries):
            document = self._load(collection, document_id, what)
            changes, events = decide(document)
            changed = {**document, **changes}
            if not events:
                return changed, []
            query = {"_id": document_id, **{k: document.get(k) for k in guard}}
            envelopes = self._update_and_relay(collection, query, changes, events, source, actor, cause)
            if envelopes is not None:
                return changed, envelopes
        raise Conflict(f"{what} {document_id} kept changing; try again")

    def _file_and_relay(self, collection, document_id, what, decide, source, actor, cause=None, tries=3,
                        once_per_cause=False):
        """Store a filing that may exist already. ``decide(stored or None)`` (pure) returns
        ``(document, events)``: a new document is inserted, a stored one ``$set``, its events staged
        in the same write, then relayed. Another writer inserting the same id first makes it read
        and decide again (``Conflict`` after ``tries``). Returns ``(document, envelopes)``.

        ``once_per_cause``, for a domain where filing the same content again is itself an event: the
        document keeps the id of the event that last filed it (``cause_id``), and that event filed
        again (redelivered after a crash between this write and the inbox's record) writes and
        emits nothing: ``(the stored document, [])``.
        """
        marker = {CAUSE_ID: cause["id"]} if once_per_cause and cause is not None else {}
        for _ in range(tries):
            stored = strip(self.db[collection].find_one({"_id": document_id}))
            if marker and stored is not None and stored.get(CAUSE_ID) == marker[CAUSE_ID]:
                return stored, []
            document, events = decide(stored)
            if not events:
                return document, []
            document = {**document, **marker}
            if stored is not None:
                envelopes = self._update_and_relay(collection, {"_id": document_id}, document, events,
                                                   source, actor, cause)
                if envelopes is not None:
                    return document, envelopes
                continue
            try:
                return document, self._insert_and_relay(collection, {"_id": document_id, **document}, events,
                                                        source, actor, cause)
            except DuplicateKeyError:
                continue
        raise Conflict(f"the {what} kept changing while it was filed; try again")


def startup_seconds(container_config):
    return float(container_config.get(config.DB_STARTUP_SECONDS_KEY, config.DB_STARTUP_SECONDS))


def wait_for_database(first_use, limit):
    """``first_use()``, tried again for up to ``limit`` seconds (``TACOORD_DB_STARTUP_SECONDS``) while
    the database does not answer (not started yet, an election, a server too loaded to answer within
    the client's server selection): a service started before its database, or beside a busy one,
    waits for it rather than stopping. A refusal (credentials, a bad URI) is raised at once."""
    for attempt in Retrying(retry=retry_if_exception_type(ConnectionFailure), stop=stop_after_delay(limit),
                            wait=wait_exponential(multiplier=0.5, max=5), reraise=True,
                            before_sleep=before_sleep_log(log, logging.WARNING)):
        with attempt:
            return first_use()


def client_options(container_config):
    """MongoClient options from a service's config: its write and read concern
    (:func:`tacoord.config.mongo_concerns`; unset: the server's) and retryable writes and reads
    (a write interrupted by a replica set electing a new primary is sent once more, and a
    retried insert of an outbox document is recognised, not doubled)."""
    options = {"retryWrites": True, "retryReads": True}
    w = container_config.get(config.MONGO_WRITE_CONCERN_KEY)
    if w not in (None, ""):
        options["w"] = int(w) if str(w).isdigit() else w
    journal = container_config.get(config.MONGO_JOURNAL_KEY)
    if journal not in (None, ""):
        options["journal"] = str(journal).lower() in ("true", "1")
    read = container_config.get(config.MONGO_READ_CONCERN_KEY)
    if read not in (None, ""):
        options["readConcernLevel"] = read
    return options


def connect(container_config):
    uri = container_config.get(config.MONGO_URI_KEY) or config.mongo_uri()
    return MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, **client_options(container_config))


class DatabaseClient(SharedExtension):
    """The container's one ``MongoClient``: made on first use (nameko sets extensions up in
    no fixed order), closed when the container stops, after its entrypoints and dependencies
    (nameko stops sub-extensions last)."""

    client = None

    def get(self):
        if self.client is None:
            self.client = connect(self.container.config)
        return self.client

    def database(self):
        cfg = self.container.config
        return self.get()[cfg.get(config.DB_NAME_KEY) or config.db_name(service_name(self.container))]

    def stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    kill = stop


def service_name(container):
    return container.config.get(config.SERVICE_KEY, container.service_name)


class MongoStore(DependencyProvider):
    repository = Repository
    outbox_collections = ()
    database_client = DatabaseClient()

    def setup(self):
        cfg = self.container.config
        self.service = service_name(self.container)
        self.client = self.database_client.get()
        self.database = self.database_client.database()
        publisher = ConfirmedPublisher(cfg[config.AMQP_URI_KEY], self.service)
        self.relay = Relay(self.database, publisher, self.outbox_collections, metrics_for(self.service))
        self.sweep_interval = float(cfg.get(config.OUTBOX_RELAY_SECONDS_KEY, 5))

    def start(self):
        wait_for_database(lambda: indexes.apply(self.database, self.service), startup_seconds(self.container.config))
        for provider in self.container.dependencies:
            if hasattr(provider, "add_check"):
                provider.add_check("database", self.ping)
        if self.outbox_collections:
            self.background(lambda: self.relay.sweep_forever(self.sweep_interval), "outbox-sweeper")

    def background(self, run, identifier):
        """A managed thread that stops with this store, before the database client closes."""
        self._threads = getattr(self, "_threads", []) + [
            self.container.spawn_managed_thread(run, identifier=identifier)]

    def stop(self):
        for thread in getattr(self, "_threads", []):
            thread.kill()
        self._threads = []
        self.relay.publisher.close()

    kill = stop

    def ping(self):
        self.client.admin.command("ping")

    def get_dependency(self, worker_ctx):
        return self.repository(self.database, self.relay)


@contextmanager
def opened(store_class, container_config):
    """A repository of ``store_class`` outside a container, for a service's operator commands:
    the same database, outbox relay and confirmed publisher its workers get (from a config dict
    as :func:`tacoord.config.service_config` builds it); closed on leaving.

        with opened(NeedsStore, config.service_config("needs")) as repository:
            repository.import_needs(filings, "needs", actor)
    """
    service = container_config[config.SERVICE_KEY]
    client = connect(container_config)
    publisher = ConfirmedPublisher(container_config[config.AMQP_URI_KEY], service)
    try:
        database = client[container_config.get(config.DB_NAME_KEY) or config.db_name(service)]
        relay = Relay(database, publisher, store_class.outbox_collections, metrics_for(service))
        yield store_class.repository(database, relay)
    finally:
        publisher.close()
        client.close()
