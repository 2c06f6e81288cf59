// One item: a need, an offer, a match, a request, an alert or an expert, with its history from the
// audit log and, for a match or an alert, the steps this person may take. Pages and the matrix link
// here as #/item/<type>/<id>.

import { call } from "../api.js";
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

  async function draw() {
    const item = await call(SOURCES[type](encodeURIComponent(id)));
    const steps = type === "match" ? stepButtons(item, context.who, panel, draw)
      : type === "alert" && ["operator", "donor", "state"].includes(context.who.role) ? alertSteps(item, panel, draw) : [];
    let history = null;
    try {
      const entity = type === "alert" ? item.alert + ":" + id : type + ":" + id;
      const [entityType, entityId] = entity.split(/:(.*)/);
      history = historyTable((await call("/api/audit/audit/entities/" + entityType + "/" + encodeURIComponent(entityId))).records);
    } catch (error) {
      history = el("p", { class: "help" }, "Its history cannot be shown: " + (error.body ? error.body.error : error.message));
    }
    body.replaceChildren(
      steps.length ? section("What you can do", el("p", {}, steps)) : null,
      section("Details", fields(item, LINKS)), section("History", history));
  }
  try { await draw(); } catch (error) { notify(error.body ? error.body.error : error.message, "error"); }
}
