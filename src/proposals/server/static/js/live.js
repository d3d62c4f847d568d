// The live run view: graph with node states and counts, usage, a chart of calls in flight
// and throughput, elapsed and estimated time left, and a filterable event log. It replays the
// run's whole history, then follows it live through RunStream.

import { api, ApiError } from "./api.js";
import { drawChart } from "./chart.js";
import { age, badge, countryName, duration, fill, h, num, TERMINAL, uid, usd } from "./dom.js";
import { GRAPH, RunModel } from "./model.js";
import { cancelRun } from "./runs.js";
import { RunStream } from "./stream.js";

const MAX_ROWS = 5000;
const FILTERS = {
  all: () => true,
  progress: (e) => /^(run_|node_)/.test(e.type),
  batches: (e) => e.type.startsWith("batch_"),
  calls: (e) => e.type === "call",
  problems: (e) => e.type === "item_failed" || e.type === "warning" || (e.type === "call" && e.phase !== "started" && e.phase !== "finished"),
  proposals: (e) => e.type === "proposal",
};
const FILTER_LABELS = { all: "all events", progress: "run and nodes", batches: "batches", calls: "LLM calls", problems: "failures and warnings", proposals: "proposals" };

/** One line of text describing an event, for the log. */
function describe(e) {
  switch (e.type) {
    case "run_started":
      return `${e.resumed ? "resumed" : "started"}: ${e.pairs} country × profile pairs, ${e.themes} themes, ${e.provider}`;
    case "run_finished":
      return `${e.status.replaceAll("_", " ")}: ${e.proposals} proposals, ${e.failed} failed${e.error ? ` — ${e.error}` : ""}`;
    case "node_started":
      return `${e.node} started (${e.total})`;
    case "node_finished":
      return `${e.node} finished: ${e.done} done, ${e.failed} failed`;
    case "batch_started":
      return `${e.node} batch ${e.batch}: ${e.items} items, ${num(e.tokens)} tokens`;
    case "batch_finished":
      return `${e.node} batch ${e.batch} ${e.ok ? "done" : "failed"}`;
    case "call":
      return `${e.node || "call"} ${e.phase}${e.cached ? " (cached)" : ""}${e.detail ? `: ${e.detail}` : ""} — ${e.in_flight} in flight`;
    case "item_failed":
      return `${e.failure.item}: ${e.failure.error_type}: ${e.failure.error}`;
    case "warning":
      return `${e.kind}: ${e.message}`;
    case "proposal":
      return `${e.proposal.country} / ${e.proposal.profile} #${e.proposal.rank}: ${e.proposal.title} (score ${e.proposal.score})`;
    default:
      return JSON.stringify(e);
  }
}

function stat(label, value) {
  return h("div", { class: "stat" }, h("span", { class: "label" }, label), value);
}

