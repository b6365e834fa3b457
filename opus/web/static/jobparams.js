/*
 * Editing a PENDING job's parameters in its page: one field per parameter of its definition (in the
 * definition's order), prefilled with the job's values; Save POSTs only what changed to
 * …/parameters (UWS 1.1 allows it while PENDING).  Every value is checked here first (type, min/max,
 * options, required) and every error shown at its field; the server's 400 is shown at its field too.
 */
(function () {
  "use strict";
  const {client, el, showError} = OPUS;
  const NUMERIC = {int: /^[+-]?\d+$/, long: /^[+-]?\d+$/, float: null, double: null};

  /** The error of one value against its declaration, or "". */
  function check(name, decl, value) {
    if (value === "") return decl.required ? "a value is required" : "";
    if (decl.type in NUMERIC) {
      const pattern = NUMERIC[decl.type];
      const n = Number(value);
      if ((pattern && !pattern.test(value)) || !isFinite(n) || value.trim() === "") return `${decl.type === "int" || decl.type === "long" ? "an integer" : "a number"} is needed`;
      if (decl.min !== undefined && decl.min !== null && n < decl.min) return `below the minimum ${decl.min}`;
      if (decl.max !== undefined && decl.max !== null && n > decl.max) return `above the maximum ${decl.max}`;
    }
    if (decl.type === "boolean" && !/^(true|false)$/i.test(value)) return "true or false";
    if (decl.options && decl.options.length && !decl.options.includes(value)) return `one of ${decl.options.join(", ")}`;
    return "";
  }

  function field(name, decl, value) {
    const id = `param-${name}`;
    const input = decl.options && decl.options.length
      ? el("select", {class: "form-select form-select-sm", id, name}, ...(decl.required ? [] : [el("option", {value: ""}, "")]),
        ...decl.options.map((o) => el("option", {value: o, selected: o === value}, o)))
      : decl.type === "boolean"
        ? el("select", {class: "form-select form-select-sm", id, name}, ...["true", "false"].map((o) => el("option", {value: o, selected: o === String(value).toLowerCase()}, o)))
        : el("input", {class: "form-control form-control-sm", id, name, value: value ?? "", inputmode: decl.type in NUMERIC ? "decimal" : null,
          "aria-describedby": `${id}-help`});
    return el("div", {class: "mb-2", dataset: {param: name}},
      el("label", {class: "form-label small mb-0 font-monospace", for: id}, name, decl.unit ? ` (${decl.unit})` : ""),
      input, el("div", {class: "invalid-feedback"}),
      el("div", {class: "form-text", id: `${id}-help`}, decl.description || ""));
  }

  class ParameterEditor {
    constructor(form, button, jobname, jobId, onSaved) {
      Object.assign(this, {form, button, jobname, jobId, onSaved, decls: null, job: null});
      button.addEventListener("click", () => this.open());
      form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    }

    /** Show the Edit button while the job is PENDING (and close the form when it no longer is). */
    update(job) {
      this.job = job;
      const pending = job.phase === "PENDING";
      this.button.classList.toggle("d-none", !pending || !this.form.classList.contains("d-none"));
      if (!pending) this.close();
    }

    async open() {
      try {
        if (!this.decls) this.decls = (await client.definition(this.jobname, this.job.jobDefinitionVersion || undefined)).parameters || {};
      } catch (err) { showError(err, "Reading the job definition"); return; }
      if (!Object.keys(this.decls).length) { OPUS.notify(`${this.jobname} has no parameters to change.`, "info"); return; }
      const values = Object.fromEntries(this.job.parameters.map((p) => [p.id.toLowerCase(), p.value]));
      this.form.replaceChildren(
        ...Object.entries(this.decls).map(([name, decl]) => field(name, decl, values[name.toLowerCase()] ?? "")),
        el("div", {class: "d-flex gap-2"}, el("button", {type: "submit", class: "btn btn-primary btn-sm", id: "params-save"}, "Save"),
          el("button", {type: "button", class: "btn btn-outline-secondary btn-sm", id: "params-cancel", onclick: () => this.close()}, "Cancel")));
      this.form.classList.remove("d-none");
      document.getElementById("params-table").classList.add("d-none");
      this.button.classList.add("d-none");
      const first = this.form.querySelector("input, select");
      if (first) first.focus();
    }

    close() {
      this.form.classList.add("d-none");
      this.form.replaceChildren();
      document.getElementById("params-table").classList.remove("d-none");
      if (this.job && this.job.phase === "PENDING") this.button.classList.remove("d-none");
    }

    mark(name, message) {
      const box = this.form.querySelector(`[data-param="${CSS.escape(name)}"]`);
      if (!box) return false;
      box.querySelector(".form-control, .form-select").classList.toggle("is-invalid", Boolean(message));
      box.querySelector(".invalid-feedback").textContent = message;
      return true;
    }

    async save() {
      const values = Object.fromEntries(this.job.parameters.map((p) => [p.id.toLowerCase(), p.value]));
      const changed = [];
      let bad = 0;
      for (const [name, decl] of Object.entries(this.decls)) {
        const value = this.form.elements[name].value;
        const old = values[name.toLowerCase()] ?? "";
        // UWS cannot remove a parameter: an emptied field would silently keep its old value.
        const error = value === "" && old !== "" ? "a value is needed (a parameter cannot be removed)" : check(name, decl, value);
        this.mark(name, error);
        if (error) bad++;
        else if (value !== old && value !== "") changed.push([name, value]);
      }
      if (bad) { this.form.querySelector(".is-invalid").focus(); return; }
      if (!changed.length) { this.close(); return; }
      const save = document.getElementById("params-save");
      save.disabled = true;
      try {
        const job = await client.setParameters(this.jobname, this.jobId, changed);
        this.close();
        this.onSaved(job);
      } catch (err) {
        if (!(err.field && this.mark(err.field, err.message))) showError(err, "Saving the parameters");
      }
      save.disabled = false;
    }
  }

  OPUS.ParameterEditor = ParameterEditor;
  OPUS.checkParameter = check;
})();
