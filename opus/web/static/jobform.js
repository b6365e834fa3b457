/*
 * The job form, generated from the definition's JSON (/jdl/<name>?format=json).
 *
 * Fields come in the definition's order: its inputs (an uploaded file, a URL or /store URL, or the
 * definition's default), then its parameters (numbers, selects for options, switches for booleans,
 * files).  The required fields and those the definition marks "prominent" are shown; without any
 * marker, the first four fields are shown too; the rest are one click away ("Show more").  SLURM
 * resources get their own section when the server runs jobs with SLURM (its controlParameters list
 * slurm_* options); run id, duration and destruction sit under "Job control".
 *
 * Nothing is sent that the user did not see: each field sends its value exactly as shown, every value
 * is checked in the page first (formcheck.js: type, min/max, options, multiplicity, required) and all
 * errors are shown at once, next to their fields; an emptied field is an error, never the default.
 * The server checks again; its 400 is shown next to the field it names.
 * ?from=<job id> prefills the form from that job ("Run again"), uploaded inputs by their /store URL.
 */
(function () {
  "use strict";
  const {client, el, root, showError, check} = OPUS;
  const $ = (id) => document.getElementById(id);
  const form = $("job-form");
  const jobname = form.dataset.jobname;
  const general = $("form-general");
  const mainBox = $("main-fields");
  const moreBox = $("more-fields");
  const moreBlock = $("more-block");
  const toggle = $("toggle-optional");
  const slurmBlock = $("slurm-fields");
  const controlBox = $("control-fields");
  const controlBlock = $("control-block");
  const fields = new Map();  // lower-case name -> field (see makeField)
  const SKIPPED_CONTROL = new Set(["PHASE", "QUOTE"]);
  const FEW = 4;  // fields shown first (with the required ones) when the definition marks none prominent
  const NUMERIC = ["int", "long", "float", "double"];
  // opus/jobdef/slurm_options.py: names, sizes (whole numbers are checked by type, min and max).
  const SLURM_NAME = {pattern: "^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}$", patternHelp: "letters, digits, '_', '.', '-' (at most 64)"};
  const SLURM_CHECKS = {slurm_partition: SLURM_NAME, slurm_account: SLURM_NAME, slurm_qos: SLURM_NAME,
    slurm_mem: {pattern: "^[1-9][0-9]{0,9}[KMGT]?$", patternHelp: "a size such as 500M, 4G or 1024 (megabytes)"}};
  const UPLOADED = /\/rest\/[^/?#]+\/[0-9a-f]{16}\/parameters\/[^/?#]+$/;
  let counter = 0;
  let checked = false;  // after a first attempt, fields are checked again as they change

  const requiredMark = (required) => (required
    ? [el("span", {class: "text-danger ms-1", "aria-hidden": "true"}, "*"), el("span", {class: "visually-hidden"}, " (required)")] : "");
  const hasDefault = (desc) => desc.default !== undefined && desc.default !== null;

  function helpText(desc, extra) {
    const bits = [desc.description || ""];
    const range = [desc.min, desc.max].map((v) => (v === undefined || v === null ? null : v));
    if (range[0] !== null && range[1] !== null) bits.push(`from ${range[0]} to ${range[1]}`);
    else if (range[0] !== null) bits.push(`at least ${range[0]}`);
    else if (range[1] !== null) bits.push(`at most ${range[1]}`);
    if (check.isMultiple(desc)) bits.push(`several values separated by spaces (${desc.multiplicity})`);
    if (hasDefault(desc) && desc.type !== "boolean") bits.push(`default ${desc.default === "" ? "empty" : desc.default}`);
    return bits.concat(extra || []).filter(Boolean).join(" · ");
  }

  /**
   * A field: {name, kind, desc, wrap, input (what gets focus), feedback, section, read(), set(v)}.
   * read() gives {error} or {value} (value undefined: nothing to send).
   */
  function makeField(entry) {
    entry.wrap.dataset.field = entry.name;
    fields.set(entry.name.toLowerCase(), entry);
    for (const node of entry.wrap.querySelectorAll("input, select, textarea")) {
      node.addEventListener(["text", "url", "textarea"].includes(node.type) ? "input" : "change", () => { if (checked) showFieldError(entry); });
    }
    return entry.wrap;
  }

  /** One parameter of the definition, or a control parameter. */
  function parameterField(name, desc, required, section, extraHelp) {
    const id = `f${++counter}`;
    const type = desc.type || "string";
    const multiple = check.isMultiple(desc);
    const describedBy = `${id}-help ${id}-error`;
    const common = {id, name, "aria-describedby": describedBy, "aria-required": required ? "true" : undefined};
    let input;
    let read;
    let set = (v) => { input.value = v; };
    if (type === "boolean" && !multiple) {
      input = el("input", {...common, class: "form-check-input", type: "checkbox", role: "switch"});
      read = () => ({value: input.checked ? "true" : "false"});
      set = (v) => { input.checked = ["true", "1", "yes"].includes(String(v).toLowerCase()); };
    } else if (type === "file") {
      input = el("input", {...common, class: "form-control", type: "file"});
      read = () => (input.files[0] ? {value: input.files[0]} : {error: required ? "Required: choose a file." : null});
      set = () => {};
    } else if (desc.options && desc.options.length && !multiple) {
      input = el("select", {...common, class: "form-select"},
        hasDefault(desc) ? "" : el("option", {value: ""}, required ? "Choose…" : "(none)"),
        desc.options.map((o) => el("option", {value: o}, o)));
      set = (v) => {
        if (!desc.options.includes(v) && v !== "") input.append(el("option", {value: v}, `${v} (not allowed)`));
        input.value = v;
      };
      read = () => valueOf(desc, input.value);
    } else {
      const attrs = {...common, class: "form-control", type: "text", autocomplete: "off"};
      if (NUMERIC.includes(type) && !multiple) {
        attrs.class += " opus-number";
        attrs.spellcheck = "false";
        attrs.inputmode = type === "int" || type === "long" ? "numeric" : "decimal";
        if (desc.min === undefined || desc.min === null || desc.min < 0) attrs.inputmode = "text";
      } else if (type === "anyURI" && !multiple) {
        attrs.type = "url";
      } else if (type === "dateTime") {
        attrs.placeholder = "2030-01-01T00:00:00Z";
        attrs.spellcheck = "false";
      }
      if (desc.maxLength) attrs.maxlength = desc.maxLength;
      const long = String(desc.default || "").length > 80;
      input = long ? el("textarea", {...common, class: "form-control", rows: 3}) : el("input", attrs);
      read = () => valueOf(desc, input.value);
    }
    if (hasDefault(desc)) set(desc.default);
    const feedback = el("div", {class: "invalid-feedback", id: `${id}-error`});
    const help = el("div", {class: "form-text", id: `${id}-help`}, helpText(desc, extraHelp));
    const unit = desc.unit ? el("span", {class: "text-body-secondary"}, ` (${desc.unit})`) : "";
    const wrap = type === "boolean" && !multiple
      ? el("div", {class: "opus-field"}, el("div", {class: "form-check form-switch"}, input,
        el("label", {class: "form-check-label", for: id}, el("span", {class: "font-monospace"}, name), requiredMark(required))), help, feedback)
      : el("div", {class: "opus-field"}, el("label", {class: "form-label", for: id}, el("span", {class: "font-monospace"}, name), unit,
        requiredMark(required)), input, help, feedback);
    return makeField({name, kind: section === "control" || section === "slurm" ? "control" : "parameter",
      desc, wrap, input, feedback, section, read, set});
  }

  /** The value of a text field as shown (strings exactly, other types without surrounding blanks). */
  function valueOf(desc, text) {
    const error = check.value(desc, text);
    if (error) return {error};
    if (!String(text).trim()) return {};  // optional, no default: nothing sent, nothing shown
    return {value: (desc.type || "string") === "string" ? text : String(text).trim()};
  }

  /** An input entity: an uploaded file, a URL (or this server's /store URL, or an identifier), or the default. */
  function inputField(name, desc, section) {
    const id = `f${++counter}`;
    const required = desc.required !== false;
    const describedBy = `${id}-help ${id}-error`;
    const file = el("input", {id: `${id}-file`, class: "form-control", type: "file", "aria-describedby": describedBy,
      "aria-label": `${name}: file to upload`});
    const ref = el("input", {id: `${id}-ref`, class: "form-control d-none", type: "text", autocomplete: "off", spellcheck: "false",
      "aria-describedby": describedBy, "aria-label": `${name}: URL or identifier`,
      placeholder: desc.url ? "an identifier, or https://…" : "https://… or a /store URL"});
    const fallback = hasDefault(desc)
      ? el("div", {class: "form-text d-none", id: `${id}-default-text`}, "The definition's default is used: ", el("code", {}, desc.default)) : null;
    const radios = {};
    const radio = (value, text) => {
      radios[value] = el("input", {class: "form-check-input", type: "radio", name: `${id}-mode`, id: `${id}-mode-${value}`, value,
        onchange: () => setMode(value)});
      return el("div", {class: "form-check form-check-inline"}, radios[value], el("label", {class: "form-check-label", for: `${id}-mode-${value}`}, text));
    };
    let mode = "file";
    const setMode = (next) => {
      mode = next;
      file.classList.toggle("d-none", mode !== "file");
      ref.classList.toggle("d-none", mode !== "ref");
      if (fallback) fallback.classList.toggle("d-none", mode !== "default");
      radios[mode].checked = true;
      entry.input = mode === "file" ? file : mode === "ref" ? ref : radios[mode];
    };
    const feedback = el("div", {class: "invalid-feedback d-block", id: `${id}-error`});
    const previous = el("div", {class: "form-text opus-previous"});
    const hint = desc.url ? `an identifier is resolved through ${desc.url}` : "a URL, or this server's /store URL of an earlier result or input";
    const wrap = el("div", {class: "opus-field opus-wide", role: "group", "aria-labelledby": `${id}-label`},
      el("div", {class: "form-label", id: `${id}-label`}, el("span", {class: "font-monospace"}, name),
        el("span", {class: "badge text-bg-light border ms-2 fw-normal"}, "input"), requiredMark(required && !fallback)),
      el("div", {}, radio("file", "Upload a file"), radio("ref", "URL or identifier"), fallback ? radio("default", "Default") : ""),
      file, ref, fallback, previous,
      el("div", {class: "form-text", id: `${id}-help`}, [desc.description, desc.content_type, hint].filter(Boolean).join(" · ")),
      feedback);
    const entry = {name, kind: "input", desc, wrap, input: file, feedback, section,
      read: () => {
        if (mode === "default") return {};
        if (mode === "file") {
          if (file.files[0]) return {value: file.files[0]};
          return required && !fallback ? {error: "Required: choose a file to upload, or give a URL."} : {};
        }
        const error = check.input({...desc, required: required || Boolean(fallback)}, ref.value);
        if (error) return {error};
        const text = ref.value.trim().split(/\s+/).map((item) => (item.startsWith("/store") ? location.origin + item : item)).join(" ");
        return text ? {value: text} : {};
      },
      set: (v) => { ref.value = v; setMode("ref"); },
      /** The job being run again had this input uploaded; its file is kept at `store` (if known). */
      uploaded: (href, store) => {
        if (store) {
          entry.set(store);
          previous.replaceChildren("The file uploaded to the earlier job, from the result store (",
            el("a", {href: OPUS.local(href)}, "see it"), ").");
        } else {
          previous.replaceChildren("Before: ", el("a", {href: OPUS.local(href)}, "the uploaded file"),
            " (not in the result store yet: upload it again)");
        }
      }};
    setMode(fallback ? "default" : "file");
    return makeField(entry);
  }

  /** Whether a field holds what the definition gives when nothing is said (its default, or nothing). */
  function untouched(f) {
    const {error, value} = f.read();
    if (error) return false;
    if (value instanceof File) return false;
    const nothing = f.desc.type === "boolean" ? "false" : "";  // an unset switch is off
    return f.kind === "input" ? value === undefined : String(value ?? nothing) === String(f.desc.default ?? nothing);
  }

  /** Open or close "more parameters"; closed, it says whether they still hold their defaults. */
  function showMore(open) {
    moreBox.classList.toggle("d-none", !open);
    toggle.setAttribute("aria-expanded", String(open));
    if (open) { toggle.textContent = "Show fewer parameters"; return; }
    const hidden = [...fields.values()].filter((f) => f.section === "more");
    const changed = hidden.filter((f) => !untouched(f)).length;
    toggle.textContent = `Show ${hidden.length} more parameters` + (changed ? ` (${changed} changed)` : " (at their defaults)");
  }

  function build(def) {
    $("definition-description").textContent = def.description || "";
    const entries = [
      ...Object.entries(def.used || {}).map(([name, desc]) => ({name, desc, input: true, required: desc.required !== false})),
      ...Object.entries(def.parameters || {}).map(([name, desc]) => ({name, desc, input: false, required: desc.required === true})),
    ];
    const marked = entries.some((e) => e.desc.prominent === true);
    entries.forEach((e, i) => {
      e.section = e.required || (marked ? e.desc.prominent === true : i < FEW) ? "main" : "more";
    });
    // Hiding one or two fields saves less room than the click costs.
    if (entries.filter((e) => e.section === "more").length <= 2) entries.forEach((e) => { e.section = "main"; });
    for (const e of entries) {
      const node = e.input ? inputField(e.name, e.desc, e.section) : parameterField(e.name, e.desc, e.required, e.section);
      (e.section === "main" ? mainBox : moreBox).append(node);
    }
    if (!mainBox.querySelector("[data-field]")) mainBox.append(el("p", {class: "text-body-secondary small"}, "This job takes no parameter."));
    moreBlock.classList.toggle("d-none", !moreBox.querySelector("[data-field]"));
    showMore(false);
    const slurmDefaults = def.slurm || {};
    for (const desc of def.controlParameters || []) {
      if (SKIPPED_CONTROL.has(desc.name)) continue;
      const slurm = /^slurm_/i.test(desc.name);
      const extra = controlHelp(def, desc, slurmDefaults);
      const node = parameterField(desc.name, {...desc, ...(SLURM_CHECKS[desc.name.toLowerCase()] || {}),
        ...(desc.name === "RUNID" ? {maxLength: 64} : {}), default: null}, false, slurm ? "slurm" : "control", extra);
      (slurm ? slurmBlock : controlBox).append(node);
      if (slurm) slurmBlock.classList.remove("d-none");
    }
  }

  /** What an empty control field means. */
  function controlHelp(def, desc, slurmDefaults) {
    if (/^slurm_/i.test(desc.name)) {
      const option = desc.name.slice(6).toLowerCase();
      return slurmDefaults[option] ? `empty: ${slurmDefaults[option]}, this job's default` : "empty: the cluster's default";
    }
    if (desc.name === "EXECUTIONDURATION" && def.executionDuration !== undefined && def.executionDuration !== null) {
      return `empty: ${def.executionDuration} s, this job's default`;
    }
    if (desc.name === "DESTRUCTION") return "empty: the server's default";
    return "";
  }

  /** {input name: /store URL} of the files uploaded to job `jobId`, from its provenance. */
  async function storedInputs(jobId) {
    try {
      const prov = await client.json(client.jobPath(jobname, jobId) + "/provenance", {format: "json"});
      const out = {};
      for (const used of Object.values(prov.used || {})) {
        const entity = (prov.entity || {})[used["prov:entity"]];
        if (entity && entity["prov:location"] && String(used["prov:activity"]).endsWith(`/${jobId}`)) {
          out[used["prov:role"]] = entity["prov:location"];
        }
      }
      return out;
    } catch (_) {
      return {};  // no provenance (yet): the form says the file must be uploaded again
    }
  }

  async function prefill(jobId) {
    const job = await client.job(jobname, jobId);
    const ignored = [];
    let stored = null;
    for (const p of job.parameters) {
      const f = fields.get(p.id.toLowerCase());
      if (!f) { ignored.push(p.id); continue; }
      if (f.kind === "input" && p.byReference && UPLOADED.test(p.value)) {
        stored = stored || await storedInputs(jobId);
        f.uploaded(p.value, stored[f.name]);
      } else {
        f.set(p.value);
      }
      if (f.section === "more") showMore(true);
    }
    if (job.runId && fields.has("runid")) fields.get("runid").set(job.runId);
    OPUS.notify(`Prefilled from job ${jobId}.` + (ignored.length ? ` Not in this definition any more: ${ignored.join(", ")}.` : ""), "info");
  }

  function clearErrors() {
    general.classList.add("d-none");
    general.replaceChildren();
    for (const f of fields.values()) showFieldError(f, null);
  }

  /** Show (or clear, with null) the error of one field, opening its section. */
  function showFieldError(f, message) {
    if (message === undefined) message = f.read().error || null;
    f.wrap.querySelectorAll(".is-invalid").forEach((n) => { n.classList.remove("is-invalid"); n.removeAttribute("aria-invalid"); });
    f.wrap.classList.toggle("opus-invalid", Boolean(message));
    f.feedback.textContent = message || "";
    if (!message) return;
    f.input.classList.add("is-invalid");
    f.input.setAttribute("aria-invalid", "true");
    if (f.section === "more") showMore(true);
    if (f.section === "control") controlBlock.open = true;
  }

  /** Every error at once: next to each field, and a list above the form linking to them. */
  function showProblems(problems) {
    for (const [f, message] of problems) showFieldError(f, message);
    const list = el("ul", {class: "mb-0"}, problems.map(([f, message]) => el("li", {},
      el("a", {href: `#${f.input.id}`, class: "alert-link", onclick: (e) => { e.preventDefault(); f.input.focus(); }},
        f.name), ": ", message)));
    general.replaceChildren(el("p", {class: "mb-1"},
      `Nothing was sent: ${problems.length === 1 ? "one field needs" : `${problems.length} fields need`} attention.`), list);
    general.classList.remove("d-none");
    problems[0][0].input.focus();
  }

  /** The server's 400 names a field: show it there (opening its section), else above the form. */
  function showServerError(err) {
    const match = err.field || (/^(RUNID|EXECUTIONDURATION|DESTRUCTION|slurm_[a-z_]+)\b/i.exec(err.message) || [])[1];
    const f = match && fields.get(match.toLowerCase());
    if (!f) {
      general.replaceChildren(err.message);
      general.classList.remove("d-none");
      general.scrollIntoView({block: "nearest"});
      return;
    }
    showFieldError(f, err.message);
    f.input.focus();
  }

  async function submit(run) {
    clearErrors();
    checked = true;
    const problems = [];
    const data = new FormData();
    for (const f of fields.values()) {
      const {error, value} = f.read();
      if (error) problems.push([f, error]);
      else if (value !== undefined) data.append(f.name, value);
    }
    if (problems.length) { showProblems(problems); return; }
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

  toggle.addEventListener("click", () => showMore(moreBox.classList.contains("d-none")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(Boolean((e.submitter || $("create-run")).dataset.run));
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
