"""The workspace in a real browser (Debian's Chromium, driven by Playwright), through a real nginx gateway
in front of the six services started here: one journey per role, end to end.

- a State files a need (a field error first, shown next to its field), imports a checklist file (a row
  of another State rejected, by line), and agrees to the match a donor accepted;
- a donor reads the dry run of an IATI file, imports it, and accepts the match on the offer it made;
- an operator resolves a duplication alert (the API's field error next to the note first);
- a network reads a workshop requested in it, with the participants matching proposed.

In each: no page reload (a mark set on ``window`` survives), no script error, nothing the gateway's
Content-Security-Policy refused, axe-core (web/node_modules, npm) finding no serious or critical
violation, every control reached with the Tab key, and a screenshot of the role's main page in
artifacts/ (docs/screenshots/ has the ones the README shows).
"""
import re
from pathlib import Path

import pytest
import requests

from services.audit.service import AuditService
from services.matching.service import MatchingService
from services.needs.service import NeedsService
from services.notify.service import NotifyService
from services.requests.service import RequestsService
from services.supply.service import SupplyService
from tacoord import config, reference
from tacoord.testing import running_services, wait_until
from tests.e2e.test_matrix_page import ARTIFACTS, CHROMIUM, chromium
from tests.integration.test_gateway import started

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
IATI_FILE = ROOT / "tests" / "fixtures" / "iati_activities.xml"
SERVICES = (NeedsService, SupplyService, MatchingService, NotifyService, RequestsService, AuditService)
TIMEOUT = 30_000   # ms: matching proposes asynchronously, on a shared machine

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (scripts/bootstrap.sh installs it)")]

PERIOD = {"period_start": "2027-01-01", "period_end": "2028-12-31", "languages": ["en"], "status": "active"}


def offer(provider, state, article, form, ref):
    return {"provider": provider, "provider_name": provider, "level": "bilateral", "scope_states": [state],
            "articles": [article], "forms": [form], "capacity": 3, "external_ref": ref, **PERIOD}


def need(state, article, form):
    return {"state": state, "article": article, "forms": [form], "priority": 1, "languages": ["en"],
            "description": f"{state} on article {article}"}


class World:
    def __init__(self, sandbox, gateway):
        self.sandbox, self.gateway = sandbox, gateway
        self.keys = {}

    def url(self, path):
        return f"http://{self.gateway.listen}{path}"

    def key(self, role, subject):
        return self.keys.setdefault((role, subject), self.sandbox.api_key(role, subject))

    def api(self, method, path, role="operator", subject="*", **kwargs):
        response = requests.request(method, self.url(path), timeout=30, **kwargs,
                                    headers={"Authorization": f"Bearer {self.key(role, subject)}"})
        assert response.status_code < 300, (path, response.status_code, response.text)
        return response.json()

    def matches(self, **query):
        return self.api("GET", "/api/matching/matches", params=query)["matches"]


@pytest.fixture(scope="module")
def world(stack):
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run scripts/bootstrap.sh (npm ci in web/)", pytrace=False)
    with running_services(SERVICES) as (sandbox, _):
        upstreams = {name: f"127.0.0.1:{sandbox.http_ports[name]}" for name in config.SERVICES}
        with started(upstreams, rate=1000, burst=1000) as gateway:
            yield World(sandbox, gateway)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect
    expect.set_options(timeout=15_000)   # a shared machine: six services, nginx and Chromium on two cores
    with chromium() as found:
        yield found


class Session:
    """One person's browser tab on the workspace, signed in with a key of ``role``."""

    def __init__(self, world, browser, role, subject):
        from playwright.sync_api import expect
        self.expect = expect
        self.world, self.role = world, role
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.problems = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"script error: {exc}"))
        self.page.on("console", lambda message: self.problems.append(f"console: {message.text}")
                     if message.type == "error" and "Content Security Policy" in message.text else None)
        self.page.goto(world.url("/?poll=1"))
        expect(self.page.locator("#signin-heading")).to_be_visible()
        assert "session storage" in self.page.locator("#why-session").inner_text()
        self.page.fill("#api-key", world.key(role, subject))
        self.page.click("#use-key")
        expect(self.page.locator("#who")).to_contain_text(f"{role} {subject}")
        self.page.evaluate("window.notReloaded = true")
        assert self.page.evaluate("sessionStorage.getItem('tacoord.apiKey')").startswith("tck_")
        assert self.page.evaluate("localStorage.length") == 0

    def go(self, name):
        self.page.click(f"#nav a[data-page='{name}']")
        self.expect(self.page.locator("main h1")).to_be_visible()

    def row(self, text):
        return self.page.locator("table.list tbody tr", has_text=text)

    def check_page(self, name):
        """axe-core's serious and critical violations (none), every control reached by Tab, a screenshot."""
        violations = axe(self.page)
        assert [v for v in violations if v["impact"] in ("serious", "critical")] == [], violations
        unreached = tab_through(self.page)
        assert unreached == [], f"not reached with Tab: {unreached}"
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"workspace-{name}.png"), full_page=True, animations="disabled")

    def close(self):
        assert self.page.evaluate("window.notReloaded") is True, "the page was reloaded"
        assert self.problems == [], self.problems
        self.context.close()


