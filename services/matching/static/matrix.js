/* The needs-vs-supply matrix page.
 *
 * Plain script, no build step. It reads the matching service's JSON API with
 * the API key the user gives (kept in sessionStorage, sent as
 * "Authorization: Bearer …"): GET /matrix/reference once for labels and
 * filter choices, GET /matrix every few seconds (re-drawn only when the
 * answer changed), GET /matrix/cell for the panel of a clicked cell.
 * Everything shown is built with textContent: no HTML from the data.
 * Paths are relative to the page (/matrix/page), so it works the same behind
 * the gateway (/api/matching/matrix/page).
 */
"use strict";

(function () {
  // The workspace's entry (web/workspace/js/api.js): behind the gateway both pages share one origin,
  // so one sign-in serves both.
  const KEY_STORE = "tacoord.apiKey";
  // Behind the gateway (/api/matching/matrix/page) the workspace is at "/": items link into it.
  const IN_WORKSPACE = window.location.pathname.startsWith("/api/");
  const pageParams = new URLSearchParams(window.location.search);
  // ?poll=<seconds> overrides the refresh period (at least 1 s); default 3 s.
  const POLL_MS = Math.max(1, Number(pageParams.get("poll")) || 3) * 1000;
  const FILTERS = ["chapter", "article", "regional_group", "state", "level", "form"];
  const SYMBOLS = { unmet: "✕", proposed: "◌", partly_met: "◐", met: "✓", delivered: "★", duplicated: "‼",
    no_need: "○", empty: "" };

  let reference = null;     // GET /matrix/reference
  let lastBody = null;      // the last /matrix answer, as text, to re-draw only on change
  let lastCells = new Map(); // "row|col" -> cell, to flash the cells that changed
  let timer = null;
  let generation = 0;       // bumps when the view changes: late answers for an old view are dropped
  let openCell = null;      // {row, col} of the panel, refreshed with the matrix
  let lastOk = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function item(type, id) {
    if (!id || !IN_WORKSPACE) return id || "";
    return el("a", { href: "/#/item/" + type + "/" + encodeURIComponent(id) }, id);
  }

  // --- the API -----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

  async function call(path) {
    const key = apiKey();
    if (!key) throw new ApiError(401, "Enter an API key to see the matrix.");
    let response;
    try {
      response = await fetch(path, { headers: { Authorization: "Bearer " + key }, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "The matching service cannot be reached (" + error.message + ").");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = body.error || detail;
        if (body.details) detail += ": " + [].concat(body.details).join("; ");
      } catch (ignored) { /* not JSON */ }
      throw new ApiError(response.status, detail);
    }
    return response;
  }

  function explain(error) {
    if (error.status === 401) return "The API key was refused (401): " + error.message +
      ". Check the key, or ask an operator for one (tacoord credentials issue).";
    if (error.status === 403) return "This key may not read the matrix (403): " + error.message;
    if (error.status === 0) return error.message;
    return "The matching service answered " + error.status + ": " + error.message;
  }

  // --- messages and the key ------------------------------------------------------

  function showMessage(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = "message" + (kind === "info" ? " info" : "");
    box.hidden = !text;
  }

  function needKey(text, kind) {
    stopPolling();
    $("matrix-main").hidden = true;
    $("cell-panel").hidden = true;
    $("key-section").hidden = false;
    showMessage(text, kind || "error");
    $("updated").textContent = "Not loaded";
    $("api-key").focus();
  }

  async function useKey(key) {
    sessionStorage.setItem(KEY_STORE, key);
    showMessage("Loading the matrix…", "info");
    try {
      reference = await (await call("reference")).json();
    } catch (error) {
      if (error.status === 401 || error.status === 403) sessionStorage.removeItem(KEY_STORE);
      needKey(explain(error));
      return;
    }
    fillFilters();
    readViewFromUrl();
    renderLegend();
    $("key-section").hidden = true;
    $("matrix-main").hidden = false;
    showMessage("", "info");
    viewChanged();
  }

  // --- filters -------------------------------------------------------------------

  function option(value, text, title) {
    return el("option", { value: value, title: title }, text);
  }

  function fillSelect(select, options) {
    const keep = select.value;
    select.replaceChildren(option("", "all"), ...options);
    select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
  }

  function chapterLabel(number) {
    const chapter = reference.chapters.find((c) => c.number === Number(number));
    return chapter ? chapter.roman : String(number);
  }

  function fillFilters() {
    fillSelect($("f-chapter"), reference.chapters.map((c) =>
      option(c.number, c.roman + " — " + c.title, c.title)));
    fillSelect($("f-regional_group"), reference.regional_groups.map((g) => option(g.id, g.name)));
    fillSelect($("f-level"), reference.levels.map((l) => option(l, l)));
    fillSelect($("f-form"), reference.forms.map((f) => option(f.id, f.label)));
    narrowFilters();
  }

  function narrowFilters() {
    const chapter = $("f-chapter").value;
    fillSelect($("f-article"), reference.articles
      .filter((a) => !chapter || a.chapter === Number(chapter))
      .map((a) => option(a.number, a.number + " — " + a.title, a.title)));
    const group = $("f-regional_group").value;
    fillSelect($("f-state"), reference.states
      .filter((s) => !group || s.regional_group === group)
      .map((s) => option(s.iso3, s.name + " (" + s.iso3 + ")")));
  }

  function view() {
    const form = $("filters");
    const result = { rows: form.elements.rows.value, cols: form.elements.cols.value };
    for (const name of FILTERS) {
      const value = $("f-" + name).value;
      if (value) result[name] = value;
    }
    return result;
  }

  function query(values) {
    return new URLSearchParams(Object.entries(values)).toString();
  }

  function readViewFromUrl() {
    const form = $("filters");
    if (["article", "chapter"].includes(pageParams.get("rows"))) form.elements.rows.value = pageParams.get("rows");
    if (["state", "regional_group"].includes(pageParams.get("cols"))) form.elements.cols.value = pageParams.get("cols");
    for (const name of ["chapter", "regional_group", "level", "form"]) {
      if (pageParams.get(name)) $("f-" + name).value = pageParams.get(name);
    }
    narrowFilters();
    for (const name of ["article", "state"]) {
      if (pageParams.get(name)) $("f-" + name).value = pageParams.get(name).toUpperCase();
    }
  }

  function viewChanged() {
    generation += 1;
    lastBody = null;
    lastCells = new Map();
    closePanel();
    const current = view();
    const params = query(current);
    // the page's own address carries the view, so it can be bookmarked or shared (never the key)
    const keep = pageParams.get("poll") ? { poll: pageParams.get("poll") } : {};
    history.replaceState(null, "", "?" + query({ ...current, ...keep }));
    $("csv-link").href = "../matrix.csv?" + params;
    refreshNow();
  }

  // --- polling ---------------------------------------------------------------------

  function stopPolling() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function schedule() {
    stopPolling();
    timer = setTimeout(refreshNow, POLL_MS);
  }

  function clock(date) {
    return date.toLocaleTimeString("en-GB", { hour12: false });
  }

  async function refreshNow() {
    stopPolling();
    if (document.hidden && lastBody !== null) { schedule(); return; }
    const mine = generation;
    const current = view();
    try {
      const text = await (await call("../matrix?" + query(current))).text();
      if (mine !== generation) return;
      lastOk = new Date();
      const updated = $("updated");
      updated.textContent = "Updated " + clock(lastOk);
      updated.dataset.updatedAt = lastOk.toISOString();
      updated.className = "";
      if (text !== lastBody) {
        const first = lastBody === null;
        lastBody = text;
        render(JSON.parse(text), current, !first);
        if (openCell && !first) loadCell(openCell, false);
      }
      showMessage("", "info");
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 401 || error.status === 403) { needKey(explain(error)); return; }
      const updated = $("updated");
      updated.textContent = (lastOk ? "Not updated since " + clock(lastOk) : "Not loaded") + " — retrying";
      updated.className = "stale";
      showMessage(explain(error), "error");
    }
    if (mine === generation) schedule();
  }

  // --- the matrix ---------------------------------------------------------------------

  function rowLabel(rows, row) {
    if (row === null || row === undefined) return { short: "—", long: "unknown" };
    if (rows === "chapter") {
      const chapter = reference.chapters.find((c) => c.number === row);
      return chapter ? { short: "Ch. " + chapter.roman + " " + chapter.title, long: "Chapter " + chapter.roman +
        ": " + chapter.title } : { short: "Ch. " + row, long: "Chapter " + row };
    }
    const article = reference.articles.find((a) => a.number === row);
    return article ? { short: "Art. " + row + " " + article.title, long: "Article " + row + ": " + article.title }
      : { short: "Art. " + row, long: "Article " + row };
  }

  function colLabel(cols, col) {
    if (cols === "regional_group") {
      const group = reference.regional_groups.find((g) => g.id === col);
      return { short: col, long: group ? group.name : String(col) };
    }
    const state = reference.states.find((s) => s.iso3 === col);
    return { short: String(col), long: state ? state.name : String(col) };
  }

  function statusLabel(status) {
    if (status === "empty") return "No needs, no offers";
    const found = reference.statuses.find((s) => s.id === status);
    return found ? found.label : status;
  }

  // A duplicated cell shows its coverage too: "◐‼" is partly met and duplicated.
  function coverageOf(cell) {
    return cell.coverage || (cell.status === "duplicated" ? "met" : cell.status);
  }

  // "Met" means an agreed match (or one in delivery, or delivered), not a proposal.
  function cellText(cell) {
    const symbol = cell.duplicated ? SYMBOLS[coverageOf(cell)] + SYMBOLS.duplicated : SYMBOLS[cell.status];
    return symbol + " " + cell.agreed_needs + "/" + cell.needs + " · " + cell.offers;
  }

  function describeStatus(cell) {
    return cell.duplicated ? statusLabel("duplicated") + ", " + statusLabel(coverageOf(cell)).toLowerCase()
      : statusLabel(cell.status);
  }

  function levels(counts) {
    return counts.needs + " open need(s): " + counts.proposed_needs + " with a proposal, " + counts.agreed_needs +
      " met (agreed), " + counts.delivered_needs + " delivered; " + counts.offers + " offer(s), " + counts.matches +
      " match(es)";
  }

  function cellTitle(rows, cols, cell) {
    const where = rowLabel(rows, cell.row).long + " × " + colLabel(cols, cell.col).long;
    return where + " — " + describeStatus(cell) + ": " + levels(cell);
  }

  function render(data, current, markChanges) {
    const rows = [...new Set(data.cells.map((c) => c.row))].sort((a, b) => (a ?? -1) - (b ?? -1));
    const colOrder = current.cols === "regional_group" ? reference.regional_groups.map((g) => g.id) : null;
    const cols = [...new Set(data.cells.map((c) => c.col))].sort((a, b) => colOrder
      ? colOrder.indexOf(a) - colOrder.indexOf(b) : String(a).localeCompare(String(b)));
    const byKey = new Map(data.cells.map((c) => [c.row + "|" + c.col, c]));

    const rowWord = current.rows === "chapter" ? "Chapter" : "Article";
    const colWord = current.cols === "regional_group" ? "Regional group" : "State";
    $("matrix-caption").textContent = "Needs vs supply: " + (current.rows === "chapter" ? "chapters" : "articles") +
      " × " + (current.cols === "regional_group" ? "regional groups" : "States") +
      (current.level ? ", " + current.level + " offers" : "") + (current.form ? ", form " + current.form : "");

    const head = el("tr", {}, el("th", { scope: "col", class: "corner", text: rowWord + " \\ " + colWord }),
      cols.map((col) => {
        const label = colLabel(current.cols, col);
        return el("th", { scope: "col", title: label.long, "data-col": col }, el("abbr", { title: label.long }, label.short));
      }));
    const body = rows.map((row) => {
      const label = rowLabel(current.rows, row);
      return el("tr", { "data-row": row },
        el("th", { scope: "row", title: label.long }, label.short),
        cols.map((col) => {
          const cell = byKey.get(row + "|" + col) ||
            { row: row, col: col, needs: 0, offers: 0, matches: 0, proposed_needs: 0, agreed_needs: 0,
              delivered_needs: 0, status: "empty" };
          const title = cellTitle(current.rows, current.cols, cell);
          const previous = lastCells.get(row + "|" + col);
          const changed = markChanges &&
            JSON.stringify(previous || null) !== JSON.stringify(byKey.get(row + "|" + col) || null);
          const selected = openCell && openCell.row === row && openCell.col === col;
          const td = el("td", { class: "status-" + cell.status + (changed ? " changed" : "") + (selected ? " selected" : ""),
            "data-row": row, "data-col": col, "data-status": cell.status, "data-coverage": coverageOf(cell),
            title: title });
          if (cell.status !== "empty") {
            td.append(el("button", { type: "button", "aria-label": title,
              onclick: () => openPanel({ row: row, col: col }, td) }, cellText(cell)));
          }
          return td;
        }));
    });
    $("matrix").tHead.replaceChildren(head);
    $("matrix").tBodies[0].replaceChildren(...body);
    $("empty").hidden = data.cells.length > 0;
    const totals = data.cells.reduce((t, c) => ({ needs: t.needs + c.needs, proposed: t.proposed + c.proposed_needs,
      agreed: t.agreed + c.agreed_needs, delivered: t.delivered + c.delivered_needs }),
      { needs: 0, proposed: 0, agreed: 0, delivered: 0 });
    $("summary").textContent = rows.length + " row(s) × " + cols.length + " column(s); " + totals.needs +
      " open need(s): " + totals.proposed + " with a proposal, " + totals.agreed + " met (agreed), " +
      totals.delivered + " delivered";
    lastCells = byKey;
  }

  function renderLegend() {
    const items = reference.statuses.map((s) => el("span", { class: "item", title: s.description },
      el("span", { class: "swatch status-" + s.id, "aria-hidden": "true" }, SYMBOLS[s.id]), s.label));
    items.push(el("span", { class: "item", title: "No open needs and no offers" },
      el("span", { class: "swatch status-empty", "aria-hidden": "true" }, "\u00a0"), "Empty"));
    items.push(el("span", { class: "note" },
      "Cell text: symbol, met needs (agreed or delivered) / open needs · offers reaching the cell; a duplicated " +
      "cell shows its coverage too (◐‼: partly met and duplicated). Hover for details; click for the lists."));
    $("legend").replaceChildren(...items);
  }

  // --- one cell --------------------------------------------------------------------------

  function cellQuery(cell) {
    const current = view();
    const params = {};
    if (current.rows === "article") params.article = cell.row;
    else if (current.article) params.article = current.article;   // the only article of that chapter row
    else params.chapter = cell.row;
    if (current.cols === "state") params.state = cell.col;
    else if (current.state) params.state = current.state;        // the only State of that group column
    else params.regional_group = cell.col;
    if (current.level) params.level = current.level;
    if (current.form) params.form = current.form;
    return params;
  }

  function openPanel(cell, td) {
    for (const node of document.querySelectorAll("td.selected")) node.classList.remove("selected");
    if (td) td.classList.add("selected");
    openCell = cell;
    $("cell-panel").hidden = false;
    loadCell(cell, true);
  }

  function closePanel() {
    openCell = null;
    $("cell-panel").hidden = true;
    for (const node of document.querySelectorAll("td.selected")) node.classList.remove("selected");
  }

  function list(values) { return (values || []).join(", "); }

  function section(title, items, columns) {
    const heading = el("h3", {}, title + " (" + items.length + ")");
    if (!items.length) return [heading, el("p", { class: "none" }, "none")];
    return [heading, el("table", {},
      el("thead", {}, el("tr", {}, columns.map(([name]) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, items.map((item) => el("tr", {}, columns.map(([, value]) => el("td", {}, value(item)))))))];
  }

  function explanation(match) {
    const parts = match.explanation || {};
    return el("details", {}, el("summary", {}, "why"),
      el("ul", {}, (parts.constraints_met || []).map((c) => el("li", {}, c))),
      el("p", {}, Object.entries(parts.score_parts || {}).map(([k, v]) => k + " " + v).join(", ")));
  }

  async function loadCell(cell, fresh) {
    const current = view();
    const mine = generation;
    const label = rowLabel(current.rows, cell.row).long + " × " + colLabel(current.cols, cell.col).long;
    $("cell-title").textContent = label;
    if (fresh) $("cell-body").replaceChildren(el("p", { class: "none" }, "Loading…"));
    let data;
    try {
      data = await (await call("cell?" + query(cellQuery(cell)))).json();
    } catch (error) {
      if (mine === generation) $("cell-body").replaceChildren(el("p", { class: "message" }, explain(error)));
      return;
    }
    if (mine !== generation || !openCell || openCell.row !== cell.row || openCell.col !== cell.col) return;
    const counts = data.counts;
    $("cell-title").textContent = label + " — " + describeStatus(data);
    $("cell-body").replaceChildren(
      el("p", {}, levels(counts) + (data.level ? " (" + data.level + " offers)" : "")),
      el("section", { id: "cell-needs" }, section("Needs", data.needs, [
        ["need", (n) => item("need", n.need_id)], ["State", (n) => n.state], ["article", (n) => n.article],
        ["forms", (n) => list(n.forms)], ["priority", (n) => n.priority], ["status", (n) => n.status],
        ["description", (n) => n.description || ""]])),
      el("section", { id: "cell-offers" }, section("Offers", data.offers, [
        ["offer", (o) => item("offer", o.offer_id)], ["provider", (o) => o.provider_name || o.provider], ["level", (o) => o.level],
        ["scope", (o) => list(o.scope_states.concat(o.scope_groups)) || "global"],
        ["articles", (o) => list(o.articles) + (o.chapters && o.chapters.length ? " ch. " + list(o.chapters.map(chapterLabel)) : "")],
        ["forms", (o) => list(o.forms)], ["capacity", (o) => o.capacity], ["status", (o) => o.status]])),
      el("section", { id: "cell-matches" }, section("Matches", data.matches, [
        ["match", (m) => item("match", m.match_id)], ["need", (m) => item("need", m.need_id)],
        ["supplier", (m) => m.offer_id ? item("offer", m.offer_id) : "expert " + m.expert_id],
        ["provider", (m) => m.provider || "—"], ["level", (m) => m.level], ["forms", (m) => list(m.forms)],
        ["status", (m) => m.status], ["score", (m) => Number(m.score).toFixed(2)], ["explanation", explanation]])));
  }

  // --- CSV ------------------------------------------------------------------------------------

  async function downloadCsv(event) {
    event.preventDefault();
    const link = $("csv-link");
    try {
      const blob = await (await call(link.getAttribute("href"))).blob();
      const current = view();
      const url = URL.createObjectURL(blob);
      const anchor = el("a", { href: url, download: "matrix-" + current.rows + "-" + current.cols + ".csv" });
      document.body.append(anchor);
      anchor.click();
      anchor.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      if (error.status === 401 || error.status === 403) needKey(explain(error));
      else showMessage("The CSV could not be downloaded: " + explain(error), "error");
    }
  }

  // --- wiring --------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("workspace-link").hidden = !IN_WORKSPACE;
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      $("api-key").value = "";
      if (!key) { needKey("Enter an API key (it looks like tck_…)."); return; }
      useKey(key);
    });
    $("forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      needKey("The key was forgotten. Enter an API key to see the matrix.", "info");
    });
    $("filters").addEventListener("change", (event) => {
      if (event.target.id === "f-chapter" || event.target.id === "f-regional_group") narrowFilters();
      viewChanged();
    });
    $("reset-filters").addEventListener("click", () => {
      for (const name of FILTERS) $("f-" + name).value = "";
      narrowFilters();
      viewChanged();
    });
    $("close-panel").addEventListener("click", closePanel);
    document.addEventListener("keydown", (event) => { if (event.key === "Escape") closePanel(); });
    $("csv-link").addEventListener("click", downloadCsv);
    document.addEventListener("visibilitychange", () => { if (!document.hidden && reference) refreshNow(); });
    if (apiKey()) useKey(apiKey());
    else needKey("Enter an API key to see the matrix.", "info");
  });
})();
