// Results of a finished run: proposals grouped by country and profile, sortable by score;
// each citation opens its excerpt; failed items with their reasons; Markdown and JSON
// downloads; a banner when the text is simulated.

import { api, ApiError } from "./api.js";
import { badge, countryName, download, duration, fill, h, num, uid, usd } from "./dom.js";

const SORTS = {
  rank: (a, b) => a.rank - b.rank,
  "score-desc": (a, b) => b.score - a.score || a.rank - b.rank,
  "score-asc": (a, b) => a.score - b.score || a.rank - b.rank,
};

function citationLabel(c) {
  const where = [c.page != null ? `p. ${c.page}` : null, c.section ? `§ ${c.section}` : null].filter(Boolean);
  return `${c.title}${where.length ? ` (${where.join(", ")})` : ""}`;
}

/** The dialog that shows one cited excerpt, loaded from the API. */
function excerptDialog() {
  const title = h("h2", { id: "excerpt-title" });
  const where = h("p", { class: "muted small", id: "excerpt-where" });
  const text = h("blockquote", { id: "excerpt-text" });
  const close = h("button", { type: "button", class: "primary" }, "Close");
  const dialog = h("dialog", { id: "excerpt", "aria-labelledby": "excerpt-title" }, title, where, text, h("div", { class: "row" }, close));
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
  async function open(citation) {
    fill(title, citation.title);
    const parts = (c) => [c.path, c.page != null ? `page ${c.page}` : null, c.section ? `section ${c.section}` : null,
      c.country ? `${c.country} (${countryName(c.country)})` : "global", (c.doc_type || "").replaceAll("_", " "), `chunk ${c.chunk_id}`];
    fill(where, parts(citation).filter(Boolean).join(" · "));
    fill(text, h("span", { class: "muted" }, "Loading the excerpt…"));
    dialog.showModal();
    close.focus();
    try {
      const hit = await api(`/v1/chunks/${citation.chunk_id}`); // {text, citation: {...}}
      const cited = { ...citation, ...(hit.citation || {}) };
      fill(title, cited.title);
      fill(where, parts(cited).filter(Boolean).join(" · "));
      fill(text, hit.text);
    } catch (err) {
      fill(text, h("span", { class: "error" }, err instanceof ApiError && err.status === 404
        ? "This excerpt is no longer stored (its document was deleted or re-ingested)."
        : `Cannot load the excerpt: ${err.message}`));
    }
  }
  return { dialog, open };
}

function section(label, content) {
  if (!content || (Array.isArray(content) && !content.length)) return null;
  return [h("dt", {}, label), h("dd", {}, Array.isArray(content) ? h("ul", {}, content.map((x) => h("li", {}, x))) : content)];
}

