// Documents: upload many files with a country and type each, see each file's outcome,
// list the tenant's documents with filters, delete one.

import { api, ApiError } from "./api.js";
import { age, countryName, fill, h, uid } from "./dom.js";
import { refreshMeta } from "./app.js";

const AUTO = "";
const CODE = /^[A-Z]{2}$/;

/** Country and type from the folder convention <root>/<CC or global>/<doc_type>/<file>. */
function hintsFromPath(relativePath, docTypes) {
  const parts = (relativePath || "").split("/").slice(0, -1);
  let country = AUTO;
  let type = AUTO;
  for (let i = 0; i < parts.length; i += 1) {
    const part = parts[i];
    if (CODE.test(part) || part.toLowerCase() === "global") {
      country = CODE.test(part) ? part : "global";
      if (docTypes.includes(parts[i + 1])) type = parts[i + 1];
    }
  }
  return { country, type };
}

function countryOptions(meta, selected, autoLabel) {
  const codes = new Set([...(meta.corpus_countries || []), ...(meta.countries || [])]);
  return [
    h("option", { value: AUTO, selected: selected === AUTO }, autoLabel),
    h("option", { value: "global", selected: selected === "global" }, "global (every country)"),
    [...codes].sort().map((code) =>
      h("option", { value: code, selected: selected === code }, `${code} — ${countryName(code)}`)),
  ];
}

function typeOptions(meta, selected, autoLabel) {
  return [
    h("option", { value: AUTO, selected: selected === AUTO }, autoLabel),
    (meta.doc_types || []).map((t) => h("option", { value: t, selected: selected === t }, t.replaceAll("_", " "))),
  ];
}

