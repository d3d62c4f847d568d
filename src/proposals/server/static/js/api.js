// The HTTP API of `proposals serve`, with the API key of this browser session.

const KEY = "proposals.apiKey";

/** An HTTP error with FastAPI's `detail` (a string, or a list of {loc, msg} for 422). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : ApiError.describe(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }

  static describe(detail) {
    if (!Array.isArray(detail)) return detail ? JSON.stringify(detail) : "";
    return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }

  /** Field errors of a 422 as [{path: ["options", "themes"], msg}], "body" stripped. */
  fieldErrors() {
    if (!Array.isArray(this.detail)) return [];
    return this.detail.map((d) => ({
      path: (d.loc || []).filter((part, i) => !(i === 0 && part === "body")),
      msg: d.msg,
    }));
  }
}

export const apiKey = () => sessionStorage.getItem(KEY);
export const setApiKey = (key) => sessionStorage.setItem(KEY, key);
export const clearApiKey = () => sessionStorage.removeItem(KEY);

/**
 * Calls the API. `json` is sent as a JSON body, `form` as multipart; `accept` picks the
 * answer's type ("text/markdown" returns text). Throws ApiError; a 401 also fires
 * "proposals:unauthorized" on window so the page can ask for a key again.
 */
export async function api(path, { method = "GET", json, form, accept, signal } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (accept) headers.Accept = accept;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!res.ok) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).detail ?? detail;
    } catch {
      // not JSON: keep the status text
    }
    if (res.status === 401) window.dispatchEvent(new CustomEvent("proposals:unauthorized"));
    if (res.status === 413 && typeof detail !== "string") detail = "the upload is too large";
    throw new ApiError(res.status, detail);
  }
  if (res.status === 204) return null;
  if (accept && !accept.includes("json")) return res.text();
  return res.json();
}
