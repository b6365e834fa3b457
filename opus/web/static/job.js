/*
 * One job: properties, parameters, results (download, preview, /store link), stdout, stderr,
 * error summary, provenance graph and its formats; start, abort, delete, run again.  Followed
 * live with blocking WAITs (uws.js watchJob) while it is active.
 */
(function () {
  "use strict";
  const {client, el, root, phaseBadge, timeEl, formatSize, showError, local} = OPUS;
  const box = document.getElementById("job");
  const jobname = box.dataset.jobname;
  const jobId = box.dataset.jobId;
  const path = client.jobPath(jobname, jobId);
  const $ = (id) => document.getElementById(id);
  let current = null;
  let stop = null;

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
  const sameOrigin = (r) => ({...r, href: `${here}${path}/results/${encodeURIComponent(r.id)}`,
    store: r.store && r.entity ? `${here}/store/${r.entity}/${r.store.split("/").pop()}` : r.store});

  function parameters(job) {
    $("job-parameters").replaceChildren(...(job.parameters.length ? job.parameters.map((p) => el("tr", {},
      el("th", {scope: "row", class: "font-monospace fw-normal"}, p.id),
      el("td", {class: "text-break"}, p.byReference ? el("a", {href: upload(p)}, p.value.split("/").pop() || p.value) : p.value)))
      : [el("tr", {}, el("td", {colspan: 2, class: "text-body-secondary"}, "None"))]));
  }

  function results(job) {
    const list = $("job-results");
    if (!job.results.length) {
      list.replaceChildren(el("li", {class: "list-group-item text-body-secondary"}, UWS.ACTIVE.includes(job.phase) ? "None yet" : "None"));
      return;
    }
    const files = job.results.map(sameOrigin);
    list.replaceChildren(...files.map((r) => el("li", {class: "list-group-item", dataset: {result: r.id}},
      el("div", {class: "d-flex flex-wrap align-items-center gap-2"},
        el("span", {class: "fw-semibold font-monospace"}, r.name || r.id),
        el("span", {class: "small text-body-secondary"}, [r.mimeType, formatSize(r.size)].filter(Boolean).join(" · ")),
        el("span", {class: "ms-auto d-flex gap-1"},
          OPUS.preview.previewable(r, files)
            ? el("button", {type: "button", class: "btn btn-sm btn-outline-primary preview-button", onclick: () => openPreview(r, files)}, "Preview") : "",
          el("a", {class: "btn btn-sm btn-outline-secondary", href: local(r.href), download: ""}, "Download"),
          r.store ? el("a", {class: "btn btn-sm btn-outline-secondary", href: local(r.store), title: "This result in the store, usable as another job's input"}, "Store") : "")),
      r.description ? el("div", {class: "small text-body-secondary"}, r.description) : "")));
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

  async function provenance(job) {
    const target = $("provenance");
    const prov = `${root}${path}/provenance`;
    const formats = [["SVG", "svg"], ["PNG", "png"], ["PROV-JSON", "json"], ["PROV-XML", "xml"], ["PROV-N", "provn"], ["PROV-VOTABLE", "votable"]];
    $("provenance-links").replaceChildren("Formats: ", ...formats.flatMap(([label, f]) =>
      [el("a", {href: `${prov}?format=${f}`, class: "me-2"}, label)]),
    " · ", el("a", {href: `${root}/provsap?ID=${job.jobId}&DEPTH=ALL&RESPONSEFORMAT=svg`}, "ProvSAP (all steps)"));
    try {
      const r = await client.request("GET", `${path}/provenance`, {query: {format: "svg"}});
      const url = URL.createObjectURL(await r.blob());
      target.replaceChildren(el("img", {src: url, class: "img-fluid border bg-white", id: "provenance-graph",
        alt: `Provenance graph of job ${job.jobId}: its activity, agent, parameters, inputs and results`}));
    } catch (err) {
      target.replaceChildren(el("p", {class: "text-body-secondary small", id: "provenance-missing"},
        `The provenance graph is not available (${err.status || "network"}: ${err.message})`));
    }
  }

  function render(job) {
    const previous = current;
    current = job;
    phaseBadge(job.phase, $("job-phase"));
    $("job-run").classList.toggle("d-none", job.phase !== "PENDING");
    $("job-abort").classList.toggle("d-none", !UWS.ACTIVE.includes(job.phase));
    properties(job);
    parameters(job);
    results(job);
    const error = $("job-error");
    error.classList.toggle("d-none", !job.errorSummary);
    if (job.errorSummary) {
      error.replaceChildren(el("strong", {}, job.errorSummary.type === "fatal" ? "Error: " : "Warning: "), job.errorSummary.message,
        " ", el("a", {href: `${root}${path}/error`, class: "alert-link"}, "(error document)"));
    }
    if (!UWS.ACTIVE.includes(job.phase) && (!previous || previous.phase !== job.phase)) {
      output("stdout"); output("stderr"); provenance(job);
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
    try { await client.deleteJob(jobname, jobId); location.assign(`${root}/web/jobs/${encodeURIComponent(jobname)}`); } catch (err) { showError(err); }
  });
  $("preview-close").addEventListener("click", () => $("preview").classList.add("d-none"));
  for (const which of ["stdout", "stderr"]) {
    $(`${which}-block`).addEventListener("toggle", (e) => { if (e.target.open && current && UWS.ACTIVE.includes(current.phase)) output(which); });
  }
  follow();
})();
