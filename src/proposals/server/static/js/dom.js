// Small DOM and formatting helpers shared by every view.

/** Creates an element: h("a", {href: "#", class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A unique id for label/for and aria-describedby pairs. */
export function uid(prefix = "f") {
  ids += 1;
  return `${prefix}-${ids}`;
}

const numberFormat = new Intl.NumberFormat("en");
export const num = (n) => numberFormat.format(n ?? 0);
export const usd = (n) => `$${(n ?? 0).toFixed((n ?? 0) < 1 ? 4 : 2)}`;

/** "1h 02m", "3m 05s", "12s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (hh) return `${hh}h ${String(mm).padStart(2, "0")}m`;
  if (mm) return `${mm}m ${String(ss).padStart(2, "0")}s`;
  return `${ss}s`;
}

/** "just now", "5 min ago", "3 h ago", "2 d ago". */
export function age(iso) {
  if (!iso) return "";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

const regionNames = new Intl.DisplayNames(["en"], { type: "region" });
/** "AR — Argentina". */
export function countryName(code) {
  if (!code) return "global";
  try {
    return regionNames.of(code) || code;
  } catch {
    return code;
  }
}

/** A status word as a badge ("completed_with_errors" -> "completed with errors"). */
export function badge(status) {
  return h("span", { class: `badge s-${status}` }, String(status).replaceAll("_", " "));
}

export const TERMINAL = new Set([
  "completed",
  "completed_with_errors",
  "stopped_budget",
  "cancelled",
  "interrupted",
  "failed",
]);

/** Saves text as a file through a temporary link. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
