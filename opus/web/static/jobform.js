/*
 * The job form, generated from the definition's JSON (/jdl/<name>?format=json): one input per
 * parameter by type (numbers with min/max, selects for options, switches for booleans), a file,
 * URL or identifier for each input, the control parameters; required fields first, optional
 * ones behind "Show optional".  The server checks everything; its 400 ("parameter 'x': ...") is
 * shown next to the field it names.  ?from=<job id> prefills the form from that job.
 */
(function () {
  "use strict";
  const {client, el, root, showError} = OPUS;
  const form = document.getElementById("job-form");
  const jobname = form.dataset.jobname;
  const general = document.getElementById("form-general");
  const requiredBox = document.getElementById("required-fields");
  const optionalBox = document.getElementById("optional-fields");
  const optionalBlock = document.getElementById("optional-block");
  const toggle = document.getElementById("toggle-optional");
  const controlBox = document.getElementById("control-fields");
  const controlBlock = document.getElementById("control-block");
  const fields = new Map();  // lower-case name -> {name, kind, get(), set(), wrap, input, feedback, section}
  const SKIPPED_CONTROL = new Set(["PHASE", "QUOTE"]);
  let counter = 0;

  function label(name, desc, required, id) {
    return el("label", {class: "form-label", for: id}, el("span", {class: "font-monospace"}, name),
      desc.unit ? el("span", {class: "text-body-secondary"}, ` (${desc.unit})`) : "",
      required ? [el("span", {class: "text-danger ms-1", "aria-hidden": "true"}, "*"), el("span", {class: "visually-hidden"}, " (required)")] : "");
  }

  function help(desc, id) {
    const bits = [desc.description || ""];
    if (desc.min !== undefined && desc.min !== null) bits.push(`min ${desc.min}`);
    if (desc.max !== undefined && desc.max !== null) bits.push(`max ${desc.max}`);
    if (desc.multiplicity && desc.multiplicity !== "1") bits.push(`several values separated by spaces (${desc.multiplicity})`);
    return el("div", {class: "form-text", id}, bits.filter(Boolean).join(" · "));
  }

  /** One parameter (of the definition or a control parameter). */
  function parameterField(name, desc, required, section) {
    const id = `f${++counter}`;
    const type = desc.type || "string";
    const common = {id, name, "aria-describedby": `${id}-help ${id}-error`, required: required || undefined};
    let input;
    let get;
    let set;
    if (type === "boolean") {
      input = el("input", {...common, class: "form-check-input", type: "checkbox", role: "switch"});
      get = () => (input.checked ? "true" : "false");
      set = (v) => { input.checked = ["true", "1", "yes"].includes(String(v).toLowerCase()); };
    } else if (desc.options && desc.options.length) {
      input = el("select", {...common, class: "form-select"},
        required && desc.default ? "" : el("option", {value: ""}, required ? "Choose…" : "(none)"),
        desc.options.map((o) => el("option", {value: o}, o)));
      get = () => input.value; set = (v) => { input.value = v; };
    } else {
      const attrs = {...common, class: "form-control"};
      const multiple = desc.multiplicity && desc.multiplicity !== "1";
      if (!multiple && ["int", "long", "float", "double"].includes(type)) {
        Object.assign(attrs, {type: "number", inputmode: "decimal", step: ["int", "long"].includes(type) ? "1" : "any",
          min: desc.min ?? undefined, max: desc.max ?? undefined});
      } else if (type === "anyURI" && !multiple) {
        attrs.type = "url";
      } else {
        attrs.type = "text";
        if (type === "dateTime") attrs.placeholder = "2030-01-01T00:00:00Z";
      }
      input = (String(desc.default || "").length > 80) ? el("textarea", {...common, class: "form-control", rows: 3}) : el("input", attrs);
      get = () => input.value.trim(); set = (v) => { input.value = v; };
    }
    if (desc.default !== undefined && desc.default !== null) set(desc.default);
    const feedback = el("div", {class: "invalid-feedback", id: `${id}-error`});
    const wrap = type === "boolean"
      ? el("div", {class: "mb-3"}, el("div", {class: "form-check form-switch"}, input,
        el("label", {class: "form-check-label", for: id}, el("span", {class: "font-monospace"}, name))), help(desc, `${id}-help`), feedback)
      : el("div", {class: "mb-3"}, label(name, desc, required, id), input, help(desc, `${id}-help`), feedback);
    wrap.dataset.field = name;
    fields.set(name.toLowerCase(), {name, kind: "parameter", get, set, wrap, input, feedback, section});
    return wrap;
  }

  /** An input entity: an uploaded file, or a URL / this server's /store URL / an identifier. */
  function inputField(name, desc, section) {
    const id = `f${++counter}`;
    const required = desc.required !== false;
    const file = el("input", {id: `${id}-file`, class: "form-control", type: "file", "aria-describedby": `${id}-help ${id}-error`,
      "aria-label": `${name}: file to upload`});
    const ref = el("input", {id: `${id}-ref`, class: "form-control d-none", type: "text", "aria-describedby": `${id}-help ${id}-error`,
      "aria-label": `${name}: URL or identifier`, placeholder: desc.url ? "identifier" : "https://… or a /store URL"});
    const radio = (value, text, checked) => el("div", {class: "form-check form-check-inline"},
      el("input", {class: "form-check-input", type: "radio", name: `${id}-mode`, id: `${id}-${value}`, value, checked,
        onchange: () => setMode(value)}),
      el("label", {class: "form-check-label", for: `${id}-${value}`}, text));
    const setMode = (mode) => {
      file.classList.toggle("d-none", mode !== "file");
      ref.classList.toggle("d-none", mode !== "ref");
      document.getElementById(`${id}-${mode}`).checked = true;
    };
    const feedback = el("div", {class: "invalid-feedback d-block", id: `${id}-error`});
    const previous = el("div", {class: "form-text"});
    const hint = desc.url ? `an identifier is resolved through ${desc.url}` : "a URL, this server's /store URL of an earlier result, or an identifier";
    const wrap = el("div", {class: "mb-3", role: "group", "aria-labelledby": `${id}-label`, dataset: {field: name}},
      el("div", {class: "form-label", id: `${id}-label`}, el("span", {class: "font-monospace"}, name),
        el("span", {class: "badge text-bg-light border ms-2 fw-normal"}, "input"),
        required ? [el("span", {class: "text-danger ms-1", "aria-hidden": "true"}, "*"), el("span", {class: "visually-hidden"}, " (required)")] : ""),
      el("div", {}, radio("file", "Upload a file", true), radio("ref", "URL or identifier", false)),
      file, ref, previous,
      el("div", {class: "form-text", id: `${id}-help`}, [desc.description, desc.content_type, hint].filter(Boolean).join(" · ")),
      feedback);
    const entry = {name, kind: "input", wrap, input: file, feedback, section,
      get: () => (file.classList.contains("d-none") ? ref.value.trim() : file.files[0]),
      set: (v, byReference) => {
        if (byReference && /\/parameters\//.test(v)) {
          // On this page's origin, whichever origin the API names for files (RESULTS_BASE_URL).
          const own = /\/rest\/[^/?#]+\/[0-9a-f]{16}\/parameters\/[^/?#]+$/.exec(v);
          previous.replaceChildren("Before: ", el("a", {href: own ? root + own[0] : OPUS.local(v)}, "the uploaded file"), " (upload it again, or give its /store URL)");
        } else { ref.value = v; setMode("ref"); }
      }};
    if (desc.default) entry.set(desc.default);
    fields.set(name.toLowerCase(), entry);
    return wrap;
  }

  function showOptional(open) {
    optionalBox.classList.toggle("d-none", !open);
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide optional parameters" : "Show optional parameters";
  }

  function build(def) {
    document.getElementById("definition-description").textContent = def.description || "";
    let optional = 0;
    const add = (box, node) => box.append(node);
    for (const [name, desc] of Object.entries(def.used || {})) {
      const required = desc.required !== false;
      add(required ? requiredBox : optionalBox, inputField(name, desc, required ? "required" : "optional"));
      if (!required) optional++;
    }
    for (const [name, desc] of Object.entries(def.parameters || {})) {
      const required = desc.required === true;
      add(required ? requiredBox : optionalBox, parameterField(name, desc, required, required ? "required" : "optional"));
      if (!required) optional++;
    }
    if (!requiredBox.querySelector("[data-field]")) {
      requiredBox.append(el("p", {class: "text-body-secondary small"}, optional ? "No required parameter." : "This job takes no parameter."));
    }
    optionalBlock.classList.toggle("d-none", optional === 0);
    for (const desc of def.controlParameters || []) {
      if (SKIPPED_CONTROL.has(desc.name)) continue;
      controlBox.append(parameterField(desc.name, {...desc, default: desc.default ?? null}, false, "control"));
    }
  }

  async function prefill(jobId) {
    const job = await client.job(jobname, jobId);
    for (const p of job.parameters) {
      const f = fields.get(p.id.toLowerCase());
      if (f) f.set(p.value, p.byReference);
      if (f && f.section === "optional") showOptional(true);
    }
    if (job.runId && fields.has("runid")) fields.get("runid").set(job.runId);
    OPUS.notify(`Prefilled from job ${jobId}.`, "info");
  }

  function clearErrors() {
    general.classList.add("d-none");
    for (const f of fields.values()) { f.wrap.querySelectorAll(".is-invalid").forEach((n) => n.classList.remove("is-invalid")); f.feedback.textContent = ""; }
  }

  /** The server's 400 names a field: show it there (opening its section), else above the form. */
  function showServerError(err) {
    const match = err.field || (/^(RUNID|EXECUTIONDURATION|DESTRUCTION|slurm_[a-z_]+)\b/i.exec(err.message) || [])[1];
    const f = match && fields.get(match.toLowerCase());
    if (!f) {
      general.textContent = err.message;
      general.classList.remove("d-none");
      general.focus && general.scrollIntoView({block: "nearest"});
      return;
    }
    if (f.section === "optional") showOptional(true);
    if (f.section === "control") controlBlock.open = true;
    f.input.classList.add("is-invalid");
    f.feedback.textContent = err.message;
    f.input.focus();
  }

  async function submit(run) {
    clearErrors();
    const data = new FormData();
    for (const f of fields.values()) {
      const value = f.get();
      if (value === undefined || value === "" || value === null) continue;
      data.append(f.name, value);
    }
    const buttons = form.querySelectorAll("button[type=submit]");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const job = await client.createJob(jobname, data, {run});
      location.assign(`${root}/web/jobs/${encodeURIComponent(jobname)}/${job.jobId}`);
    } catch (err) {
      buttons.forEach((b) => { b.disabled = false; });
      if (err.status === 400 || err.status === 413) showServerError(err);
      else showError(err, "Creating the job");
    }
  }

  toggle.addEventListener("click", () => showOptional(optionalBox.classList.contains("d-none")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(Boolean((e.submitter || document.getElementById("create-run")).dataset.run));
  });

  (async () => {
    try {
      build(await client.definition(jobname));
      if (form.dataset.from) await prefill(form.dataset.from);
    } catch (err) { showError(err, "Loading the form"); }
    form.removeAttribute("aria-busy");
    form.dataset.ready = "1";
  })();
})();
