// Reporting coverage of a checklist round: the States parties that reported, per regional group, and
// those that have not — to whom checklist assistance can be offered (needs: GET /needs/reporting-rate;
// requests: POST /requests/offers).

import { call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, el, notify, section } from "../ui.js";

export const title = "Reporting";

export async function render(main, { who, reference }) {
  const summary = el("div", { id: "reporting-summary", "aria-live": "polite" });
  const panel = el("div", { id: "reporting-panel" });
  const groups = reference.regional_groups.map((g) => [g.id, g.name]).concat([["NONE", "no regional group"]]);

  function showRate(rate) {
    summary.replaceChildren(
      el("p", { class: "big" }, rate.text + " States parties reported" + (rate.checklist_round ? " in round " + rate.checklist_round : "") +
        " (" + Math.round(rate.rate * 100) + " %), as of " + rate.as_of + "."),
      el("table", { class: "list" }, el("caption", {}, "By regional group"),
        el("thead", {}, el("tr", {}, ["Group", "Reported", "Parties", "Rate"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, Object.entries(rate.by_group).map(([group, g]) => el("tr", {}, el("td", {}, group),
          el("td", {}, g.reported), el("td", {}, g.parties), el("td", {}, Math.round(g.rate * 100) + " %"))))));
  }

  function offer(party, round) {
    panel.replaceChildren(section("Offer checklist assistance to " + party.name, form({
      title: "Offer checklist assistance", submit: "Offer it", cancel: () => panel.replaceChildren(),
      fields: [{ name: "state", type: "hidden", value: party.party }, { name: "checklist_round", type: "hidden", value: round || "" },
        { name: "expected_outcomes", label: "What the assistance would achieve", type: "textarea", required: true },
        { name: "language", label: "Language (ISO 639-1)", type: "text", required: true, placeholder: "en" }],
      send: (values) => call("/api/requests/requests/offers", { method: "POST", body: values }),
      done: (offered) => { panel.replaceChildren(); notify("Offered to " + party.name + ": request " + offered.request_id + ".", "ok"); },
    })));
    panel.querySelector("textarea").focus();
  }

  let round = "";
  const missing = listView({
    label: "States parties that have not reported",
    filters: [{ name: "checklist_round", label: "Round", type: "text", size: 8 },
      { name: "as_of", label: "As of (date)", type: "text", size: 10, placeholder: "2026-12-31" },
      { name: "regional_group", label: "Regional group", type: "select", options: groups }],
    load: async (filters) => {
      round = filters.checklist_round || "";
      const rate = await call("/api/needs/needs/reporting-rate", { query: { checklist_round: filters.checklist_round, as_of: filters.as_of } });
      showRate(rate);
      return rate.not_reported.filter((p) => !filters.regional_group || (p.regional_group || "NONE") === filters.regional_group);
    },
    key: (p) => p.party, empty: "Every State party has reported.",
    columns: [["Party", (p) => p.party], ["Name", (p) => p.name], ["Regional group", (p) => p.regional_group || "—"],
      ["", (p) => who.role === "operator" || who.role === "donor" ? action("Offer checklist assistance", () => offer(p, round), { class: "secondary" }) : ""]],
  });
  main.append(el("h1", {}, "Reporting coverage"), summary, panel, missing.node);
  return () => missing.stop();
}
