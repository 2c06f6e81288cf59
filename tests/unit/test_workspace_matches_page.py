"""The workspace's matches page offers the steps services/matching/lifecycle.py allows, to the side that
may take them, and knows every stored status: its tables (web/workspace/js/pages/matches.js) are read
here and compared with the lifecycle's, so a change of the lifecycle that the page does not follow fails.
"""
import json
import re
from pathlib import Path

from services.matching import lifecycle

PAGE = Path(__file__).resolve().parents[2] / "web" / "workspace" / "js" / "pages" / "matches.js"
SIDES = {"provider": lifecycle.PROVIDER, "state": lifecycle.STATE}


def constant(name):
    """A JS ``const NAME = …;`` literal of the page, as JSON (bare keys quoted, trailing commas dropped)."""
    found = re.search(rf"^const {name} = (.*?);$", PAGE.read_text(encoding="utf-8"), re.S | re.M)
    assert found, f"{PAGE} has no const {name}"
    literal = re.sub(r"([{,]\s*)([a-z_]+):", r'\1"\2":', found.group(1))
    return json.loads(re.sub(r",(\s*[}\]])", r"\1", literal))


def test_the_page_offers_each_step_to_the_sides_the_lifecycle_lets_take_it():
    offered = {(status, to): tuple(SIDES[s] for s in by)
               for status, steps in constant("MOVES").items() for to, by in steps.items()}
    assert offered == lifecycle.MOVES


def test_the_page_knows_every_status_and_labels_every_step():
    assert tuple(constant("STATUSES")) == lifecycle.STATUSES
    assert lifecycle.ACTIVE not in lifecycle.STATUSES        # a query word, offered apart from the statuses
    assert set(constant("LABELS")) == set(lifecycle.TARGETS)
    assert tuple(constant("NEEDS_REASON")) == lifecycle.NEEDS_REASON
