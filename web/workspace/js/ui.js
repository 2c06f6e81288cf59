// Small DOM helpers shared by the pages. Everything is built with textContent: no HTML from data.

export const $ = (id) => document.getElementById(id);

// el("button", {type: "button", onclick: fn, class: "x"}, "text", child, [more])
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let ids = 0;
export function uid(prefix) { ids += 1; return (prefix || "id") + "-" + ids; }

// The page's status line (a polite live region): what just happened.
export function notify(text, kind) {
  const box = $("notice");
  box.textContent = text || "";
  box.className = "notice" + (kind ? " " + kind : "");
  box.hidden = !text;
}

// A link to a workspace page: link("need", id) → #/item/need/<id>; link("#/needs", "My needs").
export function itemLink(type, id, text) {
  if (!id) return "—";
  return el("a", { href: "#/item/" + type + "/" + encodeURIComponent(id) }, text || id);
}

export function badge(status) {
  return el("span", { class: "badge status-" + String(status).replace(/[^a-z_]/g, "") }, String(status).replace(/_/g, " "));
}

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

export function list(values) { return (values || []).join(", ") || "—"; }

export function section(title, ...children) {
  const id = uid("h");
  return el("section", { "aria-labelledby": id, class: "card" }, el("h2", { id: id }, title), ...children);
}

// A definition list of an object's fields (skips internals); values that are ids link to their items.
export function fields(object, links) {
  const rows = [];
  for (const [key, value] of Object.entries(object || {})) {
    if (key.startsWith("_") || value === null || value === undefined || value === "") continue;
    let shown = typeof value === "object" ? JSON.stringify(value) : String(value);
    if (links && links[key] && value) shown = itemLink(links[key], value);
    rows.push(el("dt", {}, key.replace(/_/g, " ")), el("dd", {}, shown));
  }
  return el("dl", { class: "fields" }, rows);
}

// A button that runs an async action once at a time (disabled meanwhile).
export function action(label, run, attrs) {
  const button = el("button", { type: "button", ...(attrs || {}) }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { await run(button); } finally { button.disabled = false; }
  });
  return button;
}
