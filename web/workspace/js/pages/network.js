// A network's members: the States (and donors) in it, from the directory of coordination networks
// (requests: GET /networks/<id>) or, for a UN regional group, notify's built-in networks.

import { ApiError, call } from "../api.js";
import { listView } from "../lists.js";
import { el, fields, section } from "../ui.js";

export const title = "Members";

async function entry(id) {
  try {
    return await call("/api/requests/networks/" + encodeURIComponent(id));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    return call("/api/notify/networks/" + encodeURIComponent(id));   // the five UN regional groups
  }
}

export async function render(main, { who, reference }) {
  const network = await entry(who.subject);
  const names = Object.fromEntries(reference.states.map((s) => [s.iso3, s]));
  const members = listView({
    label: "Member States",
    filters: [{ name: "q", label: "Name or ISO3 contains", type: "text", size: 12 }],
    load: async (filters) => (await entry(who.subject)).states
      .map((iso3) => ({ iso3, name: names[iso3] ? names[iso3].name : iso3, group: names[iso3] ? names[iso3].regional_group : "" }))
      .filter((s) => !filters.q || (s.iso3 + " " + s.name).toLowerCase().includes(filters.q.toLowerCase())),
    key: (s) => s.iso3,
    columns: [["ISO3", (s) => s.iso3], ["State", (s) => s.name], ["Regional group", (s) => s.group || "—"],
      ["", (s) => el("a", { href: "/api/matching/matrix/page?state=" + s.iso3 }, "in the matrix")]],
  });
  const about = { name: network.name, kind: network.kind || (network.builtin ? "UN regional group" : ""),
    donors: (network.donors || []).join(", "), focus_articles: (network.focus_articles || []).join(", "),
    website: network.website, status: network.status, description: network.description };
  main.append(el("h1", {}, network.name || who.subject), section("The network", fields(about)), members.node);
  return () => members.stop();
}
