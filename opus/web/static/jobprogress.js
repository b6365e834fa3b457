/*
 * The progress of a QUEUED or EXECUTING job on its page: elapsed time against the execution-duration
 * limit and the quote (a clock in the page, no request), its place in the queue or its SLURM job, and
 * a live tail of stdout and stderr (the last TAIL bytes, by Range requests, only when they grew).
 * The server side is GET …/progress (opus/server/progress_routes.py), polled every POLL ms.
 */
(function () {
  "use strict";
  const {client, formatTime} = OPUS;
  const TAIL = 16 * 1024;
  const POLL = 2000;

  const clock = (seconds) => {
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600); const m = Math.floor((s % 3600) / 60); const r = s % 60;
    return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(r).padStart(2, "0")}`;
  };

  function where(p) {
    if (!p) return "";
    if (p.queuePosition) return p.queuePosition === 1 ? "Next in the queue" : `Position ${p.queuePosition} in the queue`;
    if (p.handedTo === "starting") return "Being started";
    if (p.handedTo === "submitting") return "Being submitted to SLURM";
    if (p.handedTo === "slurm") return p.phase === "QUEUED" ? `Waiting in SLURM's queue as job ${p.slurmJobId}` : `SLURM job ${p.slurmJobId}`;
    if (p.phase === "QUEUED" && p.manager === "local") return `Further back than ${p.queueScanned} jobs in the queue`;
    return "";
  }

  class Progress {
    constructor(box, path) {
      this.box = box; this.path = path; this.job = null; this.info = null;
      this.sizes = {stdout: -1, stderr: -1}; this.timer = null; this.ticker = null;
    }

    /** Follow this job (called at every phase change). */
    update(job) {
      this.job = job;
      const active = job.phase === "QUEUED" || job.phase === "EXECUTING";
      this.box.classList.toggle("d-none", !active);
      this.box.dataset.phase = job.phase;
      if (!active) { this.stop(); return; }
      if (!this.ticker) this.ticker = setInterval(() => this.renderClock(), 1000);
      this.renderClock();
      this.poll();
    }

    stop() {
      clearInterval(this.ticker); clearTimeout(this.timer);
      this.ticker = null; this.timer = null;
    }

    renderClock() {
      const job = this.job;
      const $ = (id) => document.getElementById(id);
      const bar = $("progress-bar");
      const text = [];
      if (job.phase === "EXECUTING" && job.startTime) {
        const elapsed = (Date.now() - Date.parse(job.startTime)) / 1000;
        const limit = job.executionDuration || 0;
        text.push(`Running for ${clock(elapsed)}` + (limit ? ` of at most ${clock(limit)}` : " (no time limit)"));
        const pct = limit ? Math.min(100, (100 * elapsed) / limit) : 0;
        bar.style.width = `${pct}%`;
        bar.parentNode.setAttribute("aria-valuenow", String(Math.round(pct)));
        bar.parentNode.classList.toggle("d-none", !limit);
        $("progress-elapsed").dataset.elapsed = String(Math.round(elapsed));
      } else {
        text.push("Waiting to start");
        bar.parentNode.classList.add("d-none");
      }
      if (job.quote) {
        const left = (Date.parse(job.quote) - Date.now()) / 1000;
        text.push(left >= 0 ? `expected to end by ${formatTime(job.quote)} (in ${clock(left)})`
          : `past its quote (${formatTime(job.quote)}) by ${clock(-left)}`);
      }
      $("progress-elapsed").textContent = text.join("; ");
    }

    async poll() {
      clearTimeout(this.timer);
      const job = this.job;
      try {
        this.info = await client.json(`${this.path}/progress`);
        document.getElementById("progress-where").textContent = where(this.info);
        if (job.phase === "EXECUTING" || this.info.phase === "EXECUTING") {
          await Promise.all(["stdout", "stderr"].map((w) => this.tail(w, this.info[w + "Size"])));
        }
      } catch (err) {
        if (err.status === 404 || err.status === 403 || err.status === 401) { this.stop(); return; }
      }
      if (this.job === job && this.ticker) this.timer = setTimeout(() => this.poll(), POLL);
    }

    /** The last TAIL bytes of stdout or stderr, fetched only when the file grew. */
    async tail(which, size) {
      if (typeof size !== "number" || size <= 0 || size === this.sizes[which]) return;
      this.sizes[which] = size;
      const from = Math.max(0, size - TAIL);
      const r = await client.request("GET", `${this.path}/${which}`, {headers: {Range: `bytes=${from}-${size - 1}`}});
      let text = new TextDecoder().decode(await r.arrayBuffer());
      if (from > 0) text = "… " + text.slice(text.indexOf("\n") + 1);
      const pre = document.getElementById(`tail-${which}`);
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = text;
      pre.dataset.size = String(size);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
  }

  OPUS.Progress = Progress;
  OPUS.progressWhere = where;
  OPUS.clock = clock;
  OPUS.progressTail = TAIL;
  OPUS.progressPoll = POLL;
})();
