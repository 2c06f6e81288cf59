"""Matching benchmark (pure domain, in-process, seeded): speed per event and allocation quality.

    /work/main/.venv/bin/python bench/matching_bench.py            # full: 1k, 10k, 100k open offers
    /work/main/.venv/bin/python bench/matching_bench.py --quick    # 1k and 10k only

(1) Per-event matching time with 1k, 10k and 100k open offers: the model is
    loaded with N offers and a fixed 2,000 open needs, then new need and new
    offer events are applied one by one (``Matcher.apply``: indexes,
    scoring, explanations, the outcome); mean and p95 per event, and the
    ratio of the mean at the largest size to the mean at 1k (target ≤ 2).
(2) Allocation quality on seeded scenarios where supply is scarce: the
    covered priority weight of ``allocation.allocate`` (greedy by weight with
    augmenting paths; plain greedy for comparison) and of the allocation
    over the proposed matches only (top-K per need), against the optimum
    from networkx min-cost flow over all feasible pairs (target ≥ 95 %).
"""
import argparse
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import networkx as nx  # noqa: E402

from services.matching.allocation import allocate  # noqa: E402
from services.matching.domain import Matcher  # noqa: E402
from services.matching.scoring import REGIONAL_GROUPS  # noqa: E402
from tacoord import reference  # noqa: E402

FORMS = [f for f in reference.assistance_forms() if f != "OTHER"]
LANGUAGES = ["en", "en", "en", "fr", "fr", "es", "es", "ar", "ru", "zh"]
ARTICLES = list(range(5, 63))
CHAPTERS = [2, 3, 4, 5, 6]
GROUPS = list(REGIONAL_GROUPS)
STATES_BY_GROUP = {g: list(reference.states_in_group(g)) for g in GROUPS}
STATES = [s for g in GROUPS for s in STATES_BY_GROUP[g]]
T0 = "2026-11-01T00:00:00+00:00"


def make_offer(rng, i):
    kind = rng.random()
    if kind < 0.6:
        group = rng.choice(GROUPS)
        level, states, groups = "bilateral", rng.sample(STATES_BY_GROUP[group], rng.randint(1, 3)), []
    elif kind < 0.9:
        level, states, groups = "regional", [], [rng.choice(GROUPS)]
    else:
        level, states, groups = "global", [], []
    if rng.random() < 0.15:
        articles, chapters = [], [rng.choice(CHAPTERS)]
    else:
        articles, chapters = rng.sample(ARTICLES, rng.randint(1, 3)), []
    return {"offer_id": f"o{i}", "provider": f"P-{rng.randint(1, 400)}", "level": level, "scope_states": states,
            "scope_groups": groups, "articles": articles, "chapters": chapters,
            "forms": rng.sample(FORMS, rng.randint(1, 3)), "capacity": rng.randint(1, 5),
            "languages": sorted(set(rng.sample(LANGUAGES, rng.randint(1, 2)))), "status": "active"}


def make_need(rng, i):
    state = rng.choice(STATES)
    article = rng.choice(ARTICLES)
    return {"need_id": f"n{i}", "state": state, "regional_group": reference.regional_group_of(state),
            "article": article, "chapter": reference.chapter_of(article), "forms": rng.sample(FORMS, rng.randint(1, 2)),
            "priority": rng.choice([1, 1, 2, 2, 3]), "languages": [rng.choice(LANGUAGES)], "status": "open",
            "checklist_round": "2026-1", "created_at": T0}


def event(event_type, data, n):
    return {"id": f"e{n}", "type": event_type, "occurred_at": T0, "correlation_id": f"e{n}", "data": data}


# --- (1) speed ----------------------------------------------------------------------------

def speed(n_offers, n_needs=2000, n_measured=300, rounds=3, seed=1):
    """Mean time per event, the fastest of ``rounds`` rounds (on a shared machine the
    slower rounds measure the neighbours, not the code: timeit's rule)."""
    rng = random.Random(seed)
    model = Matcher()
    counter = 0
    for i in range(n_offers):
        counter += 1
        model.apply(event("offer.published", make_offer(rng, i), counter))
    for i in range(n_needs):
        counter += 1
        model.apply(event("need.submitted", make_need(rng, i), counter))
    gc.collect()
    gc.freeze()  # the loaded model is long-lived: keep the collector from rescanning it (the service does too)
    best = None
    for round_ in range(rounds):
        timings = {"need": [], "offer": []}
        emitted = {"need": 0, "offer": 0}
        for j in range(n_measured):
            serial = n_measured * round_ + j
            for kind, build in (("need", lambda: ("need.submitted", make_need(rng, n_needs + serial))),
                                ("offer", lambda: ("offer.published", make_offer(rng, n_offers + serial)))):
                event_type, data = build()
                counter += 1
                e = event(event_type, data, counter)
                started = time.perf_counter()
                outcome = model.apply(e)
                timings[kind].append(time.perf_counter() - started)
                emitted[kind] += len(outcome.events())
        both = timings["need"] + timings["offer"]
        row = {"offers": n_offers, "need_mean": statistics.mean(timings["need"]),
               "offer_mean": statistics.mean(timings["offer"]), "mean": statistics.mean(both),
               "p95": sorted(both)[int(len(both) * 0.95)],
               "need_events_out": emitted["need"] / n_measured, "offer_events_out": emitted["offer"] / n_measured,
               "matches": len(model.matches)}
        best = row if best is None or row["mean"] < best["mean"] else best
    gc.unfreeze()
    return best


# --- (2) allocation quality ------------------------------------------------------------

