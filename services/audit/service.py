"""Audit recorder: one append-only, hash-chained record per event and per rejection.

Entrypoints only: the log and its chain head anchor are in ``dependencies.py``, what a
record says and how the chain is checked in ``domain.py``."""
from services.audit import domain
from services.audit.dependencies import AuditStore, BrokerRefused, ChainCheck, DeadLetterQueue
from services.audit.schemas import DeadLettersQuerySchema, FEED_MAX_LIMIT, FeedQuerySchema, parse_types, type_regex
from tacoord import topology
from tacoord.consumer import consume_events
from tacoord.deadletters import DeadLetterError
from tacoord.errors import Conflict, Forbidden, NotFound
from tacoord.ops import OpsServer
from tacoord.web import api, error_body, query_args

BATCH_SIZE = 50  # events recorded per database round trip, at most


class AuditService:
    name = "audit"

    log = AuditStore()
    ops = OpsServer()
    chain = ChainCheck()
    dead_letters = DeadLetterQueue()

    # unique event_id index; one insert_many per batch
    @consume_events(topology.AUDIT_EVENTS, keyed_by_event_id=True, batch_size=BATCH_SIZE)
    def record_event(self, events):
        self.log.append_many([domain.event_record(event) for event in events])

    @consume_events(topology.AUDIT_DEAD_LETTERS, raw=True, keyed_by_event_id=True)
    def record_rejection(self, body, headers):
        self.log.append(domain.rejection_record(body, headers))

    @api("GET", "/audit/entities/<string:entity_type>/<string:entity_id>", query=())
    def entity_history(self, request, entity_type, entity_id):
        """Every role may follow the history of coordination data (needs, offers, matches,
        requests); dead letters (which hold other partners' rejected messages, like
        /audit/rejections) and subscriptions' deliveries are for operators. In the order
        things happened (occurred_at, then seq)."""
        query_args(request, ())
        operator = request.principal.is_operator()
        if not operator and entity_type in domain.OPERATOR_ONLY_ENTITIES:
            raise Forbidden(f"the audit history of {entity_type} records is for operators"
                            + (" (a subscriber sees its own deliveries at notify's "
                               "/subscriptions/<id>/deliveries)" if entity_type != "message" else ""))
        records = self.log.history(f"{entity_type}:{entity_id}", events_only=not operator)
        return {"entity": f"{entity_type}:{entity_id}", "count": len(records), "records": records}

    @api("GET", "/audit/rejections", roles=("operator",))
    def recent_rejections(self, request):
        return {"records": self.log.rejections()}

    @api("GET", "/audit/events", roles=("operator",), query=FeedQuerySchema)
    def event_feed(self, request):
        query = FeedQuerySchema().load(query_args(request, ("after", "limit", "types")))
        limit = min(query["limit"], FEED_MAX_LIMIT)
        patterns = parse_types(query["types"]) if query["types"] else None
        head = self.log.head()
        events, cursor, more = self.log.feed(query["after"], limit, type_regex(patterns) if patterns else None)
        return {"after": query["after"], "limit": limit, "types": patterns, "count": len(events),
                "events": events, "next": cursor, "more": more, "head": head}

    @api("GET", "/audit/verify", roles=("operator",))
    def verify_chain(self, request):
        return self.log.verify()

    # -- the dead letters, for an operator (what ``tacoord deadletters`` does) -------------------

    @api("GET", "/audit/dead-letters", roles=("operator",), query=DeadLettersQuerySchema)
    def list_dead_letters(self, request):
        """The parked messages, oldest first (at most ``limit``, 100), left where they are."""
        limit = DeadLettersQuerySchema().load(query_args(request))["limit"]
        return self._dead_letters(lambda queue: {
            "depth": queue.depth(), "dead_letters": [letter.summary() for letter in queue.peek(limit)]})

    @api("GET", "/audit/dead-letters/<string:dead_letter_id>", roles=("operator",), query=())
    def get_dead_letter(self, request, dead_letter_id):
        query_args(request, ())
        return self._dead_letters(lambda queue: queue.get(dead_letter_id).as_dict())

    @api("POST", "/audit/dead-letters/<string:dead_letter_id>/replay", roles=("operator",), body=None, query=())
    def replay_dead_letter(self, request, dead_letter_id):
        """Republish it to its exchange and routing key, then take it off the queue."""
        query_args(request, ())
        return self._dead_letters(lambda queue: {"replayed": queue.replay(dead_letter_id).summary()})

    def _dead_letters(self, act):
        try:
            with self.dead_letters.opened() as queue:
                return act(queue)
        except BrokerRefused as exc:
            return 503, error_body(503, str(exc))
        except DeadLetterError as exc:
            raise (NotFound(str(exc)) if str(exc).startswith("no dead letter") else Conflict(str(exc)))


SERVICE = AuditService
