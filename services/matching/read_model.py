"""The read model: what matching knows, indexed so that one event never scans everything (pure).

:class:`ReadModel` holds the open needs, offers, experts and workshop
requests seen on ``tacoord.events`` and the matches that stand, with indexes:

- offers by ``(article, form, geography, level)`` × language, where
  geography is a State (``("S", "KEN")``), a regional group
  (``("G", "AFRICAN")``) or global (``("*",)``); an offer's chapters are
  expanded to their articles; each bucket keeps untouched offers apart
  from those already engaged (:class:`Tiers`);
- experts by ``(article, form)``;
- open needs by article, by ``(article, regional group)`` and by
  ``(article, State)``; supply counts by ``(article, regional group)``;
- the matches that stand (:data:`~services.matching.lifecycle.HELD`: proposed
  to delivered) by need, offer, expert and State × article × form, and the
  committed ones (agreed and later) by offer: only they use its capacity.

It scores pairs against what it holds (capacity left, regional demand),
finds the best candidates of a need from the indexes only, and answers the
queries of the matrix and the allocation. It decides nothing: the rules that
change it when an event arrives are :class:`services.matching.domain.Matcher`.
Ids are hashes of what they name, so the same events build the same model.
"""
import hashlib
import heapq
from collections import defaultdict

from services.matching.alert_book import AlertBook
from services.matching.allocation import allocate
from services.matching.lifecycle import COMMITTED, HELD, RETRACTABLE
from services.matching.scoring import (AVAILABILITY, COMMITTED_OFFER, GLOBAL, LEVELS, MATCHABLE_EXPERT,
                                       MATCHABLE_OFFER, OPEN_NEED, Settings, expert_constraints, expert_groups,
                                       language_part, offer_articles, offer_constraints, offer_geos, offer_groups,
                                       weighted)


def stable_id(prefix, *parts):
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:20]
    return f"{prefix}-{digest}"


def match_id(need_id, offer_id=None, expert_id=None):
    return stable_id("m", need_id, f"offer:{offer_id}" if offer_id else f"expert:{expert_id}")


def match_combos(match):
    """The State × article × form combinations a match commits its provider to."""
    return {(match["state"], match["article"], form) for form in match["forms"]}


class Tiers:
    """The offers of one index bucket, untouched ones apart from those already engaged."""

    __slots__ = ("fresh", "used")

    def __init__(self):
        self.fresh, self.used = {}, {}

    def put(self, offer_id, used):
        (self.used if used else self.fresh)[offer_id] = None
        (self.fresh if used else self.used).pop(offer_id, None)

    def remove(self, offer_id):
        self.fresh.pop(offer_id, None)
        self.used.pop(offer_id, None)

    def __bool__(self):
        return bool(self.fresh or self.used)


