// Alerts: duplications and gaps matching raised. An operator works the whole list; a donor sees the
// duplications that name it (matching: GET /alerts, POST /alerts/<id>/acknowledge|resolve).

import { call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, badge, el, itemLink, list, notify, section } from "../ui.js";

export const title = "Alerts";
const ALERTS = "/api/matching/alerts";

// How people close an alert, as services/matching/alerts.py RESOLUTIONS lists them (a 422 names the
// field if they part ways).
const RESOLUTIONS = {
  duplication: [["work_split", "the providers agreed to split the work"], ["provider_withdrew", "one provider withdrew"],
    ["not_a_duplication", "not a duplication"], ["other", "other (say what in the note)"]],
  gap: [["assistance_arranged", "assistance was arranged outside the matches"],
    ["need_withdrawn", "the need was withdrawn or is no longer a priority"], ["not_a_gap", "not a gap"],
    ["other", "other (say what in the note)"]],
};

export function alertSteps(alert, panel, done) {
  const path = ALERTS + "/" + encodeURIComponent(alert.alert_id);
  const open = (heading, fields, step, submit) => {
    panel.replaceChildren(section(heading + " " + alert.alert_id, form({
      title: heading + " alert", submit, cancel: () => panel.replaceChildren(), fields,
      send: (values) => call(path + "/" + step, { method: "POST", body: values }),
      done: async (answer) => {
        panel.replaceChildren();
        notify("Alert " + alert.alert_id + " is now " + answer.status + ".", "ok");
        await done();
      },
    })));
    panel.querySelector("select, textarea").focus();
  };
  const note = { name: "note", label: "Note", type: "textarea" };
  return [
    alert.status === "open" ? action("Acknowledge", () => open("Acknowledge", [note], "acknowledge", "Acknowledge"),
      { "data-step": "acknowledge" }) : null,
    alert.status !== "resolved" ? action("Resolve", () => open("Resolve", [
      { name: "resolution", label: "How was it resolved?", type: "select", options: RESOLUTIONS[alert.alert], required: true },
      note], "resolve", "Resolve the alert"), { class: "secondary", "data-step": "resolve" }) : null,
  ];
}

export async function render(main, { who, reference }) {
  const panel = el("div", { id: "alert-panel" });
  const scope = who.role === "donor" ? { provider: who.subject } : who.role === "state" ? { state: who.subject } : {};
  const alerts = listView({
    label: who.role === "operator" ? "Alerts, oldest first" : "Alerts that involve " + who.subject,
    filters: [
      { name: "status", label: "Status", type: "select", options: [["open", "open"], ["acknowledged", "acknowledged"], ["resolved", "resolved"]] },
      { name: "kind", label: "Kind", type: "select", options: [["duplication", "duplication"], ["gap", "gap"]] },
      { name: "regional_group", label: "Regional group", type: "select", options: reference.regional_groups.map((g) => [g.id, g.name]) },
      { name: "article", label: "Article", type: "number", size: 4 },
      ...(who.role === "operator" ? [{ name: "state", label: "State", type: "text", size: 4 }] : []),
    ],
    load: (filters) => call(ALERTS, { query: { ...filters, ...scope } }).then((a) => a.alerts),
    key: (a) => a.alert_id,
    empty: "No alerts: nothing is duplicated and no priority need is left without supply.",
    columns: [
      ["Alert", (a) => itemLink("alert", a.alert_id)], ["Kind", (a) => a.alert + (a.kind ? " (" + a.kind.replace(/_/g, " ") + ")" : "")],
      ["State", (a) => a.state || a.regional_group || "—"], ["Article", (a) => a.article], ["Form", (a) => a.form || "—"],
      ["Providers", (a) => list(a.providers)], ["Need", (a) => a.need_id ? itemLink("need", a.need_id) : "—"],
      ["Status", (a) => badge(a.status)],
      ["", (a) => who.role === "network" || who.role === "partner" ? "" : alertSteps(a, panel, () => alerts.refresh())],
    ],
  });
  main.append(el("h1", {}, who.role === "operator" ? "Alert worklist" : title),
    el("p", { class: "help" }, "A duplication: two or more providers matched to the same State × article × form. " +
      "A gap: a priority need no offer reaches. Acknowledge one when you are on it; resolve it once it is settled."),
    panel, alerts.node);
  return () => alerts.stop();
}
