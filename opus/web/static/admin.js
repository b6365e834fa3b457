/*
 * Administration (admins only): users (/admin/users: add, enable/disable, new token, allowed job
 * definitions, quota, groups, delete; their service tokens, revocable, and a password reset link), job definitions (/jdl: files that cannot be used and why, proposals
 * to validate or reject, versions, delete) and the server's status (/availability, and jobs by phase from /metrics).  A proposal is
 * validated by the digest shown next to it, so the document made live is the one "View" showed.
 */
(function () {
  "use strict";
  const {client, el, root, showError, notify} = OPUS;
  const box = document.getElementById("admin");

  function section(id, title, ...content) {
    return el("section", {class: "mb-5", id, "aria-labelledby": `${id}-title`}, el("h2", {class: "h4", id: `${id}-title`}, title), ...content);
  }
  const tokenAlert = (name, token) => notify(el("span", {}, `Token of ${name} (shown once, copy it now): `,
    el("code", {class: "user-token user-select-all", dataset: {user: name}}, token)), "success");

  // ---- users ------------------------------------------------------------------------------------------
  async function users() {
    const body = el("tbody", {});
    const add = el("form", {class: "row g-2 align-items-start mb-3", id: "add-user", "aria-label": "Add a user"},
      el("div", {class: "col-sm-3"}, el("label", {class: "form-label", for: "new-name"}, "Name"),
        el("input", {class: "form-control", id: "new-name", required: true, autocomplete: "off"})),
      el("div", {class: "col-sm-4"}, el("label", {class: "form-label", for: "new-jobdefs"}, "Allowed definitions"),
        el("input", {class: "form-control", id: "new-jobdefs", value: "*", "aria-describedby": "new-jobdefs-help"}),
        el("div", {class: "form-text", id: "new-jobdefs-help"}, "Names separated by commas; * for all")),
      el("div", {class: "col-sm-2"}, el("label", {class: "form-label", for: "new-quota"}, "Unfinished jobs"),
        el("input", {class: "form-control", id: "new-quota", type: "number", min: 0, placeholder: "default"})),
      el("div", {class: "col-sm-3"}, el("label", {class: "form-label", for: "new-groups"}, "Groups"),
        el("input", {class: "form-control", id: "new-groups", autocomplete: "off", "aria-describedby": "new-groups-help"}),
        el("div", {class: "form-text", id: "new-groups-help"}, "Names separated by commas")),
      el("div", {class: "col-sm-1 form-check ms-2 align-self-center"}, el("input", {class: "form-check-input", type: "checkbox", id: "new-admin"}),
        el("label", {class: "form-check-label", for: "new-admin"}, "Admin")),
      el("div", {class: "col-sm-auto"}, el("button", {class: "btn btn-primary", type: "submit"}, "Add user")));
    add.addEventListener("submit", async (e) => {
      e.preventDefault();
      const quota = add.querySelector("#new-quota").value;
      try {
        const user = await client.addUser({name: add.querySelector("#new-name").value.trim(),
          admin: add.querySelector("#new-admin").checked, jobDefinitions: add.querySelector("#new-jobdefs").value,
          groups: add.querySelector("#new-groups").value,
          ...(quota !== "" ? {maxActiveJobs: Number(quota)} : {})});
        tokenAlert(user.name, user.token);
        add.reset();
        refresh();
      } catch (err) { showError(err, "Adding the user"); }
    });
    // A user's service tokens (revocable) and a one-time password reset link: a row under the user's.
    async function access(button, name) {
      const row = button.closest("tr");
      const open = row.nextElementSibling && row.nextElementSibling.dataset.accessOf === name;
      if (open) { row.nextElementSibling.remove(); button.setAttribute("aria-expanded", "false"); return; }
      const path = `/admin/users/${encodeURIComponent(name)}`;
      const list = el("ul", {class: "list-group list-group-flush small service-tokens"});
      const link = el("div", {class: "small mt-2 reset-link"});
      const show = async () => {
        let tokens;
        try { tokens = (await client.json(`${path}/tokens`)).tokens; } catch (err) { showError(err, `Service tokens of ${name}`); return; }
        list.replaceChildren(...(tokens.length ? tokens.map((t) => el("li", {class: "list-group-item d-flex flex-wrap gap-2 align-items-center", dataset: {token: t.id}},
          el("span", {class: "fw-semibold"}, t.name), el("span", {class: "badge text-bg-light border"}, t.scope),
          el("span", {class: "text-body-secondary"}, `expires ${t.expires}`), el("code", {}, t.id),
          el("button", {class: "btn btn-sm btn-outline-danger ms-auto", type: "button", "aria-label": `Revoke the token ${t.name} of ${name}`,
            onclick: async () => {
              try { await client._jsonBody("DELETE", `${path}/tokens/${encodeURIComponent(t.id)}`); notify(`Token ${t.name} of ${name} revoked.`, "success"); show(); }
              catch (err) { showError(err, "Revoke"); }
            }}, "Revoke")))
          : [el("li", {class: "list-group-item text-body-secondary"}, "No service token.")]));
      };
      const reset = el("button", {class: "btn btn-sm btn-outline-primary mt-2", type: "button", onclick: async () => {
        try {
          const r = await client._jsonBody("POST", `${path}/reset`);
          link.replaceChildren(`Send this link to ${name} (once; valid until ${r.expires}): `,
            el("code", {class: "user-select-all text-break"}, r.url));
        } catch (err) { showError(err, "Reset link"); }
      }}, "Password reset link");
      row.after(el("tr", {dataset: {accessOf: name}}, el("td", {colspan: 6},
        el("h3", {class: "h6"}, `Service tokens of ${name}`), list, reset, link)));
      button.setAttribute("aria-expanded", "true");
      await show();
    }
    const change = async (name, data, what) => {
      try { await client.changeUser(name, data); refresh(); } catch (err) { showError(err, `${what} ${name}`); }
    };
    async function refresh() {
      let list;
      try { list = await client.users(); } catch (err) { showError(err, "Users"); return; }
      body.replaceChildren(...list.map((u) => {
        const defs = el("input", {class: "form-control form-control-sm", value: u.jobDefinitions.join(", "),
          "aria-label": `Definitions ${u.name} may use`});
        const quota = el("input", {class: "form-control form-control-sm", type: "number", min: 0, value: u.maxActiveJobs ?? "",
          placeholder: "default", "aria-label": `Unfinished jobs ${u.name} may have`});
        const groups = el("input", {class: "form-control form-control-sm user-groups", value: (u.groups || []).join(", "),
          placeholder: "none", "aria-label": `Groups of ${u.name}`});
        return el("tr", {dataset: {user: u.name}},
          el("th", {scope: "row"}, u.name, u.roles.includes("admin") ? el("span", {class: "badge text-bg-dark ms-1"}, "admin") : ""),
          el("td", {}, el("span", {class: `badge ${u.enabled ? "text-bg-success" : "text-bg-secondary"}`}, u.enabled ? "enabled" : "disabled")),
          el("td", {}, el("div", {class: "input-group input-group-sm"}, defs, el("button", {class: "btn btn-outline-secondary", type: "button",
            onclick: () => change(u.name, {jobDefinitions: defs.value}, "Definitions of")}, "Save"))),
          el("td", {}, el("div", {class: "input-group input-group-sm"}, quota, el("button", {class: "btn btn-outline-secondary", type: "button",
            onclick: () => change(u.name, {maxActiveJobs: quota.value === "" ? null : Number(quota.value)}, "Quota of")}, "Save"))),
          el("td", {}, el("div", {class: "input-group input-group-sm"}, groups, el("button", {class: "btn btn-outline-secondary save-groups", type: "button",
            onclick: () => change(u.name, {groups: groups.value}, "Groups of")}, "Save"))),
          el("td", {class: "text-end text-nowrap"},
            el("button", {class: "btn btn-sm btn-outline-secondary me-1", type: "button",
              onclick: () => change(u.name, {enabled: !u.enabled}, u.enabled ? "Disable" : "Enable")}, u.enabled ? "Disable" : "Enable"),
            el("button", {class: "btn btn-sm btn-outline-primary me-1", type: "button", onclick: async () => {
              try { tokenAlert(u.name, (await client.newToken(u.name)).token); } catch (err) { showError(err, "New token"); }
            }}, "New token"),
            el("button", {class: "btn btn-sm btn-outline-secondary me-1 user-access", type: "button", "aria-expanded": "false",
              onclick: (e) => access(e.currentTarget, u.name)}, "Access"),
            el("button", {class: "btn btn-sm btn-outline-danger", type: "button", onclick: async (e) => {
              const b = e.currentTarget;
              if (b.dataset.armed !== "1") { b.dataset.armed = "1"; b.textContent = "Confirm delete"; return; }
              try { await client.deleteUser(u.name); refresh(); } catch (err) { showError(err, "Delete"); }
            }}, "Delete")));
      }));
    }
    await refresh();
    return section("users", "Users", add, el("div", {class: "table-responsive"}, el("table", {class: "table align-middle"},
      el("caption", {class: "visually-hidden"}, "Users"),
      el("thead", {}, el("tr", {}, ["Name", "State", "Allowed definitions", "Quota", "Groups", ""].map((h) => el("th", {scope: "col"}, h)))), body)));
  }

  // ---- definitions -----------------------------------------------------------------------------------
  async function definitions() {
    const proposals = el("ul", {class: "list-group mb-3", id: "proposals"});
    // Definition files that cannot be used as they are (GET /jdl gives admins their file and reason).
    const problems = el("ul", {class: "list-group mb-3", id: "definition-problems"});
    const live = el("tbody", {});
    async function refresh() {
      try {
        const pending = await client.proposals();
        proposals.replaceChildren(...(pending.length ? pending.map((p) => el("li", {class: "list-group-item d-flex flex-wrap gap-2 align-items-center", dataset: {proposal: p.name}},
          el("span", {class: "fw-semibold"}, p.name), el("span", {class: "small text-body-secondary"}, `v${p.version || "?"} by ${p.proposer || "?"}`),
          // The digest names the document shown by "View": Validate sends it, so a proposal changed since is refused.
          el("code", {class: "small proposal-digest", title: `SHA-256 ${p.digest}`, dataset: {digest: p.digest}}, p.digest.slice(0, 12)),
          el("span", {class: "ms-auto d-flex gap-1"},
            el("a", {class: "btn btn-sm btn-outline-secondary", href: `${root}/jdl/proposals/${encodeURIComponent(p.name)}?format=json&digest=${p.digest}`}, "View"),
            el("a", {class: "btn btn-sm btn-outline-secondary", href: `${root}/web/editor?proposal=${encodeURIComponent(p.name)}`}, "Edit"),
            el("button", {class: "btn btn-sm btn-success", type: "button", onclick: async () => {
              try { await client.validateProposal(p.name, p.digest); notify(`${p.name} is live.`, "success"); refresh(); } catch (err) {
                showError(err, err.status === 409 ? `Validate (${p.name} changed since this list was shown: view it again)` : "Validate");
                refresh();
              }
            }}, "Validate"),
            el("button", {class: "btn btn-sm btn-outline-danger", type: "button", onclick: async () => {
              try { await client.withdrawProposal(p.name); refresh(); } catch (err) { showError(err, "Reject"); }
            }}, "Reject"))))
          : [el("li", {class: "list-group-item text-body-secondary"}, "No proposal waits.")]));
        const listing = await client.json("/jdl");
        const defs = listing.jobDefinitions;
        const label = {invalid: "invalid", misnamed: "not offered", unmet: "missing needs"};
        problems.replaceChildren(...((listing.problems || []).length ? listing.problems.map((p) => el("li", {
          class: "list-group-item", dataset: {problem: p.name, state: p.state}},
          el("span", {class: "fw-semibold me-2"}, p.name),
          el("span", {class: `badge ${p.state === "unmet" ? "text-bg-warning" : "text-bg-danger"} me-2`}, label[p.state] || p.state),
          el("code", {class: "small"}, p.file),
          el("div", {class: "small"}, p.problems.join("; "))))
          : [el("li", {class: "list-group-item text-body-secondary"}, "Every definition can run here.")]));
        const rows = await Promise.all(defs.map(async (d) => {
          let versions = [];
          try { versions = (await client.versions(d.name)).versions; } catch (_) { /* none kept */ }
          return el("tr", {dataset: {definition: d.name}}, el("th", {scope: "row"}, el("a", {href: `${root}/web/jobs/${encodeURIComponent(d.name)}`}, d.name)),
            el("td", {}, d.version || ""),
            el("td", {class: "small"}, versions.map((v) => el("a", {class: "me-2", href: OPUS.local(v.href)}, v.version + (v.live ? " (live)" : "")))),
            el("td", {class: "text-end text-nowrap"},
              el("a", {class: "btn btn-sm btn-outline-secondary me-1", href: `${root}/web/editor?name=${encodeURIComponent(d.name)}`}, "Edit"),
              el("button", {class: "btn btn-sm btn-outline-danger", type: "button", onclick: async (e) => {
                const b = e.currentTarget;
                if (b.dataset.armed !== "1") { b.dataset.armed = "1"; b.textContent = "Confirm delete"; return; }
                try { await client.deleteDefinition(d.name); refresh(); } catch (err) { showError(err, "Delete"); }
              }}, "Delete")));
        }));
        live.replaceChildren(...rows);
      } catch (err) { showError(err, "Definitions"); }
    }
    await refresh();
    return section("definitions", "Job definitions", el("h3", {class: "h6"}, "Problems"), problems,
      el("h3", {class: "h6"}, "Proposals"), proposals,
      el("h3", {class: "h6"}, "Live"), el("div", {class: "table-responsive"}, el("table", {class: "table align-middle"},
        el("caption", {class: "visually-hidden"}, "Live job definitions"),
        el("thead", {}, el("tr", {}, ["Name", "Version", "Kept versions", ""].map((h) => el("th", {scope: "col"}, h)))), live)));
  }

  // ---- status ---------------------------------------------------------------------------------------------
  async function status() {
    const out = el("div", {});
    try {
      const xml = new DOMParser().parseFromString(await client.availability(), "application/xml");
      const available = (xml.getElementsByTagNameNS("*", "available")[0] || {}).textContent;
      const notes = Array.from(xml.getElementsByTagNameNS("*", "note")).map((n) => n.textContent);
      out.append(el("p", {}, el("span", {class: `badge ${available === "true" ? "text-bg-success" : "text-bg-danger"} me-2`},
        available === "true" ? "available" : "unavailable"), notes.join(" · ")));
      const metrics = await (await client.request("GET", "/metrics")).text();
      const phases = [...metrics.matchAll(/^opus_jobs\{phase="(\w+)"\} (\d+)/gm)];
      out.append(el("table", {class: "table table-sm w-auto", id: "jobs-by-phase"}, el("caption", {}, "Jobs by phase"),
        el("tbody", {}, phases.map(([, phase, n]) => el("tr", {}, el("th", {scope: "row"}, OPUS.phaseBadge(phase)), el("td", {class: "text-end"}, n))))),
      el("details", {}, el("summary", {}, "All metrics"), el("pre", {class: "output"}, metrics.split("\n").filter((l) => l && !l.startsWith("#")).join("\n"))));
    } catch (err) { out.append(el("p", {class: "text-danger"}, err.message)); }
    return section("status", "Server status", out);
  }

  (async () => {
    const parts = await Promise.all([users(), definitions(), status()]);
    box.replaceChildren(...parts);
    box.dataset.ready = "1";
  })();
})();
