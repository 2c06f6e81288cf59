"""Two matching instances on one queue and one database: one applies events, the other stands by.

matching.events has a single active consumer (RabbitMQ), and every batch is a turn
under the writer lease on a model reloaded first when the other instance wrote
since (services/matching/writer.py). People's steps on matches are taken over HTTP
on either instance (a write of the store) and reach the active model as events.
"""
import requests
from nameko.testing.services import entrypoint_hook

from services.matching.dependencies import MatchingStore
from services.matching.read_model import match_id
from services.matching.service import MatchingService
from services.matching.writer import WriterLease
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


def active_and_standby(sandbox, containers):
    """(active, standby): read between two turns, the active instance's model is at the store's version
    (inside a turn the version has moved on before the instance records it)."""
    found = []

    def at_store_version():
        version, busy = WriterLease(sandbox.db("matching")).state()
        found[:] = [] if busy else [c for c in containers if store_of(c).version == version]
        return len(found) == 1
    wait_until(at_store_version, timeout=30, message="the active instance between two turns")
    [active] = found
    return active, next(c for c in containers if c is not active)


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
    assert matches == [{"_id": match_id(need["need_id"], offer["offer_id"]), "status": "proposed"}]
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
    active, standby = active_and_standby(sandbox, containers)
    active.kill()   # in the middle of the stream: what it held unacked goes to the standby
    sandbox.publish_events(events[40:])
    expected = {match_id(need["need_id"], offer["offer_id"]) for need, offer in pairs}
    wait_until(lambda: {e["data"]["match_id"] for e in collector.of_type("match.proposed")} >= expected,
               timeout=60, message="every pair matched")
    # copies the killed instance held wait (held by the standby's consumer) while its writer lease runs
    # out: the standby must still settle them all (a loaded machine makes that wait longer, never endless)
    wait_until(lambda: sandbox.queue_depth("matching.events") + sandbox.queue_depth("matching.events.retry") == 0,
               timeout=90, message="the standby settled every message")
    assert sandbox.left_after_stopping([standby], "matching.events", "matching.events.retry") == 0
    proposed = [e["data"]["match_id"] for e in collector.of_type("match.proposed")]
    assert sorted(proposed) == sorted(expected)   # each once, nothing else
    assert {d["_id"] for d in sandbox.db("matching").matches.find({"status": "proposed"})} == expected
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


# each pair's walk through the lifecycle, with who takes each step
PROVIDER_STEPS, STATE_STEPS = ("accepted", "in_delivery", "declined", "cancelled"), ("agreed", "delivered")
WALKS = {0: (), 1: ("accepted",), 2: ("accepted", "agreed"), 3: ("accepted", "agreed", "in_delivery"),
         4: ("accepted", "agreed", "in_delivery", "delivered"), 5: ("declined",), 6: ("accepted", "cancelled")}


def step_on(sandbox, container, mid, target, provider):
    who = ("donor", provider) if target in PROVIDER_STEPS else ("state", "KEN")
    body = {"to": target, **({"reason": "changed plans"} if target in ("declined", "cancelled") else {})}
    response = requests.post(f"http://{container.config['WEB_SERVER_ADDRESS']}/matches/{mid}/transitions",
                             json=body, headers=sandbox.headers(*who), timeout=10)
    assert response.status_code == 200, response.text


def held_statuses(container):
    model = store_of(container).model
    return {mid: m["status"] for mid, m in model.matches.items()}, set(model.refused)


def test_steps_on_either_instance_reach_the_active_model_and_a_takeover_reloads_every_status(
        sandbox, container_factory):
    collector = Collector(sandbox, "match.*")
    # the standby does not refresh: its model is the one it started with until it takes over
    containers = two_instances(sandbox, container_factory, TACOORD_MATCHING_STANDBY_REFRESH_SECONDS=3600)
    pairs = [pair(i) for i in range(len(WALKS) + 1)]
    ids = [match_id(need["need_id"], offer["offer_id"]) for need, offer in pairs]
    sandbox.publish_events([new_event(t, d, "test", "test") for need, offer in pairs[:-1]
                            for t, d in (("need.submitted", need), ("offer.published", offer))])
    wait_until(lambda: len(collector.of_type("match.proposed")) == len(WALKS), timeout=30, message="proposed")
    active, standby = active_and_standby(sandbox, containers)
    for i, walk in WALKS.items():   # over HTTP, on both instances in turn
        for n, target in enumerate(walk):
            step_on(sandbox, containers[(i + n) % 2], ids[i], target, pairs[i][1]["provider"])
    expected = ({ids[i]: (walk or ("proposed",))[-1] for i, walk in WALKS.items() if i not in (5, 6)},
                {ids[5], ids[6]})
    wait_until(lambda: held_statuses(active) == expected, timeout=30,
               message="the active model follows every step, whichever instance took it")
    assert held_statuses(standby) != expected   # it has not refreshed

    active.kill()
    need, offer = pairs[-1]
    sandbox.publish_events([new_event("need.submitted", need, "test", "test"),
                            new_event("offer.published", offer, "test", "test")])
    # the standby reloads at its first delivery: every status the store holds, then the new pair
    wait_until(lambda: ids[-1] in store_of(standby).model.matches, timeout=60, message="the standby took over")
    assert held_statuses(standby) == ({**expected[0], ids[-1]: "proposed"}, expected[1])
    stored = {d["_id"]: d["status"] for d in sandbox.db("matching").matches.find({}, {"status": 1})}
    assert stored == {**expected[0], ids[-1]: "proposed", ids[5]: "declined", ids[6]: "cancelled"}
    # and the steps after the takeover reach it too
    step_on(sandbox, standby, ids[2], "in_delivery", pairs[2][1]["provider"])
    wait_until(lambda: store_of(standby).model.matches[ids[2]]["status"] == "in_delivery", timeout=30,
               message="the new active model follows a step")
    proposals = [e["data"]["match_id"] for e in collector.of_type("match.proposed")]
    assert sorted(proposals) == sorted(ids)   # each once: nothing declined or cancelled proposed again
    assert not collector.of_type("match.retracted") and not collector.of_type("match.withdrawn")
