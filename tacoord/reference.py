"""UNCAC reference data, shipped in ``tacoord/data/uncac_reference.json``.

Copied from the team's research file with its verification labels kept:
a fact marked ``guess_unverified`` or ``unverified_recalled`` is editable
data, never presented as authoritative (see the ``verification`` fields).
"""
import json
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).parent / "data" / "uncac_reference.json"
PARTIES_FILE = Path(__file__).parent / "data" / "uncac_parties.json"     # who is a party, since when
LANGUAGES_FILE = Path(__file__).parent / "data" / "iso639_1.json"

NEED_ARTICLES = range(5, 63)  # chapters II–VI: what a State can need help with
PRIORITY_CHAPTERS = (2, 4)    # prevention and international cooperation


@lru_cache(maxsize=1)
def data():
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def states():
    """ISO3 -> country record, UN members and the non-member parties."""
    return {c["iso3"]: c for c in data()["countries"] + data()["countries_non_un_members"]}


def is_known_state(iso3):
    return iso3 in states()


def iso3_from_iso2(iso2):
    for country in states().values():
        if country["iso2"] == iso2:
            return country["iso3"]
    return None


@lru_cache(maxsize=1)
def regional_groups():
    return {g["id"]: g for g in data()["regional_groups"]}


def regional_group_of(iso3):
    return states()[iso3].get("regional_group")


@lru_cache(maxsize=None)
def states_in_group(group_id):
    return tuple(sorted(iso3 for iso3, c in states().items() if c.get("regional_group") == group_id))


@lru_cache(maxsize=1)
def articles():
    return {a["number"]: a for a in data()["articles"]}


def chapter_of(article):
    return articles()[article]["chapter"]


@lru_cache(maxsize=1)
def chapters():
    return {c["number"]: c for c in data()["chapters"]}


def articles_in_chapter(chapter):
    return tuple(chapters()[chapter]["articles"])


@lru_cache(maxsize=1)
def assistance_forms():
    return {f["id"]: f for f in data()["assistance_forms"]}


def checklist_articles():
    return data()["checklist_articles"]


def un_member_count():
    return len(data()["countries"])


@lru_cache(maxsize=1)
def parties_data():
    """The parties file: ``_meta`` (legend, sources) and ``parties`` (one entry per State or organisation,
    each with its own ``verification`` label)."""
    return json.loads(PARTIES_FILE.read_text(encoding="utf-8"))


def parties():
    """Party code (ISO3, or ``EU``) -> entry as shipped; corrections are the needs service's."""
    return {p["party"]: p for p in parties_data()["parties"]}


@lru_cache(maxsize=1)
def language_codes():
    """The ISO 639-1 two-letter codes, as a frozenset."""
    return frozenset(json.loads(LANGUAGES_FILE.read_text(encoding="utf-8"))["codes"])
