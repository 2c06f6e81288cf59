"""Matching: the read model, the rules and the scores (pure: no I/O, no nameko, no pymongo).

The :class:`ReadModel` holds the open needs, offers, experts and workshop
requests seen on ``tacoord.events``, with indexes so that one event never
scans everything:

- offers by ``(article, form, geography)`` where geography is a State
  (``("S", "KEN")``), a regional group (``("G", "AFRICAN")``) or global
  (``("*",)``); an offer's chapters are expanded to their articles;
- experts by ``(article, form)``;
- open needs by article, by ``(article, regional group)`` and by
  ``(article, State)``; supply counts by ``(article, regional group)``.

``ReadModel.apply(event)`` updates the model and returns an :class:`Outcome`:
the documents to store and the events to emit (``match.proposed``,
``match.retracted``, ``duplication.detected``,
``workshop.participants_proposed``). ``ReadModel.sweep(now)`` finds gaps.
Everything is deterministic: ids are hashes of what they name, candidates are
visited in a fixed order, so replaying the same events builds the same model
(:func:`rebuild`).
"""
import hashlib
import heapq
from collections import defaultdict
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from tacoord import reference

GLOBAL = ("*",)
OPEN_NEED = ("open", "in_progress")
MATCHABLE_OFFER = ("pipeline", "active")
COMMITTED_OFFER = ("active",)
MATCHABLE_EXPERT = ("validated", "active")
LEVELS = ("bilateral", "regional", "global")
REGIONAL_GROUPS = ("AFRICAN", "ASIA_PACIFIC", "EASTERN_EUROPEAN", "GRULAC", "WEOG")
EXPERTISE_LEVELS = {"basic": 0.4, "advanced": 0.7, "expert": 1.0}
AVAILABILITY = {"available": 1.0, "limited": 0.5, "unavailable": 0.0}


@dataclass
class Settings:
    """Tunable rules; every field can be overridden from the service config."""

    max_offer_matches_per_need: int = 5
    max_expert_matches_per_need: int = 3
    max_matches_per_offer_event: int = 50   # fan-out bound of one offer event (best first)
    scan_limit: int = 200                   # candidates scored per need event, at most
    regional_threshold: int = 2             # States of one group needing one article → prefer regional
    gap_after_seconds: float = 7 * 24 * 3600
    priority_weights: dict = field(default_factory=lambda: {1: 1.0, 2: 0.6, 3: 0.3})
    chapter_weights: dict = field(default_factory=lambda: {2: 1.0, 4: 1.0})
    default_chapter_weight: float = 0.7
    offer_part_weights: dict = field(default_factory=lambda: {
        "priority": 0.3, "language": 0.2, "level": 0.3, "capacity": 0.2})
    expert_part_weights: dict = field(default_factory=lambda: {
        "priority": 0.3, "language": 0.2, "level": 0.15, "availability": 0.2, "experience": 0.15})
    level_national: dict = field(default_factory=lambda: {"bilateral": 1.0, "regional": 0.7, "global": 0.5})
    level_regional: dict = field(default_factory=lambda: {"regional": 1.0, "bilateral": 0.7, "global": 0.6})

    def need_weight(self, need):
        """How much covering this need is worth (priority × chapter)."""
        return (self.priority_weights.get(need["priority"], 0.3)
                * self.chapter_weights.get(need["chapter"], self.default_chapter_weight))


def stable_id(prefix, *parts):
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:20]
    return f"{prefix}-{digest}"


def match_id(need_id, offer_id=None, expert_id=None):
    return stable_id("m", need_id, f"offer:{offer_id}" if offer_id else f"expert:{expert_id}")


def parse_time(value):
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _articles_of_chapter(chapter):
    try:
        return reference.articles_in_chapter(chapter)
    except KeyError:
        return ()


def _chapter_of(article):
    try:
        return reference.chapter_of(article)
    except KeyError:
        return None


def _group_of(state):
    try:
        return reference.regional_group_of(state)
    except KeyError:
        return None


# --- normalising what the other services publish (tolerant reader) ----------

def normalize_need(data, event):
    need = {
        "need_id": data["need_id"], "state": data["state"],
        "regional_group": data.get("regional_group") or _group_of(data["state"]),
        "article": int(data["article"]),
        "chapter": data.get("chapter") or _chapter_of(int(data["article"])),
        "forms": sorted(set(data.get("forms") or [])), "priority": int(data.get("priority") or 3),
        "languages": sorted(set(data.get("languages") or [])),
        "checklist_round": data.get("checklist_round"), "status": data.get("status") or "open",
        "description": data.get("description") or "",
        "created_at": data.get("created_at") or event["occurred_at"],
        "updated_at": data.get("updated_at") or event["occurred_at"],
        "cause": {"id": event["id"], "correlation_id": event.get("correlation_id")},
    }
    if event["type"] == "need.withdrawn":
        need["status"] = "withdrawn"
    return need


