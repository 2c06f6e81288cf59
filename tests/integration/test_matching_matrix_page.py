"""The matching service's matrix page routes: the public page and its files, the labels, the form filter."""
import requests

from services.matching.service import MatchingService
from tests.integration.test_matching_service import Collector, emit, get, need_data, offer_data


def test_the_matrix_page_and_its_files_are_public_with_a_strict_policy(sandbox, start):
    start(MatchingService)
    page = requests.get(sandbox.url("matching", "/matrix/page"), timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<table id="matrix">' in page.text and 'src="static/matrix.js"' in page.text  # relative: works behind
    # the gateway too (/api/matching/matrix/page)
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"

    script = requests.get(sandbox.url("matching", "/matrix/static/matrix.js"), timeout=5)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "Authorization" in script.text
    style = requests.get(sandbox.url("matching", "/matrix/static/matrix.css"), timeout=5)
    assert style.status_code == 200 and style.headers["Content-Type"].startswith("text/css")

    root = requests.get(sandbox.url("matching", "/"), timeout=5, allow_redirects=False)
    assert root.status_code == 200 and root.json()["pages"] == ["/matrix/page"]  # the JSON index links the page


def test_only_the_pages_own_files_are_served(sandbox, start):
    start(MatchingService)
    for name in ("service.py", "matrix.js.bak", "%2E%2E", "__init__.py"):
        response = requests.get(sandbox.url("matching", f"/matrix/static/{name}"), timeout=5)
        assert response.status_code == 404, name
        assert "no static file" in response.json()["error"]
    for path in ("..%2Fservice.py", "../service.py", "static/../service.py"):
        assert requests.get(sandbox.url("matching", f"/matrix/static/{path}"), timeout=5).status_code == 404


def test_the_matrix_reference_gives_labels_and_filter_choices_to_any_role_with_a_key(sandbox, start):
    start(MatchingService)
    assert requests.get(sandbox.url("matching", "/matrix/reference"), timeout=5).status_code == 401
    reference = get(sandbox, "/matrix/reference", role="state", subject="KEN").json()
    assert [c["roman"] for c in reference["chapters"]] == ["II", "III", "IV", "V", "VI"]
    articles = {a["number"]: a for a in reference["articles"]}
    assert sorted(articles) == list(range(5, 63))
    assert articles[9] == {"number": 9, "chapter": 2,
                           "title": "Public procurement and management of public finances"}
    assert {"iso3": "KEN", "name": "Kenya", "regional_group": "AFRICAN"} in reference["states"]
    assert [g["id"] for g in reference["regional_groups"]] == ["AFRICAN", "ASIA_PACIFIC", "EASTERN_EUROPEAN",
                                                                "GRULAC", "WEOG"]
    assert reference["levels"] == ["bilateral", "regional", "global"]
    assert {"id": "LEGAL_ADVICE", "label": "Legal advice"} in reference["forms"]
    assert [s["id"] for s in reference["statuses"]] == ["unmet", "proposed", "partly_met", "met", "delivered",
                                                        "duplicated", "no_need"]
    assert get(sandbox, "/matrix/reference", colour="red").status_code == 400


def test_the_matrix_can_be_filtered_by_form_of_assistance(sandbox, start):
    start(MatchingService)
    out = Collector(sandbox, "match.*")
    emit(sandbox, "offer.published", offer_data())  # LEGAL_ADVICE for KEN, article 9
    emit(sandbox, "need.submitted", need_data(forms=("LEGAL_ADVICE", "ACTION_PLAN")))
    emit(sandbox, "need.submitted", need_data(need_id="KEN-9-n2", forms=("ACTION_PLAN",), priority=2))
    out.wait_for("match.proposed")

    def cells(**params):
        return [{k: c[k] for k in ("row", "col", "needs", "offers", "matches", "status")}
                for c in get(sandbox, "/matrix", **params).json()["cells"]]

    assert cells() == [{"row": 9, "col": "KEN", "needs": 2, "offers": 1, "matches": 1, "status": "proposed"}]
    assert cells(form="LEGAL_ADVICE") == [{"row": 9, "col": "KEN", "needs": 1, "offers": 1, "matches": 1,
                                           "status": "proposed"}]
    assert cells(form="ACTION_PLAN") == [{"row": 9, "col": "KEN", "needs": 2, "offers": 0, "matches": 0,
                                          "status": "unmet"}]
    assert cells(form="ONSITE_EXPERT") == []
    cell = get(sandbox, "/matrix/cell", article=9, state="KEN", form="ACTION_PLAN").json()
    assert cell["status"] == "unmet" and sorted(n["need_id"] for n in cell["needs"]) == ["KEN-9-n1", "KEN-9-n2"]
    assert cell["offers"] == [] and cell["matches"] == []
    assert get(sandbox, "/matrix.csv", form="ACTION_PLAN").text.splitlines()[1] == \
        "9,KEN,all,2,0,0,0,0,0,unmet,unmet,no"
    bad = get(sandbox, "/matrix", form="MAGIC")
    assert bad.status_code == 422 and set(bad.json()["fields"]) == {"form"}
