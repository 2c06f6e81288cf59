"""MongoDB indexes, per service database. Applied by the infra script and by
each service at start (``create_index`` is idempotent)."""
from pymongo import ASCENDING, DESCENDING, IndexModel

# Every consumer records the ids it has processed here (see tacoord.consumer).
PROCESSED = "processed_events"

# The outbox sweeper's query (tacoord.outbox: documents with events not yet relayed). Without
# it the sweeper scans every document of an outbox collection every few seconds.
OUTBOX_PENDING = IndexModel([("_outbox_pending", ASCENDING)])

COMMON = {
    PROCESSED: [IndexModel([("processed_at", ASCENDING)])],
}

INDEXES = {
    "needs": {
        "needs": [
            IndexModel([("state", ASCENDING), ("article", ASCENDING), ("status", ASCENDING)]),
            IndexModel([("regional_group", ASCENDING), ("article", ASCENDING)]),
            OUTBOX_PENDING,
        ],
        "party_corrections": [OUTBOX_PENDING],
    },
    "supply": {
        "offers": [IndexModel([("provider", ASCENDING)]), OUTBOX_PENDING],
        "experts": [OUTBOX_PENDING],
    },
    "requests": {
        "workshop_requests": [IndexModel([("state", ASCENDING)]), OUTBOX_PENDING],
        "networks": [OUTBOX_PENDING],
    },
    "matching": {
        "matches": [
            IndexModel([("need_id", ASCENDING)]), IndexModel([("offer_id", ASCENDING)]),
            IndexModel([("expert_id", ASCENDING)]), IndexModel([("status", ASCENDING)]),
            OUTBOX_PENDING,
        ],
        "alerts": [IndexModel([("alert", ASCENDING)]), OUTBOX_PENDING],
        "proposals": [OUTBOX_PENDING],
    },
    "notify": {
        "subscriptions": [
            IndexModel([("status", ASCENDING)]),
            IndexModel([("kind", ASCENDING), ("subject", ASCENDING)]),
            IndexModel([("unsubscribe_token", ASCENDING)], unique=True),
        ],
        "deliveries": [
            IndexModel([("subscription_id", ASCENDING), ("created_at", DESCENDING)]),
            IndexModel([("status", ASCENDING), ("digest", ASCENDING), ("created_at", ASCENDING)]),  # stale digests
            OUTBOX_PENDING,
        ],
        "digest_items": [IndexModel([("subscription_id", ASCENDING), ("digest_id", ASCENDING)])],
    },
    "audit": {
        "audit": [
            IndexModel([("event_id", ASCENDING)], unique=True),
            IndexModel([("seq", ASCENDING)], unique=True),
            IndexModel([("entities", ASCENDING), ("seq", ASCENDING)]),
            IndexModel([("correlation_id", ASCENDING), ("seq", ASCENDING)]),  # tacoord trace
        ],
    },
}


def apply(database, service):
    for collection, models in {**COMMON, **INDEXES.get(service, {})}.items():
        if models:
            database[collection].create_indexes(models)


def apply_all(client, prefix):
    from tacoord.config import db_name
    for service in INDEXES:
        apply(client[db_name(service, prefix)], service)
