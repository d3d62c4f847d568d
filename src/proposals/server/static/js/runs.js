// The runs list: status and age of each run, open it, cancel it.

import { api } from "./api.js";
import { age, badge, countryName, fill, h, TERMINAL, uid } from "./dom.js";

const STATUSES = ["", "queued", "running", "completed", "completed_with_errors", "stopped_budget", "cancelled", "interrupted", "failed"];
const PAGE = 50;

/** Cancels a run after the user confirms; returns the updated record or null. */
export async function cancelRun(id) {
  if (!window.confirm("Cancel this run? Its finished calls are kept; the rest is stopped.")) return null;
  return api(`/v1/runs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
}

export function showRuns(main) {
  const filterId = uid("status");
  const status = h(
    "select",
    { id: filterId },
    STATUSES.map((s) => h("option", { value: s }, s ? s.replaceAll("_", " ") : "any status")),
  );
  const body = h("tbody");
  const note = h("p", { class: "muted", role: "status" });
  const more = h("button", { type: "button", hidden: true }, "Show more");
  let limit = PAGE;
  let timer = null;

  async function load() {
    const params = new URLSearchParams({ limit: String(limit) });
    if (status.value) params.set("status", status.value);
    try {
      const { runs } = await api(`/v1/runs?${params}`);
      fill(body, runs.map(row));
      fill(note, runs.length ? "" : "No runs yet: start one from New run.");
      more.hidden = runs.length < limit;
    } catch (err) {
      fill(note, h("span", { class: "error" }, `Cannot list runs: ${err.message}`));
    }
  }

  function row(run) {
    const request = run.request || {};
    const live = !TERMINAL.has(run.status);
    const cancel = live
      ? h("button", {
          type: "button",
          class: "danger small",
          "aria-label": `Cancel run ${run.id}`,
          onclick: async () => {
            try {
              if (await cancelRun(run.id)) await load();
            } catch (err) {
              window.alert(`Cannot cancel: ${err.message}`);
            }
          },
        }, "Cancel")
      : null;
    return h(
      "tr",
      { dataset: { run: run.id } },
      h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.id)}` }, request.brief || run.id)),
      h("td", {}, (request.countries || []).map((c) => h("abbr", { title: countryName(c) }, c, " "))),
      h("td", {}, badge(run.status), run.simulated ? h("span", { class: "tag sim small" }, "simulated") : null),
      h("td", { title: run.created_at }, age(run.created_at)),
      h("td", { class: "actions" }, cancel),
    );
  }

  status.addEventListener("change", () => {
    limit = PAGE;
    load();
  });
  more.addEventListener("click", () => {
    limit += PAGE;
    load();
  });
  fill(
    main,
    h(
      "section",
      { "aria-labelledby": "runs-title" },
      h("div", { class: "row between" },
        h("h1", { id: "runs-title" }, "Runs"),
        h("a", { class: "button primary", href: "#/new" }, "New run")),
      h("div", { class: "filters" }, h("label", { for: filterId }, "Status"), status),
      h("div", { class: "scroll" },
        h("table", { class: "list" },
          h("caption", { class: "sr-only" }, "Runs, newest first"),
          h("thead", {}, h("tr", {}, ["Brief", "Countries", "Status", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
          body)),
      note,
      more,
    ),
  );
  load();
  timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
