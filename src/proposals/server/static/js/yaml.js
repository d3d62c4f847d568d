// A small YAML reader for profile files: block mappings and sequences, plain and quoted
// scalars, `|` and `>` block scalars, comments, `[]` and `{}`. Anything else is refused with
// its line number (JSON files are read with JSON.parse instead).

const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#\-[\]{}][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s+(.*))?$/;

function stripComment(text) {
  const quote = text[0] === '"' || text[0] === "'" ? text[0] : null;
  let start = 0;
  if (quote) {
    const close = text.indexOf(quote, 1);
    start = close < 0 ? text.length : close + 1;
  }
  const hash = text.slice(start).search(/(^|\s)#/);
  return (hash < 0 ? text : text.slice(0, start + hash)).trim();
}

function scalar(raw, line) {
  const text = stripComment(raw);
  if (text.startsWith('"')) {
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`line ${line}: bad double-quoted string`);
    }
  }
  if (text.startsWith("'")) {
    if (!text.endsWith("'") || text.length < 2) throw new Error(`line ${line}: bad single-quoted string`);
    return text.slice(1, -1).replaceAll("''", "'");
  }
  if (text === "" || text === "~" || text === "null") return null;
  if (text === "true" || text === "false") return text === "true";
  if (text === "[]") return [];
  if (text === "{}") return {};
  if (/^[[{]/.test(text)) throw new Error(`line ${line}: flow collections are not supported; use one item per line`);
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  return text;
}

export function parseYaml(source) {
  const lines = source.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  const blank = (line) => /^\s*(#.*)?$/.test(line);
  const indentOf = (line) => line.match(/^ */)[0].length;
  const fail = (message) => {
    throw new Error(`line ${i + 1}: ${message}`);
  };
  const skipBlank = () => {
    while (i < lines.length && blank(lines[i])) i += 1;
  };
  const isItem = (line, indent) => indentOf(line) === indent && /^-( |$)/.test(line.slice(indent));

  function block(minIndent) {
    skipBlank();
    if (i >= lines.length) return null;
    const indent = indentOf(lines[i]);
    if (indent < minIndent) return null;
    if (lines[i].includes("\t")) fail("tabs are not allowed for indentation");
    const content = lines[i].slice(indent);
    if (/^-( |$)/.test(content)) return sequence(indent);
    if (KEY.test(content)) return mapping(indent);
    i += 1;
    return scalar(content, i);
  }

  function sequence(indent) {
    const out = [];
    for (skipBlank(); i < lines.length && isItem(lines[i], indent); skipBlank()) {
      const rest = lines[i].slice(indent + 1);
      if (!stripComment(rest)) {
        i += 1;
        out.push(block(indent + 1));
        continue;
      }
      const column = indent + 1 + (rest.length - rest.trimStart().length);
      lines[i] = " ".repeat(column) + rest.trimStart(); // the item's content is a block there
      out.push(block(column));
    }
    if (i < lines.length && indentOf(lines[i]) > indent) fail("unexpected indentation");
    return out;
  }

  function mapping(indent) {
    const out = {};
    for (skipBlank(); i < lines.length && indentOf(lines[i]) === indent; skipBlank()) {
      const match = lines[i].slice(indent).match(KEY);
      if (!match) break;
      const key = String(scalar(match[1], i + 1));
      const rest = stripComment(match[2] || "");
      i += 1;
      if (/^[|>][+-]?$/.test(rest)) {
        out[key] = blockScalar(indent, rest);
      } else if (rest) {
        out[key] = scalar(rest, i);
      } else {
        skipBlank();
        const next = lines[i];
        if (next !== undefined && indentOf(next) > indent) out[key] = block(indent + 1);
        else if (next !== undefined && isItem(next, indent)) out[key] = sequence(indent);
        else out[key] = null;
      }
    }
    if (i < lines.length && indentOf(lines[i]) > indent) fail("unexpected indentation");
    return out;
  }

  function blockScalar(parentIndent, header) {
    const body = [];
    let indent = null;
    while (i < lines.length) {
      const line = lines[i];
      if (line.trim() === "") {
        body.push("");
      } else {
        const n = indentOf(line);
        if (n <= parentIndent) break;
        indent ??= n;
        if (n < indent) break;
        body.push(line.slice(indent));
      }
      i += 1;
    }
    let trailing = 0;
    while (body.length && body.at(-1) === "") {
      body.pop();
      trailing += 1;
    }
    let text;
    if (header[0] === "|") {
      text = body.join("\n");
    } else {
      text = body.reduce((acc, line, k) => {
        if (k === 0) return line;
        if (line === "") return `${acc}\n`;
        return acc.endsWith("\n") || body[k - 1] === "" ? acc + line : `${acc} ${line}`;
      }, "");
    }
    if (header.endsWith("-")) return text;
    if (header.endsWith("+")) return text + "\n".repeat(trailing + 1);
    return body.length ? `${text}\n` : "";
  }

  const value = block(0);
  skipBlank();
  if (i < lines.length) fail("unexpected content");
  return value;
}
