// Follows a run's event stream (Server-Sent Events) exactly once per event, across dropped
// connections and server restarts.
//
// The stream is read with fetch() rather than EventSource so that the API key travels in the
// Authorization header (never in a URL, where logs would keep it) and so that every
// (re)connection is explicit: each one asks for the events after the last seq this page has
// seen (`?after=`), which resumes without a gap whether the server restarted or a proxy cut
// the request; events at or below that seq are dropped, so an overlapping replay is harmless.
// On a drop the page says "reconnecting…" and retries with a short backoff.

import { apiKey } from "./api.js";

export class RunStream {
  /**
   * @param {string} runId
   * @param {{onEvent: (event: object) => void, onState: (state: string, detail?: string) => void}} handlers
   *   states: "connecting", "live", "reconnecting", "finished", "failed", "closed"
   */
  constructor(runId, { onEvent, onState }) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastSeq = 0;
    this.duplicates = 0;
    this.connections = 0;
    this.controller = null;
    this.timer = null;
    this.backoff = 0;
    this.done = false;
  }

  start(after = 0) {
    this.lastSeq = after;
    this.connect("connecting");
  }

  /** Drops the current connection and resumes after the last seq seen. */
  reconnect() {
    if (this.done) return;
    this.backoff = 0;
    this.connect("reconnecting");
  }

  close() {
    this.done = true;
    clearTimeout(this.timer);
    this.controller?.abort();
    this.onState("closed");
  }

  url() {
    const query = this.lastSeq > 0 ? `?after=${this.lastSeq}` : "";
    return `/v1/runs/${encodeURIComponent(this.runId)}/events${query}`;
  }

  async connect(state) {
    clearTimeout(this.timer);
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.onState(state);
    this.connections += 1;
    const headers = { Accept: "text/event-stream" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    try {
      const res = await fetch(this.url(), { headers, signal: controller.signal, cache: "no-store" });
      if (res.status === 401 || res.status === 404) {
        // Not a drop: the key was refused or the run is not there. Say why, stop.
        let detail = `HTTP ${res.status}`;
        try {
          detail = (await res.json()).detail ?? detail;
        } catch {
          // not JSON: keep the status
        }
        if (res.status === 401) window.dispatchEvent(new CustomEvent("proposals:unauthorized"));
        this.fail(String(detail));
        return;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      this.backoff = 0;
      this.onState("live");
      await this.read(res.body, controller);
    } catch {
      // a refused connection, a reset, a cut by a proxy: reconnect below
    }
    if (this.done || controller !== this.controller || controller.signal.aborted) return;
    this.onState("reconnecting");
    const wait = this.backoff;
    this.backoff = Math.min(5000, Math.max(500, this.backoff * 2));
    this.timer = setTimeout(() => this.connect("reconnecting"), wait);
  }

  fail(message) {
    this.done = true;
    this.onState("failed", message);
  }

  async read(body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer = (buffer + value).replace(/\r\n?/g, "\n");
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          this.frame(buffer.slice(0, end));
          if (this.done || controller.signal.aborted) return;
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf("\n\n");
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  /** One SSE frame: `id:`, `event:` and `data:` lines; comments (heartbeats) are skipped. */
  frame(text) {
    const data = [];
    let id = null;
    for (const line of text.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (!data.length) return;
    let event;
    try {
      event = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    const seq = Number(event.seq ?? id);
    if (!(seq > this.lastSeq)) {
      this.duplicates += 1;
      return;
    }
    this.lastSeq = seq;
    this.onEvent(event);
    if (event.type === "run_finished") {
      this.done = true;
      this.controller?.abort();
      this.onState("finished");
    }
  }
}
