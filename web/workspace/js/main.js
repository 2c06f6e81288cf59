// The workspace shell: sign-in, the pages a role has, and the router (#/<page>/<params…>).
//
// A page is a module in pages/ exporting `title` and `render(main, context)`; context has `who`
// (GET /api/needs/whoami: role, subject, actor, name), `params` (the rest of the address), `reference`
// (labels and choices, GET /api/matching/matrix/reference) and `go(hash)`. It may return a function
// run when the user leaves it (to stop its refreshes).

import { ApiError, apiKey, call, explain, forgetKey, keepKey } from "./api.js";
import { $, el, notify } from "./ui.js";

const MATRIX = "/api/matching/matrix/page";
const PAGES = {
  state: [["needs", "My needs"], ["requests", "My requests"], ["matches", "Matches on my needs"],
    ["coverage", "My coverage"], ["subscriptions", "Subscriptions"]],
  donor: [["offers", "My offers"], ["matches", "Matches on my offers"], ["alerts", "Alerts"],
    ["subscriptions", "Subscriptions"]],
  network: [["network", "Members"], ["workshops", "Workshops"], ["subscriptions", "Subscriptions"]],
  operator: [["alerts", "Alert worklist"], ["worklist", "Unmet priority needs"], ["reporting", "Reporting"],
    ["experts", "Expert vetting"], ["dead-letters", "Dead letters"], ["audit", "Audit"]],
  partner: [["reporting", "Reporting"]],
};
const ALWAYS = ["item"];   // an item's page (#/item/<type>/<id>), reached from links

let who = null, reference = null, leave = null;

async function loadReference() {
  if (!reference) reference = await call("/api/matching/matrix/reference");
  return reference;
}

function showSignIn(message, kind) {
  who = null;
  document.body.dataset.role = "";
  $("signin").hidden = false;
  $("session").hidden = true;
  $("nav").replaceChildren();
  $("page").replaceChildren();
  document.title = "Sign in — tacoord workspace";
  notify(message || "", kind);
  $("api-key").focus();
}

async function signIn(key) {
  keepKey(key);
  try {
    who = await call("/api/needs/whoami");
    await loadReference();
  } catch (error) {
    forgetKey();
    showSignIn(error instanceof ApiError && error.status === 401
      ? "That API key was refused (401). Check it, or ask an operator for one (tacoord credentials issue)."
      : "Could not sign in: " + explain(error), "error");
    return;
  }
  document.body.dataset.role = who.role;
  $("signin").hidden = true;
  $("session").hidden = false;
  $("who").textContent = who.role + " " + who.subject + (who.name ? " (" + who.name + ")" : "");
  const pages = PAGES[who.role] || [];
  $("nav").replaceChildren(el("ul", {},
    pages.map(([name, label]) => el("li", {}, el("a", { href: "#/" + name, "data-page": name }, label))),
    el("li", {}, el("a", { href: MATRIX + (who.role === "state" ? "?state=" + who.subject : "") }, "Matrix"))));
  notify("");
  if (!location.hash || location.hash === "#/") location.replace("#/" + (pages[0] ? pages[0][0] : "item"));
  else route();
}

async function route() {
  if (!who) return;
  if (leave) { leave(); leave = null; }
  notify("");
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const allowed = (PAGES[who.role] || []).map(([page]) => page).concat(ALWAYS);
  const main = $("page");
  for (const link of $("nav").querySelectorAll("a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!allowed.includes(name)) {
    main.replaceChildren(el("h1", {}, "Not a page for a " + who.role),
      el("p", {}, "Choose one of the pages above."));
    return;
  }
  const module = await import("./pages/" + name + ".js");
  document.title = module.title + " — tacoord workspace";
  main.replaceChildren();
  try {
    leave = await module.render(main, { who, params, reference, go: (hash) => { location.hash = hash; } }) || null;
  } catch (error) {
    main.append(el("p", { class: "notice error", role: "alert" }, explain(error)));
  }
  const heading = main.querySelector("h1");
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    $("api-key").value = "";
    if (!key) { showSignIn("Enter an API key (it looks like tck_…).", "error"); return; }
    signIn(key);
  });
  $("sign-out").addEventListener("click", () => {
    forgetKey();
    if (leave) { leave(); leave = null; }
    showSignIn("Signed out: the key is gone from this tab.", "info");
  });
  document.addEventListener("tacoord:signed-out", () => {
    if (!who) return;
    forgetKey();
    if (leave) { leave(); leave = null; }
    showSignIn("The API key is no longer accepted (401); sign in again.", "error");
  });
  window.addEventListener("hashchange", route);
  if (apiKey()) signIn(apiKey());
  else showSignIn();
});