export async function showResults(main, runId) {
  const liveHref = `#/runs/${encodeURIComponent(runId)}`;
  let result;
  try {
    result = await api(`/v1/runs/${encodeURIComponent(runId)}/proposals`);
  } catch (err) {
    const text = err instanceof ApiError && (err.status === 404 || err.status === 409)
      ? "This run has no results yet."
      : `Cannot load the results: ${err.message}`;
    fill(main, h("p", { class: "error", role: "alert" }, text), h("a", { href: liveHref }, "Back to the run"));
    return null;
  }
  const { dialog, open } = excerptDialog();
  const sortId = uid("sort");
  const sort = h("select", { id: sortId },
    h("option", { value: "rank" }, "rank"),
    h("option", { value: "score-desc" }, "score, highest first"),
    h("option", { value: "score-asc" }, "score, lowest first"));
  const groups = h("div", { id: "proposal-groups" });
  const request = result.request || {};

  function card(p) {
    return h("article", { class: "proposal", dataset: { score: p.score } },
      h("header", { class: "row between" },
        h("h4", {}, `#${p.rank} ${p.title}`),
        h("span", { class: "score", title: p.score_reason }, `score ${p.score}`)),
      h("p", {}, p.summary),
      h("dl", {}, section("Value", p.value_proposition)),
      h("details", {}, h("summary", {}, "Features, regulation, feasibility, pricing, risks"), h("dl", {},
        section("Features", p.key_features),
        section("Regulation", p.regulatory_notes),
        section("Feasibility", p.feasibility),
        section("Pricing and positioning", p.pricing_and_positioning),
        section("Risks", p.risks),
        section("Why this score", p.score_reason))),
      p.citations.length
        ? h("div", { class: "citations" }, h("span", { class: "label" }, "Sources"),
            h("ol", {}, p.citations.map((c) => h("li", {},
              h("button", { type: "button", class: "link citation", dataset: { chunk: c.chunk_id }, onclick: () => open(c) }, citationLabel(c))))))
        : h("p", { class: "muted small" }, "No citation survived validation."));
  }

  function renderGroups() {
    const byPair = new Map();
    for (const p of result.proposals) {
      const key = `${p.country}\u0000${p.profile}`;
      if (!byPair.has(key)) byPair.set(key, []);
      byPair.get(key).push(p);
    }
    const countries = [...new Set(result.proposals.map((p) => p.country))];
    fill(groups, countries.map((country) => h("section", { class: "country", dataset: { country } },
      h("h2", {}, `${country} — ${countryName(country)}`),
      [...byPair.entries()].filter(([k]) => k.startsWith(`${country}\u0000`)).map(([k, list]) =>
        h("section", { class: "pair", dataset: { profile: k.split("\u0000")[1] } },
          h("h3", {}, k.split("\u0000")[1]),
          [...list].sort(SORTS[sort.value]).map(card))))));
    if (!result.proposals.length) fill(groups, h("p", { class: "muted" }, "This run produced no proposals."));
  }
  sort.addEventListener("change", renderGroups);

  const downloads = h("div", { class: "row" },
    h("button", {
      type: "button",
      id: "download-md",
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          const text = await api(`/v1/runs/${encodeURIComponent(runId)}/proposals`, { accept: "text/markdown" });
          download(`proposals-${runId}.md`, text, "text/markdown");
        } catch (err) {
          window.alert(`Cannot download: ${err.message}`);
        } finally {
          e.target.disabled = false;
        }
      },
    }, "Download Markdown"),
    h("button", {
      type: "button",
      id: "download-json",
      onclick: () => download(`proposals-${runId}.json`, JSON.stringify(result, null, 2), "application/json"),
    }, "Download JSON"));

  const u = result.usage || {};
  fill(main,
    h("section", { "aria-labelledby": "results-title" },
      h("div", { class: "row between wrap" },
        h("div", {},
          h("h1", { id: "results-title" }, `Results: ${request.brief || runId}`),
          h("p", { class: "muted small" }, badge(result.status), ` · ${result.proposals.length} proposals · ${num((u.prompt_tokens || 0) + (u.completion_tokens || 0))} tokens · ${usd(u.cost_usd)} · ${duration(result.elapsed_s)}`,
            result.stop_reason ? ` · stopped: ${result.stop_reason}` : "")),
        h("div", { class: "row wrap" }, h("a", { class: "button", href: liveHref }, "Run history"), downloads)),
      result.simulated
        ? h("p", { class: "banner sim", role: "note", id: "simulated-banner" },
            h("strong", {}, "SIMULATED"), " — this text was written by the offline simulator from the retrieved documents, not by a real model (", result.provider, "). The structure and the citations are real.")
        : null,
      result.failed.length
        ? h("section", { class: "card failed", "aria-labelledby": "failed-title" },
            h("h2", { id: "failed-title" }, `${result.failed.length} failed item${result.failed.length > 1 ? "s" : ""}`),
            h("p", { class: "muted small" }, "Each was retried and still failed; the rest of the run went on without it."),
            h("ul", { id: "failed-items" }, result.failed.map((f) => h("li", {}, h("strong", {}, f.item), ` (${f.node}): ${f.error_type}: ${f.error}`))))
        : null,
      result.warnings.length
        ? h("details", { class: "card" }, h("summary", {}, `${result.warnings.length} warnings`), h("ul", {}, result.warnings.map((w) => h("li", {}, w))))
        : null,
      h("div", { class: "filters" }, h("label", { for: sortId }, "Sort proposals by"), sort),
      groups),
    dialog);
  renderGroups();
  return () => { if (dialog.open) dialog.close(); };
}
