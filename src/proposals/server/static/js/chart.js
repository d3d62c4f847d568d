// A small canvas chart: calls in flight (line, left axis) and calls finished per second
// (bars, right axis) over the run's time. No library.

const IN_FLIGHT = "#1f5fbf";
const THROUGHPUT = "#2e8540";
const AXIS = "#555";

/** Draws `model`'s series on `canvas`, sized to its CSS box and the device pixel ratio. */
export function drawChart(canvas, model, now = Date.now()) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width || !height) return null;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "12px system-ui, sans-serif";

  const start = model.startedAt;
  const end = model.finished ? model.lastAt : Math.max(now, model.lastAt ?? now);
  const pad = { left: 36, right: 40, top: 10, bottom: 22 };
  const w = width - pad.left - pad.right;
  const hgt = height - pad.top - pad.bottom;
  g.strokeStyle = AXIS;
  g.fillStyle = AXIS;
  g.strokeRect(pad.left, pad.top, w, hgt);
  if (start === null || end <= start) {
    g.fillText("no calls yet", pad.left + 8, pad.top + 18);
    return null;
  }
  const span = (end - start) / 1000;
  const bucket = Math.max(1, Math.ceil(span / 60)); // seconds per bar
  const bars = new Array(Math.max(1, Math.ceil(span / bucket))).fill(0);
  for (const t of model.callsDone) {
    const i = Math.min(bars.length - 1, Math.floor((t - start) / 1000 / bucket));
    if (i >= 0) bars[i] += 1 / bucket;
  }
  const maxFlight = Math.max(1, ...model.inFlightSeries.map(([, v]) => v));
  const maxRate = Math.max(1, ...bars);
  const x = (t) => pad.left + (w * (t - start)) / (end - start);

  g.fillStyle = THROUGHPUT;
  g.globalAlpha = 0.35;
  const barW = w / bars.length;
  bars.forEach((v, i) => {
    const bh = (hgt * v) / maxRate;
    g.fillRect(pad.left + i * barW + 0.5, pad.top + hgt - bh, Math.max(1, barW - 1), bh);
  });
  g.globalAlpha = 1;

  g.strokeStyle = IN_FLIGHT;
  g.lineWidth = 2;
  g.beginPath();
  let last = 0;
  g.moveTo(pad.left, pad.top + hgt);
  for (const [t, v] of model.inFlightSeries) {
    const px = x(t);
    g.lineTo(px, pad.top + hgt - (hgt * last) / maxFlight);
    g.lineTo(px, pad.top + hgt - (hgt * v) / maxFlight);
    last = v;
  }
  g.lineTo(pad.left + w, pad.top + hgt - (hgt * last) / maxFlight);
  g.stroke();
  g.lineWidth = 1;

  g.fillStyle = IN_FLIGHT;
  g.textAlign = "right";
  g.fillText(String(maxFlight), pad.left - 4, pad.top + 10);
  g.fillText("0", pad.left - 4, pad.top + hgt);
  g.fillStyle = THROUGHPUT;
  g.textAlign = "left";
  g.fillText(maxRate.toFixed(maxRate < 10 ? 1 : 0), pad.left + w + 4, pad.top + 10);
  g.fillText("/s", pad.left + w + 4, pad.top + 24);
  g.fillStyle = AXIS;
  g.textAlign = "center";
  g.fillText(`${Math.round(span)} s`, pad.left + w - 14, height - 6);
  g.fillText("0", pad.left, height - 6);
  return { maxFlight, maxRate: bars.at(-1) ?? 0 };
}