def normalize_offer(data, event):
    offer = {
        "offer_id": data["offer_id"], "provider": data["provider"],
        "provider_name": data.get("provider_name"), "level": data.get("level") or "bilateral",
        "scope_states": sorted(set(data.get("scope_states") or [])),
        "scope_groups": sorted(set(data.get("scope_groups") or [])),
        "articles": sorted(set(int(a) for a in data.get("articles") or [])),
        "chapters": sorted(set(int(c) for c in data.get("chapters") or [])),
        "forms": sorted(set(data.get("forms") or [])), "capacity": max(1, int(data.get("capacity") or 1)),
        "languages": sorted(set(data.get("languages") or [])), "status": data.get("status") or "active",
        "period_start": data.get("period_start"), "period_end": data.get("period_end"),
        "updated_at": data.get("updated_at") or event["occurred_at"],
    }
    if event["type"] == "offer.withdrawn":
        offer["status"] = "withdrawn"
    return offer


def normalize_expert(data, event):
    expertise = {}
    for item in data.get("expertise") or []:
        level = EXPERTISE_LEVELS.get(item.get("level"), 0.4)
        expertise[str(int(item["article"]))] = max(level, expertise.get(str(int(item["article"])), 0))
    availability = (data.get("availability") or {}).get("status") or "available"
    expert = {
        "expert_id": data["expert_id"], "nationality": data.get("nationality"),
        "expertise": expertise,  # str(article) -> level score (string keys: storable as a document)
        "languages": sorted({lang["code"] if isinstance(lang, dict) else lang
                             for lang in data.get("languages") or []}),
        "regions": sorted(set(data.get("regions") or [])),
        "countries": sorted(set(data.get("countries") or [])),
        "forms": sorted(set(data.get("forms") or [])), "availability": availability,
        "vetting_status": data.get("vetting_status") or "active",
        "updated_at": data.get("updated_at") or event["occurred_at"],
    }
    if event["type"] == "expert.expired":
        expert["vetting_status"] = "expired"
    return expert


def normalize_workshop(data, event):
    return {
        "request_id": data["request_id"], "kind": data.get("kind"), "state": data.get("state"),
        "regional_group": data.get("regional_group") or (_group_of(data["state"]) if data.get("state") else None),
        "states": sorted(set(data.get("states") or [])), "articles": sorted(set(data.get("articles") or [])),
        "status": data.get("status") or event["type"].split(".", 1)[1],
    }


def offer_articles(offer):
    """Every article an offer covers (its articles plus those of its chapters)."""
    covered = set(offer["articles"])
    for chapter in offer["chapters"]:
        covered.update(_articles_of_chapter(chapter))
    return covered


def offer_geos(offer):
    if not offer["scope_states"] and not offer["scope_groups"]:
        return [GLOBAL]
    return [("S", s) for s in offer["scope_states"]] + [("G", g) for g in offer["scope_groups"]]


def offer_groups(offer):
    """The regional groups an offer's scope reaches (all of them for a global offer)."""
    if not offer["scope_states"] and not offer["scope_groups"]:
        return set(REGIONAL_GROUPS)
    groups = set(offer["scope_groups"])
    groups.update(g for g in (_group_of(s) for s in offer["scope_states"]) if g)
    return groups


def expert_groups(expert):
    if not expert["regions"] and not expert["countries"]:
        return set(REGIONAL_GROUPS)
    groups = set(expert["regions"])
    groups.update(g for g in (_group_of(s) for s in expert["countries"]) if g)
    return groups


# --- the pure rules ----------------------------------------------------------

def geography(offer, need):
    """How an offer's scope reaches a need's State, or None (hard constraint)."""
    if not offer["scope_states"] and not offer["scope_groups"]:
        return "global scope"
    if need["state"] in offer["scope_states"]:
        return f"{need['state']} in scope_states"
    if need["regional_group"] in offer["scope_groups"]:
        return f"regional group {need['regional_group']} in scope_groups"
    return None


def coverage(offer, need):
    """How an offer covers a need's article, or None (hard constraint)."""
    if need["article"] in offer["articles"]:
        return f"article {need['article']} in articles"
    if need["chapter"] in offer["chapters"]:
        return f"article {need['article']} via chapter {need['chapter']}"
    return None


def language_part(need_languages, languages):
    if not need_languages or not languages:
        return 0.5  # unknown on one side: neither a match nor a mismatch
    return 1.0 if set(need_languages) & set(languages) else 0.0


def weighted(parts, weights):
    """The weighted mean of score parts, rounded to 4 decimals (0 when nothing weighs)."""
    total = acc = 0.0
    for name, value in parts.items():
        weight = weights.get(name, 0)
        total += weight
        acc += value * weight
    return round(acc / total, 4) if total else 0.0


def offer_constraints(need, offer):
    """The hard constraints, as explanation strings; None when one fails."""
    if need["status"] not in OPEN_NEED or offer["status"] not in MATCHABLE_OFFER:
        return None
    where = geography(offer, need)
    covers = coverage(offer, need)
    common = sorted(set(need["forms"]) & set(offer["forms"]))
    if not (where and covers and common):
        return None
    return [f"geography: {where}", f"coverage: {covers}", f"forms: {', '.join(common)}",
            f"status: need {need['status']}, offer {offer['status']}"], common


