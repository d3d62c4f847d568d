// Follows a run's event stream (SSE) exactly once per event, across drops and restarts.
//
// Every (re)connection asks for the events after the last seq this page has seen (`?after=`),
// so it resumes without a gap whether the server restarted or a proxy cut the request; events
// at or below that seq are dropped (a replay that overlaps is harmless). EventSource's own
// reconnect is not relied on: on any error the source is closed and reopened here with a short
// backoff, and the page says "reconnecting…" until events flow again.

import { eventsUrl } from "./api.js";

/** Event types of the stream (SSE `event:` names). */
export const EVENT_TYPES = [
  "run_started",
  "run_finished",
  "node_started",
  "node_finished",
  "batch_started",
  "batch_finished",
  "call",
  "item_failed",
  "warning",
  "proposal",
];

export class RunStream {
  /**
   * @param {string} runId
   * @param {{onEvent: (event: object) => void, onState: (state: string) => void}} handlers
   *   states: "connecting", "live", "reconnecting", "finished", "closed"
   */
  constructor(runId, { onEvent, onState }) {
    this.runId = runId;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastSeq = 0;
    this.duplicates = 0;
    this.connections = 0;
    this.source = null;
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
    this.source?.close();
    this.source = null;
    this.onState("closed");
  }

  connect(state) {
    clearTimeout(this.timer);
    this.source?.close();
    this.onState(state);
    this.connections += 1;
    const source = new EventSource(eventsUrl(this.runId, this.lastSeq));
    this.source = source;
    const receive = (message) => this.receive(source, message);
    for (const type of EVENT_TYPES) source.addEventListener(type, receive);
    source.addEventListener("message", receive);
    source.addEventListener("open", () => {
      if (source !== this.source) return;
      this.backoff = 0;
      this.onState("live");
    });
    source.addEventListener("error", () => {
      if (source !== this.source || this.done) return;
      source.close();
      this.onState("reconnecting");
      const wait = this.backoff;
      this.backoff = Math.min(5000, Math.max(500, this.backoff * 2));
      this.timer = setTimeout(() => this.connect("reconnecting"), wait);
    });
  }

  receive(source, message) {
    if (source !== this.source || this.done) return;
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return; // not an event (a future comment-like frame)
    }
    const seq = Number(event.seq ?? message.lastEventId);
    if (!(seq > this.lastSeq)) {
      this.duplicates += 1;
      return;
    }
    this.lastSeq = seq;
    this.onEvent(event);
    if (event.type === "run_finished") {
      this.done = true;
      source.close();
      this.source = null;
      this.onState("finished");
    }
  }
}
