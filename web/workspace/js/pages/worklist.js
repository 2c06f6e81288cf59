// Unmet priority needs, ranked (matching: GET /worklist): open needs with no agreed match, heaviest first.

import { call } from "../api.js";
import { listView } from "../lists.js";
import { badge, el, itemLink, list } from "../ui.js";

export const title = "Unmet priority needs";

export async function render(main, { reference }) {
  const worklist = listView({
    label: "Unmet needs, ranked",
    filters: [
      { name: "priority", label: "Priority", type: "select", options: [["1", "1"], ["2", "2"], ["3", "3"]], value: "1" },
      { name: "status", label: "Status", type: "select", options: [["unmatched", "no match at all"], ["proposed", "proposed, not agreed"]] },
      { name: "regional_group", label: "Regional group", type: "select", options: reference.regional_groups.map((g) => [g.id, g.name]) },
      { name: "chapter", label: "Chapter", type: "select", options: reference.chapters.map((c) => [c.number, c.roman]) },
      { name: "state", label: "State", type: "text", size: 4 },
    ],
    load: (filters) => call("/api/matching/worklist", { query: filters }).then((a) => a.needs),
    key: (n) => n.need_id, empty: "No unmet need matches these filters.",
    columns: [["Rank", (n) => n.rank], ["Need", (n) => itemLink("need", n.need_id)], ["State", (n) => n.state],
      ["Article", (n) => n.article], ["Priority", (n) => n.priority], ["Forms", (n) => list(n.forms)],
      ["Status", (n) => badge(n.status)], ["Matches", (n) => n.matches], ["Age (days)", (n) => n.age_days],
      ["Gap alert", (n) => n.open_gap ? itemLink("alert", n.open_gap) : "—"]],
  });
  main.append(el("h1", {}, title), el("p", { class: "help" }, "Ranked by priority, the chapter's emphasis and age. " +
    "A need with proposals but no agreement is still unmet."), worklist.node);
  return () => worklist.stop();
}
