"""API keys: who is calling, in which role, for which subject.

A key looks like ``tck_<key_id>_<secret>``. Only ``sha256(secret)`` is stored
(in the ``credentials`` collection of the shared ``<prefix>_auth`` database),
with the role and the subject it acts for:

| role     | subject                      | may                                     |
|----------|------------------------------|-----------------------------------------|
| state    | ISO3 code (``KEN``)          | its own needs and requests              |
| donor    | IATI org id (``GB-GOV-1``)   | its own offers, experts, subscriptions  |
| network  | network id (``AFRICAN``)     | its own subscriptions; read views       |
| partner  | partner id                   | bulk imports; read views                |
| operator | ``*``                        | everything                              |

Keys are issued and revoked with ``tacoord credentials issue|revoke``.
The secret is 32 random bytes, so a fast hash is the right one (as for
GitHub tokens); comparison is constant-time.
"""
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

ROLES = ("state", "donor", "network", "partner", "operator")
COLLECTION = "credentials"
CACHE_SECONDS = 5


@dataclass(frozen=True)
class Principal:
    role: str
    subject: str
    key_id: str

    @property
    def actor(self):
        return f"{self.role}:{self.subject}"

    def is_operator(self):
        return self.role == "operator"


def hash_secret(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def auth_db(client, prefix):
    return client[f"{prefix}_auth"]


def issue(database, role, subject, label=""):
    """Store a new credential; returns the full key (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    database[COLLECTION].insert_one({
        "_id": key_id, "role": role, "subject": subject, "label": label,
        "secret_sha256": hash_secret(secret), "revoked": False,
        "issued_at": datetime.now(timezone.utc).isoformat()})
    return f"tck_{key_id}_{secret}"


def revoke(database, key_id):
    result = database[COLLECTION].update_one(
        {"_id": key_id}, {"$set": {"revoked": True, "revoked_at": datetime.now(timezone.utc).isoformat()}})
    return result.matched_count == 1


def list_credentials(database):
    return [{k: v for k, v in doc.items() if k != "secret_sha256"}
            for doc in database[COLLECTION].find({}, sort=[("issued_at", 1)])]


class Authenticator:
    """Resolves an ``Authorization: Bearer tck_…`` header to a Principal (or None)."""

    def __init__(self, database):
        self.collection = database[COLLECTION]
        self._cache = {}

    def principal(self, header):
        if not header or not header.startswith("Bearer "):
            return None
        token = header[len("Bearer "):].strip()
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "tck" or not parts[1] or not parts[2]:
            return None
        key_id, secret = parts[1], parts[2]
        record = self._lookup(key_id)
        if record is None or record.get("revoked"):
            return None
        if not hmac.compare_digest(record["secret_sha256"], hash_secret(secret)):
            return None
        return Principal(record["role"], record["subject"], key_id)

    def _lookup(self, key_id):
        cached = self._cache.get(key_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        record = self.collection.find_one({"_id": key_id})
        self._cache[key_id] = (time.monotonic() + CACHE_SECONDS, record)
        return record