def scarce_scenario(seed, n_needs=300, n_offers=80):
    """Needs and offers concentrated on a few articles and one region, so capacity is contested."""
    rng = random.Random(seed)
    group = "AFRICAN"
    articles = rng.sample(ARTICLES, 6)
    states = rng.sample(STATES_BY_GROUP[group], 12)
    needs, offers = [], []
    for i in range(n_needs):
        state, article = rng.choice(states), rng.choice(articles)
        needs.append({"need_id": f"n{i}", "state": state, "regional_group": group, "article": article,
                      "chapter": reference.chapter_of(article), "forms": rng.sample(FORMS[:4], rng.randint(1, 2)),
                      "priority": rng.choice([1, 2, 2, 3, 3]), "languages": [rng.choice(LANGUAGES)],
                      "status": "open", "checklist_round": None, "created_at": T0})
    for i in range(n_offers):
        roll = rng.random()
        scope_states, scope_groups, level = (rng.sample(states, rng.randint(1, 3)), [], "bilateral") if roll < 0.7 \
            else ([], [group], "regional")
        offers.append({"offer_id": f"o{i}", "provider": f"P-{i % 25}", "level": level, "scope_states": scope_states,
                       "scope_groups": scope_groups, "articles": rng.sample(articles, rng.randint(1, 2)),
                       "chapters": [], "forms": rng.sample(FORMS[:4], rng.randint(1, 3)),
                       "capacity": rng.randint(1, 2), "languages": [rng.choice(LANGUAGES)], "status": "active"})
    return needs, offers


def optimum(weights, capacity, pairs):
    """Max covered weight by min-cost flow (networkx), integer costs."""
    graph = nx.DiGraph()
    for need, w in weights.items():
        graph.add_edge("s", ("n", need), capacity=1, weight=-int(round(w * 1000)))
        for _, offer in pairs.get(need, []):
            graph.add_edge(("n", need), ("o", offer), capacity=1, weight=0)
    for offer, cap in capacity.items():
        graph.add_edge(("o", offer), "t", capacity=cap, weight=0)
    flow = nx.max_flow_min_cost(graph, "s", "t")
    return sum(weights[need] for need in weights if flow["s"].get(("n", need), 0) > 0)


def quality(seed):
    needs, offers = scarce_scenario(seed)
    model = Matcher().load(needs=[dict(n) for n in needs], offers=[dict(o) for o in offers])
    weights = {n["need_id"]: model.settings.need_weight(n) for n in needs}
    pairs, capacity = {}, {o["offer_id"]: o["capacity"] for o in offers}
    for n in needs:
        found = []
        for o in offers:
            scored = model.score_offer(n, o)
            if scored is not None:
                found.append((scored[0], o["offer_id"]))
        if found:
            pairs[n["need_id"]] = found
    best = optimum(weights, capacity, pairs)
    exact = allocate(weights, capacity, pairs)["covered_weight"]
    greedy = allocate(weights, capacity, pairs, augment=False)["covered_weight"]
    # the live path: events through the model (top-K proposals per need), then allocate those
    live = Matcher()
    for i, o in enumerate(offers):
        live.apply(event("offer.published", o, i))
    for i, n in enumerate(needs):
        live.apply(event("need.submitted", n, len(offers) + i))
    proposed = live.allocation()["covered_weight"]
    return {"seed": seed, "needs": len(needs), "feasible_pairs": sum(len(p) for p in pairs.values()),
            "capacity": sum(capacity.values()), "optimum": best, "augmented": exact / best,
            "greedy": greedy / best, "proposed_topk": proposed / best}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k offers only")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]

    print(f"(1) per-event matching time (pure domain, 2,000 open needs, 300 need + 300 offer events, "
          f"fastest of 3 rounds), "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"{'open offers':>12} {'need event':>12} {'offer event':>12} {'mean':>10} {'p95':>10} "
          f"{'out/need ev':>12} {'out/offer ev':>13} {'matches':>9}")
    rows = []
    for size in sizes:
        row = speed(size)
        rows.append(row)
        print(f"{row['offers']:>12,} {row['need_mean'] * 1e6:>10.0f}µs {row['offer_mean'] * 1e6:>10.0f}µs "
              f"{row['mean'] * 1e6:>8.0f}µs {row['p95'] * 1e6:>8.0f}µs {row['need_events_out']:>12.2f} "
              f"{row['offer_events_out']:>13.2f} "
              f"{row['matches']:>9,}")
    ratio = rows[-1]["mean"] / rows[0]["mean"]
    print(f"ratio {rows[-1]['offers']:,} / {rows[0]['offers']:,}: all events {ratio:.2f} (target ≤ 2) "
          f"{'OK' if ratio <= 2 else 'ABOVE TARGET'}; need events "
          f"{rows[-1]['need_mean'] / rows[0]['need_mean']:.2f}, offer events "
          f"{rows[-1]['offer_mean'] / rows[0]['offer_mean']:.2f}")

    print()
    print("(2) allocation quality: covered priority weight / optimum (networkx min-cost flow), scarce supply")
    print(f"{'seed':>5} {'needs':>6} {'pairs':>7} {'capacity':>9} {'optimum':>9} {'allocate':>9} "
          f"{'greedy':>8} {'top-K proposals':>16}")
    results = []
    for seed in range(1, args.seeds + 1):
        q = quality(seed)
        results.append(q)
        print(f"{q['seed']:>5} {q['needs']:>6} {q['feasible_pairs']:>7} {q['capacity']:>9} {q['optimum']:>9.2f} "
              f"{q['augmented']:>8.1%} {q['greedy']:>8.1%} {q['proposed_topk']:>16.1%}")
    worst = min(q["augmented"] for q in results)
    print(f"allocate (greedy + augmenting paths) worst ratio: {worst:.1%} (target ≥ 95 %) "
          f"{'OK' if worst >= 0.95 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