def expert_constraints(need, expert):
    if need["status"] not in OPEN_NEED or expert["vetting_status"] not in MATCHABLE_EXPERT:
        return None
    level = expert["expertise"].get(str(need["article"]))
    common = sorted(set(need["forms"]) & set(expert["forms"]))
    if level is None or not common:
        return None
    return [f"expertise: article {need['article']}", f"forms: {', '.join(common)}",
            f"status: need {need['status']}, expert {expert['vetting_status']}"], common


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
    """Needs, offers, experts, workshop requests and active matches, indexed."""

    def __init__(self, settings=None):
        self.settings = settings or Settings()
        self.needs, self.offers, self.experts, self.workshops = {}, {}, {}, {}
        self.matches = {}                                  # active matches: id -> match
        self.need_matches = defaultdict(dict)              # need_id -> {match_id: match}
        self.offer_matches = defaultdict(set)              # offer_id -> {match_id}
        self.expert_matches = defaultdict(set)
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

    # -- loading and replay ----------------------------------------------------

    def load(self, needs=(), offers=(), experts=(), workshops=(), matches=(), alerts=(), proposals=()):
        """Restore a stored model (no matching, no events)."""
        for need in needs:
            self._put_need(need)
        for offer in offers:
            self._put_offer(offer)
        for expert in experts:
            self._put_expert(expert)
        for workshop in workshops:
            self.workshops[workshop["request_id"]] = workshop
        for match in matches:
            if match.get("status", "active") == "active":
                self._add_match(match)
        self.unmatched_p1 = {n for n, need in self.needs.items() if self._is_unmatched_p1(need)}
        self.alerts.update(alerts)
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
                        self.offer_buckets[key][language].put(offer["offer_id"], self.offer_matches.get(
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
            if not self.offer_matches.get(match["offer_id"]):
                self._retier_offer(match["offer_id"], used=True)
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
            if not self.offer_matches[match["offer_id"]]:
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
        """Engagements left, not counting this need's own match with the offer."""
        used = len(self.offer_matches.get(offer["offer_id"], ()))
        if used and self.need_matches.get(need_id) and \
                match_id(need_id, offer_id=offer["offer_id"]) in self.need_matches[need_id]:
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
        for negative_bound, _, _, _, _, _, bucket in subs:
            bound = -negative_bound
            if len(best) >= wanted and best[0] >= bound:
                break
            for offer_id in bucket:
                if offer_id in seen:
                    continue
                seen.add(offer_id)
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

    # -- building matches ------------------------------------------------------

    def _match(self, need, result, offer=None, expert=None):
        score, explanation, common = result
        match = {
            "match_id": match_id(need["need_id"], offer and offer["offer_id"], expert and expert["expert_id"]),
            "need_id": need["need_id"], "provider": offer["provider"] if offer else None,
            "state": need["state"], "regional_group": need["regional_group"], "article": need["article"],
            "chapter": need["chapter"], "forms": common, "priority": need["priority"],
            "level": offer["level"] if offer else "expert", "score": score, "explanation": explanation,
        }
        if offer:
            match["offer_id"] = offer["offer_id"]
        else:
            match["expert_id"] = expert["expert_id"]
        return match

    def _propose(self, out, match, now):
        if match["match_id"] in self.matches:
            return
        stored = {**match, "status": "active", "proposed_at": now, "retracted_at": None, "reason": None}
        self._add_match(stored)
        out.match(stored, "match.proposed", dict(match))

    def _retract(self, out, match, reason, now):
        if match["match_id"] not in self.matches:
            return
        self._drop_match(match)
        stored = {**match, "status": "retracted", "retracted_at": now, "reason": reason}
        data = {"match_id": match["match_id"], "need_id": match["need_id"], "reason": reason}
        if match.get("offer_id"):
            data["offer_id"] = match["offer_id"]
        else:
            data["expert_id"] = match["expert_id"]
        out.match(stored, "match.retracted", data)
        need = self.needs.get(match["need_id"])
        if need is not None and self._is_unmatched_p1(need):
            self.unmatched_p1.add(need["need_id"])
            if need.get("unmatched_since") != now:
                need["unmatched_since"] = now
                out.entity("needs", need)

    def _rematch_need(self, out, need, now, reason="no longer eligible"):
        """Bring a need's matches to the best ones the indexes offer now."""
        current = dict(self.need_matches.get(need["need_id"], {}))
        if need["status"] not in OPEN_NEED:
            for match in current.values():
                self._retract(out, match, f"need {need['status']}", now)
            return
        for kind, limit in (("offer", self.settings.max_offer_matches_per_need),
                            ("expert", self.settings.max_expert_matches_per_need)):
            key = f"{kind}_id"
            mine = {m[key]: m for m in current.values() if m.get(key)}
            table = self.offers if kind == "offer" else self.experts
            scorer = self.score_offer if kind == "offer" else self.score_expert
            pool = {}  # entity id -> score
            for entity_id in mine:
                entity = table.get(entity_id)
                result = scorer(need, entity) if entity else None
                if result is None:
                    self._retract(out, mine[entity_id], reason, now)
                else:
                    pool[entity_id] = result[0]
            finder = self.offer_candidates if kind == "offer" else self.expert_candidates
            for score, entity_id in finder(need):
                pool.setdefault(entity_id, score)
            ranked = sorted(pool.items(), key=lambda item: (-item[1], item[0]))[:limit]
            keep = dict(ranked)
            for entity_id, match in mine.items():
                if entity_id in pool and entity_id not in keep:
                    self._retract(out, match, "superseded by a better match", now)
            for entity_id, _ in ranked:
                if entity_id not in mine:
                    entity = table[entity_id]
                    self._propose(out, self._match(need, scorer(need, entity), **{kind: entity}), now)
        if self._is_unmatched_p1(need):
            self.unmatched_p1.add(need["need_id"])

    def _offer_into_needs(self, out, offer, now):
        """A new or changed offer looks for open needs (best first, bounded)."""
        candidates = []
        forms = set(offer["forms"])
        for need_id in self.needs_for_offer(offer):  # geography and coverage hold by the index
            need = self.needs[need_id]
            if forms.isdisjoint(need["forms"]) or match_id(need_id, offer_id=offer["offer_id"]) in self.matches:
                continue
            candidates.append((-self.settings.need_weight(need), -self.quick_offer_score(need, offer), need_id))
        candidates.sort()
        limit = self.settings.max_offer_matches_per_need
        proposed = 0
        for _, _, need_id in candidates:
            if proposed >= self.settings.max_matches_per_offer_event:
                break
            need = self.needs[need_id]
            score = self.quick_offer_score(need, offer)  # capacity may have changed
            mine = [m for m in self.need_matches.get(need_id, {}).values() if m.get("offer_id")]
            if len(mine) >= limit:
                worst = min(mine, key=lambda m: (m["score"], m["match_id"]))
                if score <= worst["score"]:
                    continue
                self._retract(out, worst, "superseded by a better match", now)
            self._propose(out, self._match(need, self.score_offer(need, offer), offer=offer), now)
            proposed += 1

    def _expert_into_needs(self, out, expert, now):
        limit = self.settings.max_expert_matches_per_need
        for need_id in self.needs_for_expert(expert):
            if match_id(need_id, expert_id=expert["expert_id"]) in self.matches:
                continue
            need = self.needs[need_id]
            result = self.score_expert(need, expert)
            if result is None:
                continue
            mine = [m for m in self.need_matches.get(need_id, {}).values() if m.get("expert_id")]
            if len(mine) >= limit:
                worst = min(mine, key=lambda m: (m["score"], m["match_id"]))
                if result[0] <= worst["score"]:
                    continue
                self._retract(out, worst, "superseded by a better match", now)
            self._propose(out, self._match(need, result, expert=expert), now)

    # -- duplication -----------------------------------------------------------

    def committed_providers(self, combo, level=None):
        """provider -> offer ids committed (active offer, active match) to State × article × form."""
        providers = defaultdict(set)
        for mid in self.combo_matches.get(combo, ()):
            match = self.matches[mid]
            offer = self.offers.get(match["offer_id"])
            if offer and offer["status"] in COMMITTED_OFFER and (not level or offer["level"] == level):
                providers[offer["provider"]].add(offer["offer_id"])
        return providers

    def _check_duplications(self, out, combos, now, cause=None):
        for combo in sorted(combos):
            providers = self.committed_providers(combo)
            if len(providers) < 2:
                continue
            names = sorted(providers)
            state, article, form = combo
            dup_id = stable_id("dup", state, article, form, *names)
            if dup_id in self.alerts:
                continue
            self.alerts.add(dup_id)
            data = {"duplication_id": dup_id, "state": state, "article": article, "form": form,
                    "providers": names, "offer_ids": sorted(o for p in names for o in providers[p])}
            out.alert(dup_id, "duplication", "duplication.detected", data, now, cause)

    # -- applying events ---------------------------------------------------------

    def apply(self, event):
        """Apply one event; returns the :class:`Outcome` (documents to store, events to emit)."""
        out = Outcome()
        kind, now, data = event["type"], event["occurred_at"], event["data"]
        family = kind.split(".", 1)[0]
        if family == "need":
            need = normalize_need(data, event)
            if not _stale(self.needs.get(need["need_id"]), need):
                self._apply_need(out, need, now)
        elif family == "offer":
            offer = normalize_offer(data, event)
            if not _stale(self.offers.get(offer["offer_id"]), offer):
                self._apply_offer(out, offer, now)
        elif family == "expert":
            expert = normalize_expert(data, event)
            if not _stale(self.experts.get(expert["expert_id"]), expert):
                self._apply_expert(out, expert, now)
        elif kind == "workshop.participants_proposed":
            pass  # our own answer
        elif family == "workshop":
            self._apply_workshop(out, normalize_workshop(data, event), kind, now)
        return out

    def _apply_need(self, out, need, now):
        old = self.needs.get(need["need_id"])
        need["opened_at"] = old.get("opened_at") if old and old["status"] in OPEN_NEED else now
        need["unmatched_since"] = (old or {}).get("unmatched_since") or now
        if old and old["status"] not in OPEN_NEED and need["status"] in OPEN_NEED:
            need["unmatched_since"] = now  # reopened
        self._put_need(need)
        out.entity("needs", need)
        before = {c for m in self.need_matches.get(need["need_id"], {}).values() if m.get("offer_id")
                  for c in _combos(m)}
        reason = "need withdrawn" if need["status"] == "withdrawn" else "need changed"
        self._rematch_need(out, need, now, reason=reason)
        after = {c for m in self.need_matches.get(need["need_id"], {}).values() if m.get("offer_id")
                 for c in _combos(m)}
        self._check_duplications(out, before | after, now)

    def _note_supply_loss(self, keys, now):
        for key in keys:
            if self.supply.get(key, 0) <= 0:
                self.supply_lost_at[key] = now

    def _apply_offer(self, out, offer, now):
        old_matches = [self.matches[mid] for mid in sorted(self.offer_matches.get(offer["offer_id"], ()))]
        old = self.offers.get(offer["offer_id"])
        self._put_offer(offer)
        if old is not None and old["status"] in MATCHABLE_OFFER:
            self._note_supply_loss([(a, g) for a in offer_articles(old) for g in offer_groups(old)], now)
        out.entity("offers", offer)
        combos = {c for m in old_matches for c in _combos(m)}
        touched = []
        reason = (f"offer {offer['status']}" if offer["status"] not in MATCHABLE_OFFER
                  else "offer changed")
        for match in old_matches:
            need = self.needs.get(match["need_id"])
            if need is None or self.score_offer(need, offer) is None:
                self._retract(out, match, reason, now)
                touched.append(match["need_id"])
        for need_id in sorted(set(touched)):  # refill what lost a match
            self._rematch_need(out, self.needs[need_id], now)
        if offer["status"] in MATCHABLE_OFFER:
            self._offer_into_needs(out, offer, now)
        combos |= {c for mid in self.offer_matches.get(offer["offer_id"], ()) for c in _combos(self.matches[mid])}
        combos |= {c for m in out.proposed() if m.get("offer_id") for c in _combos(m)}
        self._check_duplications(out, combos, now)

    def _apply_expert(self, out, expert, now):
        old_matches = [self.matches[mid] for mid in sorted(self.expert_matches.get(expert["expert_id"], ()))]
        old = self.experts.get(expert["expert_id"])
        self._put_expert(expert)
        if old is not None and old["vetting_status"] in MATCHABLE_EXPERT:
            self._note_supply_loss([(int(a), g) for a in old["expertise"] for g in expert_groups(old)], now)
        out.entity("experts", expert)
        reason = (f"expert {expert['vetting_status']}" if expert["vetting_status"] not in MATCHABLE_EXPERT
                  else "expert changed")
        touched = []
        for match in old_matches:
            need = self.needs.get(match["need_id"])
            if need is None or self.score_expert(need, expert) is None:
                self._retract(out, match, reason, now)
                touched.append(match["need_id"])
        for need_id in sorted(set(touched)):
            self._rematch_need(out, self.needs[need_id], now)
        if expert["vetting_status"] in MATCHABLE_EXPERT:
            self._expert_into_needs(out, expert, now)

    def _apply_workshop(self, out, workshop, kind, now):
        old = self.workshops.get(workshop["request_id"], {})
        self.workshops[workshop["request_id"]] = {**old, **workshop}
        out.entity("workshops", self.workshops[workshop["request_id"]])
        if (kind == "workshop.requested" and workshop["kind"] in ("regional_workshop", "national_workshop")
                and workshop["request_id"] not in self.proposals):
            self.proposals.add(workshop["request_id"])
            out.proposal(workshop["request_id"], self.propose_participants(workshop))

    # -- workshops ---------------------------------------------------------------

    def propose_participants(self, workshop):
        """States that completed a gap analysis, States about to, and donors active in the region."""
        group = workshop["regional_group"]
        if workshop["kind"] == "regional_workshop" and group:
            candidates = set(reference.states_in_group(group))
        else:
            candidates = set(workshop["states"]) | ({workshop["state"]} if workshop.get("state") else set())
        starting = self._states_starting_a_self_assessment() | set(workshop["states"])
        completed, upcoming = [], []
        for state in sorted(candidates):
            filed = [self.needs[n] for n in self.needs_by_state.get(state, ())]
            if any(n.get("checklist_round") for n in filed):
                completed.append(state)
            elif filed or state in starting:
                upcoming.append(state)
        region_states = set(reference.states_in_group(group)) if group else candidates
        donors = sorted({o["provider"] for o in self.offers.values()
                         if o["status"] in MATCHABLE_OFFER and _reaches(o, group, region_states)})
        return {"request_id": workshop["request_id"], "regional_group": group,
                "states_completed": completed, "states_upcoming": upcoming, "donors": donors}

    def _states_starting_a_self_assessment(self):
        """States that asked for help completing the checklist and are still being helped."""
        return {w["state"] for w in self.workshops.values()
                if w.get("kind") == "checklist_assistance" and w.get("state")
                and w.get("status") not in ("declined", "cancelled", "held")}

    # -- gaps ------------------------------------------------------------------

    def sweep(self, now):
        """Gaps due at ``now`` (an aware datetime or ISO string), each emitted once."""
        out = Outcome()
        now_dt = parse_time(now) if isinstance(now, str) else now
        cutoff = now_dt - timedelta(seconds=self.settings.gap_after_seconds)
        stamp = now_dt.isoformat()
        for need_id in sorted(self.unmatched_p1):
            need = self.needs[need_id]
            if not self._is_unmatched_p1(need):
                continue
            since = need.get("unmatched_since") or need["created_at"]
            if parse_time(since) > cutoff:
                continue
            gap_id = stable_id("gap", "unmatched", need_id, since)
            if gap_id in self.alerts:
                continue
            self.alerts.add(gap_id)
            data = {"gap_id": gap_id, "kind": "unmatched_priority_need", "need_id": need_id,
                    "state": need["state"], "article": need["article"],
                    "regional_group": need["regional_group"], "since": since}
            out.alert(gap_id, "gap", "gap.detected", data, stamp, need.get("cause"))
        for (article, group), need_ids in sorted(self.open_by_group.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            if not need_ids or self.supply.get((article, group), 0) > 0:
                continue
            gap_id = stable_id("gap", "no_supply", article, group)
            if gap_id in self.alerts:
                continue
            oldest = min((self.needs[n] for n in need_ids), key=lambda n: (n["opened_at"], n["need_id"]))
            since = max((oldest["opened_at"], self.supply_lost_at.get((article, group)) or oldest["opened_at"]),
                        key=parse_time)
            if parse_time(since) > cutoff:
                continue
            self.alerts.add(gap_id)
            data = {"gap_id": gap_id, "kind": "no_supply", "need_id": None, "state": None,
                    "article": article, "regional_group": group, "since": since}
            out.alert(gap_id, "gap", "gap.detected", data, stamp, oldest.get("cause"))
        return out

    # -- allocation ------------------------------------------------------------

    def allocation(self):
        """Allocate active offer matches within offers' capacity (see :func:`allocate`)."""
        weights, pairs = {}, defaultdict(list)
        for match in self.matches.values():
            if match.get("offer_id"):
                need = self.needs[match["need_id"]]
                weights[need["need_id"]] = self.settings.need_weight(need)
                pairs[need["need_id"]].append((match["score"], match["offer_id"]))
        capacity = {o: self.offers[o]["capacity"] for ps in pairs.values() for _, o in ps}
        return allocate(weights, capacity, pairs)


def _stale(old, new):
    """An event older than what the model holds (a late retry) changes nothing."""
    if not old or not old.get("updated_at") or not new.get("updated_at"):
        return False
    try:
        return parse_time(new["updated_at"]) < parse_time(old["updated_at"])
    except ValueError:
        return False


def _combos(match):
    return {(match["state"], match["article"], form) for form in match["forms"]}


def _reaches(offer, group, region_states):
    if not offer["scope_states"] and not offer["scope_groups"]:
        return True
    return group in offer["scope_groups"] or bool(region_states & set(offer["scope_states"]))


class Outcome:
    """What one event did: documents to store and the events each carries."""

    def __init__(self):
        self.entities = {}   # (collection, id) -> document
        self.docs = {}       # (collection, id) -> [document, [(type, data, cause)]]

    def entity(self, kind, document):
        key_field = {"needs": "need_id", "offers": "offer_id", "experts": "expert_id",
                     "workshops": "request_id"}[kind]
        self.entities[(kind, document[key_field])] = document

    def _doc(self, collection, doc_id, document, event):
        slot = self.docs.setdefault((collection, doc_id), [document, []])
        slot[0] = document
        slot[1].append(event)

    def match(self, stored, event_type, data):
        self._doc("matches", stored["match_id"], stored, (event_type, data, None))

    def alert(self, alert_id, kind, event_type, data, now, cause=None):
        self._doc("alerts", alert_id, {**data, "alert": kind, "detected_at": now}, (event_type, data, cause))

    def proposal(self, request_id, data):
        self._doc("proposals", request_id, dict(data), ("workshop.participants_proposed", data, None))

    def events(self):
        return [event for _, events in self.docs.values() for event in events]

    def proposed(self):
        return [doc for (collection, _), (doc, events) in self.docs.items()
                if collection == "matches" and doc["status"] == "active"]

    def __bool__(self):
        return bool(self.entities or self.docs)


def rebuild(events, settings=None):
    """Rebuild a read model from a list of events (e.g. the audit log, in order).

    Only need.*, offer.*, expert.* and workshop.* events change it; others are
    skipped. The result equals the live model after the same events (ids are
    deterministic); nothing is emitted, the caller may store it.
    """
    model = ReadModel(settings)
    for event in events:
        if event.get("type", "").split(".", 1)[0] in ("need", "offer", "expert", "workshop"):
            model.apply(event)
    return model


VIEW_KINDS = ("needs", "offers", "experts", "workshops")
REPLAYED = ("need.*", "offer.*", "expert.*", "workshop.*", "checklist_assistance.*",
            "match.*", "gap.*", "duplication.*")   # what a replay reads (topic patterns)
OWN_ALERTS = {"gap.detected": ("gap", "gap_id"), "duplication.detected": ("duplication", "duplication_id")}


class Replay:
    """Rebuild what the matching service *stores* from its event history (no I/O).

    Feed events in order with :meth:`apply`. Consumed events go through
    :meth:`ReadModel.apply`, and each outcome's documents are kept exactly as the
    service writes them (views replaced, matches/alerts/proposals merged), so
    :attr:`views` and :attr:`docs` are the collections a store rebuilt from them
    holds; nothing is emitted. The service's own events restore what a replay of
    consumed events cannot: gaps (found by a timer, not by an event), and any
    duplication or workshop proposal the replay does not reproduce, so that a
    restarted service never emits them again. ``match.*`` events are only
    compared (:meth:`differences`): the matches the live service had active
    against the rebuilt ones (they differ only if the audit log's order of
    events differs from the order matching consumed them in).
    """

    def __init__(self, settings=None):
        self.model = ReadModel(settings)
        self.views = {kind: {} for kind in VIEW_KINDS}
        self.docs = {"matches": {}, "alerts": {}, "proposals": {}}
        self.live_active = set()     # match ids the live service had proposed and not retracted
        self.events = 0
        self.applied = 0

    def apply(self, event):
        self.events += 1
        kind = event.get("type", "")
        family = kind.split(".", 1)[0]
        if kind in OWN_ALERTS:
            alert, key = OWN_ALERTS[kind]
            alert_id = event["data"][key]
            if alert_id not in self.docs["alerts"]:
                self.docs["alerts"][alert_id] = {**deepcopy(event["data"]), "alert": alert,
                                                 "detected_at": event["occurred_at"]}
            self.model.alerts.add(alert_id)
        elif kind == "workshop.participants_proposed":
            request_id = event["data"]["request_id"]
            self.docs["proposals"].setdefault(request_id, deepcopy(event["data"]))
            self.model.proposals.add(request_id)
        elif kind == "match.proposed":
            self.live_active.add(event["data"]["match_id"])
        elif kind == "match.retracted":
            self.live_active.discard(event["data"]["match_id"])
        elif family in ("need", "offer", "expert", "workshop"):
            self._keep(self.model.apply(event))
            self.applied += 1
        return self

    def _keep(self, outcome):
        for (kind, entity_id), document in outcome.entities.items():
            self.views[kind][entity_id] = deepcopy(document)
        for (collection, doc_id), (document, _) in outcome.docs.items():
            self.docs[collection].setdefault(doc_id, {}).update(deepcopy(document))

    def differences(self):
        """Match ids active live but not rebuilt, and rebuilt but not active live (both sorted)."""
        rebuilt = set(self.model.matches)
        return {"only_live": sorted(self.live_active - rebuilt), "only_rebuilt": sorted(rebuilt - self.live_active)}

    def summary(self):
        matches = self.docs["matches"].values()
        return {"events_read": self.events, "events_applied": self.applied,
                **{kind: len(self.views[kind]) for kind in VIEW_KINDS},
                "open_needs": sum(1 for n in self.model.needs.values() if n["status"] in OPEN_NEED),
                "matches": len(self.docs["matches"]),
                "active_matches": sum(1 for m in matches if m.get("status") == "active"),
                "alerts": len(self.docs["alerts"]), "proposals": len(self.docs["proposals"])}


# --- allocation ----------------------------------------------------------------

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


# --- the matrix ----------------------------------------------------------------

ROWS = ("article", "chapter")
COLS = ("state", "regional_group")


def _row_of(article, rows):
    return article if rows == "article" else _chapter_of(article)


def _need_in(need, filters):
    return all(need.get(key) == value for key, value in filters.items())


def matrix(model, rows="article", cols="state", level=None, filters=None):
    """Needs vs supply: one cell per (row, col) with counts and a status.

    Needs: open needs. Matches: active matches (offers of ``level`` when
    given; experts only without a level). ``filters`` may name an
    ``article``, ``chapter``, ``state``, ``regional_group`` and a ``form``
    (then only needs, offers and matches with that form of assistance, and
    duplication on that form). Offers: matchable offers (of
    ``level``) reaching the cell: for State columns an offer counts where
    its scope names the State, and a regional or global offer counts in the
    cells that have needs; for group columns, where its scope reaches the
    group. Status: ``unmet`` (no need matched), ``partly_met``, ``met``,
    ``duplicated`` (two or more providers committed to one State × article ×
    form in the cell), ``no_need`` (supply only).
    """
    filters = dict(filters or {})
    form = filters.get("form")
    cells = {}

    def cell(row, col):
        if (row, col) not in cells:
            cells[(row, col)] = {"row": row, "col": col, "needs": set(), "offers": set(),
                                 "matches": set(), "matched_needs": set(), "duplicated": False}
        return cells[(row, col)]

    def col_of(state, group):
        return state if cols == "state" else group

    need_filters = {k: v for k, v in filters.items() if k in ("article", "chapter", "state", "regional_group")}
    for need in model.needs.values():
        if need["status"] not in OPEN_NEED or not _need_in(need, need_filters):
            continue
        if form and form not in need["forms"]:
            continue
        c = cell(_row_of(need["article"], rows), col_of(need["state"], need["regional_group"]))
        c["needs"].add(need["need_id"])
        for mid, match in model.need_matches.get(need["need_id"], {}).items():
            if level and match["level"] != level:
                continue
            if form and form not in match["forms"]:
                continue
            c["matches"].add(mid)
            c["matched_needs"].add(need["need_id"])
            if match.get("offer_id"):
                combos = [combo for combo in _combos(match) if not form or combo[2] == form]
                if any(len(model.committed_providers(combo, level)) >= 2 for combo in combos):
                    c["duplicated"] = True
    need_cols_by_row = defaultdict(set)
    for (row, col) in cells:
        need_cols_by_row[row].add(col)

    for offer in model.offers.values():
        if offer["status"] not in MATCHABLE_OFFER or (level and offer["level"] != level):
            continue
        if form and form not in offer["forms"]:
            continue
        is_global = not offer["scope_states"] and not offer["scope_groups"]
        for article in offer_articles(offer):
            chapter = _chapter_of(article)
            if "article" in filters and article != filters["article"]:
                continue
            if "chapter" in filters and chapter != filters["chapter"]:
                continue
            row = _row_of(article, rows)
            if cols == "regional_group":
                for group in offer_groups(offer):
                    if filters.get("regional_group", group) != group:
                        continue
                    if "state" in filters and (_group_of(filters["state"]) != group
                                               or not _reaches_state(offer, filters["state"])):
                        continue
                    cell(row, group)["offers"].add(offer["offer_id"])
                continue
            for state in offer["scope_states"]:
                if _state_passes(state, filters):
                    cell(row, state)["offers"].add(offer["offer_id"])
            for state in need_cols_by_row.get(row, ()):
                if state in offer["scope_states"]:
                    continue
                if is_global or _group_of(state) in offer["scope_groups"]:
                    cells[(row, state)]["offers"].add(offer["offer_id"])

    result = []
    for key in sorted(cells, key=lambda k: (k[0] if k[0] is not None else -1, str(k[1]))):
        c = cells[key]
        needs, matched = len(c["needs"]), len(c["matched_needs"])
        if not needs:
            status = "no_need"
        elif c["duplicated"]:
            status = "duplicated"
        elif not matched:
            status = "unmet"
        elif matched < needs:
            status = "partly_met"
        else:
            status = "met"
        result.append({"row": c["row"], "col": c["col"], "needs": needs, "offers": len(c["offers"]),
                       "matches": len(c["matches"]), "matched_needs": matched, "status": status,
                       "_ids": {"needs": sorted(c["needs"]), "offers": sorted(c["offers"]),
                                "matches": sorted(c["matches"])}})
    return result


def _reaches_state(offer, state):
    if not offer["scope_states"] and not offer["scope_groups"]:
        return True
    return state in offer["scope_states"] or _group_of(state) in offer["scope_groups"]


def _state_passes(state, filters):
    if "state" in filters and filters["state"] != state:
        return False
    if "regional_group" in filters and _group_of(state) != filters["regional_group"]:
        return False
    return True


MATRIX_STATUSES = (
    ("unmet", "Unmet", "open needs, none of them matched"),
    ("partly_met", "Partly met", "some open needs matched, some not"),
    ("met", "Met", "every open need has at least one active match"),
    ("duplicated", "Duplicated", "two or more providers committed to one State × article × form"),
    ("no_need", "Supply only", "offers reach the cell but no State has an open need there"),
)


def matrix_reference():
    """Labels and choices for the matrix's rows, columns and filters (UNCAC reference data)."""
    articles = reference.articles()
    chapters = reference.chapters()
    return {
        "chapters": [{"number": n, "roman": chapters[n]["roman"], "title": chapters[n]["title"]}
                     for n in sorted(chapters) if 2 <= n <= 6],
        "articles": [{"number": n, "title": articles[n]["title"], "chapter": articles[n]["chapter"]}
                     for n in sorted(articles) if n in reference.NEED_ARTICLES],
        "regional_groups": [{"id": g, "name": reference.regional_groups()[g]["official_name"]}
                            for g in REGIONAL_GROUPS if g in reference.regional_groups()],
        "states": sorted(({"iso3": iso3, "name": c["name"], "regional_group": c.get("regional_group")}
                          for iso3, c in reference.states().items() if iso3), key=lambda s: s["name"]),
        "levels": list(LEVELS),
        "forms": [{"id": f["id"], "label": f["label"]} for f in reference.assistance_forms().values()],
        "statuses": [{"id": i, "label": label, "description": text} for i, label, text in MATRIX_STATUSES],
    }
