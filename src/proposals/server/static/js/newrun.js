// New run: brief, countries (searchable), profiles (rows or a YAML/JSON file), variables,
// options with their defaults; the server's 422 errors are shown next to their fields.

import { api, ApiError } from "./api.js";
import { countryName, fill, h, uid } from "./dom.js";
import { parseYaml } from "./yaml.js";

const EVERY = "";

/** Profiles from a file's data: a list, {profiles: list}, or {CC: list}, as rows. */
function profileRows(data) {
  if (data && !Array.isArray(data) && typeof data === "object" && Object.keys(data).join() === "profiles") {
    data = data.profiles;
  }
  const row = (item, country) => {
    if (!item || typeof item !== "object" || !item.name) throw new Error("every profile needs a name");
    return { name: String(item.name), description: String(item.description ?? ""), country };
  };
  if (Array.isArray(data)) return data.map((item) => row(item, EVERY));
  if (data && typeof data === "object") {
    return Object.entries(data).flatMap(([country, items]) => {
      if (!Array.isArray(items)) throw new Error(`${country}: expected a list of profiles`);
      return items.map((item) => row(item, country.toUpperCase()));
    });
  }
  throw new Error("expected a list of {name, description} or a mapping of country code to such lists");
}

const LABELS = { proposals_per_pair: "Proposals per country and profile", retrieval_k: "Chunks retrieved per country and lens", evidence_k: "Evidence chunks per lens item", max_tokens: "Token budget", max_cost_usd: "Cost budget (USD)" };
const UNSET = { context_window: "the server's window", output_reserve: "the server's reserve", max_tokens: "no limit", max_cost_usd: "no limit" };
const label = (key) => LABELS[key] || key.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());

