"""Requests' I/O: the ``workshop_requests`` collection behind named operations, and its storage provider.

The lifecycle rules are the domain's (``domain.py``): it returns the changes
and their events; the repository stores both in one write (the outbox),
guarded by the status and ``updated_at`` it read, and relays the events.
"""
from pymongo.errors import DuplicateKeyError

from services.requests import domain, networks
from services.requests.schemas import KINDS, STATUSES
from tacoord import reference
from tacoord.envelope import utcnow
from tacoord.errors import Conflict, Rejected
from tacoord.outbox import strip
from tacoord.ops import metric
from tacoord.store import MongoStore, Repository

SERVICE_NAME = "requests"
REQUESTS = "workshop_requests"
NETWORKS = "networks"          # the directory of coordination networks (networks.py)
# A step is written only if the request is still as it was read: a concurrent step makes it miss.
GUARD = ("status", "updated_at")
TRANSITIONS = metric("counter", SERVICE_NAME, "transitions_total",
                     "Request lifecycle transitions, by target status", ["to"])


class NetworkDirectory:
    """The directory's operations on ``networks``, mixed into :class:`RequestsRepository`: one store and
    one outbox relay for both collections, and a filing reads the directory in the same worker."""

    def networks(self, filters):
        return [networks.public(d) for d in self.db[NETWORKS].find({}, sort=[("_id", 1)])
                if networks.matches(d, filters)]

    def network(self, network_id):
        return networks.public(self._load(NETWORKS, network_id, "network"))

    def _network_or_none(self, network_id):
        return strip(self.db[NETWORKS].find_one({"_id": network_id})) if network_id else None

    def register_network(self, filed, actor):
        network, events = networks.register(filed, utcnow().isoformat())
        networks.check_complete(network)
        try:
            self._insert_and_relay(NETWORKS, {"_id": network["network_id"], **network}, events, SERVICE_NAME, actor)
        except DuplicateKeyError:
            raise Conflict(f"network {network['network_id']} is in the directory already; change it with "
                           f"PATCH /networks/{network['network_id']}")
        return networks.public(network)

    def update_network(self, network_id, changes, principal):
        def decide(network):
            networks.check_editor(network, principal.role, principal.subject)
            return networks.update(network, changes, utcnow().isoformat())
        network, _ = self._change_and_relay(NETWORKS, network_id, "network", decide, SERVICE_NAME,
                                            principal.actor, guard=("status", "updated_at"))
        return networks.public(network)

    def retire_network(self, network_id, reason, actor):
        def decide(network):
            return networks.retire(network, reason, utcnow().isoformat())
        network, _ = self._change_and_relay(NETWORKS, network_id, "network", decide, SERVICE_NAME, actor,
                                            guard=("status", "updated_at"))
        return networks.public(network)


class RequestsRepository(NetworkDirectory, Repository):

    def get(self, request_id):
        return domain.public(self._load(REQUESTS, request_id, "request"))

    def file(self, filed, request_id, source, actor, cause=None):
        """Store a new request and its ``workshop.requested``. Returns (request, created).

        The id is the ``_id``: filing the same id twice (a redelivered ingress
        message) stores nothing and emits nothing the second time.
        """
        filed = domain.with_network(filed, self._network_or_none(filed.get("network_id")))
        request, events = domain.file_request(filed, utcnow().isoformat(), request_id)
        try:
            self._insert_and_relay(REQUESTS, {"_id": request_id, **request}, events, source, actor, cause)
        except DuplicateKeyError:
            return self.get(request_id), False
        return domain.public(request), True

    def offer(self, filed, request_id, offered_by, actor):
        """Store checklist assistance offered to a State, and its ``workshop.offered``."""
        request, events = domain.offer(filed, utcnow().isoformat(), request_id, offered_by)
        self._insert_and_relay(REQUESTS, {"_id": request_id, **request}, events, SERVICE_NAME, actor)
        return domain.public(request)

    def transition(self, request_id, target, params, principal):
        def decide(request):
            return domain.transition(domain.public(request), target, principal.role, principal.subject, params,
                                     utcnow().isoformat())
        request, _ = self._change_and_relay(REQUESTS, request_id, "request", decide, SERVICE_NAME,
                                            principal.actor, guard=GUARD)
        TRANSITIONS.labels(to=target).inc()
        return domain.public(request)

    def join(self, request_id, state, actor):
        """``state`` joins the request. Returns ``(request, events)``: none when it had joined already."""
        def decide(request):
            return domain.join(domain.public(request), state, utcnow().isoformat())
        request, events = self._change_and_relay(REQUESTS, request_id, "request", decide, SERVICE_NAME, actor,
                                                 guard=GUARD)
        return domain.public(request), events

    def propose_participants(self, proposal, event):
        stored = self.db[REQUESTS].find_one({"_id": proposal["request_id"]})
        if stored is None:
            raise Rejected(f"no request {proposal['request_id']!r} to attach proposed participants to",
                           "request_id")
        changes = domain.proposed_participants(stored, proposal, event["id"], utcnow().isoformat())
        self.db[REQUESTS].update_one({"_id": proposal["request_id"]}, {"$set": changes})

    def visible(self, filters, principal, limit=1000):
        """``GET /requests``: the requests matching ``filters`` that ``principal`` may see."""
        query, joinable = _list_query(filters, principal)
        found = [domain.public(d) for d in self.db[REQUESTS].find(query, sort=[("created_at", 1), ("_id", 1)],
                                                                   limit=limit)]
        if joinable:
            found = [r for r in found if principal.subject not in r["states"]
                     and principal.subject in domain.eligible_states(r)]
        return found


def _list_query(filters, principal):
    """The MongoDB query for ``GET /requests``: filters within what the principal may see."""
    for key, allowed in (("kind", KINDS), ("status", STATUSES), ("regional_group", tuple(reference.regional_groups())),
                         ("joinable", ("true", "false"))):
        if key in filters and filters[key] not in allowed:
            raise Rejected(f"{key} must be one of {', '.join(allowed)}", key)
    query = {k: filters[k] for k in ("kind", "status", "regional_group") if k in filters}
    if "state" in filters:
        query["state"] = filters["state"].upper()
    joinable = filters.get("joinable") == "true"
    if principal.role == "state":
        if joinable:
            # eligibility is filtered in Python (domain.eligible_states): nx-27017 matches no
            # ``null`` inside ``$or``, so "group members unless a network" is not one query there.
            query.update({"kind": "regional_workshop", "status": {"$in": list(domain.OPEN)}})
        else:
            # ``$in`` rather than equality: nx-27017 answers an equality on an indexed array wrongly
            query["states"] = {"$in": [principal.subject]}
    elif principal.role == "network":
        query["$or"] = [{"network_id": principal.subject}, {"regional_group": principal.subject}]
    elif principal.role == "donor":
        query["donors"] = {"$in": [principal.subject]}   # the offerer is one of them
    elif joinable:
        raise Rejected("joinable is for State credentials", "joinable")
    return query, joinable


class RequestsStore(MongoStore):
    repository = RequestsRepository
    outbox_collections = (REQUESTS, NETWORKS)
