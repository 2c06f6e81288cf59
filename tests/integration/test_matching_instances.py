"""Two matching instances on one queue and one database: one applies events, the other stands by.

matching.events has a single active consumer (RabbitMQ), and every batch is a turn
under the writer lease on a model reloaded first when the other instance wrote
since (services/matching/writer.py).
"""
import requests
from nameko.testing.services import entrypoint_hook

from services.matching.dependencies import MatchingStore
from services.matching.read_model import match_id
from services.matching.service import MatchingService
from services.matching.writer import WriterLease
from tacoord import topology
from tacoord.envelope import new_event
from tacoord.testing import admin_auth, free_port, management_url, wait_until
from tests.integration.test_matching_service import Collector, need_data, offer_data

FAST = dict(TACOORD_MATCHING_WRITER_LEASE_SECONDS=3, TACOORD_INBOX_LEASE_SECONDS=3,
            TACOORD_MATCHING_STANDBY_REFRESH_SECONDS=0.5, TACOORD_GAP_SWEEP_SECONDS=0.2)


def two_instances(sandbox, container_factory, **overrides):
    """Two matching containers on the sandbox's vhost and database (each its own HTTP port)."""
    containers = []
    for _ in range(2):
        config = sandbox.config("matching", WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}", **{**FAST, **overrides})
        container = container_factory(MatchingService, config)
        container.start()
        containers.append(container)
    return containers


def store_of(container):
    return next(d for d in container.extensions if isinstance(d, MatchingStore))


def pair(i):
    need = need_data(need_id=f"KEN-{i}-n", article=5 + i % 50, forms=("LEGAL_ADVICE",), priority=2)
    offer = offer_data(offer_id=f"GB-{i}-o", provider=f"GB-GOV-{i}", articles=(5 + i % 50,), capacity=1)
    return need, offer


def test_an_instance_reloads_what_the_other_stored_before_it_applies_events(sandbox, container_factory):
    first, second = two_instances(sandbox, container_factory, TACOORD_GAP_SWEEP_SECONDS=3600)  # no turn but ours
    need, offer = pair(1)
    with entrypoint_hook(first, "on_events") as apply_on_first:
        apply_on_first([new_event("need.submitted", need, "needs", "test")])
    # the second instance loaded its model before the need was stored; it applies the offer to
    # a model reloaded from the store, so the need is there to be matched
    with entrypoint_hook(second, "on_events") as apply_on_second:
        apply_on_second([new_event("offer.published", offer, "supply", "test")])
    matches = list(sandbox.db("matching").matches.find({}, {"status": 1}))
    assert matches == [{"_id": match_id(need["need_id"], offer["offer_id"]), "status": "active"}]
    assert len(store_of(second).model.needs) == 1


def test_one_instance_is_active_and_the_standby_takes_over_with_every_match_once(sandbox, container_factory):
    collector = Collector(sandbox, "match.*")
    # the standby does not refresh: at its first delivery its model is the empty one it started with
    containers = two_instances(sandbox, container_factory, TACOORD_MATCHING_STANDBY_REFRESH_SECONDS=3600)
    def queue():
        return requests.get(management_url(f"queues/{sandbox.vhost}/matching.events"), auth=admin_auth(),
                            timeout=5).json()
    assert queue()["arguments"] == {"x-single-active-consumer": True}
    wait_until(lambda: queue().get("consumers") == 2, timeout=15, message="both instances consuming")
    pairs = [pair(i) for i in range(40)]
    events = [new_event(t, d, "test", "test") for need, offer in pairs
              for t, d in (("need.submitted", need), ("offer.published", offer))]
    sandbox.publish_events(events[:40])
    wait_until(lambda: len(collector.of_type("match.proposed")) >= 5, timeout=30, message="some matches")
    version = WriterLease(sandbox.db("matching")).state()[0]
    [active] = [c for c in containers if store_of(c).version == version]
    [standby] = [c for c in containers if c is not active]
    active.kill()   # in the middle of the stream: what it held unacked goes to the standby
    sandbox.publish_events(events[40:])
    expected = {match_id(need["need_id"], offer["offer_id"]) for need, offer in pairs}
    wait_until(lambda: {e["data"]["match_id"] for e in collector.of_type("match.proposed")} >= expected,
               timeout=60, message="every pair matched")
    assert sandbox.left_after_stopping([standby], "matching.events", "matching.events.retry") == 0
    proposed = [e["data"]["match_id"] for e in collector.of_type("match.proposed")]
    assert sorted(proposed) == sorted(expected)   # each once, nothing else
    assert {d["_id"] for d in sandbox.db("matching").matches.find({"status": "active"})} == expected
    assert not collector.of_type("match.retracted")


def test_the_standby_keeps_a_warm_model_for_the_routes_it_serves(sandbox, container_factory):
    first, second = two_instances(sandbox, container_factory)
    for i in range(3):
        need, offer = pair(i)
        sandbox.publish_events([new_event("need.submitted", need, "test", "test"),
                                new_event("offer.published", offer, "test", "test")])
    wait_until(lambda: sandbox.db("matching").matches.count_documents({}) == 3, message="three matches")
    wait_until(lambda: all(len(store_of(c).model.matches) == 3 for c in (first, second)), timeout=10,
               message="both models have the three matches")