export async function showRun(main, runId) {
  let record;
  try {
    record = await api(`/v1/runs/${encodeURIComponent(runId)}`);
  } catch (err) {
    const text = err instanceof ApiError && err.status === 404 ? "There is no such run." : `Cannot load the run: ${err.message}`;
    fill(main, h("p", { class: "error", role: "alert" }, text), h("a", { href: "#/runs" }, "All runs"));
    return null;
  }
  const model = new RunModel();
  const resultsHref = `#/runs/${encodeURIComponent(runId)}/results`;
  const statusSlot = h("span", { id: "run-status" }, badge(record.status));
  const connection = h("span", { id: "connection", class: "conn", role: "status", "aria-live": "polite" });
  const resultsLink = h("a", { class: "button primary", href: resultsHref, id: "results-link", hidden: !TERMINAL.has(record.status) }, "Results");
  const reconnect = h("button", { type: "button", id: "reconnect" }, "Reconnect");
  const cancel = h("button", { type: "button", class: "danger", hidden: TERMINAL.has(record.status) }, "Cancel run");
  const request = record.request || {};

  // figures
  const v = Object.fromEntries(["elapsed", "left", "tokens", "cost", "calls", "inflight", "proposals"].map((k) => [k, h("strong", { id: `stat-${k}` }, "–")]));
  const graph = h("div", { class: "graph", id: "graph", role: "list", "aria-label": "Run graph" });
  const nodeEls = {};
  GRAPH.forEach((column, i) => {
    if (i) graph.append(h("span", { class: "arrow", "aria-hidden": "true" }, "→"));
    graph.append(h("div", { class: "column" }, column.map((name) => {
      const el = h("div", { class: "node", role: "listitem", dataset: { node: name } });
      nodeEls[name] = el;
      return el;
    })));
  });
  const canvas = h("canvas", { id: "chart", role: "img", "aria-label": "Calls in flight and calls finished per second over time" });
  const chartNote = h("p", { class: "muted small", id: "chart-note" });

  // event log
  const filterId = uid("logfilter");
  const searchId = uid("logsearch");
  const filter = h("select", { id: filterId }, Object.entries(FILTER_LABELS).map(([k, t]) => h("option", { value: k }, t)));
  const search = h("input", { id: searchId, type: "search", placeholder: "text in the event" });
  const log = h("ol", { class: "log", id: "event-log", "aria-label": "Event log" });
  const logNote = h("p", { class: "muted small", id: "log-note" });
  const events = [];

  function matches(e) {
    const q = search.value.trim().toLowerCase();
    return FILTERS[filter.value](e) && (!q || e.text.toLowerCase().includes(q) || e.type.includes(q));
  }
  function row(e) {
    const offset = model.startedAt === null ? 0 : (Date.parse(e.at) - model.startedAt) / 1000;
    return h("li", { dataset: { seq: e.seq, type: e.type }, class: `ev ev-${e.type}` },
      h("span", { class: "seq" }, e.seq), h("span", { class: "t" }, `+${offset.toFixed(1)}s`),
      h("span", { class: "type" }, e.type.replaceAll("_", " ")), h("span", { class: "text" }, e.text));
  }
  function renderLog() {
    const shown = events.filter(matches).slice(-MAX_ROWS);
    fill(log, shown.map(row));
    fill(logNote, `${shown.length} of ${events.length} events shown`);
    log.dataset.count = String(events.length);
  }

  // rendering, at most once per frame
  let pending = [];
  let frame = 0;
  function schedule() {
    frame ||= requestAnimationFrame(render);
  }
  function render() {
    frame = 0;
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    const rows = pending.filter(matches).map(row);
    pending = [];
    log.append(...rows);
    while (log.childElementCount > MAX_ROWS) log.firstElementChild.remove();
    log.dataset.count = String(events.length);
    log.dataset.lastSeq = String(stream.lastSeq);
    fill(logNote, `${log.childElementCount} of ${events.length} events shown`);
    if (stick) log.scrollTop = log.scrollHeight;
    renderFigures();
  }
  function renderFigures() {
    const u = model.usage || {};
    fill(v.elapsed, duration(model.elapsed()));
    const left = model.remaining();
    fill(v.left, model.finished ? "done" : left === null ? "estimating…" : `about ${duration(left)}`);
    fill(v.tokens, `${num(u.prompt_tokens)} in / ${num(u.completion_tokens)} out`);
    fill(v.cost, usd(u.cost_usd));
    fill(v.calls, `${num(u.calls)} (${num(u.cached_calls)} cached, ${num(u.failed_calls)} failed, ${num(u.retries)} retries)`);
    fill(v.inflight, num(model.inFlight));
    fill(v.proposals, num(model.proposals));
    for (const [name, el] of Object.entries(nodeEls)) {
      const n = model.node(name);
      const state = model.state(name);
      el.className = `node n-${state}`;
      el.dataset.state = state;
      fill(el,
        h("span", { class: "name" }, name.replaceAll("_", " ")),
        h("span", { class: "state" }, state === "errors" ? "with errors" : state),
        h("span", { class: "counts" },
          `${n.done}/${n.total ?? "?"} done`, h("br"), `${n.running || n.inFlight} in flight · ${n.failed} failed`));
    }
    const drawn = drawChart(canvas, model);
    if (drawn) fill(chartNote, `Now ${model.inFlight} calls in flight; peak ${drawn.maxFlight}. Line: calls in flight; bars: calls finished per second.`);
  }

  function onEvent(e) {
    model.apply(e);
    e.text = describe(e);
    events.push(e);
    pending.push(e);
    if (e.type === "run_finished") {
      fill(statusSlot, badge(e.status));
      resultsLink.hidden = false;
      cancel.hidden = true;
    }
    schedule();
  }
  const stream = new RunStream(runId, {
    onEvent,
    onState(state, detail) {
      const words = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", finished: "finished", closed: "", failed: `stopped following: ${detail}` };
      fill(connection, words[state] ?? state);
      connection.dataset.state = state;
      reconnect.hidden = state === "finished";
    },
  });

  filter.addEventListener("change", renderLog);
  let typing = null;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(renderLog, 200); });
  reconnect.addEventListener("click", () => stream.reconnect());
  cancel.addEventListener("click", async () => {
    try {
      const updated = await cancelRun(runId);
      if (updated) fill(statusSlot, badge(updated.status));
    } catch (err) {
      window.alert(`Cannot cancel: ${err.message}`);
    }
  });

  fill(main,
    h("section", { class: "run-head", "aria-labelledby": "run-title" },
      h("div", { class: "row between wrap" },
        h("div", {},
          h("h1", { id: "run-title" }, request.brief || "Run"),
          h("p", { class: "muted small" },
            `Run ${runId} · `, (request.countries || []).map((c) => `${c} (${countryName(c)})`).join(", "),
            ` · created ${age(record.created_at)}`)),
        h("div", { class: "row wrap" }, statusSlot, connection, reconnect, cancel, resultsLink)),
      record.simulated ? h("p", { class: "banner sim", role: "note" }, "SIMULATED: the text of this run is written by the offline simulator, not a real model. ", record.provider || "") : null),
    h("section", { class: "card", "aria-label": "Progress" },
      h("div", { class: "stats" },
        stat("Elapsed", v.elapsed), stat("Time left", v.left), stat("Tokens", v.tokens), stat("Cost so far", v.cost),
        stat("Calls", v.calls), stat("In flight", v.inflight), stat("Proposals", v.proposals)),
      graph),
    h("section", { class: "card", "aria-labelledby": "chart-title" },
      h("h2", { id: "chart-title" }, "Calls over time"), canvas, chartNote),
    h("section", { class: "card", "aria-labelledby": "log-title" },
      h("h2", { id: "log-title" }, "Event log"),
      h("div", { class: "filters" }, h("label", { for: filterId }, "Show"), filter, h("label", { for: searchId }, "Search"), search),
      log, logNote));

  if (record.status === "queued") fill(connection, "queued: waiting for a worker");
  renderFigures();
  stream.start(0);
  const tick = setInterval(() => { if (!model.finished) renderFigures(); }, 1000);
  const resize = () => renderFigures();
  window.addEventListener("resize", resize);
  return () => {
    stream.close();
    clearInterval(tick);
    clearTimeout(typing);
    cancelAnimationFrame(frame);
    window.removeEventListener("resize", resize);
  };
}
