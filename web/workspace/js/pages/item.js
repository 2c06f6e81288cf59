// One item: a need, an offer, a match, a request, an alert or an expert, with its history from the
// audit log and, for a match or an alert, the steps this person may take. Pages and the matrix link
// here as #/item/<type>/<id>.

import { call } from "../api.js";
import { POLL_MS } from "../lists.js";
import { el, fields, notify, section } from "../ui.js";
import { alertSteps } from "./alerts.js";
import { historyTable } from "./audit.js";
import { stepButtons } from "./matches.js";

export const title = "Item";
const SOURCES = {
  need: (id) => "/api/needs/needs/" + id, offer: (id) => "/api/supply/offers/" + id,
  match: (id) => "/api/matching/matches/" + id, request: (id) => "/api/requests/requests/" + id,
  alert: (id) => "/api/matching/alerts/" + id, expert: (id) => "/api/supply/experts/" + id,
};
const LINKS = { need_id: "need", offer_id: "offer", match_id: "match", expert_id: "expert", request_id: "request",
  open_gap: "alert" };

export async function render(main, context) {
  const [type, id] = context.params;
  if (!SOURCES[type] || !id) {
    main.append(el("h1", {}, "Nothing to show"), el("p", {}, "Follow a link to a need, an offer, a match or a request."));
    return;
  }
  const panel = el("div", { id: "item-panel" });
  const body = el("div", { id: "item-body" });
  main.append(el("h1", {}, type[0].toUpperCase() + type.slice(1) + " " + id), panel, body);

  let last = null, timer = null;
  async function draw(again) {
    const item = await call(SOURCES[type](encodeURIComponent(id)));
    const entityType = type === "alert" ? item.alert : type;   // an alert's records name its duplication or gap
    let records = null, problem = null;
    try {
      records = (await call("/api/audit/audit/entities/" + entityType + "/" + encodeURIComponent(id))).records;
    } catch (error) {
      problem = "Its history cannot be shown: " + (error.body ? error.body.error : error.message);
    }
    const text = JSON.stringify([item, records]);
    if (again === true && text === last) return;   // unchanged: keep the page (and the focus) as it is
    last = text;
    const steps = type === "match" ? stepButtons(item, context.who, panel, draw)
      : type === "alert" && ["operator", "donor", "state"].includes(context.who.role) ? alertSteps(item, panel, draw) : [];
    body.replaceChildren(
      steps.length ? section("What you can do", el("p", {}, steps)) : null,
      section("Details", fields(item, LINKS)),
      section("History", records ? historyTable(records) : el("p", { class: "help" }, problem)));
  }
  try { await draw(); } catch (error) { notify(error.body ? error.body.error : error.message, "error"); }
  // the item as others change it (a proposal, a step): asked again while no form is open
  const poll = async () => {
    if (!document.hidden && !panel.childElementCount) await draw(true).catch(() => null);
    timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  return () => clearTimeout(timer);
}
