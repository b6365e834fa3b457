/*
 * The job definition editor: metadata, parameters, inputs (used), results (generated) and the bash
 * script (CodeMirror), as a form over the definition's JSON.  Start from a live definition
 * (?name=), a proposal (?proposal=), a blank one, or import a JSON, VOTable or WADL file (imported
 * through POST /jdl, which reads every format: the file becomes your proposal, then loads here).
 * "Propose" sends the JSON to POST /jdl; admins may then validate it, by the digest POST /jdl answered
 * (the proposal's SHA-256).  Proposing a name someone else's proposal holds is refused (409).
 * Exports are /jdl's formats.
 */
(function () {
  "use strict";
  const {client, el, root, showError, notify} = OPUS;
  const box = document.getElementById("editor");
  const params = new URLSearchParams(location.search);
  const TYPES = ["string", "int", "long", "float", "double", "boolean", "dateTime", "anyURI"];
  const META = [["name", "Name", "text"], ["version", "Version", "text"], ["type", "Type", "text"], ["subtype", "Subtype", "text"],
    ["doculink", "Documentation link", "text"], ["executionDuration", "Execution duration (s)", "number"], ["quote", "Quote (s)", "number"]];
  const TABLES = {
    parameters: [["name", "Name"], ["type", "Type", TYPES], ["default", "Default"], ["required", "Required", "check"], ["min", "Min", "number"],
      ["max", "Max", "number"], ["options", "Options (comma-separated)"], ["unit", "Unit"], ["description", "Description"]],
    used: [["name", "Name"], ["description", "Description"], ["content_type", "Content type"], ["required", "Required", "check"],
      ["multiplicity", "Multiplicity"], ["url", "URL template ($ID)"]],
    generated: [["name", "Name"], ["file", "File or pattern"], ["content_type", "Content type"], ["role", "Role"], ["description", "Description"]],
  };
  let base = {};   // the loaded document: keys the form does not show are kept
  let editor = null;
  let source = null;  // {kind: "live"|"proposal", name}

  const id = (...parts) => parts.join("-");
  function input(name, label, type, value) {
    return el("div", {class: "col-sm-6 col-lg-3"}, el("label", {class: "form-label", for: id("meta", name)}, label),
      el("input", {class: "form-control", id: id("meta", name), name, type, value: value ?? "", step: type === "number" ? "any" : undefined}));
  }

  function row(table, item) {
    const cells = TABLES[table].map(([key, label, kind]) => {
      const attrs = {class: "form-control form-control-sm", "aria-label": label, dataset: {key}};
      let control;
      if (Array.isArray(kind)) {
        control = el("select", {...attrs, class: "form-select form-select-sm"}, kind.map((t) => el("option", {selected: (item[key] || "string") === t}, t)));
      } else if (kind === "check") {
        control = el("input", {class: "form-check-input", type: "checkbox", "aria-label": label, dataset: {key},
          checked: table === "used" ? item[key] !== false : item[key] === true});
      } else {
        const value = key === "options" ? (item.options || []).join(", ") : item[key];
        control = el("input", {...attrs, type: kind === "number" ? "number" : "text", step: "any", value: value ?? ""});
      }
      return el("td", {}, control);
    });
    return el("tr", {dataset: {row: table}}, cells, el("td", {}, el("button", {type: "button", class: "btn btn-sm btn-outline-danger",
      "aria-label": "Remove this row", onclick: (e) => e.currentTarget.closest("tr").remove()}, "×")));
  }

  function table(name, title, items) {
    const body = el("tbody", {id: id("rows", name)}, Object.entries(items || {}).map(([key, item]) => row(name, {...item, name: key})));
    return el("section", {class: "mb-4", "aria-labelledby": id("title", name)},
      el("h2", {class: "h5", id: id("title", name)}, title),
      el("div", {class: "table-responsive"}, el("table", {class: "table table-sm align-middle", id: id("table", name)},
        el("thead", {}, el("tr", {}, TABLES[name].map(([, label]) => el("th", {scope: "col", class: "small"}, label)), el("th", {}))), body)),
      el("button", {type: "button", class: "btn btn-sm btn-outline-secondary", id: id("add", name), onclick: () => body.append(row(name, {}))}, `Add ${title.toLowerCase().replace(/s$/, "")}`));
  }

  /** The form as a definition document (JSON). */
  function collect() {
    const doc = {...base};
    delete doc.accessURL; delete doc.controlParameters;
    for (const [key, , type] of META) {
      const v = document.getElementById(id("meta", key)).value.trim();
      if (v === "") delete doc[key]; else doc[key] = type === "number" ? Number(v) : v;
    }
    doc.description = document.getElementById("meta-description").value;
    doc.contact = {name: document.getElementById("meta-contact-name").value, email: document.getElementById("meta-contact-email").value};
    for (const name of Object.keys(TABLES)) {
      const out = {};
      for (const tr of document.querySelectorAll(`#rows-${name} tr`)) {
        const item = {...(((base[name] || {})[tr.querySelector('[data-key="name"]').value.trim()]) || {})};
        let key = "";
        for (const control of tr.querySelectorAll("[data-key]")) {
          const k = control.dataset.key;
          const v = control.type === "checkbox" ? control.checked : control.value.trim();
          if (k === "name") { key = v; continue; }
          if (k === "options") { if (v) item.options = v.split(",").map((o) => o.trim()).filter(Boolean); else delete item.options; continue; }
          if (v === "" && control.type !== "checkbox") { delete item[k]; continue; }
          item[k] = control.type === "number" ? Number(v) : v;
        }
        if (key) out[key] = item;
      }
      doc[name] = out;
    }
    doc.script = editor.getValue();
    return doc;
  }

  function render(doc, origin) {
    base = doc;
    source = origin;
    const meta = el("section", {class: "mb-4", "aria-labelledby": "title-meta"}, el("h2", {class: "h5", id: "title-meta"}, "Metadata"),
      el("div", {class: "row g-2"}, META.map(([key, label, type]) => input(key, label, type, doc[key])),
        input("contact-name", "Contact name", "text", (doc.contact || {}).name), input("contact-email", "Contact email", "email", (doc.contact || {}).email),
        el("div", {class: "col-12"}, el("label", {class: "form-label", for: "meta-description"}, "Description"),
          el("textarea", {class: "form-control", id: "meta-description", rows: 2}, doc.description || ""))));
    const script = el("section", {class: "mb-4", "aria-labelledby": "title-script"}, el("h2", {class: "h5", id: "title-script"}, el("label", {for: "script"}, "Script (bash)")),
      el("p", {class: "small text-body-secondary"}, "Parameters arrive as environment variables ($name) and in $OPUS_PARAMETERS; never as shell code."),
      el("textarea", {id: "script", class: "form-control font-monospace", rows: 10}, doc.script || ""));
    box.replaceChildren(toolbar(), meta, table("parameters", "Parameters", doc.parameters), table("used", "Inputs", doc.used),
      table("generated", "Results", doc.generated), script, actions());
    editor = CodeMirror.fromTextArea(document.getElementById("script"), {mode: "shell", lineNumbers: true, indentUnit: 4,
      viewportMargin: Infinity, screenReaderLabel: "Script (bash)"});
    box.dataset.ready = "1";
  }

  function toolbar() {
    const file = el("input", {type: "file", class: "form-control", id: "import-file", accept: ".json,.vot,.xml,.wadl"});
    file.addEventListener("change", () => file.files[0] && importFile(file.files[0]));
    const exports = source ? ["votable", "json", "wadl"].map((f) => el("a", {class: "btn btn-sm btn-outline-secondary", dataset: {format: f},
      href: `${root}/jdl/${source.kind === "proposal" ? "proposals/" : ""}${encodeURIComponent(source.name)}?format=${f}`}, `Export ${f === "votable" ? "VOTable" : f.toUpperCase()}`)) : [];
    return el("div", {class: "card card-body mb-4"}, el("div", {class: "row g-2 align-items-end"},
      el("div", {class: "col-md-5"}, el("label", {class: "form-label", for: "import-file"}, "Import a definition (JSON, VOTable or WADL)"), file,
        el("div", {class: "form-text"}, "The file is proposed under its name, then loaded here to edit.")),
      el("div", {class: "col-md-7 d-flex flex-wrap gap-2"},
        el("span", {class: "align-self-center small text-body-secondary"}, source ? `Editing the ${source.kind} definition ${source.name}` : "A new definition"),
        exports)));
  }

  function actions() {
    const propose = el("button", {type: "button", class: "btn btn-primary", id: "propose"}, "Propose");
    propose.addEventListener("click", async () => {
      let doc;
      try { doc = collect(); } catch (err) { showError(err); return; }
      try {
        const meta = await client.proposeDefinition(JSON.stringify(doc), "json");
        source = {kind: "proposal", name: meta.name};
        // The digest names exactly the document just proposed: "Validate now" makes that one live, or
        // is refused (409) if the proposal changed since.
        const note = notify(el("span", {id: "proposed"}, `Proposed ${meta.name} v${meta.version} `,
          el("code", {class: "small proposal-digest", title: `SHA-256 ${meta.digest}`, dataset: {digest: meta.digest}}, meta.digest.slice(0, 12)), ": ",
          el("a", {href: `${root}/jdl/proposals/${encodeURIComponent(meta.name)}?format=json&digest=${meta.digest}`}, "view it"),
          OPUS.admin ? "" : "; an admin validates it."), "success");
        if (OPUS.admin) {
          note.insertBefore(el("button", {type: "button", class: "btn btn-sm btn-success ms-2", id: "validate", onclick: async () => {
            try { await client.validateProposal(meta.name, meta.digest); notify(`${meta.name} v${meta.version} is live.`, "success"); } catch (err) { showError(err, "Validate"); }
          }}, "Validate now"), note.lastChild);
        }
        box.querySelector(".card").replaceWith(toolbar());
      } catch (err) { showError(err, "Proposing"); }
    });
    const download = el("button", {type: "button", class: "btn btn-outline-secondary", onclick: () => {
      const doc = collect();
      const a = el("a", {href: URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], {type: "application/json"})), download: `${doc.name || "definition"}.json`});
      a.click();
    }}, "Download JSON");
    return el("div", {class: "d-flex gap-2"}, propose, download);
  }

  async function importFile(file) {
    const text = await file.text();
    const format = /\.wadl$/i.test(file.name) || /<application[\s>]/.test(text) ? "wadl"
      : /^\s*[{[]/.test(text) ? "json" : "votable";
    try {
      const meta = await client.proposeDefinition(text, format);
      notify(`Imported ${file.name}: proposed as ${meta.name} v${meta.version}.`, "info");
      await load({kind: "proposal", name: meta.name});
    } catch (err) { showError(err, `Importing ${file.name}`); }
  }

  async function load(origin) {
    if (!origin) { render({name: "", version: "1", parameters: {}, used: {}, generated: {}, script: "#!/bin/bash\n"}, null); return; }
    const doc = origin.kind === "proposal" ? JSON.parse(await client.proposal(origin.name, "json")) : await client.definition(origin.name);
    render(doc, origin);
  }

  const name = params.get("name");
  const proposal = params.get("proposal");
  load(proposal ? {kind: "proposal", name: proposal} : name ? {kind: "live", name} : null).catch((err) => { showError(err, "Loading"); load(null); });
})();
