/*
 * uws.js: a small client of the OPUS REST API (IVOA UWS 1.1 with JSON, job definitions, admin).
 *
 * No dependencies, no build step.  On the OPUS pages it uses the browser's session cookie (and
 * sends the session's CSRF token with every state-changing request); on another site it can use
 * the same session when that site is listed in OPUS's CORS_ORIGINS, or a user's token.
 *
 *   const client = new UWS.Client({base: "https://opus.example.org"});     // cookie session
 *   await client.session();                                                // who, and the CSRF token
 *   const client2 = new UWS.Client({base: "...", user: "astro", token: "..."});  // Basic
 *   const job = await client.createJob("dummy", {text: "hi"}, {run: true});
 *   const stop = client.watchJob("dummy", job.jobId, (j) => console.log(j.phase));
 *
 * Every method returns a promise; failures reject with a UWS.Error (status, message, field).
 */
(function (root) {
  "use strict";

  const ACTIVE = ["PENDING", "QUEUED", "EXECUTING", "HELD", "SUSPENDED"];
  const WAITABLE = ["PENDING", "QUEUED", "EXECUTING"];
  const FINAL = ["COMPLETED", "ERROR", "ABORTED", "ARCHIVED"];
  const JSON_TYPE = "application/json";

  class UWSError extends Error {
    /** status: HTTP status (0 for a network failure); field: the parameter or input named by a 400. */
    constructor(status, message) {
      super(message);
      this.name = "UWSError";
      this.status = status;
      const m = /^(?:parameter|input) '([^']+)'/.exec(message || "");
      this.field = m ? m[1] : null;
    }
  }

  const sleep = (ms, signal) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
  });

  /** Exponential backoff: 1 s, 2 s, 4 s ... up to max (ms); reset() after a success. */
  class Backoff {
    constructor(min = 1000, max = 60000) { this.min = min; this.max = max; this.delay = min; }
    next() { const d = this.delay; this.delay = Math.min(this.delay * 2, this.max); return d; }
    reset() { this.delay = this.min; }
  }

  function encodePath(name) { return encodeURIComponent(name); }

  function formBody(params) {
    if (params instanceof FormData || params instanceof URLSearchParams) return params;
    const body = new URLSearchParams();
    const pairs = Array.isArray(params) ? params : Object.entries(params || {});
    for (const [k, v] of pairs) if (v !== undefined && v !== null) body.append(k, String(v));
    return body;
  }

  class Client {
    constructor(options = {}) {
      this.base = (options.base || "").replace(/\/+$/, "");
      this.user = options.user || null;
      this.token = options.token || null;
      this.csrfToken = options.csrfToken || null;
      this.credentials = options.credentials || "include";
    }

    url(path, query) {
      let url = this.base + path;
      if (query) {
        const q = new URLSearchParams();
        for (const [k, v] of Object.entries(query)) {
          if (v === undefined || v === null || v === "") continue;
          for (const item of (Array.isArray(v) ? v : [v])) q.append(k, String(item));
        }
        const text = q.toString();
        if (text) url += (url.includes("?") ? "&" : "?") + text;
      }
      return url;
    }

    _headers(method, extra) {
      const headers = new Headers(extra || {});
      if (this.token) {
        headers.set("Authorization", this.user ? "Basic " + btoa(unescape(encodeURIComponent(this.user + ":" + this.token)))
          : "Bearer " + this.token);
      } else if (this.csrfToken && !["GET", "HEAD", "OPTIONS"].includes(method)) {
        headers.set("X-CSRF-Token", this.csrfToken);
      }
      return headers;
    }

    /** One request; resolves with the Response (a redirect counts as success), rejects with UWSError. */
    async request(method, path, {query, body, accept, headers, redirect, signal} = {}) {
      const h = this._headers(method, headers);
      if (accept) h.set("Accept", accept);
      let response;
      try {
        response = await fetch(path.startsWith("http") ? path : this.url(path, query), {
          method, headers: h, body, signal, redirect: redirect || "follow",
          credentials: this.token ? "omit" : this.credentials,
        });
      } catch (err) {
        if (err.name === "AbortError") throw err;
        throw new UWSError(0, "the server cannot be reached (" + err.message + ")");
      }
      if (response.ok || response.type === "opaqueredirect") return response;
      let message = response.statusText;
      try {
        const text = await response.text();
        try { message = JSON.parse(text).error || text; } catch (_) { message = text.trim() || message; }
      } catch (_) { /* keep the status text */ }
      throw new UWSError(response.status, message);
    }

    async json(path, query, options = {}) {
      const r = await this.request(options.method || "GET", path, {query, accept: JSON_TYPE, ...options});
      return r.json();
    }

    // ---- who am I ---------------------------------------------------------------------------------
    /** {user, admin, anonymous, session, csrfToken, expires, signin}; keeps the CSRF token. */
    async session() {
      const info = await this.json("/web/session");
      if (info.csrfToken) this.csrfToken = info.csrfToken;
      return info;
    }

    // ---- job definitions --------------------------------------------------------------------------
    async definitions() { return (await this.json("/jdl")).jobDefinitions; }
    definition(name, version) { return this.json("/jdl/" + encodePath(name), {format: "json", version}); }
    async definitionText(name, format, version) {
      return (await this.request("GET", "/jdl/" + encodePath(name), {query: {format, version}})).text();
    }
    versions(name) { return this.json("/jdl/" + encodePath(name) + "/versions"); }
    async proposals() { return (await this.json("/jdl/proposals")).proposals; }
    async proposal(name, format) {
      return (await this.request("GET", "/jdl/proposals/" + encodePath(name), {query: {format}})).text();
    }
    /** Propose a definition: text (JSON, VOTable or WADL) with its format. */
    proposeDefinition(text, format) {
      const types = {json: JSON_TYPE, votable: "application/x-votable+xml", wadl: "application/vnd.sun.wadl+xml"};
      return this.json("/jdl", {format}, {method: "POST", body: text,
        headers: {"Content-Type": types[format] || "application/octet-stream"}});
    }
    /** Make a proposal live (admins): digest is the one shown with the proposal you reviewed
     *  (proposals()[i].digest); a proposal changed since is refused (409). */
    async validateProposal(name, digest) {
      await this.request("POST", "/jdl/proposals/" + encodePath(name) + "/validate",
        {body: formBody({digest}), redirect: "manual"});
    }
    async withdrawProposal(name) {
      await this.request("DELETE", "/jdl/proposals/" + encodePath(name), {redirect: "manual"});
    }
    async deleteDefinition(name) { await this.request("DELETE", "/jdl/" + encodePath(name), {redirect: "manual"}); }

    // ---- jobs -------------------------------------------------------------------------------------
    /** The job list, newest first: {phase: [..], last: n, after and before: ISO instants, runId: a run
     *  id, `*` matching any characters (OPUS's BEFORE and RUNID)}. */
    async jobs(jobname, {phase, last, after, before, runId, signal} = {}) {
      const list = await this.json("/rest/" + encodePath(jobname),
        {PHASE: phase, LAST: last, AFTER: after, BEFORE: before, RUNID: runId}, {signal});
      return list.jobs;
    }
    /** One job; with wait (seconds) it blocks until the phase leaves `phase` (UWS WAIT). */
    job(jobname, jobId, {wait, phase, signal} = {}) {
      return this.json(this.jobPath(jobname, jobId), {WAIT: wait, PHASE: wait ? phase : undefined}, {signal});
    }
    jobPath(jobname, jobId) { return "/rest/" + encodePath(jobname) + "/" + encodePath(jobId); }
    /** Create a job from an object, pairs or FormData (files); run: queue it at once.  Resolves the job. */
    async createJob(jobname, params, {run} = {}) {
      const body = formBody(params);
      if (run) body.append("PHASE", "RUN");
      const r = await this.request("POST", "/rest/" + encodePath(jobname), {body, accept: JSON_TYPE});
      return r.json();
    }
    async setParameters(jobname, jobId, params) {
      return (await this.request("POST", this.jobPath(jobname, jobId) + "/parameters",
        {body: formBody(params), accept: JSON_TYPE})).json();
    }
    async run(jobname, jobId) { return this._phase(jobname, jobId, "RUN"); }
    async abort(jobname, jobId) { return this._phase(jobname, jobId, "ABORT"); }
    async _phase(jobname, jobId, phase) {
      const r = await this.request("POST", this.jobPath(jobname, jobId) + "/phase",
        {body: formBody({PHASE: phase}), accept: JSON_TYPE});
      return r.json();
    }
    async deleteJob(jobname, jobId) {
      await this.request("DELETE", this.jobPath(jobname, jobId), {redirect: "manual"});
    }
    /** Text of a result, stdout or stderr: at most `limit` bytes (the rest is not read). */
    async text(path, {limit = 262144} = {}) {
      const r = await this.request("GET", path);
      const contentType = r.headers.get("Content-Type") || "";
      if (!r.body || !limit) return {text: await r.text(), truncated: false, contentType};
      const reader = r.body.getReader();
      const bytes = new Uint8Array(limit);
      let size = 0;
      let truncated = false;
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        const part = value.subarray(0, limit - size);
        bytes.set(part, size);
        size += part.length;
        if (part.length < value.length) { truncated = true; await reader.cancel(); break; }
      }
      return {text: new TextDecoder().decode(bytes.subarray(0, size)), truncated, contentType};
    }

    /**
     * Follow a job with blocking WAITs until it ends: onUpdate(job) at each change.  Failures and
     * WAITs that return at once back off (1 s .. 60 s): never a tight loop.  Returns stop().
     */
    watchJob(jobname, jobId, onUpdate, {wait = 30, onError} = {}) {
      const controller = new AbortController();
      const backoff = new Backoff();
      (async () => {
        let job = null;
        while (!controller.signal.aborted) {
          const started = Date.now();
          try {
            const next = await this.job(jobname, jobId, job && WAITABLE.includes(job.phase)
              ? {wait, phase: job.phase, signal: controller.signal} : {signal: controller.signal});
            const changed = !job || next.phase !== job.phase;
            job = next;
            if (controller.signal.aborted) return;
            if (changed) onUpdate(job);
            if (!ACTIVE.includes(job.phase)) return;  // finished
            if (!WAITABLE.includes(job.phase)) {       // HELD, SUSPENDED: WAIT does not apply
              await sleep(backoff.next(), controller.signal);
              continue;
            }
            if (!changed && Date.now() - started < 1000) await sleep(backoff.next(), controller.signal);
            else backoff.reset();
          } catch (err) {
            if (controller.signal.aborted || err.name === "AbortError") return;
            if (onError) onError(err);
            if (err.status === 404 || err.status === 403 || err.status === 401) return;
            await sleep(backoff.next(), controller.signal);
          }
        }
      })();
      return () => controller.abort();
    }

    // ---- admin ------------------------------------------------------------------------------------
    async users() { return (await this.json("/admin/users")).users; }
    addUser(data) { return this._jsonBody("POST", "/admin/users", data); }
    changeUser(name, data) { return this._jsonBody("PATCH", "/admin/users/" + encodePath(name), data); }
    deleteUser(name) { return this._jsonBody("DELETE", "/admin/users/" + encodePath(name)); }
    newToken(name) { return this._jsonBody("POST", "/admin/users/" + encodePath(name) + "/token"); }
    async _jsonBody(method, path, data) {
      const r = await this.request(method, path, {accept: JSON_TYPE,
        body: data === undefined ? undefined : JSON.stringify(data),
        headers: data === undefined ? {} : {"Content-Type": JSON_TYPE}});
      return r.json();
    }
    async availability() { return (await this.request("GET", "/availability")).text(); }
  }

  root.UWS = {Client, Error: UWSError, Backoff, sleep, ACTIVE, WAITABLE, FINAL};
})(typeof window !== "undefined" ? window : globalThis);
