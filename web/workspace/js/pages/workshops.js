// The workshops of a network: regional workshop requests that name it or its regional group
// (requests: GET /requests, scoped by the service to what this network may see).

import { call } from "../api.js";
import { listView } from "../lists.js";
import { el } from "../ui.js";
import { KINDS, REQUESTS, requestColumns } from "./requests.js";

export const title = "Workshops";

export async function render(main, { who }) {
  const workshops = listView({
    label: "Workshops in " + who.subject,
    filters: [{ name: "kind", label: "Kind", type: "select", options: KINDS, value: "regional_workshop" },
      { name: "status", label: "Status", type: "select", options: ["submitted", "under_review", "approved", "scheduled",
        "held", "declined", "cancelled"].map((s) => [s, s.replace("_", " ")]) },
      { name: "state", label: "Requested by (ISO3)", type: "text", size: 4 }],
    load: (filters) => call(REQUESTS, { query: filters }).then((a) => a.requests),
    key: (r) => r.request_id, empty: "No workshop has been requested in this network yet.",
    columns: requestColumns(who, null, null),
  });
  main.append(el("h1", {}, title),
    el("p", { class: "help" }, "Open a workshop to read its expected outcomes, its dates, the States and donors " +
      "matching proposed and its history."), workshops.node);
  return () => workshops.stop();
}
