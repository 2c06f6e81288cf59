// A State's needs: file one, edit it, withdraw it with a reason, import a checklist file
// (needs service: POST/PATCH/DELETE /needs, POST /needs/import; a State acts for its own ISO3 only).

import { ApiError, call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { importFile } from "../upload.js";
import { action, badge, el, itemLink, list, notify, section } from "../ui.js";

export const title = "My needs";
const NEEDS = "/api/needs/needs";

export function choices(reference) {
  return {
    articles: reference.articles.map((a) => [a.number, a.number + " — " + a.title]),
    forms: reference.forms.map((f) => [f.id, f.label]),
    states: reference.states.map((s) => [s.iso3, s.name + " (" + s.iso3 + ")"]),
    groups: reference.regional_groups.map((g) => [g.id, g.name]),
    priorities: [[1, "1 — highest"], [2, "2"], [3, "3"]],
  };
}

function needFields(who, c) {
  return [
    who.role === "state" ? { name: "state", type: "hidden", value: who.subject }
      : { name: "state", label: "State", type: "select", options: c.states, required: true },
    { name: "article", label: "UNCAC article", type: "select", options: c.articles, numbers: true, required: true },
    { name: "forms", label: "Forms of assistance", type: "checkboxes", options: c.forms, required: true },
    { name: "other_text", label: "Other form (when Other is ticked)", type: "text" },
    { name: "priority", label: "Priority", type: "select", options: c.priorities, numbers: true, required: true },
    { name: "paragraph", label: "Paragraph", type: "text" },
    { name: "description", label: "Description", type: "textarea" },
    { name: "languages", label: "Languages (ISO 639-1, comma-separated)", type: "list", placeholder: "en, fr" },
    { name: "checklist_round", label: "Checklist round", type: "text", placeholder: "2026-1" },
  ];
}

export async function render(main, { who, reference }) {
  const c = choices(reference);
  const panel = el("div", { id: "need-panel" });
  const needs = listView({
    label: who.role === "state" ? "Needs of " + (who.name || who.subject) : "Needs",
    filters: [
      { name: "status", label: "Status", type: "select", options: ["open", "in_progress", "met", "withdrawn"].map((s) => [s, s]) },
      { name: "article", label: "Article", type: "select", options: c.articles },
      { name: "priority", label: "Priority", type: "select", options: c.priorities },
      { name: "checklist_round", label: "Round", type: "text", size: 8 },
    ],
    load: (filters) => call(NEEDS, { query: { ...filters, state: who.role === "state" ? who.subject : filters.state } })
      .then((answer) => answer.needs),
    key: (n) => n.need_id,
    empty: "No needs filed yet: file one above, or import a checklist file.",
    columns: [
      ["Need", (n) => itemLink("need", n.need_id)], ["Article", (n) => n.article], ["Forms", (n) => list(n.forms)],
      ["Priority", (n) => n.priority], ["Status", (n) => badge(n.status)], ["Description", (n) => n.description || ""],
      ["", (n) => n.status === "withdrawn" ? "" : [
        action("Edit", () => edit(n)), action("Withdraw", () => withdraw(n), { class: "secondary" })]],
    ],
  });

  function show(heading, node) {
    panel.replaceChildren(section(heading, node));
    const first = panel.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  }
  function close() { panel.replaceChildren(); }

  function edit(need) {
    show("Edit " + need.need_id, form({
      title: "Edit need", submit: "Save changes", cancel: close,
      fields: [
        { name: "priority", label: "Priority", type: "select", options: c.priorities, numbers: true, value: need.priority },
        { name: "status", label: "Status", type: "select", options: [["open", "open"], ["in_progress", "in progress"], ["met", "met"]], value: need.status },
        { name: "paragraph", label: "Paragraph", type: "text", value: need.paragraph },
        { name: "description", label: "Description", type: "textarea", value: need.description },
        { name: "languages", label: "Languages", type: "list", value: need.languages },
      ],
      send: (values) => call(NEEDS + "/" + encodeURIComponent(need.need_id), { method: "PATCH", body: values }),
      done: async () => { close(); notify("Need " + need.need_id + " saved.", "ok"); await needs.refresh(); },
    }));
  }

  function withdraw(need) {
    show("Withdraw " + need.need_id, form({
      title: "Withdraw need", submit: "Withdraw the need", cancel: close,
      fields: [{ name: "reason", label: "Why is it withdrawn?", type: "textarea", required: true,
        help: "Kept with the need and in the audit log; donors matched to it see it." }],
      send: (values) => {
        if (!values.reason) throw new ApiError(422, { error: "validation failed", fields: { reason: ["Say why: a withdrawal keeps its reason."] } });
        return call(NEEDS + "/" + encodeURIComponent(need.need_id), { method: "DELETE", query: { reason: values.reason } });
      },
      done: async () => { close(); notify("Need " + need.need_id + " withdrawn.", "ok"); await needs.refresh(); },
    }));
  }

  const filing = form({
    title: "File a need", submit: "File the need", fields: needFields(who, c),
    send: (values) => call(NEEDS, { method: "POST", body: values }),
    done: async (need, values, node) => {
      node.reset();
      notify("Need " + need.need_id + " filed (status " + need.status + ").", "ok");
      await needs.refresh();
    },
  });

  main.append(el("h1", {}, title), panel,
    el("div", { class: "columns" }, section("File a need", filing), section("Import a checklist file", importer(needs))),
    needs.node);
  return () => needs.stop();
}

// The checklist import: a CSV or JSON export (services/needs/checklist.py), in pieces, with progress.
function importer(needs) {
  const input = el("input", { type: "file", id: "checklist-file", accept: ".csv,.json,text/csv,application/json" });
  const bar = el("progress", { id: "import-progress", max: 1, value: 0, hidden: true, "aria-label": "Import progress" });
  const report = el("div", { id: "import-report", class: "report", "aria-live": "polite" });
  const run = action("Import the file", async () => {
    const file = input.files[0];
    if (!file) { report.replaceChildren(el("p", { class: "form-error" }, "Choose a CSV or JSON file first.")); return; }
    bar.hidden = false;
    report.replaceChildren(el("p", {}, "Importing " + file.name + "…"));
    try {
      const summary = await importFile(file, (body, type) => call(NEEDS + "/import", { method: "POST", body, type }),
        (done, total) => { bar.max = total; bar.value = done; bar.textContent = done + " of " + total; });
      report.replaceChildren(
        el("p", { id: "import-summary" }, summary.accepted + " new, " + summary.updated + " updated, " +
          summary.unchanged + " unchanged, " + summary.rejected.length + " rejected"),
        summary.rejected.length ? el("table", { class: "list", id: "import-rejected" },
          el("caption", {}, "Rejected rows"),
          el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Line"), el("th", { scope: "col" }, "Reason"))),
          el("tbody", {}, summary.rejected.map((r) => el("tr", {}, el("td", {}, r.line), el("td", {}, r.reason))))) : null);
      await needs.refresh();
    } catch (error) {
      report.replaceChildren(el("p", { class: "form-error", role: "alert" }, "The file was not imported: " +
        (error.body ? error.body.error + (error.body.details ? " — " + error.body.details.join("; ") : "") : error.message)));
    }
  });
  return el("div", {}, el("label", { for: "checklist-file" }, "Checklist file (CSV or JSON)"), input,
    el("p", { class: "help" }, "Columns: state, article, forms (separated by ;), priority; optional paragraph, " +
      "other_text, description, checklist_round, languages, external_ref. Rows of another State are rejected."),
    el("p", {}, run), bar, report);
}
