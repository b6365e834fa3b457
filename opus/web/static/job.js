/*
 * One job: properties, parameters (editable while PENDING: jobparams.js), progress while QUEUED or
 * EXECUTING (jobprogress.js), results with their previews shown at once (preview.js), a download under
 * the right file name, a copyable link and "send to TOPCAT/Aladin" (samp.js); stdout, stderr, error
 * summary; the provenance graph (provgraph.js) and its formats; start, abort, delete, run again;
 * sharing it read-only with named users or groups (/shared/<jobname>/<id>/users|groups/<name>).
 * Followed live with blocking WAITs (uws.js watchJob) while it is active.
 */
(function () {
  "use strict";
  const {client, el, root, phaseBadge, timeEl, formatSize, showError, notify, local} = OPUS;
  const box = document.getElementById("job");
  const jobname = box.dataset.jobname;
  const jobId = box.dataset.jobId;
  const path = client.jobPath(jobname, jobId);
  const $ = (id) => document.getElementById(id);
  const INLINE_PREVIEWS = 12;
  const EXTENSIONS = {"application/fits": "fits", "image/fits": "fits", "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif",
    "text/plain": "txt", "text/csv": "csv", "text/tab-separated-values": "tsv", "application/json": "json",
    "application/x-votable+xml": "vot", "application/xml": "xml", "application/pdf": "pdf", "application/gzip": "gz"};
  let current = null;
  let stop = null;
  const progress = new OPUS.Progress($("job-progress"), path);
  const editor = new OPUS.ParameterEditor($("params-form"), $("params-edit"), jobname, jobId, (job) => { render(job); follow(); });

  function properties(job) {
    const rows = [["Definition", `${job.jobName}${job.jobDefinitionVersion ? " v" + job.jobDefinitionVersion : ""}`],
      ["Run id", job.runId || "—"], ["Owner", job.ownerId || "anonymous"], ["Created", timeEl(job.creationTime)],
      ["Started", timeEl(job.startTime)], ["Ended", timeEl(job.endTime)],
      ["Duration limit", job.executionDuration ? `${job.executionDuration} s` : "none"],
      ["Quote", timeEl(job.quote)], ["Destruction", timeEl(job.destruction)]];
    $("job-properties").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {class: "col-5 col-sm-4"}, k),
      el("dd", {class: "col-7 col-sm-8 mb-1", dataset: {property: k}}, v)]));
  }

  /*
   * Links to the job's files, on this page's own origin: the API may name them on another one
   * (RESULTS_BASE_URL), which does not share the session cookie this page signs in with.
   */
  const upload = (p) => {
    const own = `${path}/parameters/${encodeURIComponent(p.id)}`;
    return p.value.endsWith(own) ? root + own : local(p.value);
  };
  const here = `${location.origin}${root}`;  // absolute: the API client takes it as it is
  /** The file name a result downloads under: its stored file's name, else its name + the type's extension. */
  function fileName(r) {
    const stored = r.store ? decodeURIComponent(r.store.split("/").pop()) : "";
    if (stored) return stored;
    const ext = EXTENSIONS[(r.mimeType || "").split(";")[0]];
    const name = r.name || r.id;
    return ext && !name.toLowerCase().endsWith("." + ext) ? `${name}.${ext}` : name;
  }
  const sameOrigin = (r) => ({...r, link: r.href, fileName: fileName(r),
    href: `${here}${path}/results/${encodeURIComponent(r.id)}`,
    store: r.store && r.entity ? `${here}/store/${r.entity}/${r.store.split("/").pop()}` : r.store});

  function parameters(job) {
    $("job-parameters").replaceChildren(...(job.parameters.length ? job.parameters.map((p) => el("tr", {dataset: {param: p.id}},
      el("th", {scope: "row", class: "font-monospace fw-normal"}, p.id),
      el("td", {class: "text-break"}, p.byReference ? el("a", {href: upload(p)}, p.value.split("/").pop() || p.value) : p.value)))
      : [el("tr", {}, el("td", {colspan: 2, class: "text-body-secondary"}, "None"))]));
  }

  async function copyLink(r, button) {
    try {
      await navigator.clipboard.writeText(r.link);
      button.textContent = "Copied";
    } catch (_) {  // no clipboard (insecure origin, permission): show the link, selected
      const input = el("input", {class: "form-control form-control-sm result-link", readonly: true, value: r.link, "aria-label": `Link to ${r.name || r.id}`});
      button.replaceWith(input);
      input.select();
      return;
    }
    setTimeout(() => { button.textContent = "Copy link"; }, 2000);
  }

  async function sendSamp(r, button) {
    button.disabled = true;
    try {
      // A share link when the result is in the store: the SAMP tool fetches it without the session.
      const url = r.entity ? await OPUS.samp.shareLink(r.entity).catch(() => r.link) : r.link;
      await OPUS.samp.send(r, url);
      notify(`${r.name || r.id} sent over SAMP.`, "success");
    } catch (err) { showError(err, "Send over SAMP"); }
    button.disabled = false;
  }

  /** Share: a signed link to the result, valid 7 days, that works without signing in (revocable: GET /share). */
  async function shareResult(r, button) {
    button.disabled = true;
    try {
      const link = await OPUS.client._jsonBody("POST", "/share", {entity: r.entity, lifetime: 7 * 86400});
      const input = el("input", {class: "form-control form-control-sm share-link", readonly: true, value: link.url,
        "aria-label": `Share link to ${r.name || r.id}, valid until ${link.expires}`});
      button.replaceWith(input);
      input.select();
      notify(`Anyone with this link can download ${r.name || r.id} until ${link.expires}.`, "success");
    } catch (err) { showError(err, "Share"); button.disabled = false; }
  }

  // ---- shared read-only with users or groups: the owner lists, adds and withdraws the shares ----
  const sharesPath = `/shared/${encodeURIComponent(jobname)}/${encodeURIComponent(jobId)}`;
  let grantees = null;
  function showGrantees(data) {
    const items = [...data.users.map((u) => ["users", "user", u.name]), ...(data.groups || []).map((g) => ["groups", "group", g.name])];
    grantees.replaceChildren(...(items.length ? items.map(([kind, label, name]) => el("li", {
      class: "list-group-item d-flex align-items-center gap-2 py-1", dataset: {grantee: `${label}:${name}`}},
      el("span", {class: "badge text-bg-light border"}, label), el("span", {class: "text-break"}, name),
      el("button", {type: "button", class: "btn btn-sm btn-outline-danger ms-auto unshare", "aria-label": `Stop sharing with ${label} ${name}`,
        onclick: () => changeShare("DELETE", kind, name)}, "Withdraw")))
      : [el("li", {class: "list-group-item text-body-secondary py-1"}, "Shared with no one")]));
    grantees.dataset.loaded = "1";
  }
  async function changeShare(method, kind, name) {
    try {
      showGrantees(await client._jsonBody(method, `${sharesPath}/${kind}/${encodeURIComponent(name)}`));
      return true;
    } catch (err) { showError(err, method === "PUT" ? "Share" : "Withdraw"); return false; }
  }
  function sharing() {
    const kind = el("select", {class: "form-select form-select-sm flex-grow-0 w-auto", id: "share-kind", "aria-label": "Share with a user or a group"},
      el("option", {value: "users"}, "User"), el("option", {value: "groups"}, "Group"));
    const name = el("input", {class: "form-control form-control-sm", id: "share-name", required: true, autocomplete: "off",
      placeholder: "name", "aria-label": "Name of the user or group"});
    const form = el("form", {class: "input-group input-group-sm mb-2", id: "share-form", "aria-label": "Share this job read-only"},
      kind, name, el("button", {class: "btn btn-outline-primary", type: "submit"}, "Share"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const who = name.value.trim();
      if (who && await changeShare("PUT", kind.value, who)) {
        notify(`${kind.value === "groups" ? "Every member of group" : "User"} ${who} can now read this job (not change it).`, "success");
        name.value = "";
      }
    });
    // One line while loading, as when shared with no one: the page below does not move when it comes.
    grantees = el("ul", {class: "list-group list-group-flush small mb-3", id: "share-grantees"},
      el("li", {class: "list-group-item text-body-secondary py-1"}, "…"));
    $("provenance-section").after(el("section", {id: "job-sharing", class: "mt-3 col-lg-6", "aria-labelledby": "sharing-title"},
      el("h2", {class: "h5", id: "sharing-title"}, "Shared with"),
      el("p", {class: "small text-body-secondary mb-2"}, "Read-only: they find it under ",
        el("a", {href: `${root}/web/shared?job=${encodeURIComponent(jobname)}/${encodeURIComponent(jobId)}`}, "Shared with me"),
        " (send them that link), or at ", el("code", {}, "GET /shared"), " with the API."),
      form, grantees));
    client.json(`${sharesPath}/users`).then(showGrantees).catch((err) => showError(err, "Shares"));
  }

  function resultItem(r, files, index) {
    const body = el("div", {class: "result-preview mt-2", dataset: {previewOf: r.id}});
    const shown = OPUS.preview.previewable(r) && index < INLINE_PREVIEWS;
    const samp = OPUS.samp.message(r, r.link);
    const copy = el("button", {type: "button", class: "btn btn-sm btn-outline-secondary copy-link", title: r.link}, "Copy link");
    copy.addEventListener("click", () => copyLink(r, copy));
    const item = el("li", {class: "list-group-item", dataset: {result: r.id}},
      el("div", {class: "d-flex flex-wrap align-items-center gap-2"},
        el("span", {class: "fw-semibold font-monospace text-break"}, r.name || r.id),
        el("span", {class: "small text-body-secondary"}, [r.mimeType, formatSize(r.size)].filter(Boolean).join(" · ")),
        el("span", {class: "ms-auto d-flex flex-wrap gap-1 result-actions"},
          OPUS.preview.previewable(r)
            ? el("button", {type: "button", class: "btn btn-sm btn-outline-primary preview-button", onclick: () => openPreview(r, files)}, "Preview") : "",
          el("a", {class: "btn btn-sm btn-outline-secondary download", href: local(r.href), download: r.fileName}, "Download"),
          copy,
          samp ? el("button", {type: "button", class: "btn btn-sm btn-outline-secondary samp-send",
            title: "Send to TOPCAT, Aladin or another SAMP tool running on this computer",
            onclick: (e) => sendSamp(r, e.currentTarget)}, "Send to TOPCAT/Aladin") : "",
          r.store ? el("a", {class: "btn btn-sm btn-outline-secondary", href: local(r.store), title: "This result in the store, usable as another job's input"}, "Store") : "",
          r.entity ? el("button", {type: "button", class: "btn btn-sm btn-outline-secondary share-button",
            title: "A link anyone can download this result with, for 7 days, without signing in",
            onclick: (e) => shareResult(r, e.currentTarget)}, "Share") : "")),
      r.description ? el("div", {class: "small text-body-secondary"}, r.description) : "",
      shown ? body : "");
    if (shown) {
      OPUS.preview.show(r, files, body).catch((err) => body.replaceChildren(el("p", {class: "small text-danger"}, `No preview: ${err.message}`)));
    }
    return item;
  }

  function results(job) {
    const list = $("job-results");
    if (!job.results.length) {
      list.replaceChildren(el("li", {class: "list-group-item text-body-secondary"}, UWS.ACTIVE.includes(job.phase) ? "None yet" : "None"));
      return;
    }
    const files = job.results.map(sameOrigin);
    list.replaceChildren(...files.map((r, i) => resultItem(r, files, i)));
  }

  async function openPreview(result, all) {
    const section = $("preview");
    section.classList.remove("d-none");
    $("preview-title").textContent = `Preview: ${result.name || result.id}`;
    try { await OPUS.preview.show(result, all, $("preview-body")); } catch (err) {
      $("preview-body").replaceChildren(el("p", {class: "text-danger"}, err.message));
    }
    section.scrollIntoView({block: "nearest"});
  }

  async function output(which) {
    const pre = $(`job-${which}`);
    try {
      const {text, truncated} = await client.text(`${path}/${which}`, {limit: 128 * 1024});
      pre.textContent = text || "(empty)";
      if (truncated) pre.append("\n… (truncated: download ", el("a", {href: `${root}${path}/${which}`}, which), ")");
    } catch (err) { pre.textContent = err.status === 404 ? "(nothing yet)" : err.message; }
  }

  function render(job) {
    const previous = current;
    current = job;
    phaseBadge(job.phase, $("job-phase"));
    $("job-run").classList.toggle("d-none", job.phase !== "PENDING");
    $("job-abort").classList.toggle("d-none", !UWS.ACTIVE.includes(job.phase));
    properties(job);
    parameters(job);
    if (!grantees && job.ownerId) sharing();
    editor.update(job);
    progress.update(job);
    if (!previous || previous.phase !== job.phase || previous.results.length !== job.results.length) results(job);
    const error = $("job-error");
    error.classList.toggle("d-none", !job.errorSummary);
    if (job.errorSummary) {
      error.replaceChildren(el("strong", {}, job.errorSummary.type === "fatal" ? "Error: " : "Warning: "), job.errorSummary.message,
        " ", el("a", {href: `${root}${path}/error`, class: "alert-link"}, "(error document)"));
    }
    if (!UWS.ACTIVE.includes(job.phase) && (!previous || previous.phase !== job.phase)) {
      output("stdout"); output("stderr"); OPUS.jobProvenance(job);
    }
  }

  function act(button, fn) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try { const job = await fn(); if (job) { render(job); follow(); } } catch (err) { showError(err); }
      button.disabled = false;
    });
  }

  function follow() {
    if (stop) stop();
    stop = client.watchJob(jobname, jobId, render, {onError: (err) => {
      if (err.status) showError(err, "Following the job");
    }});
  }

  act($("job-run"), () => client.run(jobname, jobId));
  act($("job-abort"), () => client.abort(jobname, jobId));
  const del = $("job-delete");
  del.addEventListener("click", async () => {
    if (del.dataset.armed !== "1") {
      del.dataset.armed = "1"; del.textContent = "Confirm delete";
      setTimeout(() => { del.dataset.armed = ""; del.textContent = "Delete"; }, 4000);
      return;
    }
    if (stop) stop();
    progress.stop();
    try { await client.deleteJob(jobname, jobId); location.assign(`${root}/web/jobs/${encodeURIComponent(jobname)}`); } catch (err) { showError(err); }
  });
  $("preview-close").addEventListener("click", () => $("preview").classList.add("d-none"));
  for (const which of ["stdout", "stderr"]) {
    $(`${which}-block`).addEventListener("toggle", (e) => { if (e.target.open && current && UWS.ACTIVE.includes(current.phase)) output(which); });
  }
  follow();
})();
