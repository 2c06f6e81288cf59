"""MongoDB as a nameko DependencyProvider, with the outbox built in.

A service subclasses :class:`MongoStore`, names its repository class (named
operations over its own collections) and the collections that carry an
outbox. One ``MongoClient`` per container (:class:`DatabaseClient`, shared by the
store, the consumers' inboxes and the HTTP credentials); each worker gets a repository.
"""
from contextlib import contextmanager

from nameko.extensions import DependencyProvider, SharedExtension
from pymongo import MongoClient
from pymongo.errors import BulkWriteError

from tacoord import config, indexes
from tacoord.ops import metrics_for
from tacoord.outbox import Relay
from tacoord.publisher import ConfirmedPublisher


DUPLICATE_KEY_CODES = (11000, 11001)


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
    """Base of every service repository: the database and the outbox relay."""

    def __init__(self, database, relay):
        self.db = database
        self.relay = relay


def connect(container_config):
    uri = container_config.get(config.MONGO_URI_KEY) or config.mongo_uri()
    return MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)


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
        indexes.apply(self.database, self.service)
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
