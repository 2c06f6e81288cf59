"""Worklists, the matrix's coverage beside its duplication, and what changed since a moment, per role,
against the real broker and database."""
import csv
import io
from datetime import datetime, timezone

import requests

from services.matching.service import MatchingService
from tacoord.testing import wait_until
from tests.integration.test_matching_service import Collector, emit, get, need_data, offer_data


def filed(sandbox, need_id, **fields):
    emit(sandbox, "need.submitted", need_data(need_id=need_id, **fields))


def settled(sandbox, count):
    wait_until(lambda: sandbox.db("matching").needs_view.count_documents({}) == count
               and sandbox.queue_depth("matching.events") == 0, message=f"{count} needs in the model")


def test_the_worklist_ranks_unmet_needs_by_priority_then_chapters_ii_and_iv_then_age(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data(offer_id="GB-1-o1", scope_states=("UGA",), articles=(9,)))
    filed(sandbox, "KEN-15-a", article=15, chapter=3, created_at="2026-01-01T00:00:00+00:00")       # III
    filed(sandbox, "KEN-9-b", article=9, chapter=2, created_at="2026-06-01T00:00:00+00:00")         # II
    filed(sandbox, "KEN-46-c", article=46, chapter=4, created_at="2026-03-01T00:00:00+00:00",      # IV
          forms=("ONSITE_EXPERT",))
    filed(sandbox, "KEN-9-d", article=9, chapter=2, priority=2, created_at="2025-01-01T00:00:00+00:00")
    filed(sandbox, "UGA-9-e", state="UGA", article=9, chapter=2, created_at="2026-02-01T00:00:00+00:00")
    filed(sandbox, "KEN-9-w", article=9, chapter=2, status="withdrawn", created_at="2024-01-01T00:00:00+00:00")
    out.wait_for("match.proposed")   # UGA-9-e has a proposal: still unmet
    settled(sandbox, 6)

    listed = get(sandbox, "/worklist", role="state", subject="KEN").json()
    order = [(n["rank"], n["need_id"], n["status"], n["emphasis"]) for n in listed["needs"]]
    assert order == [(1, "UGA-9-e", "proposed", True), (2, "KEN-46-c", "unmet", True),
                     (3, "KEN-9-b", "unmet", True), (4, "KEN-15-a", "unmet", False),
                     (5, "KEN-9-d", "unmet", True)]
    assert listed["count"] == listed["total"] == 5 and listed["needs"][0]["matches"] == 1
    assert listed["needs"][1]["age_days"] > listed["needs"][2]["age_days"] > 0

    def ids(**params):
        response = get(sandbox, "/worklist", **params)
        assert response.status_code == 200, response.text
        return [n["need_id"] for n in response.json()["needs"]]

    assert ids(status="unmet") == ["KEN-46-c", "KEN-9-b", "KEN-15-a", "KEN-9-d"]
    assert ids(status="proposed") == ["UGA-9-e"]
    assert ids(chapter=2) == ["UGA-9-e", "KEN-9-b", "KEN-9-d"]
    assert ids(article=9, state="KEN") == ["KEN-9-b", "KEN-9-d"]
    assert ids(priority=2) == ["KEN-9-d"] and ids(form="ONSITE_EXPERT") == ["KEN-46-c"]
    assert ids(regional_group="AFRICAN", limit=2) == ["UGA-9-e", "KEN-46-c"]
    assert ids(regional_group="GRULAC") == []
    bad = get(sandbox, "/worklist", status="met", chapter=9, colour="red")
    assert bad.status_code == 400
    bad = get(sandbox, "/worklist", status="met", chapter=9)
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"status", "chapter"}

    response = get(sandbox, "/worklist.csv", role="donor", subject="GB-GOV-1", state="KEN")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["rank"], r["need_id"], r["priority"], r["chapter"], r["emphasis"], r["status"]) for r in rows] == [
        ("1", "KEN-46-c", "1", "4", "yes", "unmet"), ("2", "KEN-9-b", "1", "2", "yes", "unmet"),
        ("3", "KEN-15-a", "1", "3", "no", "unmet"), ("4", "KEN-9-d", "2", "2", "yes", "unmet")]
    assert rows[0]["forms"] == "ONSITE_EXPERT" and rows[0]["created_at"] == "2026-03-01T00:00:00+00:00"

    # a need leaves the list when it is met: its match agreed, not merely accepted
    match_id = out.of_type("match.proposed")[0]["data"]["match_id"]
    for to, who in (("accepted", ("donor", "GB-GOV-1")), ("agreed", ("state", "UGA"))):
        step = requests.post(sandbox.url("matching", f"/matches/{match_id}/transitions"), json={"to": to},
                             timeout=10, headers=sandbox.headers(*who))
        assert step.status_code == 200, step.text
        if to == "accepted":
            out.wait_for("match.accepted")
            wait_until(lambda: sandbox.queue_depth("matching.events") == 0, message="the step consumed")
            assert ids(status="proposed") == ["UGA-9-e"]
    wait_until(lambda: "UGA-9-e" not in ids(), message="the met need left the worklist")
    assert ids(status="proposed") == [] and len(ids()) == 4