export function showNewRun(main, meta) {
  const selected = new Set();
  let profiles = [{ name: "", description: "", country: EVERY }];
  let variables = [{ key: "", value: "" }];
  const slots = new Map(); // "brief", "options.themes", "profiles.0.name" -> {error, input}
  const slot = (path, input) => {
    const error = h("p", { class: "error field-error", id: uid("err"), dataset: { for: path } });
    slots.set(path, { error, input });
    if (input) input.setAttribute("aria-describedby", error.id);
    return error;
  };

  // -- brief ---------------------------------------------------------------------------------
  const briefId = uid("brief");
  const brief = h("textarea", { id: briefId, name: "brief", rows: 2, placeholder: "savings products for households" });

  // -- countries -----------------------------------------------------------------------------
  const searchId = uid("csearch");
  const search = h("input", { id: searchId, type: "search", placeholder: "name or code", autocomplete: "off" });
  const chips = h("div", { class: "chips", "aria-live": "polite" });
  const withDocs = new Set(meta.corpus_countries || []);
  const codes = [...new Set([...withDocs, ...(meta.countries || [])])];
  codes.sort((a, b) => withDocs.has(b) - withDocs.has(a) || a.localeCompare(b));
  const boxes = codes.map((code) => {
    const box = h("input", { type: "checkbox", value: code, id: uid("cc") });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(code);
      else selected.delete(code);
      renderChips();
    });
    return h("label", { class: "check", for: box.id, dataset: { code, name: countryName(code).toLowerCase() } },
      box, ` ${code} — ${countryName(code)}`, withDocs.has(code) ? h("small", { class: "muted" }, " · has documents") : null);
  });
  const countryList = h("div", { class: "checklist", role: "group", "aria-label": "Countries" }, boxes);
  search.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    for (const el of boxes) {
      el.hidden = Boolean(q) && !el.dataset.code.toLowerCase().startsWith(q) && !el.dataset.name.includes(q);
    }
  });
  function renderChips() {
    fill(chips, [...selected].map((code) =>
      h("button", {
        type: "button",
        class: "chip",
        "aria-label": `Remove ${countryName(code)}`,
        onclick: () => {
          selected.delete(code);
          countryList.querySelector(`input[value="${code}"]`).checked = false;
          renderChips();
        },
      }, code, " ×")));
    if (!selected.size) chips.append(h("span", { class: "muted" }, "No country chosen yet."));
    renderProfiles();
  }

  // -- profiles ------------------------------------------------------------------------------
  const profileBox = h("div", { class: "rows" });
  const fileId = uid("pfile");
  const profileFile = h("input", { id: fileId, type: "file", accept: ".yaml,.yml,.json", class: "sr-only" });
  const fileNote = h("p", { class: "muted small", role: "status" });
  function renderProfiles() {
    for (const key of [...slots.keys()]) if (key.startsWith("profiles.")) slots.delete(key);
    fill(profileBox, profiles.map((p, i) => {
      const n = uid("pn");
      const d = uid("pd");
      const c = uid("pc");
      const name = h("input", { id: n, value: p.name, autocomplete: "off" });
      const description = h("textarea", { id: d, rows: 2 }, p.description);
      const countries = new Set([...selected, ...(p.country ? [p.country] : [])]);
      const country = h("select", { id: c },
        h("option", { value: EVERY }, "every country"),
        [...countries].map((code) => h("option", { value: code, selected: p.country === code }, code)));
      name.addEventListener("input", () => { p.name = name.value; });
      description.addEventListener("input", () => { p.description = description.value; });
      country.addEventListener("change", () => { p.country = country.value; });
      return h("fieldset", { class: "row-item", dataset: { profile: i } },
        h("legend", { class: "sr-only" }, `Profile ${i + 1}`),
        h("div", { class: "grow" }, h("label", { for: n }, `Profile ${i + 1} name`), name, slot(`profiles.${i}.name`, name)),
        h("div", { class: "grow2" }, h("label", { for: d }, "Description"), description, slot(`profiles.${i}.description`, description)),
        h("div", {}, h("label", { for: c }, "Applies to"), country),
        h("button", {
          type: "button",
          class: "small",
          "aria-label": `Remove profile ${i + 1}`,
          onclick: () => { profiles.splice(i, 1); renderProfiles(); },
        }, "Remove"));
    }));
  }
  profileFile.addEventListener("change", async () => {
    const file = profileFile.files[0];
    profileFile.value = "";
    if (!file) return;
    try {
      const text = await file.text();
      const data = /\.json$/i.test(file.name) ? JSON.parse(text) : parseYaml(text);
      profiles = profileRows(data);
      for (const p of profiles) {
        if (p.country && !selected.has(p.country) && codes.includes(p.country)) {
          selected.add(p.country);
          countryList.querySelector(`input[value="${p.country}"]`).checked = true;
        }
      }
      fill(fileNote, `${profiles.length} profile${profiles.length > 1 ? "s" : ""} loaded from ${file.name}.`);
      fileNote.className = "muted small";
      renderChips();
    } catch (err) {
      fill(fileNote, `${file.name} could not be read: ${err.message}`);
      fileNote.className = "error small";
    }
  });

  // -- variables -----------------------------------------------------------------------------
  const variableBox = h("div", { class: "rows" });
  function renderVariables() {
    fill(variableBox, variables.map((v, i) => {
      const k = uid("vk");
      const val = uid("vv");
      const key = h("input", { id: k, value: v.key, placeholder: "channel", autocomplete: "off" });
      const value = h("input", { id: val, value: v.value, placeholder: "mobile", autocomplete: "off" });
      key.addEventListener("input", () => { v.key = key.value; });
      value.addEventListener("input", () => { v.value = value.value; });
      return h("div", { class: "row-item" },
        h("div", { class: "grow" }, h("label", { for: k }, `Variable ${i + 1}`), key),
        h("div", { class: "grow" }, h("label", { for: val }, "Value"), value),
        h("button", {
          type: "button",
          class: "small",
          "aria-label": `Remove variable ${i + 1}`,
          onclick: () => { variables.splice(i, 1); renderVariables(); },
        }, "Remove"));
    }));
  }

  // -- options -------------------------------------------------------------------------------
  const defaults = meta.run_options || {};
  const optionInputs = {};
  const optionFields = Object.entries(defaults)
    .filter(([, value]) => value === null || typeof value === "number")
    .map(([key, value]) => {
      const id = uid("opt");
      const input = h("input", {
        id,
        name: key,
        type: "number",
        inputmode: "decimal",
        step: "any",
        placeholder: value === null ? UNSET[key] || "not set" : String(value),
      });
      optionInputs[key] = input;
      const doc = meta.option_docs?.[key];
      return h("div", { class: "option" },
        h("label", { for: id }, label(key)),
        input,
        h("small", { class: "muted" }, `default: ${value === null ? UNSET[key] || "not set" : value}`, doc ? `. ${doc}` : ""),
        slot(`options.${key}`, input));
    });

  // -- submit --------------------------------------------------------------------------------
  const formError = h("div", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Start run");

  function body() {
    const rows = profiles
      .map((p, row) => ({ ...p, row, name: p.name.trim(), description: p.description.trim() }))
      .filter((p) => p.name || p.description);
    const index = new Map(); // "profiles.<country?>.<i>" -> row
    let sentProfiles;
    if (rows.some((p) => p.country)) {
      sentProfiles = {};
      for (const country of selected) {
        const mine = rows.filter((p) => !p.country || p.country === country);
        mine.forEach((p, i) => index.set(`${country}.${i}`, p.row));
        sentProfiles[country] = mine.map(({ name, description }) => ({ name, description }));
      }
    } else {
      rows.forEach((p, i) => index.set(String(i), p.row));
      sentProfiles = rows.map(({ name, description }) => ({ name, description }));
    }
    const options = {};
    for (const [key, input] of Object.entries(optionInputs)) {
      if (input.value.trim() !== "") options[key] = Number(input.value);
    }
    const vars = Object.fromEntries(variables.filter((v) => v.key.trim()).map((v) => [v.key.trim(), v.value]));
    return {
      json: { brief: brief.value.trim(), countries: [...selected], profiles: sentProfiles, variables: vars, options },
      index,
      perCountry: !Array.isArray(sentProfiles),
    };
  }

  function showErrors(err, { index, perCountry }) {
    const unplaced = [];
    let first = null;
    for (const { path, msg } of err.fieldErrors()) {
      // Drop the union member we did not send, and pydantic's union tags.
      const tags = path.filter((p) => typeof p === "string" && /\[/.test(p));
      if (tags.some((t) => (perCountry ? t.startsWith("list[") : t.startsWith("dict[")))) continue;
      let parts = path.filter((p) => !(typeof p === "string" && /\[/.test(p))).map(String);
      if (parts[0] === "profiles" && parts.length > 1) {
        const key = perCountry ? `${parts[1]}.${parts[2]}` : parts[1];
        const row = index.get(key);
        parts = row === undefined ? ["profiles"] : ["profiles", String(row), ...parts.slice(perCountry ? 3 : 2)];
      }
      let target = null;
      for (let n = parts.length; n > 0 && !target; n -= 1) target = slots.get(parts.slice(0, n).join("."));
      const text = msg.replace(/^Value error, /, "");
      if (!target) {
        unplaced.push(parts.length ? `${parts.join(".")}: ${text}` : text);
        continue;
      }
      target.error.append(h("span", {}, text));
      if (target.input) target.input.setAttribute("aria-invalid", "true");
      first ??= target.input || target.error;
    }
    fill(formError, unplaced.length ? h("p", {}, "The run was not started: ", unplaced.join("; ")) : null);
    (first || formError).scrollIntoView({ block: "center" });
    if (first?.focus) first.focus();
  }

  const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "new-title" },
    h("h1", { id: "new-title" }, "New run"),
    formError,
    h("div", { class: "field" }, h("label", { for: briefId }, "Brief"), brief, slot("brief", brief)),
    h("fieldset", {},
      h("legend", {}, "Countries"),
      chips,
      h("label", { for: searchId }, "Search countries"),
      search,
      countryList,
      slot("countries", search)),
    h("fieldset", {},
      h("legend", {}, "Customer profiles"),
      profileBox,
      slot("profiles"),
      h("div", { class: "row" },
        h("button", { type: "button", onclick: () => { profiles.push({ name: "", description: "", country: EVERY }); renderProfiles(); } }, "Add profile"),
        h("label", { for: fileId, class: "button", tabindex: 0 }, "Load YAML or JSON file…"),
        profileFile),
      fileNote),
    h("fieldset", {},
      h("legend", {}, "Variables"),
      variableBox,
      slot("variables"),
      h("button", { type: "button", onclick: () => { variables.push({ key: "", value: "" }); renderVariables(); } }, "Add variable")),
    h("details", { class: "options" },
      h("summary", {}, "Options"),
      h("div", { class: "grid3" }, optionFields),
      slot("options")),
    h("div", { class: "row" }, submit));
  form.querySelector("label.button").addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); profileFile.click(); }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const { error, input } of slots.values()) {
      fill(error);
      input?.removeAttribute("aria-invalid");
    }
    fill(formError);
    const built = body();
    submit.disabled = true;
    try {
      const run = await api("/v1/runs", { method: "POST", json: built.json });
      location.hash = `#/runs/${encodeURIComponent(run.id)}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) {
        if (err.fieldErrors().some((e) => e.path.some((p) => String(p).startsWith("options")))) {
          form.querySelector("details.options").open = true;
        }
        showErrors(err, built);
      } else {
        fill(formError, h("p", {}, `The run was not started: ${err.message}`));
        formError.scrollIntoView({ block: "center" });
      }
    } finally {
      submit.disabled = false;
    }
  });
  fill(main, form);
  renderChips();
  renderVariables();
  brief.focus();
}
