// The audit log: verify its hash chain, and read an entity's history (audit: GET /audit/verify,
// GET /audit/entities/<type>/<id>).

import { call } from "../api.js";
import { form } from "../forms.js";
import { action, badge, el, fields, section, when } from "../ui.js";

export const title = "Audit";
const TYPES = ["need", "offer", "match", "request", "duplication", "gap", "alert", "expert", "network", "subscription",
  "notification", "message", "event"].map((t) => [t, t]);

export function historyTable(records) {
  return el("table", { class: "list", id: "history" }, el("caption", {}, records.length + " record(s), oldest first"),
    el("thead", {}, el("tr", {}, ["#", "When", "What", "Who", "Source"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, records.map((r) => el("tr", {}, el("td", {}, r.seq), el("td", {}, when(r.occurred_at)),
      el("td", {}, r.type), el("td", {}, r.actor || "—"), el("td", {}, r.source || "—")))));
}

export async function render(main, { params }) {
  const verdict = el("div", { id: "verify-result", "aria-live": "polite" });
  const verify = action("Verify the chain now", async () => {
    verdict.replaceChildren(el("p", {}, "Verifying…"));
    const result = await call("/api/audit/audit/verify");
    verdict.replaceChildren(el("p", {}, badge(result.intact ? "intact" : "broken"), " ", result.records + " records" +
      (result.intact ? ": every hash follows from the one before it, and the head anchor matches." : "")),
    result.first_break ? fields(result.first_break) : null, result.anchor ? fields({ anchor_seq: result.anchor.seq, anchor_hash: result.anchor.hash }) : null);
  }, { id: "verify" });
  const history = el("div", { id: "history-result" });
  const lookup = form({
    title: "An entity's history", submit: "Show its history",
    fields: [{ name: "type", label: "Entity type", type: "select", options: TYPES, required: true, value: params[0] || "need" },
      { name: "id", label: "Its id", type: "text", required: true, value: params[1] || "" }],
    send: (values) => call("/api/audit/audit/entities/" + encodeURIComponent(values.type || "") + "/" + encodeURIComponent(values.id || "")),
    done: (answer) => history.replaceChildren(el("h3", {}, answer.entity), historyTable(answer.records)),
  });
  main.append(el("h1", {}, title), el("div", { class: "columns" },
    section("The hash chain", el("p", { class: "help" }, "Every event and every rejection is one record, chained by its hash."), el("p", {}, verify), verdict),
    section("An entity's history", lookup, history)));
  if (params[1]) lookup.requestSubmit();
}
