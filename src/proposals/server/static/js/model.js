// The state of a run as its events describe it: per-node counts, usage, calls in flight over
// time, failures. Built by replaying the whole event log, so a past run looks like a live one.

export const LENSES = ["market_fit", "regulation", "feasibility", "positioning"];
/** The graph's columns, in flow order. */
export const GRAPH = [["retrieve"], ["analyze"], ["plan"], LENSES, ["synthesize"]];
export const NODES = GRAPH.flat();
// Share of a run's work per node, for the estimate of the time left.
const WEIGHT = { retrieve: 0.05, analyze: 0.2, plan: 0.05, synthesize: 0.2 };
for (const lens of LENSES) WEIGHT[lens] = 0.5 / LENSES.length;

const emptyNode = () => ({ total: null, done: 0, running: 0, failed: 0, finished: false, calls: 0, inFlight: 0, tokens: 0 });

export class RunModel {
  constructor() {
    this.nodes = Object.fromEntries(NODES.map((n) => [n, emptyNode()]));
    this.usage = {};
    this.inFlight = 0;
    this.startedAt = null;
    this.lastAt = null;
    this.runStarted = null;
    this.finished = null;
    this.count = 0;
    this.failures = [];
    this.warnings = 0;
    this.proposals = 0;
    this.inFlightSeries = []; // [ms, calls in flight]
    this.callsDone = []; // ms of each finished call
  }

  node(name) {
    this.nodes[name] ??= emptyNode();
    return this.nodes[name];
  }

  apply(ev) {
    const t = Date.parse(ev.at);
    this.count += 1;
    if (Number.isFinite(t)) {
      this.startedAt ??= t;
      this.lastAt = t;
    }
    if (ev.usage) this.usage = ev.usage;
    switch (ev.type) {
      case "run_started":
        if (ev.resumed) {
          // Work in flight when the previous worker stopped is redone: forget it.
          for (const n of Object.values(this.nodes)) Object.assign(n, { running: 0, inFlight: 0 });
          this.inFlight = 0;
        }
        this.runStarted = ev;
        break;
      case "node_started":
        Object.assign(this.node(ev.node), { total: ev.total, finished: false });
        break;
      case "node_finished": {
        const n = this.node(ev.node);
        n.finished = true;
        n.done = Math.max(n.done, ev.done);
        n.failed = Math.max(n.failed, ev.failed || 0);
        n.running = 0;
        break;
      }
      case "batch_started":
        this.node(ev.node).running += 1;
        break;
      case "batch_finished": {
        const n = this.node(ev.node);
        n.running = Math.max(0, n.running - 1);
        n.done += 1;
        break;
      }
      case "item_failed":
        this.node(ev.failure.node).failed += 1;
        this.failures.push(ev.failure);
        break;
      case "call": {
        const n = this.node(ev.node || "other");
        if (ev.phase === "started") {
          n.calls += 1;
          n.inFlight += 1;
        } else if (ev.phase === "finished" || ev.phase === "failed") {
          n.inFlight = Math.max(0, n.inFlight - 1);
          if (ev.phase === "finished") n.tokens += (ev.prompt_tokens || 0) + (ev.completion_tokens || 0);
          if (Number.isFinite(t)) this.callsDone.push(t);
        }
        this.inFlight = ev.in_flight ?? this.inFlight;
        if (Number.isFinite(t)) this.inFlightSeries.push([t, this.inFlight]);
        break;
      }
      case "warning":
        this.warnings += 1;
        break;
      case "proposal":
        this.proposals += 1;
        break;
      case "run_finished":
        this.finished = ev;
        this.inFlight = 0;
        for (const n of Object.values(this.nodes)) Object.assign(n, { running: 0, inFlight: 0 });
        if (Number.isFinite(t)) this.inFlightSeries.push([t, 0]);
        break;
      default:
        break;
    }
  }

  /** waiting · running · done · errors · stopped */
  state(name) {
    const n = this.node(name);
    if (n.failed > 0) return "errors";
    if (n.finished) return "done";
    if (n.total === null) return "waiting";
    return this.finished ? "stopped" : "running";
  }

  /** Share of the work done, 0..1, from each node's done / total. */
  progress() {
    if (this.finished) return 1;
    let p = 0;
    for (const name of NODES) {
      const n = this.node(name);
      let f = 0;
      if (n.finished) f = 1;
      else if (n.total) f = Math.min(1, n.done / n.total);
      p += (WEIGHT[name] || 0) * f;
    }
    return p;
  }

  /** Seconds since the run started (its own figure once finished). */
  elapsed(now = Date.now()) {
    if (this.finished) return this.finished.elapsed_s;
    return this.startedAt === null ? null : (now - this.startedAt) / 1000;
  }

  /** Seconds left by extrapolating the progress so far; null while too early to tell. */
  remaining(now = Date.now()) {
    if (this.finished) return 0;
    const p = this.progress();
    const elapsed = this.elapsed(now);
    if (elapsed === null || p < 0.05) return null;
    return (elapsed * (1 - p)) / p;
  }
}
