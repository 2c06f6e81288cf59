"""Requests service: workshop and checklist-assistance requests from States.

Entrypoints only: the lifecycle rules are in ``domain.py``, the storage in ``dependencies.py``.
"""
from services.requests import domain
from services.requests.dependencies import SERVICE_NAME, RequestsStore
from services.requests.schemas import ParticipantsProposedSchema, RequestSchema, TransitionSchema
from tacoord import topology
from tacoord.consumer import consume_events
from tacoord.errors import Forbidden, NotFound
from tacoord.ops import OpsServer
from tacoord.web import api, query_args, read_json, require_scope

FILING = RequestSchema()
TRANSITION = TransitionSchema()
PROPOSAL = ParticipantsProposedSchema()
FILTERS = ("kind", "status", "state", "regional_group", "joinable")


class RequestsService:
    name = SERVICE_NAME

    store = RequestsStore()
    ops = OpsServer()

    @consume_events(topology.REQUESTS_INGRESS)
    def on_ingress(self, message):
        """``workshop.submitted`` / ``checklist_assistance.submitted`` from partners (already validated)."""
        data = message["data"]
        request_id = domain.new_request_id(data["state"], seed=message["id"])
        self.store.file(data, request_id, "requests", message["actor"], cause=message)

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
        found = self.store.visible(query_args(request, FILTERS), request.principal)
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
        return self.store.transition(request_id, target, TRANSITION.dump(asked), request.principal)

    @api("POST", "/requests/<string:request_id>/join", roles=("state",))
    def join_request(self, request, request_id):
        query_args(request, ())
        joined, events = self.store.join(request_id, request.principal.subject, request.principal.actor)
        return (201 if events else 200), joined


SERVICE = RequestsService