class ReadModel:
    """Needs, offers, experts, workshop requests and the matches that stand, indexed."""

    def __init__(self, settings=None):
        self.settings = settings or Settings()
        self.needs, self.offers, self.experts, self.workshops = {}, {}, {}, {}
        self.matches = {}                                  # matches that stand (HELD): id -> match
        self.need_matches = defaultdict(dict)              # need_id -> {match_id: match}
        self.offer_matches = defaultdict(set)              # offer_id -> {match_id}
        self.expert_matches = defaultdict(set)
        self.offer_committed = defaultdict(set)            # offer_id -> {match_id} agreed or later
        self.refused = set()                               # match ids declined or cancelled: never again
        self.open_by_article = defaultdict(set)            # article -> {need_id}
        self.open_by_group = defaultdict(set)              # (article, group) -> {need_id}
        self.open_by_state = defaultdict(set)              # (article, state) -> {need_id}
        self.group_demand = defaultdict(lambda: defaultdict(int))  # (article, group) -> {state: n}
        self.needs_by_state = defaultdict(set)             # state -> {need_id} (not withdrawn)
        # (article, form, geo, level) -> {language or "": Tiers of offer ids}
        self.offer_buckets = defaultdict(lambda: defaultdict(Tiers))
        self.offer_keys = {}                               # offer_id -> [(bucket key, language)]
        self.offer_levels = set(LEVELS)
        self.expert_buckets = defaultdict(dict)            # (article, form) -> {expert_id: None}
        self.expert_keys = {}
        self.supply = defaultdict(int)                     # (article, group) -> matchable offers + experts
        self.combo_matches = defaultdict(set)              # (state, article, form) -> {match_id}
        self.unmatched_p1 = set()                          # open priority-1 needs without a match
        self.supply_lost_at = {}                           # (article, group) -> when its supply went to 0
        self.alerts = set()                                # ids of gaps/duplications already emitted
        self.proposals = set()                             # workshop request ids already answered
        self.alert_book = AlertBook()                      # the alerts that can still change

    # -- loading ---------------------------------------------------------------

    def load(self, needs=(), offers=(), experts=(), workshops=(), matches=(), alerts=(), proposals=(), refused=(),
             alert_docs=()):
        """Restore a stored model (no matching, no events). ``alert_docs``: stored alerts with their ``_id``."""
        for need in needs:
            self._put_need(need)
        for offer in offers:
            self._put_offer(offer)
        for expert in experts:
            self._put_expert(expert)
        for workshop in workshops:
            self.workshops[workshop["request_id"]] = workshop
        for match in matches:
            if match.get("status", "proposed") in HELD:
                self._add_match(match)
        self.refused.update(refused)
        self.unmatched_p1 = {n for n, need in self.needs.items() if self._is_unmatched_p1(need)}
        self.alerts.update(alerts)
        self.alert_book.load(alert_docs)
        self.proposals.update(proposals)
        return self

    # -- indexes -------------------------------------------------------------

    def _put_need(self, need):
        old = self.needs.get(need["need_id"])
        if old is not None:
            self._unindex_need(old)
        self.needs[need["need_id"]] = need
        if need["status"] != "withdrawn":
            self.needs_by_state[need["state"]].add(need["need_id"])
        if need["status"] in OPEN_NEED:
            key_a, key_g = need["article"], (need["article"], need["regional_group"])
            self.open_by_article[key_a].add(need["need_id"])
            self.open_by_group[key_g].add(need["need_id"])
            self.open_by_state[(need["article"], need["state"])].add(need["need_id"])
            self.group_demand[key_g][need["state"]] += 1

    def _unindex_need(self, need):
        nid = need["need_id"]
        self.needs_by_state[need["state"]].discard(nid)
        self.unmatched_p1.discard(nid)
        if need["status"] in OPEN_NEED:
            key_g = (need["article"], need["regional_group"])
            self.open_by_article[need["article"]].discard(nid)
            self.open_by_group[key_g].discard(nid)
            self.open_by_state[(need["article"], need["state"])].discard(nid)
            demand = self.group_demand[key_g]
            demand[need["state"]] -= 1
            if demand[need["state"]] <= 0:
                del demand[need["state"]]

    def _put_offer(self, offer):
        old = self.offers.get(offer["offer_id"])
        if old is not None:
            self._unindex_offer(old)
        self.offers[offer["offer_id"]] = offer
        if offer["status"] not in MATCHABLE_OFFER:
            return
        keys, articles = [], offer_articles(offer)
        self.offer_levels.add(offer["level"])
        for article in articles:
            for form in offer["forms"]:
                for geo in offer_geos(offer):
                    key = (article, form, geo, offer["level"])
                    for language in offer["languages"] or [""]:
                        self.offer_buckets[key][language].put(offer["offer_id"], self.offer_committed.get(
                            offer["offer_id"]))
                        keys.append((key, language))
            for group in offer_groups(offer):
                self.supply[(article, group)] += 1
        self.offer_keys[offer["offer_id"]] = keys

    def _unindex_offer(self, offer):
        for key, language in self.offer_keys.pop(offer["offer_id"], ()):
            languages = self.offer_buckets[key]
            languages[language].remove(offer["offer_id"])
            if not languages[language]:
                del languages[language]
                if not languages:
                    del self.offer_buckets[key]
        if offer["status"] in MATCHABLE_OFFER:
            for article in offer_articles(offer):
                for group in offer_groups(offer):
                    self.supply[(article, group)] -= 1

    def _put_expert(self, expert):
        old = self.experts.get(expert["expert_id"])
        if old is not None:
            self._unindex_expert(old)
        self.experts[expert["expert_id"]] = expert
        if expert["vetting_status"] not in MATCHABLE_EXPERT:
            return
        keys = []
        for article in expert["expertise"]:
            for form in expert["forms"]:
                key = (int(article), form)
                self.expert_buckets[key][expert["expert_id"]] = None
                keys.append(key)
            for group in expert_groups(expert):
                self.supply[(int(article), group)] += 1
        self.expert_keys[expert["expert_id"]] = keys

    def _unindex_expert(self, expert):
        for key in self.expert_keys.pop(expert["expert_id"], ()):
            self.expert_buckets[key].pop(expert["expert_id"], None)
        if expert["vetting_status"] in MATCHABLE_EXPERT:
            for article in expert["expertise"]:
                for group in expert_groups(expert):
                    self.supply[(int(article), group)] -= 1

    def _add_match(self, match):
        mid = match["match_id"]
        self.matches[mid] = match
        self.need_matches[match["need_id"]][mid] = match
        if match.get("offer_id"):
            if match["status"] in COMMITTED:
                if not self.offer_committed.get(match["offer_id"]):
                    self._retier_offer(match["offer_id"], used=True)
                self.offer_committed[match["offer_id"]].add(mid)
            self.offer_matches[match["offer_id"]].add(mid)
            for form in match["forms"]:
                self.combo_matches[(match["state"], match["article"], form)].add(mid)
        else:
            self.expert_matches[match["expert_id"]].add(mid)
        self.unmatched_p1.discard(match["need_id"])

    def _drop_match(self, match):
        mid = match["match_id"]
        self.matches.pop(mid, None)
        self.need_matches[match["need_id"]].pop(mid, None)
        if not self.need_matches[match["need_id"]]:
            del self.need_matches[match["need_id"]]
        if match.get("offer_id"):
            self.offer_matches[match["offer_id"]].discard(mid)
            committed = self.offer_committed.get(match["offer_id"])
            if committed and mid in committed:
                committed.discard(mid)
                if not committed:
                    del self.offer_committed[match["offer_id"]]
                    self._retier_offer(match["offer_id"], used=False)
            for form in match["forms"]:
                self.combo_matches[(match["state"], match["article"], form)].discard(mid)
        else:
            self.expert_matches[match["expert_id"]].discard(mid)

    def _retier_offer(self, offer_id, used):
        for key, language in self.offer_keys.get(offer_id, ()):
            self.offer_buckets[key][language].put(offer_id, used)

    def _is_unmatched_p1(self, need):
        return (need["status"] in OPEN_NEED and need["priority"] == 1
                and not self.need_matches.get(need["need_id"]))

    # -- scoring ---------------------------------------------------------------

    def regional_demand(self, need):
        """How many States of the need's group have open needs on its article."""
        return len(self.group_demand.get((need["article"], need["regional_group"]), ()))

    def priority_part(self, need):
        return round(self.settings.need_weight(need), 4)

    def level_prefs(self, need):
        """Level preferences for a need: regional when enough States of its group need the article."""
        return (self.settings.level_regional if self.regional_demand(need) >= self.settings.regional_threshold
                else self.settings.level_national)

    def level_part(self, need, level):
        return self.level_prefs(need).get(level, 0.5)

    def remaining_capacity(self, offer, need_id):
        """Engagements left: the capacity less the offer's committed matches (agreed or later; proposals
        use none), not counting this need's own match with the offer."""
        committed = self.offer_committed.get(offer["offer_id"], ())
        used = len(committed)
        if used and match_id(need_id, offer_id=offer["offer_id"]) in committed:
            used -= 1
        return max(0, offer["capacity"] - used)

    def offer_parts(self, need, offer, priority=None, prefs=None):
        """The score parts of a pair (``priority``/``prefs``: the need's, when already known)."""
        return {
            "priority": self.priority_part(need) if priority is None else priority,
            "language": language_part(need["languages"], offer["languages"]),
            "level": self.level_part(need, offer["level"]) if prefs is None else prefs.get(offer["level"], 0.5),
            "capacity": round(self.remaining_capacity(offer, need["need_id"]) / offer["capacity"], 4),
        }

    def quick_offer_score(self, need, offer, priority=None, prefs=None):
        """The score of a pair already known to be feasible (no explanation built)."""
        return weighted(self.offer_parts(need, offer, priority, prefs), self.settings.offer_part_weights)

    def score_offer(self, need, offer):
        """(score, explanation, common forms) of a feasible pair, else None."""
        checked = offer_constraints(need, offer)
        if checked is None:
            return None
        constraints, common = checked
        parts = self.offer_parts(need, offer)
        return weighted(parts, self.settings.offer_part_weights), \
            {"constraints_met": constraints, "score_parts": parts}, common

    def score_expert(self, need, expert):
        checked = expert_constraints(need, expert)
        if checked is None:
            return None
        constraints, common = checked
        experience = (1.0 if need["state"] in expert["countries"]
                      else 0.7 if need["regional_group"] in expert["regions"] else 0.3)
        parts = {
            "priority": self.priority_part(need),
            "language": language_part(need["languages"], expert["languages"]),
            "level": expert["expertise"][str(need["article"])],
            "availability": AVAILABILITY.get(expert["availability"], 0.5),
            "experience": experience,
        }
        return weighted(parts, self.settings.expert_part_weights), \
            {"constraints_met": constraints, "score_parts": parts}, common

    def best_possible(self, need, kind):
        weights = self.settings.offer_part_weights if kind == "offer" else self.settings.expert_part_weights
        parts = {k: 1.0 for k in weights}
        parts["priority"] = self.priority_part(need)
        parts["language"] = 1.0 if need["languages"] else 0.5
        return weighted(parts, weights)

    # -- candidates --------------------------------------------------------------

    def offer_candidates(self, need):
        """The best offers for a need: [(score, offer_id)], from the indexes only.

        Branch and bound over index buckets: every bucket ``(article, form,
        geography, level)`` × language has an upper bound on the score of
        its offers (its level and language parts are known, capacity ≤ 1).
        Each bucket keeps untouched offers (capacity part exactly 1) apart
        from offers already engaged, and is visited untouched-first: so the
        top K are usually found among the first offers scored, however many
        regional offers are partly taken. Buckets are visited from the
        highest bound down; the search stops
        when the K-th best score found reaches the bound of what is left. So
        the result is the exact top K (ties aside) while the number of
        offers scored does not grow with the number of offers held;
        ``scan_limit`` caps it anyway.
        """
        settings = self.settings
        weights = settings.offer_part_weights
        wanted = settings.max_offer_matches_per_need
        prefs = self.level_prefs(need)
        need_languages = set(need["languages"])
        priority = self.priority_part(need)
        article = need["article"]
        total = sum(weights.get(k, 0) for k in ("priority", "language", "level", "capacity")) or 1.0
        fixed = priority * weights.get("priority", 0) + weights.get("capacity", 0)  # capacity part ≤ 1
        w_language, w_level = weights.get("language", 0), weights.get("level", 0)
        subs = []
        for rank, geo in enumerate((("S", need["state"]), ("G", need["regional_group"]), GLOBAL)):
            for form in need["forms"]:
                for level in self.offer_levels:
                    languages = self.offer_buckets.get((article, form, geo, level))
                    if not languages:
                        continue
                    for language, bucket in languages.items():
                        if not need_languages or not language:
                            language_score = 0.5
                        else:
                            language_score = 1.0 if language in need_languages else 0.0
                        bound = round((fixed + w_language * language_score
                                       + w_level * prefs.get(level, 0.5)) / total, 4)
                        # untouched offers score exactly the bound: they go first
                        subs.append((-bound, 0, rank, form, level, language, bucket.fresh))
                        subs.append((-bound, 1, rank, form, level, language, bucket.used))
        subs.sort(key=lambda sub: sub[:6])
        seen, found, best = set(), [], []  # best: min-heap of the top scores
        refused = self.refused
        for negative_bound, _, _, _, _, _, bucket in subs:
            bound = -negative_bound
            if len(best) >= wanted and best[0] >= bound:
                break
            for offer_id in bucket:
                if offer_id in seen:
                    continue
                seen.add(offer_id)
                if refused and match_id(need["need_id"], offer_id=offer_id) in refused:
                    continue  # declined or cancelled: never proposed again
                score = self.quick_offer_score(need, self.offers[offer_id], priority, prefs)
                found.append((score, offer_id))
                if len(best) < wanted:
                    heapq.heappush(best, score)
                elif score > best[0]:
                    heapq.heapreplace(best, score)
                if len(seen) >= settings.scan_limit or (len(best) >= wanted and best[0] >= bound):
                    break
            if len(seen) >= settings.scan_limit:
                break
        return found

    def expert_candidates(self, need):
        best = self.best_possible(need, "expert")
        wanted = self.settings.max_expert_matches_per_need
        seen, scored, perfect = set(), [], 0
        for form in need["forms"]:
            for expert_id in self.expert_buckets.get((need["article"], form), ()):
                if expert_id in seen:
                    continue
                seen.add(expert_id)
                if self.refused and match_id(need["need_id"], expert_id=expert_id) in self.refused:
                    continue
                result = self.score_expert(need, self.experts[expert_id])
                if result is None:
                    continue
                scored.append((result[0], expert_id))
                perfect += result[0] >= best
                if perfect >= wanted or len(seen) >= self.settings.scan_limit:
                    return scored
        return scored

    def needs_for_offer(self, offer):
        found = set()
        for article in offer_articles(offer):
            for geo in offer_geos(offer):
                if geo == GLOBAL:
                    found |= self.open_by_article.get(article, set())
                elif geo[0] == "G":
                    found |= self.open_by_group.get((article, geo[1]), set())
                else:
                    found |= self.open_by_state.get((article, geo[1]), set())
        return sorted(found)

    def needs_for_expert(self, expert):
        found = set()
        for article in expert["expertise"]:
            found |= self.open_by_article.get(int(article), set())
        return sorted(found)

    # -- queries ---------------------------------------------------------------

    def matched_providers(self, combo, level=None):
        """provider -> offer ids matched to State × article × form: active offers (not pipeline ones) with a
        match that stands there (:data:`~services.matching.lifecycle.HELD`, proposed to delivered). Two
        providers or more are a duplication (:mod:`services.matching.alert_rules`, the matrix)."""
        providers = defaultdict(set)
        for mid in self.combo_matches.get(combo, ()):
            match = self.matches[mid]
            offer = self.offers.get(match["offer_id"])
            if offer and offer["status"] in COMMITTED_OFFER and (not level or offer["level"] == level):
                providers[offer["provider"]].add(offer["offer_id"])
        return providers

    def allocation(self):
        """What would fit: open needs already committed (agreed or later) keep their offer, and the rest are
        allocated over their proposed and accepted matches within the capacity the committed matches
        left (see :func:`allocate`). Adds ``committed``: the needs assigned by a commitment."""
        weights, pairs, committed = {}, defaultdict(list), {}
        for match in sorted(self.matches.values(), key=lambda m: (-m["score"], m["match_id"])):
            need = self.needs[match["need_id"]]
            if not match.get("offer_id") or need["status"] not in OPEN_NEED:
                continue
            weights[need["need_id"]] = self.settings.need_weight(need)
            if match["status"] in COMMITTED:
                committed.setdefault(need["need_id"], match["offer_id"])
            elif match["status"] in RETRACTABLE:
                pairs[need["need_id"]].append((match["score"], match["offer_id"]))
        pairs = {n: ps for n, ps in pairs.items() if n not in committed}
        capacity = {o: max(0, self.offers[o]["capacity"] - len(self.offer_committed.get(o, ())))
                    for ps in pairs.values() for _, o in ps}
        result = allocate({n: weights[n] for n in pairs}, capacity, pairs)
        result["assignments"].update(committed)
        result["covered_weight"] = round(result["covered_weight"] + sum(weights[n] for n in committed), 6)
        result["committed"] = set(committed)
        return result
