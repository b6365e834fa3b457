/*
 * Job lists (one definition, or all): phase badges, times, runId, start/abort/delete, and
 *
 * - filters in the page's URL (?definition=&phase=&runid=&after=&before=&size=&page=): a filtered
 *   list can be bookmarked, and the back button returns to the previous filters.  Each is a filter
 *   of the API (PHASE, AFTER; OPUS's BEFORE, and RUNID with "*" wildcards for "run id contains"),
 *   so they search every job, however many there are;
 * - paging with LAST (page k shows the jobs k*size-size+1 .. k*size, newest first);
 * - several jobs selected, then aborted or deleted after a confirmation, each through the API;
 * - each job's destruction time (from its own document, fetched once per phase);
 * - live updates: blocking WAITs on up to two active jobs of the page, the list refreshed when one
 *   returns; with no active job, a check for new jobs (AFTER the newest shown) with backoff.
 */
(function () {
  "use strict";
  const {client, el, root, phaseBadge, timeEl, showError, notify} = OPUS;
  const {WAITABLE, ACTIVE, Backoff, sleep} = UWS;
  const $ = (id) => document.getElementById(id);
  const form = $("job-filters");
  const body = $("jobs-body");
  const fixedName = form.dataset.jobname;
  const all = !fixedName;
  const nameSelect = $("filter-jobname");
  const phaseSelect = $("filter-phase");
  const runInput = $("filter-runid");
  const afterInput = $("filter-after");
  const beforeInput = $("filter-before");
  const sizeSelect = $("filter-size");
  const status = $("live-status");
  const older = $("page-older");
  const newer = $("page-newer");
  const info = $("page-info");
  const selectAll = $("select-all");
  const columns = all ? 9 : 8;
  const WAIT = 30;
  const MAX_WAITS = 2;       // blocking requests held at once (browsers allow ~6 per host)
  const DETAILS = 3;         // job documents fetched at once for start, end and destruction times
  const SIZES = ["10", "25", "50", "100"];

  let page = 1;
  let names = fixedName ? [fixedName] : [];
  let rows = [];             // the job refs shown
  let watcher = null;        // AbortController of the live loop
  let rotate = 0;
  const details = new Map(); // "id:phase" -> job (times only change with the phase)
  const selected = new Map(); // jobId -> job ref, of the jobs shown

  // ---- the filters and the URL ----------------------------------------------------------------
  /** "2026-03-01T14:05" (the browser's time) <-> "2026-03-01T13:05:00Z" (in the URL and the API). */
  const toUtc = (local) => (local ? new Date(local).toISOString().replace(/\.\d{3}Z$/, "Z") : "");
  function toLocal(iso) {
    const d = new Date(iso);
    if (!iso || isNaN(d)) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function filters() {
    const phase = phaseSelect.value === "ACTIVE" ? ACTIVE : (phaseSelect.value || undefined);
    return {phase, after: toUtc(afterInput.value) || undefined, before: toUtc(beforeInput.value) || undefined,
      runId: runInput.value.trim().toLowerCase(), size: Number(sizeSelect.value)};
  }
  const selectedNames = () => (all && nameSelect.value ? [nameSelect.value] : names);

  /** The page's query from the form (only what differs from the defaults). */
  function query() {
    const q = new URLSearchParams();
    if (all && nameSelect.value) q.set("definition", nameSelect.value);
    if (phaseSelect.value) q.set("phase", phaseSelect.value);
    if (runInput.value.trim()) q.set("runid", runInput.value.trim());
    if (afterInput.value) q.set("after", toUtc(afterInput.value));
    if (beforeInput.value) q.set("before", toUtc(beforeInput.value));
    if (sizeSelect.value !== "25") q.set("size", sizeSelect.value);
    if (page > 1) q.set("page", String(page));
    return q.toString();
  }

  /** The form and the page number from the URL (at load, and when going back or forward). */
  function fromUrl() {
    const q = new URLSearchParams(location.search);
    const option = (select, value) => (Array.from(select.options).some((o) => o.value === value) ? value : "");
    if (all) {
      const name = q.get("definition") || "";
      if (name && !option(nameSelect, name)) nameSelect.append(el("option", {value: name}, name));
      nameSelect.value = name;
    }
    phaseSelect.value = option(phaseSelect, (q.get("phase") || "").toUpperCase());
    runInput.value = (q.get("runid") || "").slice(0, 64);
    afterInput.value = toLocal(q.get("after"));
    beforeInput.value = toLocal(q.get("before"));
    sizeSelect.value = option(sizeSelect, q.get("size") || "") || "25";
    page = Math.max(1, Math.min(10000, parseInt(q.get("page") || "1", 10) || 1));
  }

  /** A new state of the list: a new history entry (the back button returns to the one before). */
  function navigate() {
    const q = query();
    const url = location.pathname + (q ? "?" + q : "");
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    selected.clear();
    refresh();
  }

  // ---- reading the list -------------------------------------------------------------------------
  async function fetchPage(signal) {
    const {phase, after, before, runId, size} = filters();
    const last = page * size + 1;  // one more than shown: is there an older page?
    // "Run id contains": RUNID's wildcards (its own "*" cannot be searched for: it is one).
    const pattern = runId ? `*${runId.replaceAll("*", "")}*` : undefined;
    const lists = await Promise.all(selectedNames().map((n) => client.jobs(n, {phase, after, before, runId: pattern, last, signal})));
    const merged = lists.flat().sort((a, b) => (b.creationTime || "").localeCompare(a.creationTime || "")
      || b.jobId.localeCompare(a.jobId));
    return {shown: merged.slice((page - 1) * size, page * size), more: merged.length > page * size};
  }

  // ---- one row ------------------------------------------------------------------------------------
  const jobUrl = (job) => `${root}/web/jobs/${encodeURIComponent(job.jobName)}/${job.jobId}`;
  const label = (job) => (job.runId ? `${job.runId} (${job.jobId})` : job.jobId);

  function actions(job) {
    const box = el("div", {class: "btn-group btn-group-sm", role: "group", "aria-label": `Actions on ${label(job)}`});
    const act = (text, cls, fn) => el("button", {type: "button", class: `btn ${cls}`, onclick: async (e) => {
      e.currentTarget.disabled = true;
      try { await fn(); } catch (err) { showError(err, `${text} ${job.jobId}`); }
      refresh();
    }}, text);
    if (job.phase === "PENDING") box.append(act("Start", "btn-outline-success", () => client.run(job.jobName, job.jobId)));
    if (ACTIVE.includes(job.phase)) box.append(act("Abort", "btn-outline-warning text-body-emphasis", () => client.abort(job.jobName, job.jobId)));
    const del = el("button", {type: "button", class: "btn btn-outline-danger", onclick: async () => {
      if (del.dataset.armed !== "1") {  // a second click confirms: no modal dialog for one job
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

  function times(job) {
    const known = details.get(`${job.jobId}:${job.phase}`);
    const cell = (cls, name, key) => el("td", {class: `${cls} small time-cell ${key}`, "data-label": name},
      known ? timeEl(known[key]) : "…");
    return [cell("jl-lg", "Started", "startTime"), cell("jl-lg", "Ended", "endTime"), cell("jl-md", "Destruction", "destruction")];
  }

  function row(job) {
    const box = el("input", {class: "form-check-input", type: "checkbox", "aria-label": `Select ${label(job)}`,
      onchange: () => { if (box.checked) selected.set(job.jobId, job); else selected.delete(job.jobId); bulkState(); }});
    box.checked = selected.has(job.jobId);
    const name = job.runId
      ? [el("a", {href: jobUrl(job), class: "job-label text-break"}, job.runId),
        el("div", {class: "small text-body-secondary"}, el("code", {}, job.jobId))]
      : [el("a", {href: jobUrl(job)}, el("code", {}, job.jobId))];
    return el("tr", {dataset: {jobId: job.jobId, phase: job.phase}, class: selected.has(job.jobId) ? "table-active" : ""},
      el("td", {class: "select-cell"}, box),
      el("td", {class: "job-cell"}, name),
      all ? el("td", {class: "jl-sm", "data-label": "Definition"},
        el("a", {href: `${root}/web/jobs/${encodeURIComponent(job.jobName)}`}, job.jobName)) : "",
      el("td", {}, phaseBadge(job.phase)),
      el("td", {class: "jl-md small time-cell", "data-label": "Created"}, timeEl(job.creationTime)),
      ...times(job),
      el("td", {class: "text-end actions-cell"}, actions(job)));
  }

  function render(shown) {
    rows = shown;
    for (const id of Array.from(selected.keys())) {
      const now = shown.find((j) => j.jobId === id);
      if (now) selected.set(id, now); else selected.delete(id);  // only jobs shown stay selected
    }
    bulkState();
    if (!shown.length) {
      const filtered = query().replace(/(^|&)(size|page)=[^&]*/g, "");
      body.replaceChildren(el("tr", {}, el("td", {colspan: columns, class: "text-body-secondary"},
        page > 1 ? "No jobs on this page." : filtered ? "No job matches these filters." : "No jobs yet.",
        fixedName && !filtered ? [" ", el("a", {href: `${root}/web/new/${encodeURIComponent(fixedName)}`}, "Create one")] : "")));
      return;
    }
    body.replaceChildren(...shown.map(row));
    fillDetails(shown);
  }

  /** Times are not in job lists: fetch each job once per phase, a few at a time. */
  async function fillDetails(shown) {
    const todo = shown.filter((j) => !details.has(`${j.jobId}:${j.phase}`));
    const worker = async () => {
      for (let job = todo.shift(); job; job = todo.shift()) {
        try {
          const full = await client.job(job.jobName, job.jobId);
          details.set(`${job.jobId}:${job.phase}`, full);
          const tr = body.querySelector(`tr[data-job-id="${job.jobId}"]`);
          if (tr) for (const key of ["startTime", "endTime", "destruction"]) tr.querySelector("." + key).replaceChildren(timeEl(full[key]));
        } catch (_) { /* deleted meanwhile: the next refresh drops it */ }
      }
    };
    await Promise.all(Array.from({length: DETAILS}, worker));
  }

  // ---- several jobs at once -------------------------------------------------------------------
  function bulkState() {
    const n = selected.size;
    $("bulk-bar").hidden = n === 0;
    $("bulk-count").textContent = `${n} job${n === 1 ? "" : "s"} selected`;
    const abortable = Array.from(selected.values()).filter((j) => ACTIVE.includes(j.phase)).length;
    $("bulk-abort").disabled = abortable === 0;
    $("bulk-abort").textContent = abortable ? `Abort ${abortable}` : "Abort (none unfinished)";
    $("bulk-delete").textContent = `Delete ${n}`;
    selectAll.checked = rows.length > 0 && rows.every((j) => selected.has(j.jobId));
    selectAll.indeterminate = n > 0 && !selectAll.checked;
    for (const tr of body.querySelectorAll("tr[data-job-id]")) tr.classList.toggle("table-active", selected.has(tr.dataset.jobId));
  }

  let pending = null;  // {verb, jobs} the dialog asks about
  function confirmBulk(verb) {
    const jobs = Array.from(selected.values()).filter((j) => verb === "delete" || ACTIVE.includes(j.phase));
    if (!jobs.length) return;
    pending = {verb, jobs};
    const skipped = selected.size - jobs.length;
    $("bulk-confirm-title").textContent = verb === "delete" ? `Delete ${jobs.length} job(s)?` : `Abort ${jobs.length} job(s)?`;
    $("bulk-confirm-text").textContent = (verb === "delete"
      ? "These jobs, their files and results will be deleted. This cannot be undone."
      : "These jobs will be stopped; they end ABORTED.")
      + (skipped ? ` ${skipped} selected job(s) already finished are left as they are.` : "");
    $("bulk-confirm-list").replaceChildren(...jobs.map((j) => el("li", {}, `${label(j)} · ${j.jobName} · ${j.phase}`)));
    const go = $("bulk-confirm-go");
    go.textContent = verb === "delete" ? `Delete ${jobs.length}` : `Abort ${jobs.length}`;
    go.className = `btn ${verb === "delete" ? "btn-danger" : "btn-warning"}`;
    go.disabled = false;
    bootstrap.Modal.getOrCreateInstance($("bulk-confirm")).show();
  }

  async function runBulk() {
    if (!pending) return;
    const {verb, jobs} = pending;
    pending = null;
    $("bulk-confirm-go").disabled = true;
    const failed = [];
    const queue = jobs.slice();
    const worker = async () => {  // each job through the API, a few at a time
      for (let job = queue.shift(); job; job = queue.shift()) {
        try {
          if (verb === "delete") await client.deleteJob(job.jobName, job.jobId);
          else await client.abort(job.jobName, job.jobId);
        } catch (err) { failed.push([job, err]); }
      }
    };
    await Promise.all(Array.from({length: DETAILS}, worker));
    bootstrap.Modal.getOrCreateInstance($("bulk-confirm")).hide();
    const done = jobs.length - failed.length;
    notify(`${verb === "delete" ? "Deleted" : "Aborted"} ${done} of ${jobs.length} job(s).`, failed.length ? "warning" : "success");
    for (const [job, err] of failed) showError(err, `${verb === "delete" ? "Delete" : "Abort"} ${label(job)}`);
    selected.clear();
    refresh();
  }

  $("bulk-abort").addEventListener("click", () => confirmBulk("abort"));
  $("bulk-delete").addEventListener("click", () => confirmBulk("delete"));
  $("bulk-clear").addEventListener("click", () => { selected.clear(); for (const b of body.querySelectorAll(".select-cell input")) b.checked = false; bulkState(); });
  $("bulk-confirm-go").addEventListener("click", runBulk);
  selectAll.addEventListener("change", () => {
    for (const job of rows) if (selectAll.checked) selected.set(job.jobId, job); else selected.delete(job.jobId);
    for (const b of body.querySelectorAll(".select-cell input")) b.checked = selectAll.checked;
    bulkState();
  });

  // ---- refresh and live updates ---------------------------------------------------------------
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
      if (err.status !== 401 && err.status !== 403 && err.status !== 400 && err.status !== 404) {
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

  older.addEventListener("click", () => { page += 1; navigate(); });
  newer.addEventListener("click", () => { page = Math.max(1, page - 1); navigate(); });
  // Selects and dates apply at once; the run id when Enter (or Apply) is pressed, or the field is left.
  form.addEventListener("change", (e) => { if (e.target !== runInput) { page = 1; navigate(); } });
  runInput.addEventListener("change", () => { page = 1; navigate(); });
  form.addEventListener("submit", (e) => { e.preventDefault(); page = 1; navigate(); });
  $("filter-clear").addEventListener("click", (e) => {
    e.preventDefault();
    form.reset();
    if (all) nameSelect.value = "";
    sizeSelect.value = "25";
    page = 1;
    navigate();
  });
  window.addEventListener("popstate", () => { fromUrl(); selected.clear(); refresh(); });

  (async () => {
    if (all) {
      try {
        names = (await client.definitions()).map((d) => d.name);
        for (const n of names) nameSelect.append(el("option", {value: n}, n));
      } catch (err) { showError(err, "Job definitions"); return; }
    }
    fromUrl();
    refresh();
  })();
})();
