/*
 * Shared with you (/web/shared): the jobs others shared with this user or with one of its groups
 * (GET /shared), read-only: each job's properties, parameters and results (downloaded through
 * /shared/<jobname>/<id>/results/<id>, which the sharing allows; the job's own /rest URLs do not).
 * ?job=<jobname>/<id> opens that job (a link to send to someone the job was shared with).
 */
(function () {
  "use strict";
  const {client, el, phaseBadge, timeEl, formatSize, showError} = OPUS;
  const box = document.getElementById("shared");
  const wanted = new URLSearchParams(location.search).get("job");

  function row(label, value) {
    return el("div", {class: "row mb-1"}, el("dt", {class: "col-sm-4"}, label), el("dd", {class: "col-sm-8 mb-0"}, value));
  }
  function results(job) {
    if (!job.results.length) return el("p", {class: "text-body-secondary small mb-0"}, "No result.");
    return el("ul", {class: "list-group list-group-flush"}, ...job.results.map((r) => el("li", {
      class: "list-group-item d-flex flex-wrap gap-2 align-items-center px-0", dataset: {result: r.id}},
      el("code", {class: "fw-semibold"}, r.id), el("span", {class: "small text-body-secondary"},
        `${r.contentType || ""}${r.size != null ? " · " + formatSize(r.size) : ""}`),
      el("a", {class: "btn btn-sm btn-outline-primary ms-auto", href: OPUS.local(r.href), download: r.fileName || ""},
        `Download ${r.fileName || ""}`))));
  }
  function parameters(job) {
    const names = Object.keys(job.parameters);
    if (!names.length) return el("p", {class: "text-body-secondary small mb-0"}, "No parameter.");
    return el("table", {class: "table table-sm mb-0"}, el("caption", {class: "visually-hidden"}, "Parameters"),
      el("thead", {}, el("tr", {}, el("th", {scope: "col"}, "Name"), el("th", {scope: "col"}, "Value"))),
      el("tbody", {}, ...names.map((n) => el("tr", {}, el("td", {}, el("code", {}, n)),
        el("td", {class: "text-break"}, String(job.parameters[n]))))));
  }
  function item(job) {
    const key = `${job.jobName}/${job.jobId}`;
    const label = job.runId ? `${job.runId} (${job.jobId})` : job.jobId;
    const body = el("div", {class: "pt-2"},
      el("dl", {class: "mb-2"},
        row("Definition", job.jobName), row("Owner", job.ownerId || "—"),
        row("Shared", [job.viaGroup ? `with your group ${job.viaGroup}, ` : "with you, ", timeEl(job.sharedSince)]),
        row("Created", timeEl(job.creationTime)), row("Started", timeEl(job.startTime)), row("Ended", timeEl(job.endTime)),
        ...(job.errorSummary ? [row("Error", job.errorSummary.message)] : [])),
      el("h3", {class: "h6"}, "Parameters"), parameters(job),
      el("h3", {class: "h6 mt-3"}, "Results"), results(job));
    return el("details", {class: "card card-body mb-2 shared-job", dataset: {job: key}, open: wanted === key},
      el("summary", {},  // a block with its disclosure triangle (a flex summary loses it)
        el("span", {class: "fw-semibold text-break me-2"}, label), phaseBadge(job.phase),
        el("span", {class: "small text-body-secondary ms-2"}, `${job.jobName} · by ${job.ownerId || "?"}`)),
      body);
  }

  async function show() {
    try {
      const jobs = (await client.json("/shared")).jobs;
      box.replaceChildren(...(jobs.length ? jobs.map(item)
        : [el("p", {class: "text-body-secondary", id: "shared-none"}, "Nobody has shared a job with you.")]));
      const open = box.querySelector("details[open]");
      if (open) open.scrollIntoView({block: "start"});
    } catch (err) {
      box.replaceChildren();
      showError(err, "Jobs shared with you");
    } finally {
      box.removeAttribute("aria-busy");
    }
  }
  show();
})();
