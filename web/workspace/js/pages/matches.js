// Matches on my needs (a State) or my offers (a donor), and the steps a person takes on them
// (matching: GET /matches, POST /matches/<id>/transitions {"to", "reason"}).

import { call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, badge, el, itemLink, list, notify, section } from "../ui.js";

export const title = "Matches";
const MATCHES = "/api/matching/matches";

// Who may take which step, as services/matching/lifecycle.py MOVES says (the service checks every
// step again: a 403 or a 409 naming the allowed moves comes back otherwise).
const MOVES = {
  proposed: { accepted: ["provider"], declined: ["provider"], cancelled: ["provider", "state"] },
  accepted: { agreed: ["state"], declined: ["state"], cancelled: ["provider", "state"] },
  agreed: { in_delivery: ["provider"], cancelled: ["provider", "state"] },
  in_delivery: { delivered: ["provider", "state"], cancelled: ["provider", "state"] },
};
const LABELS = { accepted: "Accept", declined: "Decline", agreed: "Agree", in_delivery: "Start delivery",
  delivered: "Mark delivered", cancelled: "Cancel" };
const NEEDS_REASON = ["declined", "cancelled"];
// services/matching/lifecycle.py STATUSES; "active" is no stored status but the query for every one that
// stands (proposed to delivered).
const STATUSES = ["proposed", "accepted", "agreed", "in_delivery", "delivered", "declined", "cancelled",
  "retracted", "withdrawn"];
const STATUS_CHOICES = [["active", "standing (proposed to delivered)"], ...STATUSES.map((s) => [s, s.replace("_", " ")])];

export function sides(match, who) {
  if (who.role === "operator") return ["provider", "state"];
  return [who.role === "donor" && match.provider === who.subject ? "provider" : null,
    who.role === "state" && match.state === who.subject ? "state" : null].filter(Boolean);
}

export function moves(match, who) {
  const mine = sides(match, who);
  return Object.entries(MOVES[match.status] || {}).filter(([, by]) => by.some((s) => mine.includes(s))).map(([to]) => to);
}

// The buttons of a match's steps; a decline or a cancellation asks for its reason in `panel` first.
export function stepButtons(match, who, panel, done) {
  return moves(match, who).map((to) => action(LABELS[to], async () => {
    if (!NEEDS_REASON.includes(to)) {
      try { await take(match, to, {}); await done(); } catch (error) { notify(explainStep(error), "error"); }
      return;
    }
    panel.replaceChildren(section(LABELS[to] + " match " + match.match_id, form({
      title: LABELS[to] + " match", submit: LABELS[to] + " the match", cancel: () => panel.replaceChildren(),
      fields: [{ name: "reason", label: "Reason", type: "textarea", required: true,
        help: "The other side reads it; a declined or cancelled pair is never proposed again." }],
      send: (values) => take(match, to, values),
      done: async () => { panel.replaceChildren(); await done(); },
    })));
    panel.querySelector("textarea").focus();
  }, { class: NEEDS_REASON.includes(to) ? "secondary" : null, "data-step": to }));
}

async function take(match, to, values) {
  const moved = await call(MATCHES + "/" + encodeURIComponent(match.match_id) + "/transitions",
    { method: "POST", body: { to, ...values } });
  notify("Match " + match.match_id + " is now " + moved.status.replace("_", " ") + ".", "ok");
  return moved;
}

function explainStep(error) {
  return error.body && error.body.allowed ? error.body.error : (error.body ? error.body.error : error.message);
}

export async function render(main, { who }) {
  const panel = el("div", { id: "match-panel" });
  const mine = who.role === "state" ? { state: who.subject } : who.role === "donor" ? { provider: who.subject } : {};
  const matches = listView({
    label: who.role === "state" ? "Matches on the needs of " + (who.name || who.subject)
      : who.role === "donor" ? "Matches on the offers of " + who.subject : "Matches",
    filters: [
      { name: "status", label: "Status", type: "select", options: STATUS_CHOICES, value: "active" },
      ...(who.role === "operator" ? [{ name: "state", label: "State", type: "text", size: 4 },
        { name: "provider", label: "Provider", type: "text", size: 12 }] : []),
      { name: "need_id", label: "Need", type: "text", size: 16 },
    ],
    load: (filters) => call(MATCHES, { query: { ...filters, ...mine } }).then((a) => a.matches),
    key: (m) => m.match_id,
    empty: "No matches here yet: matching proposes them as needs and offers come in.",
    columns: [
      ["Match", (m) => itemLink("match", m.match_id)], ["Need", (m) => itemLink("need", m.need_id)],
      ["Offer or expert", (m) => m.offer_id ? itemLink("offer", m.offer_id) : "expert " + m.expert_id],
      ["Provider", (m) => m.provider || "—"], ["State", (m) => m.state], ["Article", (m) => m.article],
      ["Forms", (m) => list(m.forms)], ["Score", (m) => Number(m.score).toFixed(2)], ["Status", (m) => badge(m.status)],
      ["", (m) => stepButtons(m, who, panel, () => matches.refresh())],
    ],
  });
  main.append(el("h1", {}, who.role === "state" ? "Matches on my needs" : who.role === "donor" ? "Matches on my offers" : title),
    el("p", { class: "help" }, who.role === "state"
      ? "A donor accepts a proposal first; then you agree (or decline). Met means agreed or later."
      : "Accept a proposal (or decline it with a reason); the State then agrees. You start and finish the delivery."),
    panel, matches.node);
  return () => matches.stop();
}
