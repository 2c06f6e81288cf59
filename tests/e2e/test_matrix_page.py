"""The matrix page in a real browser (headless Chromium): needs and offers filed over HTTP, matched, shown live.

Needs, supply and matching run in a sandbox; demo data (infra/demo.py's generators) for a few States of
three regional groups, plus a hand-made set in AFRICAN and GRULAC States on articles the demo data never
touches, so that every status is known: KEN × 31 met (its match accepted by the donor and agreed by
Kenya over HTTP), TZA × 31 unmet, BRA × 36 met and duplicated (two donors matched, one of them agreed),
CHL × 35 supply only, then proposed when a need comes. The page is opened over a real socket, a key is
entered, and it is checked against the JSON API.
A screenshot is saved to artifacts/matrix.png.
"""
import random
from contextlib import contextmanager
from pathlib import Path

import eventlet
import greenlet
import pytest
import requests

from infra import demo
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.supply.service import SupplyService
from tacoord.testing import wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is absent (scripts/bootstrap.sh installs chromium)")

DEMO_STATES = ["CAN", "FRA", "IDN", "POL", "UKR", "VNM"]  # ASIA_PACIFIC, EASTERN_EUROPEAN, WEOG
PERIOD = {"period_start": "2027-01-01", "period_end": "2028-12-31", "languages": ["en"], "status": "active"}


def need(state, article, form, priority=1):
    return {"state": state, "article": article, "forms": [form], "priority": priority, "languages": ["en"],
            "checklist_round": "2026-1", "description": f"{state} needs help on article {article}"}


def offer(provider, state, article, form, ref):
    return {"provider": provider, "provider_name": provider, "level": "bilateral", "scope_states": [state],
            "articles": [article], "forms": [form], "capacity": 3, "external_ref": ref, **PERIOD}


