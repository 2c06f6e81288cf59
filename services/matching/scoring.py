"""Which need × offer (or expert) pairs are feasible, and what their score parts are worth (pure).

The settings of the rules, the hard constraints as explanation strings
(geography, coverage, forms, status), the score parts that need nothing but
the pair (language, the weighted mean), and where an offer or expert reaches
(its articles, geographies and regional groups). The parts that depend on
what else the model holds (capacity left, regional demand) are computed by
:class:`services.matching.read_model.ReadModel`.
"""
from dataclasses import dataclass, field

from tacoord import reference

GLOBAL = ("*",)
OPEN_NEED = ("open", "in_progress")
MATCHABLE_OFFER = ("pipeline", "active")
COMMITTED_OFFER = ("active",)
MATCHABLE_EXPERT = ("validated", "active")
LEVELS = ("bilateral", "regional", "global")
REGIONAL_GROUPS = ("AFRICAN", "ASIA_PACIFIC", "EASTERN_EUROPEAN", "GRULAC", "WEOG")
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


# --- UNCAC reference data, None (or nothing) for what it does not name ------------

def articles_of_chapter(chapter):
    try:
        return reference.articles_in_chapter(chapter)
    except KeyError:
        return ()


def chapter_of(article):
    try:
        return reference.chapter_of(article)
    except KeyError:
        return None


def group_of(state):
    try:
        return reference.regional_group_of(state)
    except KeyError:
        return None


# --- where an offer or expert reaches ------------------------------------------

def offer_articles(offer):
    """Every article an offer covers (its articles plus those of its chapters)."""
    covered = set(offer["articles"])
    for chapter in offer["chapters"]:
        covered.update(articles_of_chapter(chapter))
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
    groups.update(g for g in (group_of(s) for s in offer["scope_states"]) if g)
    return groups


def expert_groups(expert):
    if not expert["regions"] and not expert["countries"]:
        return set(REGIONAL_GROUPS)
    groups = set(expert["regions"])
    groups.update(g for g in (group_of(s) for s in expert["countries"]) if g)
    return groups


# --- hard constraints and score parts of a pair -----------------------------------

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
    if need["state"] in (expert.get("conflict_states") or ()) or need["state"] == expert.get("nationality"):
        return None  # a conflict of interest: the roster marks this State for this expert
    level = expert["expertise"].get(str(need["article"]))
    common = sorted(set(need["forms"]) & set(expert["forms"]))
    if level is None or not common:
        return None
    return [f"expertise: article {need['article']}", f"forms: {', '.join(common)}",
            f"status: need {need['status']}, expert {expert['vetting_status']}"], common