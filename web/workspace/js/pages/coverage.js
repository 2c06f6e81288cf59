// A State's coverage in the needs-vs-supply matrix: per article, its open needs, how many are met,
// the offers reaching it (matching: GET /matrix?state=), with a way into the matrix page.

import { call } from "../api.js";
import { listView } from "../lists.js";
import { badge, el } from "../ui.js";

export const title = "My coverage";
const MATRIX_PAGE = "/api/matching/matrix/page";

export async function render(main, { who, reference }) {
  const state = who.role === "state" ? who.subject : "";
  const articles = Object.fromEntries(reference.articles.map((a) => [a.number, a.title]));
  const coverage = listView({
    label: "Articles × " + (who.name || state),
    filters: [
      { name: "chapter", label: "Chapter", type: "select", options: reference.chapters.map((c) => [c.number, c.roman + " — " + c.title]) },
      { name: "status", label: "Status", type: "select", options: reference.statuses.map((s) => [s.id, s.label]) },
    ],
    load: (filters) => call("/api/matching/matrix", { query: { ...filters, state, rows: "article", cols: "state" } })
      .then((a) => a.cells),
    key: (c) => c.row,
    empty: "No open need and no offer reaches this State yet.",
    columns: [
      ["Article", (c) => c.row + " — " + (articles[c.row] || "")], ["Coverage", (c) => badge(c.coverage || c.status)],
      ["Duplicated", (c) => c.duplicated ? "yes" : "no"], ["Open needs", (c) => c.needs], ["Met", (c) => c.matched_needs],
      ["Offers reaching it", (c) => c.offers],
      ["", (c) => el("a", { href: MATRIX_PAGE + "?state=" + state + "&article=" + c.row }, "in the matrix")],
    ],
  });
  main.append(el("h1", {}, title),
    el("p", {}, "Met means a match agreed (or in delivery or delivered), never only proposed. ",
      el("a", { href: MATRIX_PAGE + "?state=" + state }, "Open the whole matrix for " + (who.name || state))),
    coverage.node);
  return () => coverage.stop();
}