class Api:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.headers = sandbox.headers("operator")

    def post(self, service, path, body):
        response = requests.post(self.sandbox.url(service, path), json=body, headers=self.headers, timeout=10)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def matrix(self, **params):
        response = requests.get(self.sandbox.url("matching", "/matrix"), params=params, headers=self.headers,
                                timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["cells"]


def file_scenario(api):
    rng = random.Random(7)
    for body in demo.generated_needs(rng, DEMO_STATES):
        api.post("needs", "/needs", body)
    for _, body in demo.generated_offers(rng, DEMO_STATES):
        api.post("supply", "/offers", body)
    ids = {
        "kenya_need": api.post("needs", "/needs", need("KEN", 31, "LEGAL_ADVICE"))["need_id"],
        "tanzania_need": api.post("needs", "/needs", need("TZA", 31, "LEGAL_ADVICE"))["need_id"],
        "brazil_need": api.post("needs", "/needs", need("BRA", 36, "CAPACITY_BUILDING", priority=2))["need_id"],
        "kenya_offer": api.post("supply", "/offers", offer("GB-GOV-1", "KEN", 31, "LEGAL_ADVICE", "ken-31"))["offer_id"],
    }
    api.post("supply", "/offers", offer("XM-DAC-41114", "BRA", 36, "CAPACITY_BUILDING", "bra-36-a"))
    api.post("supply", "/offers", offer("DE-GOV-1", "BRA", 36, "CAPACITY_BUILDING", "bra-36-b"))
    api.post("supply", "/offers", offer("XM-DAC-47066", "CHL", 35, "LEGAL_ADVICE", "chl-35"))
    return ids


def agree(api, need_id):
    """The donor accepts the need's match and the State agrees: the cell is met."""
    sandbox = api.sandbox
    match = wait_until(lambda: requests.get(sandbox.url("matching", "/matches"), params={"need_id": need_id},
                                            headers=api.headers, timeout=10).json()["matches"], message="a match")[0]
    for to, role, subject in (("accepted", "donor", match["provider"]), ("agreed", "state", match["state"])):
        response = requests.post(sandbox.url("matching", f"/matches/{match['match_id']}/transitions"),
                                 json={"to": to}, headers=sandbox.headers(role, subject), timeout=10)
        assert response.status_code == 200, response.text


@contextmanager
def chromium():
    """A headless Chromium (the system's, no download) driven by Playwright's sync API."""
    from playwright.sync_api import sync_playwright
    manager = sync_playwright()
    playwright = manager.__enter__()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        stop_playwright(manager)


def stop_playwright(manager):
    """Stop Playwright under eventlet.

    sync_playwright's exit switches to its dispatcher greenlet and waits for it to end. Under eventlet the
    dispatcher, having waited on the hub, ends into the hub (eventlet makes itself the parent of the
    greenlets that wait on it), so nothing would switch back: a helper greenlet does, once it has ended.
    """
    waiting = greenlet.getcurrent()
    exited = []

    def resume_when_done():
        while not manager._dispatcher_fiber.dead:
            eventlet.sleep(0.05)
        if not exited:
            waiting.switch()

    rescuer = eventlet.spawn(resume_when_done)
    manager.__exit__(None, None, None)
    exited.append(True)
    rescuer.kill()


def cell(page, row, col):
    return page.locator(f'#matrix td[data-row="{row}"][data-col="{col}"]')


def statuses_shown(page):
    return page.eval_on_selector_all(
        "#matrix tbody td", "tds => Object.fromEntries(tds.map(td => [td.dataset.row + '|' + td.dataset.col,"
                            " [td.dataset.status, td.textContent]]))")


def test_the_matrix_page_shows_live_needs_against_supply(sandbox, start):
    from playwright.sync_api import expect

    start(NeedsService, SupplyService, MatchingService)
    api = Api(sandbox)
    ids = file_scenario(api)
    agree(api, ids["kenya_need"])
    agree(api, ids["brazil_need"])   # one donor agreed, the other still proposed: met, and duplicated
    expected = {(31, "KEN"): "met", (31, "TZA"): "unmet", (36, "BRA"): "duplicated", (35, "CHL"): "no_need"}
    wait_until(lambda: expected.items() <= {(c["row"], c["col"]): c["status"] for c in api.matrix()}.items(),
               timeout=30, message="the scenario matched")
    network_key = sandbox.api_key("network", "AFRICAN")

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(sandbox.url("matching", "/matrix/page?poll=1"))

        # no key, then a bad key: a clear message, never a blank page
        expect(page.locator("#message")).to_contain_text("Enter an API key")
        page.fill("#api-key", "tck_nosuchkey_wrong")
        page.click("#use-key")
        expect(page.locator("#message")).to_contain_text("The API key was refused (401)")
        expect(page.locator("#matrix-main")).to_be_hidden()

        # a good key: the heat map is the JSON API's matrix, cell for cell
        page.fill("#api-key", network_key)
        page.click("#use-key")
        expect(page.locator("#updated")).to_contain_text("Updated ")
        expect(cell(page, 31, "KEN")).to_have_attribute("data-status", "met")
        shown = statuses_shown(page)
        cells = api.matrix()
        assert len(cells) > 10
        for c in cells:
            status, text = shown[f"{c['row']}|{c['col']}"]
            assert status == c["status"], c
            assert f"{c['agreed_needs']}/{c['needs']} · {c['offers']}" in text, (c, text)
        assert {c["status"] for c in cells} >= {"met", "unmet", "duplicated", "no_need"}
        assert shown["31|TZA"][0] == "unmet" and shown["36|BRA"][0] == "duplicated"
        # a duplicated cell says its coverage too: Brazil's one need is met (agreed), and two providers are matched
        assert shown["36|BRA"][1].startswith("✓‼ 1/1") and shown["31|KEN"][1].startswith("✓ 1/1")
        expect(cell(page, 36, "BRA")).to_have_attribute("data-coverage", "met")
        assert "Duplicated, met" in cell(page, 36, "BRA").get_attribute("title")
        assert shown["35|CHL"][0] == "no_need"
        assert "empty" in {status for status, _ in shown.values()}   # e.g. KEN × 36
        assert cell(page, 31, "KEN").get_attribute("title").startswith(
            "Article 31: Freezing, seizure and confiscation × Kenya — Met")
        assert page.locator("#matrix thead th[data-col='KEN'] abbr").get_attribute("title") == "Kenya"
        expect(page.locator("#legend")).to_contain_text("Partly met")
        expect(page.locator("#legend")).to_contain_text("Proposed")
        expect(page.locator("#legend")).to_contain_text("Delivered")

        # chapters × regional groups: AFRICAN × chapter III has Kenya met and Tanzania unmet
        page.check("input[name=cols][value=regional_group]")
        page.check("input[name=rows][value=chapter]")
        expect(cell(page, 3, "AFRICAN")).to_have_attribute("data-status", "partly_met")
        expect(cell(page, 3, "GRULAC")).to_have_attribute("data-status", "duplicated")
        expect(page.locator("#matrix tbody th").first).to_contain_text("Ch. ")
        page.check("input[name=cols][value=state]")
        page.check("input[name=rows][value=article]")

        # a filter: GRULAC only
        page.select_option("#f-regional_group", "GRULAC")
        expect(page.locator("#matrix thead th[data-col]")).to_have_count(2)
        assert page.eval_on_selector_all("#matrix thead th[data-col]", "ths => ths.map(t => t.dataset.col)") \
            == ["BRA", "CHL"]
        assert "regional_group=GRULAC" in page.get_attribute("#csv-link", "href")
        with page.expect_download() as download:
            page.click("#csv-link")
        csv_lines = Path(download.value.path()).read_text().splitlines()
        assert csv_lines[0] == ("article,state,level,needs,offers,matches,proposed_needs,agreed_needs,"
                                "delivered_needs,status,coverage,duplicated")
        assert sorted(line.split(",")[1] for line in csv_lines[1:]) == ["BRA", "CHL"]
        assert "regional_group=GRULAC" in page.url

        # a click on a cell: its needs, offers and matches
        page.select_option("#f-regional_group", "")
        cell(page, 31, "KEN").locator("button").click()
        panel = page.locator("#cell-panel")
        expect(panel).to_be_visible()
        expect(page.locator("#cell-title")).to_contain_text("Article 31")
        expect(page.locator("#cell-title")).to_contain_text("Kenya — Met")
        expect(page.locator("#cell-needs")).to_contain_text(ids["kenya_need"])
        expect(page.locator("#cell-offers")).to_contain_text(ids["kenya_offer"])
        expect(page.locator("#cell-matches")).to_contain_text(ids["kenya_offer"])
        expect(page.locator("#cell-matches h3")).to_have_text("Matches (1)")
        page.click("#close-panel")
        expect(panel).to_be_hidden()
        cell(page, 36, "BRA").locator("button").click()
        expect(page.locator("#cell-offers h3")).to_have_text("Offers (2)")
        expect(page.locator("#cell-matches h3")).to_have_text("Matches (2)")

        # live: a need filed now shows up without a reload (supply only → proposed), the open panel follows
        page.evaluate("window.notReloaded = true")
        page.click("#close-panel")
        cell(page, 35, "CHL").locator("button").click()
        expect(page.locator("#cell-needs h3")).to_have_text("Needs (0)")
        chile = api.post("needs", "/needs", need("CHL", 35, "LEGAL_ADVICE"))["need_id"]
        expect(cell(page, 35, "CHL")).to_have_attribute("data-status", "proposed", timeout=20_000)
        expect(cell(page, 35, "CHL")).to_contain_text("0/1 · 1")
        expect(page.locator("#cell-needs")).to_contain_text(chile, timeout=10_000)
        assert page.evaluate("window.notReloaded") is True
        page.click("#close-panel")

        ARTIFACTS.mkdir(exist_ok=True)
        screenshot = ARTIFACTS / "matrix.png"
        page.screenshot(path=str(screenshot), full_page=True, animations="disabled")
        print(f"\nmatrix page screenshot: {screenshot}")
        assert not errors, errors
