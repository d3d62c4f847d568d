// Entry point: sign-in, the header, and a hash router over the views.

import { api, ApiError, apiKey, clearApiKey, setApiKey } from "./api.js";
import { fill, h, uid } from "./dom.js";
import { showDocuments } from "./documents.js";
import { showNewRun } from "./newrun.js";
import { showResults } from "./results.js";
import { showRun } from "./live.js";
import { showRuns } from "./runs.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
const provider = document.getElementById("provider");

/** What `GET /v1/meta` said: countries, doc types, option defaults, provider, auth. */
export const meta = { countries: [], corpus_countries: [], doc_types: [], run_options: {}, provider: "", simulated: false };

const routes = [
  [/^#\/runs\/([^/]+)\/results$/, (m) => showResults(main, decodeURIComponent(m[1]))],
  [/^#\/runs\/([^/]+)$/, (m) => showRun(main, decodeURIComponent(m[1]))],
  [/^#\/runs$/, () => showRuns(main)],
  [/^#\/new$/, () => showNewRun(main, meta)],
  [/^#\/documents$/, () => showDocuments(main, meta)],
];

let leave = null;
let signedIn = false;

async function route() {
  if (!signedIn) return;
  if (leave) {
    leave();
    leave = null;
  }
  const hash = location.hash || "#/runs";
  for (const link of nav.querySelectorAll("a")) {
    const current = hash === link.getAttribute("href") || hash.startsWith(`${link.getAttribute("href")}/`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const found = routes.find(([pattern]) => pattern.test(hash));
  if (!found) {
    location.replace("#/runs");
    return;
  }
  const [pattern, view] = found;
  fill(main);
  leave = (await view(hash.match(pattern))) || null;
}

/** Reloads /v1/meta into `meta` (views call it after uploads change the countries). */
export async function refreshMeta() {
  Object.assign(meta, await api("/v1/meta"));
  fill(
    provider,
    meta.simulated ? h("span", { class: "tag sim" }, "SIMULATED") : null,
    meta.provider ? h("span", { class: "muted" }, meta.provider) : null,
  );
  return meta;
}

function showSignIn(message) {
  signedIn = false;
  if (leave) {
    leave();
    leave = null;
  }
  nav.hidden = true;
  signout.hidden = true;
  const id = uid("key");
  const error = h("p", { class: "error", id: `${id}-err`, role: "alert" }, message || "");
  const input = h("input", {
    id,
    name: "key",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": `${id}-err`,
  });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "This server needs an API key (from ", h("code", {}, "proposals keys create"), "). It is kept for this browser tab only."),
    h("label", { for: id }, "API key"),
    input,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    await start();
  });
  fill(main, form);
  input.focus();
}

async function start() {
  try {
    await refreshMeta();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const hadKey = Boolean(apiKey());
      clearApiKey();
      showSignIn(hadKey ? "That key was refused: check it and try again." : "");
      return;
    }
    fill(main, h("p", { class: "error", role: "alert" }, `Cannot load the page: ${err.message}`));
    return;
  }
  signedIn = true;
  nav.hidden = false;
  signout.hidden = !apiKey();
  await route();
}

signout.addEventListener("click", () => {
  clearApiKey();
  showSignIn("Signed out.");
});
window.addEventListener("proposals:unauthorized", () => {
  if (signedIn && apiKey()) {
    clearApiKey();
    showSignIn("Your key was refused: sign in again.");
  }
});
window.addEventListener("hashchange", () => route());
// The skip link moves focus to the content without touching the hash (the router's).
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
start();
