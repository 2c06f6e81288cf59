// The expert vetting queue: CVs submitted, validated and active, and the Secretariat's steps on them
// (supply: GET /experts?vetting_status=, POST /experts/<id>/transition {"to", "note"}).

import { call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, badge, el, itemLink, list, notify, section } from "../ui.js";

export const title = "Expert vetting";

// The operator's moves, as services/supply/experts.py TRANSITIONS has them.
const STEPS = { submitted: [["validated", "Validate"], ["draft", "Return as incomplete"]],
  validated: [["active", "Activate"]], active: [["expired", "Expire"]] };

export async function render(main) {
  const panel = el("div", { id: "expert-panel" });
  const experts = listView({
    label: "Experts",
    filters: [{ name: "vetting_status", label: "Vetting status", type: "select", value: "submitted",
      options: ["draft", "submitted", "validated", "active", "expired"].map((s) => [s, s]) },
      { name: "article", label: "Article", type: "number", size: 4 }, { name: "language", label: "Language", type: "text", size: 3 }],
    load: (filters) => call("/api/supply/experts", { query: filters }).then((a) => a.experts),
    key: (x) => x.expert_id, empty: "No expert in this step of vetting.",
    columns: [
      ["Expert", (x) => itemLink("expert", x.expert_id, [x.given_names, x.family_name].filter(Boolean).join(" ") || x.expert_id)],
      ["Nationality", (x) => x.nationality], ["Expertise", (x) => list((x.expertise || []).map((e) => e.article + " (" + e.level + ")"))],
      ["Languages", (x) => list((x.languages || []).map((l) => l.code || l))], ["Status", (x) => badge(x.vetting_status)],
      ["", (x) => (STEPS[x.vetting_status] || []).map(([to, label]) => action(label, () => step(x, to, label), { class: to === "draft" ? "secondary" : null }))],
    ],
  });
  function step(expert, to, label) {
    panel.replaceChildren(section(label + ": " + expert.expert_id, form({
      title: label, submit: label, cancel: () => panel.replaceChildren(),
      fields: [{ name: "note", label: "Note (kept in the expert's history)", type: "textarea" }],
      send: (values) => call("/api/supply/experts/" + encodeURIComponent(expert.expert_id) + "/transition",
        { method: "POST", body: { to, ...values } }),
      done: async (moved) => { panel.replaceChildren(); notify("Expert " + expert.expert_id + " is now " + moved.vetting_status + ".", "ok"); await experts.refresh(); },
    })));
    panel.querySelector("textarea").focus();
  }
  main.append(el("h1", {}, title), el("p", { class: "help" }, "A nominator submits a complete CV; the Secretariat validates " +
    "it, then activates it (searchable, with consent). A record lapses at its expiry date."), panel, experts.node);
  return () => experts.stop();
}
