/*
 * The job definition editor: every field of the definition's JSON model (editorfields.js), its
 * parameters, inputs and results as cards that can be reordered, and the bash script in CodeMirror
 * (or loaded from a file).  Start from a live definition (?name=), a proposal (?proposal=), a blank
 * one, or import a JSON, VOTable or WADL file (through POST /jdl, which reads every format: the file
 * becomes your proposal, then loads here).
 *
 * "Check" shows every error the page can see next to its field, then asks the server what proposing
 * would answer, storing nothing (POST /jdl?check=true).  "Propose" sends the JSON to POST /jdl;
 * admins may then make it live from here, by the digest POST /jdl answered (the proposal's SHA-256).
 * Feedback appears in the bar that holds the buttons, where the user is looking.  An anonymous user
 * is sent to sign in (the draft is kept in this tab and restored afterwards), never asked by the
 * browser's Basic prompt.  Exports are /jdl's formats.
 */
(function () {
  "use strict";
  const {client, el, root, notify} = OPUS;
  const F = OPUS.editorFields;
  const box = document.getElementById("editor");
  const params = new URLSearchParams(location.search);
  const DRAFT = "opus-editor-draft";
  let base = {};   // the loaded document: keys the form does not show are kept
  let editor = null;
  let source = null;  // {kind: "live"|"proposal", name}
  let feedback = null;
  // Proposing needs the editor role (admins have it).  The layout's opus-editor meta says whether the
  // user has it; without that meta the server decides (403, shown in the bar).
  const roleMeta = document.querySelector('meta[name="opus-editor"]');
  const mayPropose = () => OPUS.admin || !roleMeta || roleMeta.content === "1";
  const NO_ROLE = "Proposing (and the server's check) needs the editor role: ask an admin.";

  function section(id, title, ...content) {
    return el("section", {class: "mb-4", id, "aria-labelledby": `${id}-title`}, el("h2", {class: "h5", id: `${id}-title`}, title), ...content);
  }

  function items(kind, doc) {
    const spec = F.KINDS[kind];
    const list = el("div", {id: `rows-${kind}`}, Object.entries(doc[kind] || {}).map(([name, item]) => F.itemCard(kind, {...item, name})));
    const add = el("button", {type: "button", class: "btn btn-sm btn-outline-secondary add-item", id: `add-${kind}`, onclick: () => {
      const card = F.itemCard(kind, {});
      list.append(card);
      card.querySelector('[data-key="name"]').focus();
    }}, `Add a ${spec.one}`);
    return section(`section-${kind}`, spec.title, list, add);
  }

  function render(doc, origin) {
    base = doc;
    source = origin;
    const meta = section("editor-meta", "Metadata", el("div", {class: "row g-2"}, F.metaFields(doc)));
    const scriptFile = el("input", {type: "file", class: "form-control form-control-sm", id: "script-file", accept: ".sh,.bash,text/*"});
    scriptFile.addEventListener("change", async () => {
      const file = scriptFile.files[0];
      if (!file) return;
      editor.setValue(await file.text());
      say(`The script is now ${file.name} (${file.size} bytes).`, "info");
    });
    const script = section("editor-script", "Script (bash)",
      el("p", {class: "small text-body-secondary"}, "Parameters arrive as environment variables ($name) and in $OPUS_PARAMETERS; never as shell code."),
      el("label", {class: "visually-hidden", for: "script"}, "Script (bash)"),
      el("textarea", {id: "script", class: "form-control font-monospace", rows: 10}, doc.script || ""),
      el("div", {class: "mt-2 col-sm-8 col-lg-5"}, el("label", {class: "form-label small mb-1", for: "script-file"}, "Or load the script from a file"), scriptFile));
    box.replaceChildren(toolbar(), meta, items("parameters", doc), items("used", doc), items("generated", doc), script, actions());
    editor = CodeMirror.fromTextArea(document.getElementById("script"), {mode: "shell", lineNumbers: true, indentUnit: 4,
      viewportMargin: Infinity, screenReaderLabel: "Script (bash)"});
    box.dataset.ready = "1";
  }

  function toolbar() {
    const file = el("input", {type: "file", class: "form-control", id: "import-file", accept: ".json,.vot,.xml,.wadl", "aria-describedby": "import-help"});
    file.addEventListener("change", () => file.files[0] && importFile(file.files[0]));
    const exports = source ? ["votable", "json", "wadl"].map((f) => el("a", {class: "btn btn-sm btn-outline-secondary", dataset: {format: f},
      href: `${root}/jdl/${source.kind === "proposal" ? "proposals/" : ""}${encodeURIComponent(source.name)}?format=${f}`}, `Export ${f === "votable" ? "VOTable" : f.toUpperCase()}`)) : [];
    return el("div", {class: "card card-body mb-4", id: "editor-toolbar"}, el("div", {class: "row g-2 align-items-end"},
      el("div", {class: "col-md-5"}, el("label", {class: "form-label", for: "import-file"}, "Import a definition (JSON, VOTable or WADL)"), file,
        el("div", {class: "form-text", id: "import-help"}, "The file is proposed under its name, then loaded here to edit.")),
      el("div", {class: "col-md-7 d-flex flex-wrap gap-2"},
        el("span", {class: "align-self-center small text-body-secondary", id: "editing"}, source ? `Editing the ${source.kind} definition ${source.name}` : "A new definition"),
        exports)));
  }

  /** A message in the action bar (where the user is looking); ``danger`` ones are alerts. */
  function say(message, kind = "danger") {
    feedback.replaceChildren(el("div", {class: `alert alert-${kind} py-2 mb-2`, role: kind === "danger" ? "alert" : "status"}, message));
    return feedback.firstChild;
  }

  function clearErrors() {
    for (const node of box.querySelectorAll(".is-invalid")) {
      node.classList.remove("is-invalid");
      node.removeAttribute("aria-invalid");
      const own = document.getElementById(`${node.id}-error`);
      if (own) own.remove();
      node.setAttribute("aria-describedby", (node.getAttribute("aria-describedby") || "").replace(`${node.id}-error`, "").trim());
      if (!node.getAttribute("aria-describedby")) node.removeAttribute("aria-describedby");
    }
    box.querySelector(".CodeMirror")?.classList.remove("border", "border-danger");
  }

  /** Show ``errors`` ([control, message]) next to their fields and listed, with links, in the bar. */
  function showErrors(errors, intro) {
    const links = errors.map(([control, message]) => {
      if (control) {
        const fold = control.closest("details");
        if (fold) fold.open = true;
        control.classList.add("is-invalid");
        control.setAttribute("aria-invalid", "true");
        if (control.id === "script") {
          box.querySelector(".CodeMirror")?.classList.add("border", "border-danger");
        } else if (!document.getElementById(`${control.id}-error`)) {
          control.after(el("div", {class: "invalid-feedback", id: `${control.id}-error`}, message));
          control.setAttribute("aria-describedby", `${control.getAttribute("aria-describedby") || ""} ${control.id}-error`.trim());
        }
      }
      const label = control ? (document.querySelector(`label[for="${control.id}"]`) || {}).textContent || control.id : "";
      const where = control ? control.closest(".editor-item")?.querySelector(".item-title")?.textContent : "";
      return el("li", {}, control ? el("a", {href: `#${control.id}`, onclick: (e) => { e.preventDefault(); focus(control); }},
        `${where ? where + ", " : ""}${label}`) : "", control ? ": " : "", message);
    });
    return say(el("div", {}, el("p", {class: "mb-1 fw-semibold"}, intro), el("ul", {class: "mb-0 small", id: "editor-errors"}, links)));
  }

  function focus(control) {
    if (control.id === "script") { editor.focus(); box.querySelector(".CodeMirror").scrollIntoView({block: "center"}); return; }
    const fold = control.closest("details");
    if (fold) fold.open = true;
    control.scrollIntoView({block: "center"});
    control.focus();
  }

  /** The document, or null after showing every error the page itself sees. */
  function checked() {
    clearErrors();
    editor.save();
    const doc = F.collect(box, base, editor.getValue());
    const errors = F.check(box, doc);
    if (errors.length) {
      showErrors(errors, errors.length === 1 ? "One thing to fix:" : `${errors.length} things to fix:`);
      focus(errors[0][0] || feedback);
      return null;
    }
    return doc;
  }

  function signIn() {
    try { sessionStorage.setItem(DRAFT, JSON.stringify({doc: F.collect(box, base, editor.getValue()), source})); } catch (_) { /* private mode */ }
    const next = `${location.pathname}?draft=1`;
    location.assign(`${root}/web/signin?next=${encodeURIComponent(next)}`);
  }

  function serverError(err, what) {
    if (err.status === 401) { signIn(); return; }
    const control = F.locate(box, err.message || "", (base || {}).name);
    showErrors([[control, err.message]], `${what}: the server refused it.`);
    if (control) focus(control);
  }

  async function checkOnServer() {
    const doc = checked();
    if (!doc) return;
    if (!OPUS.user) { say("The page found nothing to fix. Sign in to have the server check it too (and to propose it).", "info"); return; }
    if (!mayPropose()) { say(`The page found nothing to fix. ${NO_ROLE}`, "info"); return; }
    try {
      await client.json("/jdl", {format: "json", check: "true"}, {method: "POST", body: JSON.stringify(doc),
        headers: {"Content-Type": "application/json"}});
      say(el("span", {id: "checked"}, `${doc.name} v${doc.version} is valid: proposing it would be accepted.`), "success");
    } catch (err) { serverError(err, "Check"); }
  }

  async function propose() {
    if (!OPUS.user) { signIn(); return; }
    const doc = checked();
    if (!doc) return;
    try {
      const meta = await client.proposeDefinition(JSON.stringify(doc), "json");
      source = {kind: "proposal", name: meta.name};
      // The digest names exactly the document just proposed: "Make it live" makes that one live, or
      // is refused (409) if the proposal changed since.
      const note = say(el("span", {id: "proposed"}, `Proposed ${meta.name} v${meta.version} `,
        el("code", {class: "small proposal-digest", title: `SHA-256 ${meta.digest}`, dataset: {digest: meta.digest}}, meta.digest.slice(0, 12)), ": ",
        el("a", {href: `${root}/jdl/proposals/${encodeURIComponent(meta.name)}?format=json&digest=${meta.digest}`}, "view it"),
        OPUS.admin ? ". " : "; an admin validates it."), "success");
      if (OPUS.admin) {
        note.append(el("button", {type: "button", class: "btn btn-sm btn-success ms-2", id: "validate", onclick: async (e) => {
          e.currentTarget.disabled = true;
          try {
            await client.validateProposal(meta.name, meta.digest);
            source = {kind: "live", name: meta.name};
            say(el("span", {id: "validated"}, `${meta.name} v${meta.version} is live: `,
              el("a", {href: `${root}/web/new/${encodeURIComponent(meta.name)}`}, "open its form")), "success");
            box.querySelector("#editor-toolbar").replaceWith(toolbar());
          } catch (err) { serverError(err, "Validate"); }
        }}, "Make it live now"));
      }
      box.querySelector("#editor-toolbar").replaceWith(toolbar());
    } catch (err) { serverError(err, "Proposing"); }
  }

  function actions() {
    feedback = el("div", {id: "editor-feedback", "aria-live": "polite"});
    const download = el("button", {type: "button", class: "btn btn-outline-secondary", id: "download", onclick: () => {
      const doc = F.collect(box, base, editor.getValue());
      const a = el("a", {href: URL.createObjectURL(new Blob([JSON.stringify(doc, null, 2)], {type: "application/json"})), download: `${doc.name || "definition"}.json`});
      a.click();
    }}, "Download JSON");
    return el("div", {class: "editor-actions sticky-bottom bg-body border-top py-2"}, feedback,
      el("div", {class: "d-flex flex-wrap gap-2"},
        el("button", {type: "button", class: "btn btn-outline-primary", id: "check", onclick: checkOnServer}, "Check"),
        el("button", {type: "button", class: "btn btn-primary", id: "propose", onclick: propose, disabled: !!OPUS.user && !mayPropose(),
          "aria-describedby": OPUS.user && !mayPropose() ? "no-role" : undefined}, OPUS.user ? "Propose" : "Sign in to propose"),
        download),
      OPUS.user && !mayPropose() ? el("p", {class: "small text-body-secondary mb-0 mt-1", id: "no-role"}, NO_ROLE) : "");
  }

  async function importFile(file) {
    const text = await file.text();
    const format = /\.wadl$/i.test(file.name) || /<application[\s>]/.test(text) ? "wadl"
      : /^\s*[{[]/.test(text) ? "json" : "votable";
    if (!OPUS.user) { say("Sign in to import a file: it becomes your proposal.", "warning"); return; }
    try {
      const meta = await client.proposeDefinition(text, format);
      notify(`Imported ${file.name}: proposed as ${meta.name} v${meta.version}.`, "info");
      await load({kind: "proposal", name: meta.name});
    } catch (err) {
      if (err.status === 401) signIn(); else OPUS.showError(err, `Importing ${file.name}`);
    }
  }

  function draft() {
    if (params.get("draft") !== "1") return null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(DRAFT) || "null");
      sessionStorage.removeItem(DRAFT);
      return saved;
    } catch (_) { return null; }
  }

  async function load(origin) {
    const saved = origin === undefined ? draft() : null;
    if (saved) { render(saved.doc, saved.source); say("Your draft is back: press Propose again.", "info"); return; }
    if (!origin) { render({name: "", version: "1", parameters: {}, used: {}, generated: {}, script: "#!/bin/bash\n"}, null); return; }
    const doc = origin.kind === "proposal" ? JSON.parse(await client.proposal(origin.name, "json")) : await client.definition(origin.name);
    render(doc, origin);
  }

  const name = params.get("name");
  const proposal = params.get("proposal");
  const first = proposal ? {kind: "proposal", name: proposal} : name ? {kind: "live", name} : (params.get("draft") === "1" ? undefined : null);
  load(first).catch((err) => { OPUS.showError(err, "Loading"); load(null); });
})();
