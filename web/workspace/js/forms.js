// Forms from a list of fields, sent to an API; its 422 field errors are shown next to the fields.
//
//   form({fields: [{name: "article", label: "UNCAC article", type: "number"}, …], submit: "File the need",
//         send: (values) => call("/api/needs/needs", {method: "POST", body: values}), done: (answer) => …})
//
// Field types: text, textarea, number, date, email, url, select (options [[value, label]]), checkboxes
// (an array of the checked values), checkbox (true or false), list (comma-separated → array; `numbers: true` for integers),
// file (send gets the File), hidden. A dotted name ("filter.states") builds a nested object. Values left
// empty are not sent. The browser does not validate (novalidate): the API's own messages are shown,
// under the field they name ("fields" of the error body, tacoord/responses.py); the rest above the button.

import { ApiError, explain } from "./api.js";
import { el, uid } from "./ui.js";

function control(field, id, describedBy) {
  const common = { id: id, name: field.name, "aria-describedby": describedBy, "aria-required": field.required ? "true" : null };
  const value = field.value === undefined || field.value === null ? "" : field.value;
  if (field.type === "select") {
    const select = el("select", common, field.required ? null : el("option", { value: "" }, field.blank || "—"),
      field.options.map(([v, label]) => el("option", { value: v }, label)));
    // No value: a required select keeps its first choice (setting "" would select nothing at all).
    if (value !== "") select.value = String(value);
    return select;
  }
  if (field.type === "textarea") return el("textarea", { ...common, rows: field.rows || 3 }, String(value));
  if (field.type === "checkbox") return el("input", { ...common, type: "checkbox", checked: !!field.value });
  if (field.type === "checkboxes") {
    const chosen = new Set((field.value || []).map(String));
    return el("fieldset", { id: id, class: "choices", "aria-describedby": describedBy },
      el("legend", {}, field.label + (field.required ? " *" : "")),
      field.options.map(([v, label]) => el("label", {},
        el("input", { type: "checkbox", name: field.name, value: v, checked: chosen.has(String(v)) }), " " + label)));
  }
  const type = { list: "text", number: "number", date: "date", email: "email", url: "url", file: "file",
    hidden: "hidden" }[field.type] || "text";
  const shown = field.type === "list" && Array.isArray(value) ? value.join(", ") : value;
  return el("input", { ...common, type: type, value: type === "file" ? null : String(shown), accept: field.accept,
    min: field.min, max: field.max, step: field.step, placeholder: field.placeholder, autocomplete: "off" });
}

function fieldBlock(field) {
  const id = uid("f-" + field.name.replace(/\W/g, "-"));
  const errorId = id + "-error", helpId = id + "-help";
  const describedBy = [errorId, field.help ? helpId : null].filter(Boolean).join(" ");
  const input = control(field, id, describedBy);
  if (field.type === "hidden") return { node: input, field, input, error: null };
  const error = el("p", { id: errorId, class: "field-error", hidden: true });
  const label = field.type === "checkboxes" ? null : el("label", { for: id }, field.label + (field.required ? " *" : ""));
  const help = field.help ? el("p", { id: helpId, class: "help" }, field.help) : null;
  return { node: el("div", { class: "field field-" + field.type }, label, input, help, error), field, input, error };
}

function valueOf(block) {
  const { field, input } = block;
  if (field.type === "checkboxes") return [...input.querySelectorAll("input:checked")].map((i) => i.value);
  if (field.type === "file") return input.files[0] || undefined;
  if (field.type === "checkbox") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return undefined;
  if (field.type === "number") return Number(raw);
  if (field.type === "select" && field.numbers) return Number(raw);
  if (field.type === "list") {
    const items = raw.split(/[,;\s]+/).filter(Boolean);
    return field.numbers ? items.map(Number) : items;
  }
  return raw;
}

export function readValues(blocks) {
  const values = {};
  for (const block of blocks) {
    const value = valueOf(block);
    if (value === undefined || (Array.isArray(value) && !value.length && !block.field.keepEmpty)) continue;
    const path = block.field.name.split(".");
    let target = values;
    for (const part of path.slice(0, -1)) target = target[part] = target[part] || {};
    target[path[path.length - 1]] = value;
  }
  return values;
}

// {"filter": {"states": {"0": ["…"]}}} → [["filter.states.0", ["…"]]]
export function flatten(fields, prefix) {
  const found = [];
  for (const [key, value] of Object.entries(fields || {})) {
    const path = prefix ? prefix + "." + key : key;
    if (Array.isArray(value)) found.push([path, value.map(String)]);
    else if (value && typeof value === "object") found.push(...flatten(value, path));
    else found.push([path, [String(value)]]);
  }
  return found;
}

export function showErrors(formNode, blocks, error) {
  clearErrors(formNode, blocks);
  const general = [];
  let first = null;
  for (const [path, messages] of flatten(error instanceof ApiError ? error.fields : {})) {
    const block = blocks.filter((b) => b.error && (path === b.field.name || path.startsWith(b.field.name + ".")))
      .sort((a, b) => b.field.name.length - a.field.name.length)[0];
    if (!block) { general.push((path === "_schema" ? "" : path + ": ") + messages.join(" ")); continue; }
    block.error.textContent = (block.error.textContent ? block.error.textContent + " " : "") + messages.join(" ");
    block.error.hidden = false;
    block.input.setAttribute("aria-invalid", "true");
    first = first || block.input;
  }
  const box = formNode.querySelector(".form-error");
  box.textContent = general.length || !first ? [explain(error), ...general].join(" · ") : "Please correct the fields marked below.";
  box.hidden = false;
  const focusable = first && first.tagName === "FIELDSET" ? first.querySelector("input") : first;
  (focusable || box).focus();
}

export function clearErrors(formNode, blocks) {
  for (const block of blocks) {
    if (!block.error) continue;
    block.error.textContent = "";
    block.error.hidden = true;
    block.input.removeAttribute("aria-invalid");
  }
  const box = formNode.querySelector(".form-error");
  box.textContent = "";
  box.hidden = true;
}

// A form that sends its values with `send(values)` and hands the answer to `done(answer, values)`.
export function form({ fields, submit, send, done, title, cancel, className }) {
  const blocks = fields.map(fieldBlock);
  const button = el("button", { type: "submit" }, submit || "Save");
  const node = el("form", { novalidate: true, class: "api-form " + (className || ""), "aria-label": title || submit },
    blocks.map((b) => b.node),
    el("p", { class: "form-error", role: "alert", tabindex: "-1", hidden: true }),
    el("div", { class: "form-actions" }, button,
      cancel ? el("button", { type: "button", class: "secondary", onclick: cancel }, "Cancel") : null));
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(node, blocks);
    button.disabled = true;
    const values = readValues(blocks);
    try {
      const answer = await send(values);
      if (done) await done(answer, values, node);
    } catch (error) {
      showErrors(node, blocks, error);
    } finally {
      button.disabled = false;
    }
  });
  node.blocks = blocks;
  return node;
}
