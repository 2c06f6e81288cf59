"""What changed since T: the store's times are texts, compared exactly (services/matching/changes.py)."""
from datetime import datetime, timezone

import pytest

from services.matching import changes

SINCE = datetime(2026, 12, 2, 1, 56, 21, 701958, tzinfo=timezone.utc)


@pytest.mark.parametrize("stored, expected", [
    ("2026-12-02T01:56:21.019905+00:00", False),   # the same second, before the moment
    ("2026-12-02T01:56:21.701958+00:00", True),    # the moment itself
    ("2026-12-02T01:56:21.9+00:00", True),
    ("2026-12-02T01:56:21Z", False),               # no fraction: the start of that second
    ("2026-12-02T01:56:22Z", True),
])
def test_a_time_in_the_moments_second_is_a_change_only_from_the_moment_on(stored, expected):
    assert changes.changed({"proposed_at": stored}, changes.MATCH_TIMES, SINCE) is expected


def test_the_stores_bound_keeps_every_time_of_the_moments_second():
    bound = changes.lower_bound(SINCE)
    assert bound == "2026-12-02T01:56:21+00:00"
    for stored in ("2026-12-02T01:56:21.019905+00:00", "2026-12-02T01:56:21.9+00:00", "2026-12-02T01:56:21Z",
                   "2026-12-02T01:56:21+00:00"):
        assert stored >= bound


def test_an_alerts_step_counts_by_its_dotted_time():
    alert = {"detected_at": "2026-11-01T00:00:00+00:00", "acknowledged": {"at": "2026-12-02T01:56:22+00:00"}}
    assert changes.changed(alert, changes.ALERT_TIMES, SINCE)
    assert not changes.changed({**alert, "acknowledged": {"at": "2026-12-02T01:56:21+00:00"}},
                               changes.ALERT_TIMES, SINCE)
    assert not changes.changed({"detected_at": None}, changes.ALERT_TIMES, SINCE)