export function showDocuments(main, meta) {
  const staged = []; // {file, name, country, type, row, status}
  const ids = { country: uid("country"), type: uid("type"), files: uid("files"), folder: uid("folder") };
  const defCountry = h("select", { id: ids.country }, countryOptions(meta, AUTO, "from the file (or folder)"));
  const defType = h("select", { id: ids.type }, typeOptions(meta, AUTO, "from the file (or folder)"));
  const picker = h("input", { id: ids.files, type: "file", multiple: true, class: "sr-only" });
  const folderPicker = h("input", { id: ids.folder, type: "file", multiple: true, webkitdirectory: true, class: "sr-only" });
  const stagedBody = h("tbody");
  const uploadButton = h("button", { type: "submit", class: "primary", disabled: true }, "Upload");
  const clearButton = h("button", { type: "button", disabled: true }, "Clear list");
  const uploadNote = h("p", { class: "muted", role: "status" });

  function stage(files) {
    for (const file of files) {
      const hints = hintsFromPath(file.webkitRelativePath || file.relativePath || "", meta.doc_types || []);
      const entry = {
        file,
        name: file.webkitRelativePath || file.relativePath || file.name,
        country: hints.country || defCountry.value,
        type: hints.type || defType.value,
        status: null,
      };
      staged.push(entry);
    }
    renderStaged();
  }

  function renderStaged() {
    fill(stagedBody, staged.map((entry, i) => {
      const c = uid("c");
      const t = uid("t");
      const country = h("select", { id: c, "aria-label": `Country of ${entry.name}` }, countryOptions(meta, entry.country, "auto"));
      const type = h("select", { id: t, "aria-label": `Type of ${entry.name}` }, typeOptions(meta, entry.type, "auto"));
      country.addEventListener("change", () => { entry.country = country.value; });
      type.addEventListener("change", () => { entry.type = type.value; });
      const remove = h("button", {
        type: "button",
        class: "small",
        "aria-label": `Remove ${entry.name} from the list`,
        onclick: () => { staged.splice(i, 1); renderStaged(); },
      }, "Remove");
      const status = entry.status
        ? h("span", { class: `file-status st-${entry.status.status}` },
            entry.status.status,
            entry.status.chunks != null ? ` (${entry.status.chunks} chunk${entry.status.chunks === 1 ? "" : "s"})` : "",
            entry.status.reason ? `: ${entry.status.reason}` : "")
        : h("span", { class: "muted" }, `${Math.ceil(entry.file.size / 1024)} KB, not sent yet`);
      return h("tr", { dataset: { file: entry.name } },
        h("td", { class: "name" }, entry.name), h("td", {}, country), h("td", {}, type),
        h("td", { class: "status" }, status), h("td", {}, entry.status ? null : remove));
    }));
    const pending = staged.filter((e) => !e.status).length;
    uploadButton.disabled = pending === 0;
    uploadButton.textContent = pending ? `Upload ${pending} file${pending > 1 ? "s" : ""}` : "Upload";
    clearButton.disabled = staged.length === 0;
  }

  async function upload(event) {
    event.preventDefault();
    const pending = staged.filter((e) => !e.status);
    const limit = meta.max_upload_bytes || 0;
    const groups = new Map();
    for (const entry of pending) {
      if (limit && entry.file.size > limit) {
        entry.status = { status: "failed", reason: `larger than the server's upload limit (${Math.floor(limit / 1048576)} MB)` };
        continue;
      }
      const key = `${entry.country}|${entry.type}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(entry);
    }
    uploadButton.disabled = true;
    let done = 0;
    for (const entries of groups.values()) {
      fill(uploadNote, `Uploading and indexing… ${done} of ${pending.length} files done`);
      await sendGroup(entries, limit);
      done += entries.length;
      renderStaged();
    }
    const failed = pending.filter((e) => e.status?.status === "failed").length;
    fill(uploadNote, `${pending.length - failed} of ${pending.length} files stored${failed ? `, ${failed} failed (reasons above)` : ""}.`);
    renderStaged();
    await refreshMeta().catch(() => {});
    await loadList();
  }

  async function sendGroup(entries, limit) {
    // One request per group; split further when the group exceeds the body limit.
    const batches = [[]];
    let size = 0;
    for (const entry of entries) {
      if (limit && size + entry.file.size > limit * 0.9 && batches.at(-1).length) {
        batches.push([]);
        size = 0;
      }
      batches.at(-1).push(entry);
      size += entry.file.size;
    }
    for (const batch of batches) {
      const form = new FormData();
      for (const entry of batch) form.append("files", entry.file, entry.file.name);
      if (batch[0].country) form.append("country", batch[0].country);
      if (batch[0].type) form.append("doc_type", batch[0].type);
      try {
        const { files } = await api("/v1/documents", { method: "POST", form });
        const byName = new Map(files.map((f) => [f.name, f]));
        for (const entry of batch) {
          entry.status = byName.get(entry.file.name) || { status: "failed", reason: "no answer for this file" };
        }
      } catch (err) {
        const reason = err instanceof ApiError && err.status === 422 ? ApiError.describe(err.detail) || err.message : err.message;
        for (const entry of batch) entry.status = { status: "failed", reason };
      }
    }
  }

  // -- the document list ---------------------------------------------------------------------
  const f = { country: uid("fc"), type: uid("ft"), q: uid("fq") };
  const filterCountry = h("select", { id: f.country }, countryOptions(meta, AUTO, "any country"));
  const filterType = h("select", { id: f.type }, typeOptions(meta, AUTO, "any type"));
  const filterQ = h("input", { id: f.q, type: "search", placeholder: "title or path" });
  const listBody = h("tbody");
  const listNote = h("p", { class: "muted", role: "status" });

  async function loadList() {
    const params = new URLSearchParams();
    const globalOnly = filterCountry.value === "global"; // the API filters by a country code
    if (filterCountry.value && !globalOnly) params.set("country", filterCountry.value);
    if (filterType.value) params.set("doc_type", filterType.value);
    if (filterQ.value.trim()) params.set("q", filterQ.value.trim());
    try {
      let { documents } = await api(`/v1/documents?${params}`);
      if (globalOnly) documents = documents.filter((d) => !d.country);
      fill(listBody, documents.map(docRow));
      fill(listNote, documents.length ? `${documents.length} document${documents.length > 1 ? "s" : ""}` : "No documents match.");
    } catch (err) {
      fill(listNote, h("span", { class: "error" }, `Cannot list documents: ${err.message}`));
    }
  }

  function docRow(doc) {
    const del = h("button", {
      type: "button",
      class: "danger small",
      "aria-label": `Delete ${doc.title}`,
      onclick: async () => {
        if (!window.confirm(`Delete "${doc.title}" and its ${doc.chunks} chunks?`)) return;
        try {
          await api(`/v1/documents/${doc.id}`, { method: "DELETE" });
          await loadList();
        } catch (err) {
          fill(listNote, h("span", { class: "error" }, `Cannot delete: ${err.message}`));
        }
      },
    }, "Delete");
    return h("tr", { dataset: { doc: doc.id } },
      h("td", {}, h("span", { class: "title" }, doc.title), h("br"), h("small", { class: "muted" }, doc.path)),
      h("td", {}, doc.country || "global"), h("td", {}, (doc.doc_type || "").replaceAll("_", " ")),
      h("td", { class: "num" }, doc.chunks), h("td", { title: doc.ingested_at }, age(doc.ingested_at)),
      h("td", { class: "actions" }, del));
  }

  // -- wiring --------------------------------------------------------------------------------
  const drop = h("div", { class: "dropzone", id: "dropzone" },
    h("p", {}, "Drop files or folders here, or"),
    h("div", { class: "row" },
      h("label", { for: ids.files, class: "button" }, "Choose files"),
      h("label", { for: ids.folder, class: "button" }, "Choose a folder")),
    h("p", { class: "muted small" }, "Folders named like ", h("code", {}, "AR/official/…"), " set country and type. PDF, DOCX, HTML, Markdown, text, JSON."),
    picker, folderPicker);
  for (const input of [picker, folderPicker]) {
    input.addEventListener("change", () => { stage([...input.files]); input.value = ""; });
  }
  for (const label of drop.querySelectorAll("label.button")) {
    label.tabIndex = 0;
    label.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); label.click(); }
    });
  }
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    stage(await droppedFiles(e.dataTransfer));
  });
  clearButton.addEventListener("click", () => { staged.length = 0; renderStaged(); fill(uploadNote); });
  for (const el of [filterCountry, filterType]) el.addEventListener("change", loadList);
  let typing = null;
  filterQ.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(loadList, 250); });

  const form = h("form", { class: "card", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload"),
    drop,
    h("div", { class: "grid2" },
      h("div", {}, h("label", { for: ids.country }, "Country of new files"), defCountry),
      h("div", {}, h("label", { for: ids.type }, "Type of new files"), defType)),
    h("div", { class: "scroll" },
      h("table", { class: "list staged" },
        h("caption", { class: "sr-only" }, "Files to upload"),
        h("thead", {}, h("tr", {}, ["File", "Country", "Type", "Status", ""].map((t) => h("th", { scope: "col" }, t)))),
        stagedBody)),
    h("div", { class: "row" }, uploadButton, clearButton),
    uploadNote);
  form.addEventListener("submit", upload);
  fill(main,
    h("h1", {}, "Documents"),
    form,
    h("section", { class: "card", "aria-labelledby": "docs-title" },
      h("h2", { id: "docs-title" }, "Stored documents"),
      h("div", { class: "filters" },
        h("label", { for: f.country }, "Country"), filterCountry,
        h("label", { for: f.type }, "Type"), filterType,
        h("label", { for: f.q }, "Search"), filterQ),
      h("div", { class: "scroll" },
        h("table", { class: "list" },
          h("caption", { class: "sr-only" }, "Stored documents"),
          h("thead", {}, h("tr", {}, ["Document", "Country", "Type", "Chunks", "Stored", ""].map((t) => h("th", { scope: "col" }, t)))),
          listBody)),
      listNote));
  renderStaged();
  loadList();
  return () => clearTimeout(typing);
}

/** Files of a drop, folders walked (each file gets `relativePath` for the folder hints). */
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...transfer.files];
  const out = [];
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      file.relativePath = `${prefix}${file.name}`;
      out.push(file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  }
  for (const entry of entries) await walk(entry, "");
  return out;
}
