// A list that filters (through the API's own query parameters), pages (here, 20 rows a page) and keeps
// itself up to date (it asks again every few seconds while the tab is visible, and re-draws only
// when the answer changed, so focus stays where it is).
//
//   const needs = listView({label: "My needs", filters: [fields as in forms.js], columns: [["Need", (n) => …]],
//                           load: (filters) => call(…).then((a) => a.needs), key: (n) => n.need_id});
//   page.append(needs.node); … needs.refresh() after a change; needs.stop() when the page goes.

import { explain } from "./api.js";
import { readValues } from "./forms.js";
import { el, uid } from "./ui.js";

const pageParams = new URLSearchParams(window.location.search);
export const POLL_MS = Math.max(1, Number(pageParams.get("poll")) || 5) * 1000;   // ?poll=<seconds>
const PAGE_SIZE = 20;

function filterControl(field) {
  const id = uid("filter-" + field.name);
  const input = field.type === "select"
    ? el("select", { id: id, name: field.name }, el("option", { value: "" }, field.blank || "any"),
      field.options.map(([v, label]) => el("option", { value: v }, label)))
    : el("input", { id: id, name: field.name, type: field.type === "number" ? "number" : "text", autocomplete: "off",
      size: field.size || 10, placeholder: field.placeholder });
  if (field.value !== undefined) input.value = String(field.value);
  return { node: el("label", { for: id, class: "filter" }, field.label + " ", input), field: { ...field, type: field.type === "select" ? "select" : "text" }, input };
}

export function listView({ label, filters = [], columns, load, key, empty = "Nothing here yet.", live = true }) {
  const captionId = uid("list");
  const controls = filters.map(filterControl);
  const status = el("p", { class: "list-status", role: "status" });
  const table = el("table", { class: "list", "aria-labelledby": captionId });
  const previous = el("button", { type: "button", class: "secondary" }, "Previous page");
  const next = el("button", { type: "button", class: "secondary" }, "Next page");
  const pager = el("p", { class: "pager" }, previous, " ", el("span", { class: "page-of" }), " ", next);
  const filterForm = el("form", { class: "filters", role: "search", "aria-label": "Filter " + label },
    controls.map((c) => c.node), el("button", { type: "submit", class: "secondary" }, "Filter"));
  const node = el("div", { class: "list-view" }, el("h3", { id: captionId, class: "list-title" }, label),
    filters.length ? filterForm : null, status, el("div", { class: "table-wrap" }, table), pager);

  let items = [], page = 0, lastText = null, timer = null, generation = 0;

  function draw() {
    const pages = Math.max(1, Math.ceil(items.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const shown = items.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    table.replaceChildren(
      el("thead", {}, el("tr", {}, columns.map(([name]) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, shown.map((item) => el("tr", { "data-key": key ? key(item) : null },
        columns.map(([, value]) => el("td", {}, value(item)))))));
    table.hidden = !items.length;
    status.textContent = items.length ? items.length + " in all" + (pages > 1 ? "; page " + (page + 1) + " of " + pages : "")
      : empty;
    pager.hidden = pages < 2;
    pager.querySelector(".page-of").textContent = "Page " + (page + 1) + " of " + pages;
    previous.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }

  async function refresh() {
    const mine = ++generation;
    let found;
    try {
      found = await load(readValues(controls));
    } catch (error) {
      if (mine === generation) { status.textContent = explain(error); status.classList.add("error"); }
      return;
    }
    if (mine !== generation) return;
    status.classList.remove("error");
    const text = JSON.stringify(found);
    if (text === lastText) return;
    lastText = text;
    items = found;
    draw();
  }

  function schedule() {
    clearTimeout(timer);
    if (!live) return;
    timer = setTimeout(async () => {
      if (!document.hidden && node.isConnected) await refresh();
      if (node.isConnected) schedule();
    }, POLL_MS);
  }

  filterForm.addEventListener("submit", (event) => { event.preventDefault(); page = 0; lastText = null; refresh(); });
  filterForm.addEventListener("change", () => { page = 0; lastText = null; refresh(); });
  previous.addEventListener("click", () => { page -= 1; draw(); });
  next.addEventListener("click", () => { page += 1; draw(); });
  refresh().then(schedule);
  return { node, refresh: () => { lastText = null; return refresh(); }, stop: () => clearTimeout(timer), items: () => items };
}
