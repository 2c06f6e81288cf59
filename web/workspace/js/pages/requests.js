// A State's requests: workshops (national, regional) and checklist assistance; file them and follow
// them (requests: POST /requests, GET /requests, POST /requests/<id>/transitions). The item page
// (#/item/request/<id>) shows a request's history.

import { call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, badge, el, itemLink, list, notify, section } from "../ui.js";

export const title = "My requests";
export const REQUESTS = "/api/requests/requests";
export const KINDS = [["national_workshop", "national workshop"], ["regional_workshop", "regional workshop"],
  ["checklist_assistance", "checklist assistance"]];

// {"preferred_dates": {"0": {...}}} → {"preferred_dates": [{...}]}: the form's one row of each list
function asLists(values, names) {
  for (const name of names) values[name] = values[name] ? Object.values(values[name]) : [];
  return values;
}

export function dates(r) {
  return (r.preferred_dates || []).map((d) => d.from + " – " + d.to).join("; ") || "—";
}

// The steps a State takes on its own request (the service checks them: 403/409 otherwise).
function steps(request, who, panel, done) {
  if (who.role !== "state" || request.state !== who.subject) return [];
  const path = REQUESTS + "/" + encodeURIComponent(request.request_id) + "/transitions";
  const ask = (heading, to, fieldsShown, submit) => panel.replaceChildren(section(heading + " " + request.request_id, form({
    title: heading, submit, cancel: () => panel.replaceChildren(), fields: fieldsShown,
    send: (values) => call(path, { method: "POST", body: { to, ...values } }),
    done: async (moved) => { panel.replaceChildren(); notify("Request " + request.request_id + " is now " + moved.status + ".", "ok"); await done(); },
  })));
  const found = [];
  if (request.status === "offered") {
    found.push(action("Accept the offer", async () => {
      const moved = await call(path, { method: "POST", body: { to: "submitted" } });
      notify("Request " + request.request_id + " is now " + moved.status + ".", "ok");
      await done();
    }));
  }
  if (request.status === "scheduled") {
    found.push(action("Mark held", () => ask("Mark held", "held",
      [{ name: "outcome_notes", label: "What came out of it?", type: "textarea", required: true }], "Mark the workshop held")));
  }
  if (["offered", "submitted", "under_review", "approved", "scheduled"].includes(request.status)) {
    found.push(action(request.status === "offered" ? "Refuse" : "Cancel", () => ask("Cancel", "cancelled",
      [{ name: "reason", label: "Reason", type: "textarea" }], "Cancel the request"), { class: "secondary" }));
  }
  return found;
}

export function requestColumns(who, panel, done) {
  return [
    ["Request", (r) => itemLink("request", r.request_id)], ["Kind", (r) => r.kind.replace(/_/g, " ")],
    ["State", (r) => r.state], ["For", (r) => r.network_id || r.regional_group || "—"],
    ["Articles", (r) => list(r.articles)], ["Preferred dates", dates], ["Scheduled", (r) => r.scheduled_for || "—"],
    ["Status", (r) => badge(r.status)], ["", (r) => steps(r, who, panel, done)],
  ];
}

export async function render(main, { who, reference }) {
  const panel = el("div", { id: "request-panel" });
  const requests = listView({
    label: "Requests of " + (who.name || who.subject),
    filters: [{ name: "kind", label: "Kind", type: "select", options: KINDS },
      { name: "status", label: "Status", type: "select", options: ["offered", "submitted", "under_review", "approved", "scheduled",
        "held", "declined", "cancelled"].map((s) => [s, s.replace("_", " ")]) }],
    load: (filters) => call(REQUESTS, { query: { ...filters, state: who.role === "state" ? who.subject : undefined } })
      .then((a) => a.requests),
    key: (r) => r.request_id, empty: "No requests yet.",
    columns: requestColumns(who, panel, () => requests.refresh()),
  });
  const filing = form({
    title: "File a request", submit: "File the request",
    fields: [
      { name: "state", type: "hidden", value: who.subject },
      { name: "kind", label: "What is asked", type: "select", options: KINDS, required: true },
      { name: "articles", label: "Topic articles (workshops; comma-separated)", type: "list", numbers: true },
      { name: "preferred_dates.0.from", label: "Preferred period: from", type: "date" },
      { name: "preferred_dates.0.to", label: "Preferred period: to", type: "date" },
      { name: "language", label: "Language (ISO 639-1)", type: "text", placeholder: "en", required: true },
      { name: "expected_outcomes", label: "Expected outcomes", type: "textarea", required: true },
      { name: "network_id", label: "Network (regional workshops of a network)", type: "text" },
      { name: "support_received.0.provider", label: "Support already received on it: from whom (empty: none)", type: "text" },
      { name: "support_received.0.description", label: "… and what", type: "text",
        help: "Asked so that the same thing is not funded twice." },
    ],
    send: (values) => call(REQUESTS, { method: "POST", body: asLists(values, ["preferred_dates", "support_received"]) }),
    done: async (filed, values, node) => { node.reset(); notify("Request " + filed.request_id + " filed.", "ok"); await requests.refresh(); },
  });
  main.append(el("h1", {}, title), panel,
    el("div", { class: "columns" }, section("File a request", filing),
      section("How a request goes", el("p", {}, "submitted → under review → approved → scheduled → held; the Secretariat " +
        "reviews, approves and schedules it. A donor may offer checklist assistance: accept or refuse it here. " +
        "Open a request to follow its history."))),
    requests.node);
  return () => requests.stop();
}
