/* ui.js: what every OPUS page shares: the API client, DOM helpers, phase badges, times, alerts. */
(function () {
  "use strict";
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const root = meta("opus-root");
  const client = new UWS.Client({base: root, csrfToken: meta("csrf-token") || null, credentials: "same-origin"});

  /** el("a", {href: x, class: "y"}, "text", child...): children are text or nodes, never HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) {
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  const PHASE_CLASS = {
    PENDING: "text-bg-secondary", QUEUED: "text-bg-info", EXECUTING: "text-bg-primary",
    COMPLETED: "text-bg-success", ERROR: "text-bg-danger", ABORTED: "text-bg-warning",
    HELD: "text-bg-dark", SUSPENDED: "text-bg-dark", ARCHIVED: "text-bg-light border", UNKNOWN: "text-bg-light border",
  };
  function phaseBadge(phase, node) {
    const badge = node || el("span");
    badge.className = "badge phase " + (PHASE_CLASS[phase] || "text-bg-light");
    badge.textContent = phase;
    badge.dataset.phase = phase;
    return badge;
  }

  const pad = (n) => String(n).padStart(2, "0");
  /** An ISO instant in the browser's time zone, "2026-03-01 14:05:09" ("—" when null). */
  function formatTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function timeEl(iso) { return iso ? el("time", {datetime: iso, title: iso}, formatTime(iso)) : "—"; }

  function formatSize(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0; let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + " " + units[i];
  }

  /** A dismissible alert at the top of the page; 401s offer to sign in again. */
  function notify(message, kind = "danger") {
    const box = document.getElementById("alerts");
    const alert = el("div", {class: `alert alert-${kind} alert-dismissible fade show`, role: kind === "danger" ? "alert" : "status"},
      message, el("button", {type: "button", class: "btn-close", "data-bs-dismiss": "alert", "aria-label": "Close"}));
    box.append(alert);
    return alert;
  }
  function showError(err, prefix) {
    const text = (prefix ? prefix + ": " : "") + (err && err.message ? err.message : String(err));
    const alert = notify(text);
    if (err && err.status === 401) {
      const next = encodeURIComponent(location.pathname + location.search);
      alert.insertBefore(el("a", {class: "ms-2", href: `${root}/web/signin?next=${next}`}, "Sign in"), alert.lastChild);
    }
    return alert;
  }

  /** The API's absolute hrefs as paths of this page's server, so that links work behind proxies. */
  function local(href) {
    try { const u = new URL(href, location.href); return u.pathname + u.search; } catch (_) { return href; }
  }

  window.OPUS = {root, client, el, phaseBadge, formatTime, timeEl, formatSize, notify, showError, local,
    user: meta("opus-user"), admin: meta("opus-admin") === "1"};
})();
