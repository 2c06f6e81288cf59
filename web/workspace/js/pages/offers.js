// A donor's offers: publish, edit, withdraw, and import an IATI activity file after reading its
// dry-run report (supply: POST/PATCH/DELETE /offers, POST /offers/import/iati[?dry_run=1]).

import { ApiError, call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, badge, el, itemLink, list, notify, section } from "../ui.js";
import { choices } from "./needs.js";

export const title = "My offers";
const OFFERS = "/api/supply/offers";

function offerFields(c, offer, who) {
  const o = offer || {};
  return [
    offer || who.role !== "donor" ? (offer ? null : { name: "provider", label: "Provider (IATI org id)", type: "text", required: true })
      : { name: "provider", type: "hidden", value: who.subject },
    { name: "provider_name", label: "Provider name", type: "text", value: o.provider_name },
    { name: "level", label: "Level", type: "select", options: [["bilateral", "bilateral"], ["regional", "regional"], ["global", "global"]],
      required: !offer, value: o.level },
    { name: "scope_states", label: "States reached (ISO3, comma-separated)", type: "list", value: o.scope_states, keepEmpty: !!offer },
    { name: "scope_groups", label: "Regional groups reached", type: "checkboxes", options: c.groups, value: o.scope_groups, keepEmpty: !!offer },
    { name: "articles", label: "UNCAC articles (comma-separated)", type: "list", numbers: true, value: o.articles, keepEmpty: !!offer },
    { name: "forms", label: "Forms of assistance", type: "checkboxes", options: c.forms, required: !offer, value: o.forms },
    { name: "capacity", label: "Capacity (engagements)", type: "number", min: 1, value: o.capacity },
    { name: "period_start", label: "From", type: "date", required: !offer, value: o.period_start },
    { name: "period_end", label: "Until (empty: open-ended)", type: "date", value: o.period_end },
    { name: "languages", label: "Languages (ISO 639-1)", type: "list", value: o.languages },
    { name: "status", label: "Status", type: "select", options: [["active", "active"], ["pipeline", "pipeline"], ["closed", "closed"]],
      value: o.status || "active" },
  ].filter(Boolean);
}

export async function render(main, { who, reference }) {
  const c = choices(reference);
  const panel = el("div", { id: "offer-panel" });
  const offers = listView({
    label: who.role === "donor" ? "Offers of " + who.subject : "Offers",
    filters: [
      { name: "status", label: "Status", type: "select", options: ["active", "pipeline", "closed", "withdrawn"].map((s) => [s, s]) },
      { name: "article", label: "Article", type: "select", options: c.articles },
      { name: "state", label: "Reaching State", type: "text", size: 4 },
      { name: "level", label: "Level", type: "select", options: [["bilateral", "bilateral"], ["regional", "regional"], ["global", "global"]] },
    ],
    load: (filters) => call(OFFERS, { query: { ...filters, provider: who.role === "donor" ? who.subject : undefined } })
      .then((a) => a.offers),
    key: (o) => o.offer_id,
    empty: "No offers yet: publish one, or import your IATI activities.",
    columns: [
      ["Offer", (o) => itemLink("offer", o.offer_id)], ["Level", (o) => o.level],
      ["Reaches", (o) => list((o.scope_states || []).concat(o.scope_groups || [])) === "—" ? "every State" : list(o.scope_states.concat(o.scope_groups))],
      ["Articles", (o) => list(o.articles) + (o.chapters && o.chapters.length ? " · ch. " + list(o.chapters) : "")],
      ["Forms", (o) => list(o.forms)], ["Period", (o) => o.period_start + " – " + (o.period_end || "open")],
      ["Status", (o) => badge(o.status)],
      ["", (o) => o.status === "withdrawn" ? "" : [action("Edit", () => edit(o)),
        action("Withdraw", () => withdraw(o), { class: "secondary" })]],
    ],
  });

  function show(heading, node) {
    panel.replaceChildren(section(heading, node));
    const first = panel.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  }
  const close = () => panel.replaceChildren();
  const path = (o) => OFFERS + "/" + encodeURIComponent(o.offer_id);

  function edit(offer) {
    show("Edit " + offer.offer_id, form({
      title: "Edit offer", submit: "Save changes", cancel: close, fields: offerFields(c, offer, who),
      send: (values) => call(path(offer), { method: "PATCH", body: values }),
      done: async () => { close(); notify("Offer " + offer.offer_id + " saved.", "ok"); await offers.refresh(); },
    }));
  }

  function withdraw(offer) {
    show("Withdraw " + offer.offer_id, form({
      title: "Withdraw offer", submit: "Withdraw the offer", cancel: close,
      fields: [{ name: "reason", label: "Why is it withdrawn?", type: "textarea", required: true }],
      send: (values) => {
        if (!values.reason) throw new ApiError(422, { error: "validation failed", fields: { reason: ["Say why: States matched to it read it."] } });
        return call(path(offer), { method: "DELETE", query: { reason: values.reason } });
      },
      done: async () => { close(); notify("Offer " + offer.offer_id + " withdrawn.", "ok"); await offers.refresh(); },
    }));
  }

  const publish = form({
    title: "Publish an offer", submit: "Publish the offer", fields: offerFields(c, null, who),
    send: (values) => call(OFFERS, { method: "POST", body: values }),
    done: async (offer, values, node) => { node.reset(); notify("Offer " + offer.offer_id + " published.", "ok"); await offers.refresh(); },
  });
  main.append(el("h1", {}, title), panel,
    el("div", { class: "columns" }, section("Publish an offer", publish), section("Import IATI activities", iati(offers))),
    offers.node);
  return () => offers.stop();
}

