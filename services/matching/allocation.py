"""Allocation: needs assigned to the offers of their matches within capacity (pure).

Greedy by need weight with augmenting paths: needs with positive weights form
a transversal matroid, so this covers the maximum total weight;
``bench/matching_bench.py`` checks it against networkx min-cost flow.
"""
from collections import defaultdict


def allocate(weights, capacity, pairs, augment=True):
    """Assign needs to offers within capacity, covering the most weight.

    ``weights``: need_id -> weight; ``capacity``: offer_id -> engagements;
    ``pairs``: need_id -> [(score, offer_id)] (feasible pairs). Needs are
    taken by weight (then id); each goes to its best-scored offer with room.
    When none has room and ``augment`` is on, an augmenting path moves
    already-assigned needs to other feasible offers to make room. Needs with
    positive weights form a transversal matroid, so greedy-by-weight with
    augmentation covers the maximum total weight (exact); without it, the
    plain greedy is a ½-approximation.
    Returns {"assignments": {need_id: offer_id}, "covered_weight": float}.
    """
    load = defaultdict(list)
    assigned = {}
    options = {n: [o for _, o in sorted(ps, key=lambda p: (-p[0], p[1]))] for n, ps in pairs.items()}
    for need in sorted(weights, key=lambda n: (-weights[n], n)):
        choices = options.get(need, [])
        free = next((o for o in choices if len(load[o]) < capacity.get(o, 0)), None)
        if free is not None:
            assigned[need] = free
            load[free].append(need)
            continue
        if augment and choices:
            _augment(need, choices, options, capacity, load, assigned)
    return {"assignments": assigned, "covered_weight": round(sum(weights[n] for n in assigned), 6)}


def _augment(need, choices, options, capacity, load, assigned):
    parent = {}  # offer -> (previous offer or None, need moving into it)
    queue = []
    for offer in choices:
        if offer not in parent:
            parent[offer] = (None, need)
            queue.append(offer)
    head = 0
    while head < len(queue):
        offer = queue[head]
        head += 1
        for moved in load[offer]:
            for other in options.get(moved, []):
                if other in parent:
                    continue
                parent[other] = (offer, moved)
                if len(load[other]) < capacity.get(other, 0):
                    _shift(other, parent, load, assigned)
                    return True
                queue.append(other)
    return False


def _shift(target, parent, load, assigned):
    offer = target
    while offer is not None:
        previous, mover = parent[offer]
        if previous is not None:
            load[previous].remove(mover)
        load[offer].append(mover)
        assigned[mover] = offer
        offer = previous