def axe(page):
    page.evaluate(AXE.read_text(encoding="utf-8"))   # DevTools evaluation: the page's CSP does not apply to it
    return page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))}))""")


def tab_through(page):
    """Press Tab until every visible, enabled control has had the focus once; returns those that never did."""
    count = page.evaluate("""() => {
        const controls = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
          .filter((e) => e.tabIndex >= 0 && !e.disabled && e.type !== 'hidden' && e.getClientRects().length &&
                         getComputedStyle(e).visibility !== 'hidden' && !e.closest('[hidden]'));
        controls.forEach((e, i) => { e.dataset.kbd = String(i); });
        document.activeElement.blur();
        return controls.length; }""")
    reached = set()
    for _ in range(2 * count + 4):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement ? document.activeElement.dataset.kbd || null : null"))
    return page.evaluate("""(reached) => [...document.querySelectorAll('[data-kbd]')]
        .filter((e) => !reached.includes(e.dataset.kbd)).map((e) => e.outerHTML.slice(0, 120))""", sorted(r for r in reached if r))


@pytest.fixture
def session(world, browser):
    opened = []

    def sign_in(role, subject):
        opened.append(Session(world, browser, role, subject))
        return opened[-1]
    yield sign_in
    for one in opened:
        one.close()


def test_a_state_files_a_need_imports_a_checklist_and_agrees_to_a_match(world, session, tmp_path):
    world.api("POST", "/api/supply/offers", json=offer("GB-GOV-1", "KEN", 9, "LEGAL_ADVICE", "ws-ken-9"))
    kenya = session("state", "KEN")
    page, expect = kenya.page, kenya.expect
    expect(page.locator("main h1")).to_have_text("My needs")
    kenya.check_page("state")

    # the API's field error next to its field, then the need filed and listed without a reload
    page.select_option("select[name=article]", "9")
    page.click("form[aria-label='File a need'] button[type=submit]")
    forms_error = page.locator("form[aria-label='File a need'] .field-checkboxes .field-error")
    expect(forms_error).to_contain_text("Missing data for required field")
    page.check("form[aria-label='File a need'] input[name=forms][value=LEGAL_ADVICE]")
    page.fill("form[aria-label='File a need'] textarea[name=description]", "Procurement reform")
    page.click("form[aria-label='File a need'] button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("filed")
    expect(forms_error).to_be_hidden()
    need_id = wait_until(lambda: next((n["need_id"] for n in world.api("GET", "/api/needs/needs", params={"state": "KEN"})["needs"]
                                       if n["article"] == 9), None), message="the need stored")
    expect(kenya.row(need_id)).to_contain_text("open")

    # a checklist file: one row of another State is rejected, with its line in the whole file
    checklist = tmp_path / "checklist.csv"
    checklist.write_text("state,article,forms,priority,description\nKEN,12,LEGAL_ADVICE,2,Private sector\n"
                         "FRA,12,LEGAL_ADVICE,2,Not Kenya's\nKEN,13,CAPACITY_BUILDING,3,\"Civil society,\nand media\"\n")
    page.set_input_files("#checklist-file", str(checklist))
    page.click("text=Import the file")
    expect(page.locator("#import-summary")).to_have_text("2 new, 0 updated, 0 unchanged, 1 rejected")
    expect(page.locator("#import-rejected tbody tr")).to_have_text(re.compile(r"^3.*imports only its own needs; this row is for FRA"))
    expect(page.locator("#import-progress")).to_have_attribute("value", "1")
    expect(kenya.row("KEN-13")).to_be_visible()

    # the donor accepts the proposal (the provider's step); the State agrees in its Matches page
    [match] = wait_until(lambda: world.matches(need_id=need_id) or None, timeout=30, message="a match proposed")
    world.api("POST", f"/api/matching/matches/{match['match_id']}/transitions", "donor", "GB-GOV-1",
              json={"to": "accepted", "reason": "we can start in March"})
    kenya.go("matches")
    row = kenya.row(match["match_id"])
    expect(row).to_contain_text("accepted", timeout=TIMEOUT)
    kenya.check_page("state-matches")
    row.locator("button[data-step=agreed]").click()
    expect(row).to_contain_text("agreed", timeout=TIMEOUT)
    assert world.matches(need_id=need_id)[0]["status"] == "agreed"

    # the item page from the match: its history, from the audit log
    row.locator(f"a[href='#/item/match/{match['match_id']}']").click()
    expect(page.locator("#history")).to_contain_text("match.agreed", timeout=TIMEOUT)
    expect(page.locator("#history")).to_contain_text("state:KEN")


def test_a_donor_imports_an_iati_file_after_its_dry_run_and_accepts_the_match(world, session):
    donor = session("donor", "GB-GOV-1")
    page, expect = donor.page, donor.expect
    expect(page.locator("main h1")).to_have_text("My offers")
    donor.check_page("donor")

    page.set_input_files("#iati-file", str(IATI_FILE))
    page.click("#iati-check")
    expect(page.locator("#iati-dry-summary")).to_have_text(
        "5 activities: 1 would be imported, 0 updated, 0 unchanged, 4 skipped")
    expect(page.locator("#iati-report")).to_contain_text("not your organisation")
    assert world.api("GET", "/api/supply/offers", params={"provider": "GB-GOV-1", "article": 36})["count"] == 0
    page.click("#iati-import")
    expect(page.locator("#iati-summary")).to_have_text("5 activities: 1 imported, 0 updated, 0 unchanged, 4 skipped")
    offer_id = page.locator("#iati-report a[href^='#/item/offer/']").inner_text()
    expect(page.locator(f"table.list tbody tr[data-key='{offer_id}']")).to_contain_text("CAPACITY_BUILDING")   # the offers list

    # a need the offer reaches: matching proposes, the donor accepts without a reload
    need_id = world.api("POST", "/api/needs/needs", "state", "KEN", json=need("KEN", 36, "CAPACITY_BUILDING"))["need_id"]
    donor.go("matches")
    row = donor.row(need_id)
    expect(row).to_contain_text("proposed", timeout=TIMEOUT)
    donor.check_page("donor-matches")
    row.locator("button[data-step=accepted]").click()
    expect(row).to_contain_text("accepted", timeout=TIMEOUT)
    assert world.matches(need_id=need_id)[0]["status"] == "accepted"


def test_an_operator_resolves_a_duplication_alert(world, session):
    world.api("POST", "/api/needs/needs", "state", "TZA", json=need("TZA", 15, "LEGAL_ADVICE"))
    for provider in ("DE-GOV-1", "XM-DAC-47066"):
        world.api("POST", "/api/supply/offers", json=offer(provider, "TZA", 15, "LEGAL_ADVICE", f"ws-tza-{provider}"))
    operator = session("operator", "*")
    page, expect = operator.page, operator.expect
    expect(page.locator("main h1")).to_have_text("Alert worklist")
    row = operator.row("DE-GOV-1, XM-DAC-47066")
    expect(row).to_contain_text("open", timeout=TIMEOUT)
    operator.check_page("operator")

    row.locator("button[data-step=resolve]").click()
    resolve = page.locator("form[aria-label='Resolve alert']")
    resolve.locator("select[name=resolution]").select_option("other")
    resolve.locator("button[type=submit]").click()
    expect(resolve.locator("textarea[name=note] ~ .field-error")).to_have_text("required when the resolution is 'other'")
    expect(resolve.locator("textarea[name=note]")).to_have_attribute("aria-invalid", "true")
    resolve.locator("select[name=resolution]").select_option("work_split")
    resolve.locator("textarea[name=note]").fill("DE-GOV-1 drafts the law, XM-DAC-47066 trains the judges")
    resolve.locator("button[type=submit]").click()
    expect(row).to_contain_text("resolved", timeout=TIMEOUT)
    [alert] = world.api("GET", "/api/matching/alerts", params={"state": "TZA", "kind": "duplication"})["alerts"]
    assert alert["status"] == "resolved" and alert["resolved"]["resolution"] == "work_split"

    # the operator's other pages answer and pass the same checks
    for name in ("worklist", "reporting", "experts", "dead-letters", "audit"):
        operator.go(name)
        page.wait_for_timeout(300)
        operator.check_page(f"operator-{name}")
    page.click("#verify")
    expect(page.locator("#verify-result")).to_contain_text("intact")


def test_a_network_reads_a_workshop_requested_in_it(world, session):
    filed = world.api("POST", "/api/requests/requests", "state", "KEN", json={
        "kind": "regional_workshop", "state": "KEN", "articles": [9], "language": "en",
        "expected_outcomes": "A regional gap analysis on public procurement",
        "preferred_dates": [{"from": "2027-05-03", "to": "2027-05-07"}], "support_received": []})
    network = session("network", "AFRICAN")
    page, expect = network.page, network.expect
    expect(page.locator("main h1")).to_contain_text("African")
    african = len(reference.states_in_group("AFRICAN"))   # the members, from the reference data
    expect(page.locator(".list-status")).to_have_text(f"{african} in all; page 1 of {-(-african // 20)}")
    network.check_page("network")
    page.fill("input[name=q]", "keny")
    page.press("input[name=q]", "Enter")
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(network.row("KEN")).to_contain_text("Kenya")

    network.go("workshops")
    row = network.row(filed["request_id"])
    expect(row).to_contain_text("2027-05-03 – 2027-05-07")
    row.locator(f"a[href='#/item/request/{filed['request_id']}']").click()
    expect(page.locator("#item-body")).to_contain_text("A regional gap analysis on public procurement")
    expect(page.locator("#history")).to_contain_text("workshop.requested", timeout=TIMEOUT)
    expect(page.locator("#item-body")).to_contain_text("proposed participants", timeout=TIMEOUT)   # live
    network.check_page("network-workshop")
