/*
 * editorfields.js: the definition editor's form, one field per field of the JSON model
 * (opus/jobdef/model.py, docs/job-definitions.md): building it from a document, reading it back
 * (keys the form does not show are kept), and the checks the page can make itself, every error
 * next to its field.  The server's check (POST /jdl?check=true) makes the rest.
 */
(function () {
  "use strict";
  const {el} = OPUS;
  const TYPES = ["string", "int", "long", "float", "double", "boolean", "dateTime", "anyURI", "file"];
  // [key, label, kind, help]; kinds: text, number, integer, check, list (comma-separated), pairs
  // (key=value lines), textarea, select (options in help), tristate (true/false/unset).
  const META = [
    ["name", "Name", "text", "A letter, then letters, digits, _ or - (it is the URL of the jobs)."],
    ["version", "Version", "text"], ["type", "Type", "text"], ["subtype", "Subtype", "text"],
    ["doculink", "Documentation link", "text"],
    ["executionDuration", "Execution duration (s)", "integer", "The default limit of a job's run time."],
    ["quote", "Quote (s)", "integer", "How long a job is expected to run."],
    ["contact.name", "Contact name", "text"], ["contact.email", "Contact email", "text"],
    ["network", "The script may use the network", "check"],
    ["needs.python", "Python modules it needs", "list", "Comma-separated; checked on this host."],
    ["needs.commands", "Commands it needs", "list", "Comma-separated; checked on this host."],
    ["slurm", "SLURM resources", "pairs", "One option=value a line, e.g. mem=2G."],
    ["description", "Description", "textarea"],
  ];
  const KINDS = {
    parameters: {title: "Parameters", one: "parameter", fields: [
      ["name", "Name", "text"], ["type", "Type", "select", TYPES], ["default", "Default", "text"],
      ["multiplicity", "Multiplicity", "text", "1, N, M..N, M..* or *"],
      ["min", "Minimum", "number"], ["max", "Maximum", "number"],
      ["options", "Allowed values", "list", "Comma-separated"], ["unit", "Unit", "text"],
      ["ucd", "UCD", "text"], ["utype", "Utype", "text"],
      ["required", "Required", "check"], ["prominent", "Shown first in the form", "check"],
      ["description", "Description", "textarea"]]},
    used: {title: "Inputs", one: "input", fields: [
      ["name", "Name", "text"], ["content_type", "Content type", "text"],
      ["multiplicity", "Multiplicity", "text", "1, N, M..N, M..* or *"], ["default", "Default", "text"],
      ["role", "Role", "text"], ["url", "URL template", "text", "http(s) URL with $ID, resolving an identifier"],
      ["required", "Required", "check"], ["prominent", "Shown first in the form", "check"],
      ["description", "Description", "textarea"]]},
    generated: {title: "Results", one: "result", fields: [
      ["name", "Name", "text"], ["file", "File or pattern", "text", "A name in the work directory; * ? [ ] make a pattern"],
      ["content_type", "Content type", "text"], ["role", "Role", "text"],
      ["required", "Required", "tristate", "Automatic: required unless the file is a pattern"],
      ["derived_from", "Derived from inputs", "list", "Comma-separated input names (provenance)"],
      ["obscore", "ObsCore metadata", "pairs", "One key=value a line: dataproduct_type=image, calib_level=3, ..."],
      ["description", "Description", "textarea"]]},
  };
  const CHECKED_BY_DEFAULT = {used: {required: true}};
  // Shown at once in each card; the other fields fold under "More" (open when one has a value).
  const MAIN = {parameters: ["name", "type", "default", "multiplicity", "required", "prominent"],
    used: ["name", "content_type", "multiplicity", "required", "prominent"],
    generated: ["name", "file", "content_type", "required"]};
  let counter = 0;

  function get(obj, path) { return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj); }
  function set(obj, path, value) {
    const keys = path.split(".");
    let o = obj;
    for (const k of keys.slice(0, -1)) { if (typeof o[k] !== "object" || o[k] === null) o[k] = {}; o = o[k]; }
    if (value === undefined) delete o[keys[keys.length - 1]]; else o[keys[keys.length - 1]] = value;
  }

  /** One labelled control for ``value``; the control carries data-key and data-kind. */
  function field(prefix, [key, label, kind, extra], value, defaults) {
    const id = `${prefix}-${key.replace(".", "-")}`;
    const help = typeof extra === "string" ? el("div", {class: "form-text", id: `${id}-help`}, extra) : null;
    const common = {id, dataset: {key, kind}, "aria-describedby": help ? `${id}-help` : undefined};
    if (kind === "check") {
      const checked = value === undefined ? !!(defaults || {})[key] : value === true;
      return el("div", {class: "col-6 col-md-3 d-flex align-items-end"}, el("div", {class: "form-check mb-2"},
        el("input", {...common, class: "form-check-input", type: "checkbox", checked}),
        el("label", {class: "form-check-label", for: id}, label)));
    }
    let control;
    if (kind === "select") {
      control = el("select", {...common, class: "form-select"}, extra.map((t) => el("option", {selected: (value || "string") === t}, t)));
    } else if (kind === "tristate") {
      const now = value === true ? "true" : value === false ? "false" : "";
      control = el("select", {...common, class: "form-select"}, [["", "Automatic"], ["true", "Required"], ["false", "Optional"]]
        .map(([v, text]) => el("option", {value: v, selected: now === v}, text)));
    } else if (kind === "textarea" || kind === "pairs") {
      const text = kind === "pairs" ? Object.entries(value || {}).map(([k, v]) => `${k}=${v}`).join("\n") : value || "";
      control = el("textarea", {...common, class: "form-control", rows: 2}, text);
    } else {
      const text = kind === "list" ? (value || []).join(", ") : value;
      control = el("input", {...common, class: "form-control", type: kind === "number" || kind === "integer" ? "number" : "text",
        inputmode: kind === "integer" ? "numeric" : kind === "number" ? "decimal" : undefined,
        step: kind === "integer" ? 1 : kind === "number" ? "any" : undefined, value: text ?? "", autocomplete: "off"});
    }
    const wide = kind === "textarea" || kind === "pairs";
    return el("div", {class: wide ? "col-12 col-lg-6" : "col-12 col-sm-6 col-lg-3"},
      el("label", {class: "form-label small mb-1", for: id}, label), control, help);
  }

  /** The metadata section's fields (the definition's top level). */
  function metaFields(doc) {
    return META.map((spec) => field("meta", spec, get(doc, spec[0])));
  }

  /** A card for one item of ``kind`` (parameters, used, generated), with move up/down and remove. */
  function itemCard(kind, item) {
    const n = ++counter;
    const spec = KINDS[kind];
    const title = el("span", {class: "fw-semibold item-title"}, item.name || `New ${spec.one}`);
    const button = (label, text, onclick, cls = "btn-outline-secondary") =>
      el("button", {type: "button", class: `btn btn-sm ${cls}`, "aria-label": label, title: label, onclick}, text);
    const make = (f) => field(`${kind}-${n}`, f, item[f[0]], CHECKED_BY_DEFAULT[kind] || {});
    const main = spec.fields.filter(([key]) => MAIN[kind].includes(key));
    const more = spec.fields.filter(([key]) => !MAIN[kind].includes(key));
    const card = el("div", {class: "card mb-2 editor-item", dataset: {item: kind, orig: item.name || ""}},
      el("div", {class: "card-header bg-transparent d-flex flex-wrap align-items-center gap-2 py-1"}, title,
        el("span", {class: "ms-auto d-flex gap-1"},
          button(`Move ${item.name || "this " + spec.one} up`, "↑", (e) => move(e.currentTarget, -1)),
          button(`Move ${item.name || "this " + spec.one} down`, "↓", (e) => move(e.currentTarget, 1)),
          button(`Remove ${item.name || "this " + spec.one}`, "Remove", (e) => {
            const list = card.parentElement;
            card.remove();
            (list.querySelector(".editor-item button") || list.parentElement.querySelector(".add-item")).focus();
          }, "btn-outline-danger"))),
      el("div", {class: "card-body py-2"}, el("div", {class: "row g-2"}, main.map(make)),
        el("details", {class: "mt-2", open: more.some(([key]) => item[key] !== undefined && item[key] !== "" && !(Array.isArray(item[key]) && !item[key].length))},
          el("summary", {class: "small"}, `More: ${more.map(([, label]) => label.toLowerCase()).join(", ")}`),
          el("div", {class: "row g-2"}, more.map(make)))));
    const name = card.querySelector('[data-key="name"]');
    name.addEventListener("input", () => { title.textContent = name.value.trim() || `New ${spec.one}`; });
    return card;
  }

  function move(button, step) {
    const card = button.closest(".editor-item");
    const sibling = step < 0 ? card.previousElementSibling : card.nextElementSibling;
    if (!sibling) return;
    if (step < 0) sibling.before(card); else sibling.after(card);
    button.focus();
  }

  function value(control) {
    const kind = control.dataset.kind;
    if (kind === "check") return control.checked;
    const text = control.value.trim();
    if (text === "") return undefined;
    if (kind === "number" || kind === "integer") return Number(text);
    if (kind === "list") return text.split(/[,\s]+/).filter(Boolean);
    if (kind === "tristate") return text === "true";
    if (kind === "pairs") {
      const out = {};
      for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
        const at = line.indexOf("=");
        out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      return out;
    }
    return kind === "textarea" ? control.value : text;
  }

  /** The document the form shows: ``base`` with the form's fields over it. */
  function collect(box, base, script) {
    const doc = JSON.parse(JSON.stringify(base || {}));
    for (const key of ["accessURL", "controlParameters", "limits"]) delete doc[key];
    for (const control of box.querySelectorAll("#editor-meta [data-key]")) set(doc, control.dataset.key, value(control));
    if (doc.needs && !doc.needs.python && !doc.needs.commands) delete doc.needs;
    for (const kind of Object.keys(KINDS)) {
      const out = {};
      for (const card of box.querySelectorAll(`#rows-${kind} > .editor-item`)) {
        const item = {...((base[kind] || {})[card.dataset.orig] || {})};
        for (const control of card.querySelectorAll("[data-key]")) {
          if (control.dataset.key !== "name") set(item, control.dataset.key, value(control));
        }
        const name = card.querySelector('[data-key="name"]').value.trim();
        if (name) out[name] = item;
      }
      doc[kind] = out;
    }
    doc.script = script;
    return doc;
  }

  const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
  const PARAM_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
  const RESULT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
  const MULTIPLICITY = /^(?:\*|([0-9]+)|([0-9]+)\.\.([0-9]+|\*))$/;
  const INTEGER = /^[+-]?[0-9]+$/;
  const NUMBER = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

  function multiplicityError(text) {
    const m = MULTIPLICITY.exec(text || "1");
    if (!m) return "use 1, N, M..N, M..* or *";
    if (m[2] !== undefined && m[3] !== "*" && (Number(m[3]) < Number(m[2]) || Number(m[3]) === 0)) return "the maximum is below the minimum";
    return null;
  }

  function valueError(p, text) {
    const items = (p.multiplicity || "1") !== "1" ? text.split(/\s+/).filter(Boolean) : [text];
    for (const v of items) {
      if (["int", "long"].includes(p.type) && !INTEGER.test(v)) return `${v} is not an integer`;
      if (["float", "double"].includes(p.type) && !NUMBER.test(v)) return `${v} is not a number`;
      if (p.type === "boolean" && !["true", "false", "1", "0", "yes", "no"].includes(v.toLowerCase())) return `${v} is not true or false`;
      if (p.options && p.options.length && !p.options.includes(v)) return `${v} is not one of the allowed values`;
      if (p.min !== undefined && Number(v) < p.min) return `${v} is below the minimum`;
      if (p.max !== undefined && Number(v) > p.max) return `${v} is above the maximum`;
    }
    return null;
  }

  /** Every error the page can see, as [control, message]; the same rules as the server's. */
  function check(box, doc) {
    const errors = [];
    const at = (root, key) => root.querySelector(`[data-key="${key}"]`);
    const meta = box.querySelector("#editor-meta");
    if (!NAME.test(doc.name || "")) errors.push([at(meta, "name"), "a letter, then letters, digits, _ or - (at most 64)"]);
    if (!/^[^\x00-\x1f/\\]{1,64}$/.test(doc.version || "")) errors.push([at(meta, "version"), "1 to 64 characters, no / or \\"]);
    for (const key of ["executionDuration", "quote"]) {
      const v = doc[key];
      if (v !== undefined && v !== null && !(Number.isInteger(v) && v >= 0)) errors.push([at(meta, key), "a whole number of seconds, 0 or more"]);
    }
    for (const key of ["slurm"]) {
      if ((at(meta, key).value || "").split("\n").some((l) => l.trim() && !l.includes("="))) errors.push([at(meta, key), "one option=value a line"]);
    }
    const seen = new Map();
    const inputs = new Set();
    for (const kind of Object.keys(KINDS)) {
      for (const card of box.querySelectorAll(`#rows-${kind} > .editor-item`)) {
        const nameBox = at(card, "name");
        const name = nameBox.value.trim();
        const item = ((doc[kind] || {})[name]) || {};
        const pattern = kind === "generated" ? RESULT_NAME : PARAM_NAME;
        if (!pattern.test(name)) {
          errors.push([nameBox, kind === "generated" ? "a letter, then letters, digits, _ . or -" : "a letter, then letters, digits or _ (at most 64)"]);
          continue;
        }
        const scope = kind === "generated" ? "generated" : "names";
        if (seen.has(`${scope}:${name}`)) { errors.push([nameBox, `${name} is already used above`]); continue; }
        seen.set(`${scope}:${name}`, card);
        if (kind === "used") inputs.add(name);
        if (kind !== "generated" && item.multiplicity !== undefined && multiplicityError(item.multiplicity)) {
          errors.push([at(card, "multiplicity"), multiplicityError(item.multiplicity)]);
        }
        if (kind === "parameters") {
          if (item.min !== undefined && item.max !== undefined && item.min > item.max) errors.push([at(card, "max"), "below the minimum"]);
          const problem = item.default !== undefined ? valueError(item, item.default) : null;
          if (problem) errors.push([at(card, "default"), `the default does not fit: ${problem}`]);
        }
        if (kind === "used" && item.url && !(/^https?:\/\//.test(item.url) && item.url.includes("$ID"))) {
          errors.push([at(card, "url"), "an http(s) URL holding $ID"]);
        }
        if (kind === "generated") {
          const file = item.file || name;
          if (file.includes("/") || file.startsWith(".")) errors.push([at(card, "file"), "a name in the work directory (no /, not starting with .)"]);
          if ((at(card, "obscore").value || "").split("\n").some((l) => l.trim() && !l.includes("="))) errors.push([at(card, "obscore"), "one key=value a line"]);
        }
      }
    }
    for (const card of box.querySelectorAll("#rows-generated > .editor-item")) {
      const unknown = (value(at(card, "derived_from")) || []).filter((u) => !inputs.has(u));
      if (unknown.length) errors.push([at(card, "derived_from"), `not an input: ${unknown.join(", ")}`]);
    }
    if (!(doc.script || "").trim()) errors.push([box.querySelector("#script"), "the script is empty"]);
    return errors;
  }

  /** The item card (or metadata field) a server message names ("parameter 'x'", "result 'y'", ...). */
  function locate(box, message, docName) {
    const names = [...message.matchAll(/'([^']+)'/g)].map((m) => m[1]).filter((n) => n !== docName);
    for (const name of names) {
      const card = [...box.querySelectorAll(".editor-item")].find((c) => c.querySelector('[data-key="name"]').value.trim() === name);
      if (card) {
        const keyed = [...card.querySelectorAll("[data-key]")].find((c) => new RegExp(`\\b${c.dataset.key}\\b`).test(message.split(`'${name}'`).pop()));
        return keyed && keyed.dataset.key !== "name" ? keyed : card.querySelector('[data-key="name"]');
      }
    }
    for (const [key] of META) {
      if (new RegExp(`\\b${key.split(".").pop()}\\b`, "i").test(message)) return box.querySelector(`#editor-meta [data-key="${key}"]`);
    }
    if (/script/i.test(message)) return box.querySelector("#script");
    return null;
  }

  window.OPUS.editorFields = {KINDS, metaFields, itemCard, collect, check, locate};
})();
