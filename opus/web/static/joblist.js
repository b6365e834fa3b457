/*
 * Job lists (one definition, or all): phase badges, times, runId, filters, start/abort/delete,
 * paging with LAST (page k shows the jobs k*size-size+1 .. k*size, newest first), and live
 * updates: blocking WAITs on up to two active jobs of the page, the list refreshed when one
 * returns; with no active job, a check for new jobs (AFTER the newest shown) with backoff.
 */
(function () {
  "use strict";
  const {client, el, root, phaseBadge, timeEl, showError} = OPUS;
  const {WAITABLE, ACTIVE, Backoff, sleep} = UWS;
  const form = document.getElementById("job-filters");
  const body = document.getElementById("jobs-body");
  const fixedName = form.dataset.jobname;
  const all = !fixedName;
  const nameSelect = document.getElementById("filter-jobname");
  const phaseSelect = document.getElementById("filter-phase");
  const afterInput = document.getElementById("filter-after");
  const sizeSelect = document.getElementById("filter-size");
  const status = document.getElementById("live-status");
  const older = document.getElementById("page-older");
  const newer = document.getElementById("page-newer");
  const info = document.getElementById("page-info");
  const columns = all ? 7 : 6;
  const WAIT = 30;
  const MAX_WAITS = 2;       // blocking requests held at once (browsers allow ~6 per host)
  const DETAILS = 3;         // job documents fetched at once for start/end times

  let page = 1;
  let names = fixedName ? [fixedName] : [];
  let rows = [];             // the job refs shown
  let watcher = null;        // AbortController of the live loop
  let rotate = 0;
  const details = new Map(); // "id:phase" -> job (start and end times only change with the phase)

  function filters() {
    const after = afterInput.value ? new Date(afterInput.value).toISOString().replace(/\.\d{3}Z$/, "Z") : undefined;
    return {phase: phaseSelect.value || undefined, after, size: Number(sizeSelect.value)};
  }
  const selectedNames = () => (all && nameSelect.value ? [nameSelect.value] : names);

  async function fetchPage(signal) {
    const {phase, after, size} = filters();
    const last = page * size + 1;  // one more than shown: is there an older page?
    const lists = await Promise.all(selectedNames().map((n) => client.jobs(n, {phase, after, last, signal})));
    const merged = lists.flat().sort((a, b) => (b.creationTime || "").localeCompare(a.creationTime || "")
      || b.jobId.localeCompare(a.jobId));
    return {shown: merged.slice((page - 1) * size, page * size), more: merged.length > page * size, size};
  }

  function actions(job) {
    const box = el("div", {class: "btn-group btn-group-sm", role: "group", "aria-label": `Actions on ${job.jobId}`});
    const act = (label, cls, fn) => el("button", {type: "button", class: `btn ${cls}`, onclick: async (e) => {
      e.currentTarget.disabled = true;
      try { await fn(); } catch (err) { showError(err, `${label} ${job.jobId}`); }
      refresh();
    }}, label);
    if (job.phase === "PENDING") box.append(act("Start", "btn-outline-success", () => client.run(job.jobName, job.jobId)));
    if (ACTIVE.includes(job.phase)) box.append(act("Abort", "btn-outline-warning", () => client.abort(job.jobName, job.jobId)));
    const del = el("button", {type: "button", class: "btn btn-outline-danger", onclick: async () => {
      if (del.dataset.armed !== "1") {  // a second click confirms: no modal dialog
        del.dataset.armed = "1"; del.textContent = "Confirm delete"; del.classList.replace("btn-outline-danger", "btn-danger");
        setTimeout(() => { del.dataset.armed = ""; del.textContent = "Delete"; del.classList.replace("btn-danger", "btn-outline-danger"); }, 4000);
        return;
      }
      del.disabled = true;
      try { await client.deleteJob(job.jobName, job.jobId); } catch (err) { showError(err, `Delete ${job.jobId}`); }
      refresh();
    }}, "Delete");
    box.append(del);
    return box;
  }

  function render(shown) {
    rows = shown;
    if (!shown.length) {
      body.replaceChildren(el("tr", {}, el("td", {colspan: columns, class: "text-body-secondary"},
        page > 1 ? "No jobs on this page." : "No jobs yet.",
        fixedName ? [" ", el("a", {href: `${root}/web/new/${encodeURIComponent(fixedName)}`}, "Create one")] : "")));
      return;
    }
    body.replaceChildren(...shown.map((job) => {
      const link = `${root}/web/jobs/${encodeURIComponent(job.jobName)}/${job.jobId}`;
      const known = details.get(`${job.jobId}:${job.phase}`);
      return el("tr", {dataset: {jobId: job.jobId, phase: job.phase}},
        el("td", {}, el("a", {href: link}, el("code", {}, job.jobId)),
          job.runId ? el("div", {class: "small text-body-secondary text-break"}, job.runId) : ""),
        all ? el("td", {class: "d-none d-sm-table-cell"}, el("a", {href: `${root}/web/jobs/${encodeURIComponent(job.jobName)}`}, job.jobName)) : "",
        el("td", {}, phaseBadge(job.phase)),
        el("td", {class: "d-none d-md-table-cell small"}, timeEl(job.creationTime)),
        el("td", {class: "d-none d-lg-table-cell small start"}, known ? timeEl(known.startTime) : "…"),
        el("td", {class: "d-none d-lg-table-cell small end"}, known ? timeEl(known.endTime) : "…"),
        el("td", {class: "text-end"}, actions(job)));
    }));
    fillDetails(shown);
  }

  /** Start and end times are not in job lists: fetch each job once per phase, a few at a time. */
  async function fillDetails(shown) {
    const todo = shown.filter((j) => !details.has(`${j.jobId}:${j.phase}`));
    const worker = async () => {
      for (let job = todo.shift(); job; job = todo.shift()) {
        try {
          const full = await client.job(job.jobName, job.jobId);
          details.set(`${job.jobId}:${job.phase}`, full);
          const row = body.querySelector(`tr[data-job-id="${job.jobId}"]`);
          if (row) {
            row.querySelector(".start").replaceChildren(timeEl(full.startTime));
            row.querySelector(".end").replaceChildren(timeEl(full.endTime));
          }
        } catch (_) { /* deleted meanwhile: the next refresh drops it */ }
      }
    };
    await Promise.all(Array.from({length: DETAILS}, worker));
  }

  async function refresh() {
    if (watcher) watcher.abort();
    watcher = new AbortController();
    const signal = watcher.signal;
    try {
      const {shown, more} = await fetchPage(signal);
      if (signal.aborted) return;
      render(shown);
      newer.disabled = page <= 1;
      older.disabled = !more;
      info.textContent = shown.length ? `Page ${page}` : "";
      live(signal);
    } catch (err) {
      if (err.name === "AbortError") return;
      body.replaceChildren(el("tr", {}, el("td", {colspan: columns, class: "text-danger"}, err.message)));
      if (err.status !== 401 && err.status !== 403) {
        status.textContent = "Cannot load the list; retrying.";
        await sleep(errorBackoff.next(), signal);
        if (!signal.aborted) refresh();
      }
    }
  }
  const errorBackoff = new Backoff(2000, 60000);
  const idleBackoff = new Backoff(5000, 60000);

  /** The live loop of one rendering: ends when the list is refreshed (its signal aborts). */
  async function live(signal) {
    errorBackoff.reset();
    const active = rows.filter((j) => WAITABLE.includes(j.phase));
    if (active.length) {
      idleBackoff.reset();
      const targets = [];
      for (let i = 0; i < Math.min(MAX_WAITS, active.length); i++) targets.push(active[(rotate + i) % active.length]);
      rotate += targets.length;
      status.textContent = `Following ${active.length} active job(s) live.`;
      const started = Date.now();
      const waits = new AbortController();
      signal.addEventListener("abort", () => waits.abort(), {once: true});
      try {
        await Promise.race(targets.map((j) => client.job(j.jobName, j.jobId, {wait: WAIT, phase: j.phase, signal: waits.signal})));
      } catch (err) {
        if (signal.aborted) return;
        status.textContent = `Live updates interrupted (${err.message}); retrying.`;
        await sleep(errorBackoff.next(), signal);
      } finally {
        waits.abort();
      }
      if (Date.now() - started < 500) await sleep(500, signal);  // never a tight loop
      if (!signal.aborted) refresh();
      return;
    }
    // Nothing active here: look for new jobs now and then, less and less often.
    status.textContent = "No active job on this page.";
    const newest = rows.length ? rows[0].creationTime : undefined;
    while (!signal.aborted) {
      await sleep(idleBackoff.next(), signal);
      if (signal.aborted || document.hidden) continue;
      try {
        const {phase} = filters();
        const found = await Promise.all(selectedNames().map((n) => client.jobs(n, {phase, after: newest, last: 1, signal})));
        if (found.some((list) => list.length)) { idleBackoff.reset(); refresh(); return; }
      } catch (err) {
        if (signal.aborted) return;
      }
    }
  }

  older.addEventListener("click", () => { page += 1; refresh(); });
  newer.addEventListener("click", () => { page = Math.max(1, page - 1); refresh(); });
  form.addEventListener("change", () => { page = 1; refresh(); });
  form.addEventListener("submit", (e) => { e.preventDefault(); page = 1; refresh(); });

  (async () => {
    if (all) {
      try {
        names = (await client.definitions()).map((d) => d.name);
        for (const n of names) nameSelect.append(el("option", {value: n}, n));
      } catch (err) { showError(err, "Job definitions"); return; }
    }
    refresh();
  })();
})();
