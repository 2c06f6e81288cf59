"""Requests service: workshop and checklist-assistance requests from States."""
import logging

from pymongo.errors import DuplicateKeyError

from services.requests import domain
from services.requests.schemas import (KINDS, STATUSES, ParticipantsProposedSchema, RequestSchema,
                                       TransitionSchema)
from tacoord import reference, topology
from tacoord.consumer import consume_events
from tacoord.envelope import new_event, utcnow
from tacoord.errors import Conflict, Forbidden, NotFound, Rejected
from tacoord.ops import OpsServer, metric
from tacoord.outbox import staged, staged_insert
from tacoord.store import MongoStore, Repository
from tacoord.web import api, query_args, read_json, require_scope

log = logging.getLogger(__name__)

REQUESTS = "workshop_requests"
EVENT_FIELDS = ("request_id", "kind", "state", "regional_group", "network_id", "network_states", "states",
                "articles", "expected_outcomes", "preferred_dates", "language", "support_received", "status",
                "reason", "outcome_notes", "scheduled_for", "created_at", "updated_at")
PUBLIC_FIELDS = EVENT_FIELDS + ("proposed_participants",)
FILING = RequestSchema()
TRANSITION = TransitionSchema()
PROPOSAL = ParticipantsProposedSchema()
TRANSITIONS = metric("counter", "requests", "transitions_total", "Request lifecycle transitions, by target status",
                     ["to"])


def public(document):
    return {k: document.get(k) for k in PUBLIC_FIELDS} if document else None


def payload(request):
    return {k: request.get(k) for k in EVENT_FIELDS}


class RequestsRepository(Repository):

    def get(self, request_id):
        request = public(self.db[REQUESTS].find_one({"_id": request_id}))
        if request is None:
            raise NotFound(f"no request {request_id!r}")
        return request

    def file(self, filed, request_id, source, actor, cause=None):
        """Store a new request and its ``workshop.requested``. Returns (request, created).

        The id is the ``_id``: filing the same id twice (a redelivered ingress
        message) stores nothing and emits nothing the second time.
        """
        now = utcnow().isoformat()
        request = domain.new_request(filed, now, request_id)
        event = new_event(domain.EVENT_OF["submitted"], payload(request), source, actor, cause=cause)
        try:
            self.db[REQUESTS].insert_one(staged_insert({"_id": request_id, **request}, [event]))
        except DuplicateKeyError:
            return self.get(request_id), False
        self.relay.relay(REQUESTS, request_id, [event])
        return public(request), True

    def _change(self, request_id, decide, source, actor):
        """Read, decide (pure), write only if the status did not move meanwhile, relay the event."""
        for _ in range(5):
            request = self.get(request_id)
            decided = decide(request)
            if decided is None:
                return request, None
            changes, kind = decided
            updated = {**request, **changes}
            event = new_event(kind, payload(updated), source, actor)
            result = self.db[REQUESTS].update_one(
                {"_id": request_id, "status": request["status"], "updated_at": request["updated_at"]},
                staged({"$set": changes}, [event]))
            if result.matched_count == 1:
                self.relay.relay(REQUESTS, request_id, [event])
                return updated, event
        raise Conflict(f"request {request_id} kept changing; try again")

    def transition(self, request_id, target, params, principal):
        def decide(request):
            return domain.transition(request, target, principal.role, principal.subject, params,
                                     utcnow().isoformat())
        request, _ = self._change(request_id, decide, "requests", principal.actor)
        return request

    def join(self, request_id, state, actor):
        def decide(request):
            changes = domain.join(request, state, utcnow().isoformat())
            return None if changes is None else (changes, "workshop.joined")
        return self._change(request_id, decide, "requests", actor)

    def propose_participants(self, proposal, event):
        participants = domain.proposed_participants(proposal, event["id"], utcnow().isoformat())
        result = self.db[REQUESTS].update_one({"_id": proposal["request_id"]},
                                              {"$set": {"proposed_participants": participants}})
        if result.matched_count == 0:
            raise Rejected(f"no request {proposal['request_id']!r} to attach proposed participants to",
                           "request_id")

    def find(self, query, limit=1000):
        return [public(d) for d in self.db[REQUESTS].find(query, sort=[("created_at", 1), ("_id", 1)],
                                                          limit=limit)]


class RequestsStore(MongoStore):
    repository = RequestsRepository
    outbox_collections = (REQUESTS,)


FILTERS = ("kind", "status", "state", "regional_group", "joinable")


def list_query(filters, principal):
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
    elif joinable:
        raise Rejected("joinable is for State credentials", "joinable")
    return query, joinable


class RequestsService:
    name = "requests"

    store = RequestsStore()
    ops = OpsServer()

    @consume_events(topology.REQUESTS_INGRESS)
    def on_ingress(self, message):
        """``workshop.submitted`` / ``checklist_assistance.submitted`` from partners (already validated)."""
        data = message["data"]
        request_id = domain.new_request_id(data["state"], seed=message["id"])
        self.store.file(data, request_id, "requests", message["source"], cause=message)

    @consume_events(topology.REQUESTS_EVENTS)
    def on_participants_proposed(self, event):
        """``workshop.participants_proposed`` from matching: kept on the request."""
        self.store.propose_participants(PROPOSAL.load(event["data"]), event)

    @api("POST", "/requests", roles=("state", "operator"))
    def file_request(self, request):
        filed = FILING.dump(read_json(request, FILING))
        require_scope(request.principal, filed["state"], "requests")
        stored, _ = self.store.file(filed, domain.new_request_id(filed["state"]), "requests",
                                    request.principal.actor)
        return 201, stored

    @api("GET", "/requests", roles=("state", "network", "operator"))
    def list_requests(self, request):
        query, joinable = list_query(query_args(request, FILTERS), request.principal)
        found = self.store.find(query)
        if joinable:
            found = [r for r in found if request.principal.subject not in r["states"]
                     and request.principal.subject in domain.eligible_states(r)]
        return {"count": len(found), "requests": found}

    @api("GET", "/requests/<string:request_id>", roles=("state", "network", "operator"))
    def get_request(self, request, request_id):
        found = self.store.get(request_id)
        if not domain.may_view(found, request.principal.role, request.principal.subject):
            raise Forbidden(f"{request.principal.actor} may not see request {request_id}")
        return found

    @api("POST", "/requests/<string:request_id>/transitions", roles=("state", "operator"))
    def move_request(self, request, request_id):
        asked = read_json(request, TRANSITION)
        target = asked.pop("to")
        current = self.store.get(request_id)
        if not domain.may_view(current, request.principal.role, request.principal.subject):
            raise NotFound(f"no request {request_id!r}")  # do not reveal other States' requests
        moved = self.store.transition(request_id, target, TRANSITION.dump(asked), request.principal)
        TRANSITIONS.labels(to=target).inc()
        return moved

    @api("POST", "/requests/<string:request_id>/join", roles=("state",))
    def join_request(self, request, request_id):
        query_args(request, ())
        joined, event = self.store.join(request_id, request.principal.subject, request.principal.actor)
        return (200 if event is None else 201), joined


SERVICE = RequestsService