// IATI: read the dry run's report (nothing stored), then import the same file.
function iati(offers) {
  const input = el("input", { type: "file", id: "iati-file", accept: ".xml,application/xml,text/xml" });
  const report = el("div", { id: "iati-report", class: "report", "aria-live": "polite" });
  const importButton = el("button", { type: "button", id: "iati-import", hidden: true }, "Import these activities");
  let file = null;

  async function send(dryRun) {
    return call("/api/supply/offers/import/iati", { method: "POST", body: file, type: "application/xml",
      query: dryRun ? { dry_run: 1 } : {} });
  }
  function show(answer, dryRun) {
    const verb = dryRun ? "would be imported" : "imported";
    report.replaceChildren(
      el("p", { id: dryRun ? "iati-dry-summary" : "iati-summary" }, answer.activities + " activities: " + answer.imported + " " + verb +
        ", " + answer.updated + " updated, " + answer.unchanged + " unchanged, " + answer.skipped + " skipped"),
      el("table", { class: "list" }, el("caption", {}, dryRun ? "Dry run: nothing is stored yet" : "Imported"),
        el("thead", {}, el("tr", {}, ["#", "Activity", "Outcome", "Where · what", "Reason or warnings"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, answer.results.map((r) => el("tr", {},
          el("td", {}, r.position), el("td", {}, r.iati_identifier || "(no identifier)"),
          el("td", {}, r.offer_id ? [r.outcome, " → ", itemLink("offer", r.offer_id)] : r.outcome),
          el("td", {}, r.level ? r.level + ": " + (list(r.states.concat(r.regions)) === "—" ? "every State" : list(r.states.concat(r.regions))) +
            " · art. " + list(r.articles) + " · " + list(r.forms) : ""),
          el("td", {}, [r.reason, ...(r.warnings || [])].filter(Boolean).join("; ")))))));
  }
  const check = action("Check the file (dry run)", async () => {
    file = input.files[0];
    importButton.hidden = true;
    if (!file) { report.replaceChildren(el("p", { class: "form-error" }, "Choose an IATI XML file first.")); return; }
    try {
      show(await send(true), true);
      importButton.hidden = false;
      importButton.focus();
    } catch (error) {
      report.replaceChildren(el("p", { class: "form-error", role: "alert" }, "Not an importable IATI file: " +
        (error.body ? error.body.error : error.message)));
    }
  }, { id: "iati-check" });
  importButton.addEventListener("click", async () => {
    importButton.disabled = true;
    try {
      const answer = await send(false);
      show(answer, false);
      notify(answer.imported + " offer(s) imported, " + answer.updated + " updated from " + file.name + ".", "ok");
      importButton.hidden = true;
      await offers.refresh();
    } catch (error) {
      report.prepend(el("p", { class: "form-error", role: "alert" }, error.body ? error.body.error : error.message));
    } finally { importButton.disabled = false; }
  });
  input.addEventListener("change", () => { importButton.hidden = true; report.replaceChildren(); });
  return el("div", {}, el("label", { for: "iati-file" }, "IATI activity file (2.01–2.03 XML)"), input,
    el("p", { class: "help" }, "First a dry run says, per activity, what would be imported and why not; " +
      "then import. Only activities your organisation reports are imported."),
    el("p", {}, check, " ", importButton), report);
}
