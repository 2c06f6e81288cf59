// The one module that talks to the services: the API key, fetch, and the errors they answer.
//
// Every call goes to /api/<service>/… on this origin (the gateway). The key is kept in
// sessionStorage only (web/README.md says why): it dies with the tab, and the matrix page
// (/api/matching/matrix/page, same origin) reads the same entry, so one sign-in serves both.

export const KEY_STORE = "tacoord.apiKey";

export class ApiError extends Error {
  // status 0: the service could not be reached. body: the JSON error (tacoord/responses.py):
  // {"error", "status", "fields": {field: [messages]}, "details", "allowed"?}
  constructor(status, body) {
    super(body.error || "HTTP " + status);
    this.status = status;
    this.body = body;
    this.fields = body.fields || {};
  }
}

export function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }
export function keepKey(key) { sessionStorage.setItem(KEY_STORE, key); }
export function forgetKey() { sessionStorage.removeItem(KEY_STORE); }

function url(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return path + (text ? "?" + text : "");
}

// call("/api/needs/needs", {query: {state: "KEN"}}); call(path, {method: "POST", body: {...}});
// a body that is a string or a Blob is sent as it is, with `type` as its Content-Type.
export async function call(path, { method = "GET", query, body, type } = {}) {
  const headers = { Authorization: "Bearer " + apiKey() };
  let payload;
  if (body instanceof Blob || typeof body === "string") {
    payload = body;
    headers["Content-Type"] = type || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url(path, query), { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, { error: "the service cannot be reached (" + error.message + ")" });
  }
  const text = await response.text();
  let data = text;
  if ((response.headers.get("Content-Type") || "").startsWith("application/json") && text) data = JSON.parse(text);
  if (!response.ok) {
    const error = new ApiError(response.status, typeof data === "object" ? data : { error: text || response.statusText });
    if (response.status === 401) document.dispatchEvent(new CustomEvent("tacoord:signed-out", { detail: error }));
    throw error;
  }
  return data;
}

// What to tell a person about an error (the field errors are shown next to the fields by forms.js).
export function explain(error) {
  if (!(error instanceof ApiError)) return String(error.message || error);
  const body = error.body;
  const parts = [body.error];
  if (body.details && body.details.length) parts.push(body.details.join("; "));
  if (body.allowed && body.allowed.length) parts.push("allowed: " + body.allowed.join(", "));
  const what = { 0: "Not reachable", 401: "Not signed in", 403: "Not allowed", 404: "Not found",
    409: "Not possible now", 413: "Too large", 422: "Please correct", 429: "Too many requests" }[error.status];
  return (what ? what + " (" + error.status + "): " : "Error " + error.status + ": ") + parts.join(" — ");
}
