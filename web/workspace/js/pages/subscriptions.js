// My subscriptions: what notify tells me, and how (notify: POST/GET/PATCH/DELETE /subscriptions,
// POST /subscriptions/<id>/test, GET /subscriptions/<id>/deliveries).

import { call } from "../api.js";
import { form } from "../forms.js";
import { listView } from "../lists.js";
import { action, badge, el, fields, list, notify, section, when } from "../ui.js";

export const title = "Subscriptions";
const SUBSCRIPTIONS = "/api/notify/subscriptions";

function target(s) { return s.url || s.email || (s.channel === "amqp" ? "queue notify.sub." + s.subscription_id : "—"); }

export async function render(main, { who }) {
  const panel = el("div", { id: "subscription-panel" });
  const path = (s) => SUBSCRIPTIONS + "/" + encodeURIComponent(s.subscription_id);
  const subscriptions = listView({
    label: "Subscriptions of " + who.actor,
    filters: [
      { name: "status", label: "Status", type: "select", options: [["active", "active"], ["paused", "paused"], ["unsubscribed", "unsubscribed"]] },
      { name: "channel", label: "Channel", type: "select", options: [["webhook", "webhook"], ["email", "e-mail"], ["amqp", "AMQP queue"]] },
    ],
    load: (filters) => call(SUBSCRIPTIONS, { query: filters }).then((a) => a.subscriptions),
    key: (s) => s.subscription_id,
    empty: "No subscriptions yet: create one to hear of matches, gaps, duplications and workshops.",
    columns: [
      ["Subscription", (s) => s.subscription_id], ["Label", (s) => s.label || "—"], ["Channel", (s) => s.channel],
      ["Sent to", target], ["Types", (s) => list(s.filter && s.filter.types)], ["Digest", (s) => s.digest ? "daily" : "each event"],
      ["Status", (s) => badge(s.status)],
      ["", (s) => [
        action("Test-send", async () => {
          const sent = await call(path(s) + "/test", { method: "POST" }).catch((e) => ({ ok: false, error: e.body ? e.body.error : e.message }));
          notify(sent.ok ? "Test notification delivered to " + target(s) + " (" + sent.latency_ms + " ms)."
            : "The test notification failed: " + sent.error, sent.ok ? "ok" : "error");
          if (panel.dataset.showing === s.subscription_id) await deliveries(s);
        }, { "data-action": "test" }),
        s.status === "active" || s.status === "paused" ? action(s.status === "active" ? "Pause" : "Resume", async () => {
          const changed = await call(path(s), { method: "PATCH", body: { status: s.status === "active" ? "paused" : "active" } });
          notify("Subscription " + s.subscription_id + " is " + changed.status + ".", "ok");
          await subscriptions.refresh();
        }, { class: "secondary", "data-action": "pause" }) : null,
        action("Deliveries", () => deliveries(s), { class: "secondary", "data-action": "deliveries" }),
        action("Delete", async () => {
          await call(path(s), { method: "DELETE" });
          notify("Subscription " + s.subscription_id + " deleted.", "ok");
          if (panel.dataset.showing === s.subscription_id) panel.replaceChildren();
          await subscriptions.refresh();
        }, { class: "danger", "data-action": "delete" }),
      ]],
    ],
  });

  async function deliveries(s) {
    panel.dataset.showing = s.subscription_id;
    const found = listView({
      label: "Deliveries of " + s.subscription_id + " (newest first)",
      filters: [{ name: "status", label: "Status", type: "select", options: [["delivered", "delivered"], ["failed", "failed"], ["pending", "pending"]] }],
      load: (filters) => call(path(s) + "/deliveries").then((a) => a.deliveries.filter((d) => !filters.status || d.status === filters.status)),
      key: (d) => d.notification_id, empty: "Nothing sent yet.",
      columns: [["When", (d) => when(d.finished_at || d.created_at)], ["Event", (d) => d.event_type + (d.test ? " (test)" : "")],
        ["Status", (d) => badge(d.status)], ["Attempts", (d) => d.attempts], ["Error", (d) => d.last_error || "—"]],
    });
    panel.replaceChildren(section("Deliveries", found.node,
      el("p", {}, el("button", { type: "button", class: "secondary", onclick: () => { found.stop(); panel.replaceChildren(); delete panel.dataset.showing; } }, "Close"))));
  }

  const created = el("div", { id: "subscription-created", "aria-live": "polite" });
  const create = form({
    title: "New subscription", submit: "Subscribe",
    fields: [
      { name: "channel", label: "Channel", type: "select", required: true,
        options: [["webhook", "webhook (HTTPS POST, signed)"], ["email", "e-mail"], ["amqp", "AMQP queue of my own"]] },
      { name: "url", label: "Webhook URL", type: "url", placeholder: "https://…" },
      { name: "email", label: "E-mail address", type: "email" },
      { name: "label", label: "Label", type: "text" },
      { name: "filter.types", label: "Event types (empty: all)", type: "list", placeholder: "match.*, duplication.detected" },
      { name: "filter.states", label: "Only these States (ISO3)", type: "list" },
      { name: "filter.articles", label: "Only these articles", type: "list", numbers: true },
      { name: "digest", label: "One daily digest instead of a message per event", type: "checkbox" },
    ],
    send: (values) => call(SUBSCRIPTIONS, { method: "POST", body: values }),
    done: async (answer, values, node) => {
      node.reset();
      notify("Subscribed: " + answer.subscription_id + ".", "ok");
      const shown = { subscription_id: answer.subscription_id, unsubscribe_url: answer.unsubscribe_url };
      if (answer.secret) shown.secret = answer.secret + " (shown once: keep it to check the signatures)";
      if (answer.queue) shown.queue = answer.queue;
      created.replaceChildren(fields(shown));
      await subscriptions.refresh();
    },
  });
  main.append(el("h1", {}, title), panel,
    el("div", { class: "columns" }, section("New subscription", create, created)), subscriptions.node);
  return () => subscriptions.stop();
}