def test_a_matrix_cell_partly_met_and_duplicated_shows_both_and_takes_priority_and_status_filters(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*", "duplication.*")
    emit(sandbox, "offer.published", offer_data(offer_id="GB-1-o1", provider="GB-GOV-1"))
    emit(sandbox, "offer.published", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1"))
    filed(sandbox, "KEN-9-n1")                                           # matched by both: duplicated
    filed(sandbox, "KEN-9-n2", forms=("ACTION_PLAN",), priority=2)       # nobody offers it: unmet
    filed(sandbox, "UGA-9-n1", state="UGA")
    out.wait_for("duplication.detected")
    settled(sandbox, 3)
    cells = {(c["row"], c["col"]): c for c in get(sandbox, "/matrix").json()["cells"]}
    assert (cells[(9, "KEN")]["coverage"], cells[(9, "KEN")]["duplicated"]) == ("proposed", True)   # not met yet

    # GB's match is agreed: KEN-9-n1 is met, KEN-9-n2 is not, and DE's proposal still duplicates GB's
    gb = next(e["data"]["match_id"] for e in out.of_type("match.proposed") if e["data"]["offer_id"] == "GB-1-o1"
              and e["data"]["need_id"] == "KEN-9-n1")
    for to, who in (("accepted", ("donor", "GB-GOV-1")), ("agreed", ("state", "KEN"))):
        step = requests.post(sandbox.url("matching", f"/matches/{gb}/transitions"), json={"to": to}, timeout=10,
                             headers=sandbox.headers(*who))
        assert step.status_code == 200, step.text
    wait_until(lambda: get(sandbox, "/matrix", state="KEN").json()["cells"][0]["agreed_needs"] == 1,
               message="the model learnt of the agreement")
    cells = {(c["row"], c["col"]): c for c in get(sandbox, "/matrix").json()["cells"]}
    kenya = cells[(9, "KEN")]
    assert (kenya["status"], kenya["coverage"], kenya["duplicated"]) == ("duplicated", "partly_met", True)
    assert (kenya["needs"], kenya["proposed_needs"], kenya["agreed_needs"], kenya["delivered_needs"]) == (2, 1, 1, 0)
    assert (cells[(9, "UGA")]["coverage"], cells[(9, "UGA")]["duplicated"]) == ("unmet", False)

    def cols(**params):
        response = get(sandbox, "/matrix", **params)
        assert response.status_code == 200, response.text
        return {c["col"]: (c["coverage"], c["duplicated"]) for c in response.json()["cells"]}

    assert cols(status="duplicated") == cols(status="partly_met") == {"KEN": ("partly_met", True)}
    assert cols(status="unmet") == {"UGA": ("unmet", False)} and cols(status="met") == {}
    assert cols(priority=1) == {"KEN": ("met", True), "UGA": ("unmet", False)}
    assert cols(priority=2) == {"KEN": ("unmet", False)}
    assert get(sandbox, "/matrix", priority=2).json()["filters"] == {"priority": 2}
    cell = get(sandbox, "/matrix/cell", article=9, state="KEN").json()
    assert (cell["status"], cell["coverage"], cell["duplicated"]) == ("duplicated", "partly_met", True)
    assert [n["need_id"] for n in get(sandbox, "/matrix/cell", article=9, state="KEN", priority=2).json()["needs"]] \
        == ["KEN-9-n2"]
    rows = list(csv.DictReader(io.StringIO(get(sandbox, "/matrix.csv", state="KEN").text)))
    assert (rows[0]["status"], rows[0]["coverage"], rows[0]["duplicated"]) == ("duplicated", "partly_met", "yes")
    bad = get(sandbox, "/matrix", priority=4, status="fine")
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"priority", "status"}


SINCE = "2026-11-01T12:00:00+00:00"
BEFORE, AFTER = "2026-11-01T06:00:00+00:00", "2026-11-02T00:00:00+00:00"


def changes(sandbox, role, subject, **params):
    response = get(sandbox, "/changes", role=role, subject=subject, since=SINCE, **params)
    assert response.status_code == 200, response.text
    body = response.json()
    return {"needs": [n["need_id"] for n in body["needs"]], "offers": [o["offer_id"] for o in body["offers"]],
            "matches": sorted(m["need_id"] for m in body["matches"]),
            "alerts": sorted(a["alert"] for a in body["alerts"])}


def test_what_changed_since_a_moment_for_a_state_a_donor_and_a_network(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*", "duplication.*")
    at = {"created_at": AFTER, "updated_at": AFTER}
    emit(sandbox, "offer.published", offer_data(offer_id="GB-1-o1", provider="GB-GOV-1", **at))
    emit(sandbox, "offer.published", offer_data(offer_id="DE-1-o1", provider="DE-BMZ-1", scope_states=("KEN", "UGA"),
                                                **at))
    emit(sandbox, "offer.published", offer_data(offer_id="FR-1-o1", provider="FR-GOV-1", scope_states=("MEX",),
                                                created_at=BEFORE, updated_at=BEFORE))
    filed(sandbox, "KEN-9-old", created_at=BEFORE, updated_at=BEFORE)
    filed(sandbox, "UGA-9-new", state="UGA", **at)
    filed(sandbox, "MEX-9-new", state="MEX", group="GRULAC", **at)
    out.wait_for("duplication.detected")
    settled(sandbox, 3)
    emit(sandbox, "workshop.requested", {
        "request_id": "req-1", "kind": "regional_workshop", "state": "KEN", "regional_group": "AFRICAN",
        "network_id": "EAAACA", "network_states": ["UGA", "TZA"], "states": [], "articles": [9],
        "expected_outcomes": "a shared plan", "preferred_dates": [], "language": "en", "support_received": [],
        "status": "submitted", "created_at": AFTER, "updated_at": AFTER})
    wait_until(lambda: sandbox.db("matching").workshops_view.find_one({"_id": "req-1"}), message="workshop")

    # the events' times are "now" for matches and alerts: all after SINCE; needs and offers carry their own
    assert changes(sandbox, "state", "KEN") == {"needs": [], "offers": ["DE-1-o1", "GB-1-o1"],
                                               "matches": ["KEN-9-old", "KEN-9-old"], "alerts": ["duplication"]}
    assert changes(sandbox, "state", "UGA", state="UGA") == {"needs": ["UGA-9-new"], "offers": ["DE-1-o1"],
                                                            "matches": ["UGA-9-new"], "alerts": []}
    assert changes(sandbox, "donor", "GB-GOV-1") == {"needs": ["KEN-9-old"], "offers": ["GB-1-o1"],
                                                    "matches": ["KEN-9-old"], "alerts": ["duplication"]}
    assert changes(sandbox, "donor", "FR-GOV-1") == {"needs": ["MEX-9-new"], "offers": [],
                                                    "matches": ["MEX-9-new"], "alerts": []}
    africa = changes(sandbox, "network", "AFRICAN")
    assert africa == {"needs": ["UGA-9-new"], "offers": ["DE-1-o1", "GB-1-o1"],
                      "matches": ["KEN-9-old", "KEN-9-old", "UGA-9-new"], "alerts": ["duplication"]}
    # a network matching knows from a workshop request: its network_states and the requesting State
    assert changes(sandbox, "network", "EAAACA")["matches"] == ["KEN-9-old", "KEN-9-old", "UGA-9-new"]
    everything = changes(sandbox, "operator", "*")
    assert everything["needs"] == ["MEX-9-new", "UGA-9-new"] and len(everything["matches"]) == 4
    assert changes(sandbox, "operator", "*", network="GRULAC")["needs"] == ["MEX-9-new"]
    body = get(sandbox, "/changes", role="state", subject="UGA", since=SINCE).json()
    assert body["scope"] == {"state": "UGA"} and body["needs"][0]["new"] is True
    assert body["counts"] == {"needs": 1, "offers": 1, "matches": 1, "alerts": 0}

    later = get(sandbox, "/changes", role="operator", subject="*", since="2099-01-01T00:00:00Z").json()
    assert later["counts"] == {"needs": 0, "offers": 0, "matches": 0, "alerts": 0}
    other = get(sandbox, "/changes", role="state", subject="UGA", since=SINCE, state="KEN")
    assert other.status_code == 403 and other.json()["error"] == (
        "state:UGA may see only the changes of its own state (state=UGA); asked state=KEN")
    assert get(sandbox, "/changes", role="donor", subject="GB-GOV-1", since=SINCE, network="AFRICAN").status_code \
        == 403
    assert get(sandbox, "/changes", role="operator", subject="*", since=SINCE, network="NOBODY").status_code == 404
    missing = get(sandbox, "/changes", role="operator", subject="*", state="KEN")
    assert missing.status_code == 422 and set(missing.json()["fields"]) == {"since"}
    two = get(sandbox, "/changes", role="operator", subject="*", since="yesterday", state="KEN", donor="GB-GOV-1")
    assert two.status_code == 422 and set(two.json()["fields"]) == {"since"}
    two = get(sandbox, "/changes", role="operator", subject="*", since=SINCE, state="KEN", donor="GB-GOV-1")
    assert two.status_code == 422 and set(two.json()["fields"]) == {"donor"}
    assert get(sandbox, "/changes", role="partner", subject="acme", since=SINCE).status_code == 403

    # a person's step is a change too: GB's match shows again since the moment before GB accepted it
    mark = datetime.now(timezone.utc).isoformat()
    assert get(sandbox, "/changes", role="donor", subject="GB-GOV-1", since=mark).json()["counts"]["matches"] == 0
    gb = next(e["data"]["match_id"] for e in out.of_type("match.proposed") if e["data"]["offer_id"] == "GB-1-o1")
    accepted = requests.post(sandbox.url("matching", f"/matches/{gb}/transitions"), json={"to": "accepted"},
                             timeout=10, headers=sandbox.headers("donor", "GB-GOV-1"))
    assert accepted.status_code == 200, accepted.text
    since_mark = get(sandbox, "/changes", role="donor", subject="GB-GOV-1", since=mark).json()["matches"]
    assert [(m["match_id"], m["status"]) for m in since_mark] == [(gb, "accepted")]
