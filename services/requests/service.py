"""Requests service: workshop and checklist-assistance requests from States.

Entrypoints only: the lifecycle rules are in ``domain.py``, the storage in ``dependencies.py``.
"""
from services.requests import domain, networks
from services.requests.dependencies import SERVICE_NAME, RequestsStore
from services.requests.schemas import (NetworkSchema, NetworkUpdateSchema, OfferSchema, ParticipantsProposedSchema,
                                       RequestSchema, RetireSchema, TransitionSchema)
from tacoord import topology
from tacoord.consumer import consume_events
from tacoord.errors import Forbidden, NotFound
from tacoord.ops import OpsServer
from tacoord.web import api, query_args, read_json, require_scope

FILING = RequestSchema()
TRANSITION = TransitionSchema()
PROPOSAL = ParticipantsProposedSchema()
OFFER = OfferSchema()
NETWORK = NetworkSchema()
NETWORK_UPDATE = NetworkUpdateSchema()
FILTERS = ("kind", "status", "state", "regional_group", "joinable")
NETWORK_FILTERS = ("kind", "status", "state", "donor", "article")
VIEWERS = ("state", "network", "donor", "operator")


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

    @api("POST", "/requests", roles=("state", "operator"), body=FILING)
    def file_request(self, request):
        filed = FILING.dump(read_json(request))
        require_scope(request.principal, filed["state"], "requests")
        stored, _ = self.store.file(filed, domain.new_request_id(filed["state"]), "requests",
                                    request.principal.actor)
        return 201, stored

    @api("POST", "/requests/offers", roles=("donor", "operator"), body=OFFER)
    def offer_checklist_assistance(self, request):
        """Checklist assistance offered to a State party that has not reported (recommendation 22)."""
        offered = OFFER.dump(read_json(request, OFFER))
        principal = request.principal
        offered_by = offered.pop("offered_by")
        if not principal.is_operator():
            if offered_by not in (None, principal.subject):
                raise Forbidden(f"{principal.actor} may not offer in the name of {offered_by}; offer as "
                                f"{principal.subject}")
            offered_by = principal.subject
        return 201, self.store.offer(offered, domain.new_request_id(offered["state"]), offered_by, principal.actor)

    @api("GET", "/requests", roles=VIEWERS, query=FILTERS)
    def list_requests(self, request):
        found = self.store.visible(query_args(request, FILTERS), request.principal)
        return {"count": len(found), "requests": found}

    @api("GET", "/requests/<string:request_id>", roles=VIEWERS)
    def get_request(self, request, request_id):
        found = self.store.get(request_id)
        if not domain.may_view(found, request.principal.role, request.principal.subject):
            raise Forbidden(f"{request.principal.actor} may not see request {request_id}")
        return found

    @api("POST", "/requests/<string:request_id>/transitions", roles=("state", "donor", "operator"), body=TRANSITION)
    def move_request(self, request, request_id):
        asked = read_json(request)
        target = asked.pop("to")
        current = self.store.get(request_id)
        if not domain.may_view(current, request.principal.role, request.principal.subject):
            raise NotFound(f"no request {request_id!r}")  # do not reveal other States' requests
        return self.store.transition(request_id, target, TRANSITION.dump(asked), request.principal)

    @api("POST", "/requests/<string:request_id>/join", roles=("state",), body=None, query=())
    def join_request(self, request, request_id):
        query_args(request, ())
        joined, events = self.store.join(request_id, request.principal.subject, request.principal.actor)
        return (201 if events else 200), joined


    # -- the directory of coordination networks (recommendation 31) -------------------

    @api("GET", "/networks", query=NETWORK_FILTERS)
    def list_networks(self, request):
        found = self.store.networks(networks.check_filters(query_args(request, NETWORK_FILTERS)))
        return {"count": len(found), "networks": found}

    @api("GET", "/networks/<string:network_id>")
    def get_network(self, request, network_id):
        return self.store.network(network_id)

    @api("POST", "/networks", roles=("operator",), body=NETWORK)
    def register_network(self, request):
        return 201, self.store.register_network(NETWORK.dump(read_json(request, NETWORK)), request.principal.actor)

    @api("PATCH", "/networks/<string:network_id>", roles=("network", "operator"), body=NETWORK_UPDATE)
    def update_network(self, request, network_id):
        changes = NETWORK_UPDATE.dump(read_json(request, NETWORK_UPDATE))
        return self.store.update_network(network_id, changes, request.principal)

    @api("POST", "/networks/<string:network_id>/retire", roles=("operator",), body=RetireSchema)
    def retire_network(self, request, network_id):
        body = read_json(request, RetireSchema())
        return self.store.retire_network(network_id, body["reason"], request.principal.actor)


SERVICE = RequestsService
