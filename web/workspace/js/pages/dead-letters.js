// Dead letters: messages a service parked (with the reason), to read and replay once the cause is
// fixed (audit: GET /audit/dead-letters, GET /audit/dead-letters/<id>, POST …/<id>/replay).

import { call } from "../api.js";
import { listView } from "../lists.js";
import { action, el, fields, notify, section, when } from "../ui.js";

export const title = "Dead letters";
const LETTERS = "/api/audit/audit/dead-letters";

export async function render(main) {
  const panel = el("div", { id: "dead-letter-panel" });
  const depth = el("p", { id: "dead-letter-depth", class: "help" });
  const letters = listView({
    label: "Parked messages (oldest first)",
    filters: [{ name: "queue", label: "Queue", type: "text", size: 14 }, { name: "type", label: "Type", type: "text", size: 14 }],
    load: async (filters) => {
      const answer = await call(LETTERS);
      depth.textContent = answer.depth + " message(s) parked; the first " + answer.dead_letters.length + " are listed.";
      return answer.dead_letters.filter((d) => (!filters.queue || (d.queue || "").includes(filters.queue)) &&
        (!filters.type || (d.type || "").includes(filters.type)));
    },
    key: (d) => d.id, empty: "No dead letters: every message was handled.",
    columns: [["Parked", (d) => when(d.failed_at)], ["Queue", (d) => d.queue], ["Type", (d) => d.type || "—"],
      ["Reason", (d) => d.reason], ["", (d) => [action("Show", () => show(d), { class: "secondary" }),
        action("Replay", () => replay(d))]]],
  });
  async function show(letter) {
    const full = await call(LETTERS + "/" + encodeURIComponent(letter.id));
    panel.replaceChildren(section("Dead letter " + letter.id,
      fields({ ...full, body: undefined, headers: undefined }),
      el("h3", {}, "Body"), el("pre", { class: "report", tabindex: "0" }, JSON.stringify(full.body, null, 2)),
      el("p", {}, action("Replay it", () => replay(letter)), " ",
        el("button", { type: "button", class: "secondary", onclick: () => panel.replaceChildren() }, "Close"))));
    panel.querySelector("h2").focus();
  }
  async function replay(letter) {
    try {
      await call(LETTERS + "/" + encodeURIComponent(letter.id) + "/replay", { method: "POST" });
      notify("Replayed " + letter.id + " to " + (letter.exchange || "its queue") + " " + (letter.routing_key || "") + ".", "ok");
      panel.replaceChildren();
    } catch (error) {
      notify("Not replayed: " + (error.body ? error.body.error : error.message), "error");
    }
    await letters.refresh();
  }
  main.append(el("h1", {}, title), el("p", { class: "help" }, "A replay sends the message as it is to where it came " +
    "from; fix its cause first (a missing reference, a service's bug). A message that fails again is parked again."),
    depth, panel, letters.node);
  return () => letters.stop();
}
