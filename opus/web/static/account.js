/*
 * The profile page (/web/profile): the user's account (roles, groups) and limits (GET /account), its own API token
 * (replace: POST /account/token, shown once), its password (POST /account/password) and its named
 * service tokens (list, create with a scope and a life, revoke: /account/tokens).  Replacing the
 * token or the password renews this browser's session (a new cookie): the page then fetches the new
 * CSRF token before its next change.
 */
(function () {
  "use strict";
  const {client, el, showError, notify} = OPUS;
  const box = document.getElementById("account");
  const send = (method, path, data) => client._jsonBody(method, path, data);
  /** After a new cookie (new token or password): the session's new CSRF token, for the client and the
   * page's forms (Sign out). */
  async function renewSession() {
    await client.session();
    for (const input of document.querySelectorAll('input[name="_csrf"]')) input.value = client.csrfToken;
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) meta.content = client.csrfToken;
  }

  function section(id, title, ...content) {
    return el("section", {class: "mb-4", id, "aria-labelledby": `${id}-title`},
      el("h2", {class: "h5", id: `${id}-title`}, title), ...content);
  }
  function row(label, value, id) {
    return el("div", {class: "row mb-1"}, el("dt", {class: "col-sm-4"}, label), el("dd", {class: "col-sm-8 mb-0", id}, value));
  }
  function field(id, label, attrs) {
    return el("div", {class: "mb-2"}, el("label", {class: "form-label", for: id}, label),
      el("input", {class: "form-control", id, ...attrs}));
  }
  const shown = (what, token) => notify(el("span", {}, `${what} (shown once, copy it now): `,
    el("code", {class: "user-select-all", id: "shown-token"}, token)), "success");

  function details(me) {
    const limits = me.limits;
    return [
      section("account-details", "Account", el("dl", {},
        row("User name", me.name, "account-name"),
        row("Roles", me.roles.join(", "), "account-roles"),
        row("Groups", (me.groups || []).join(", ") || "none", "account-groups"),
        row("Password", me.password ? "set" : "none (you sign in with your token)", "account-password"))),
      section("account-limits", "Limits", el("dl", {},
        row("Unfinished jobs", `${limits.activeJobs} of ${limits.maxActiveJobs === null ? "no limit" : limits.maxActiveJobs}`, "limit-jobs"),
        row("Job definitions", limits.jobDefinitions.includes("*") ? "all" : limits.jobDefinitions.join(", ") || "none", "limit-jobdefs"),
        row("Longest run", limits.maxExecutionDuration ? `${limits.maxExecutionDuration} s` : "no limit", "limit-duration"))),
    ];
  }

  function tokenSection(me) {
    const id = el("code", {id: "token-id"}, `${me.tokenId}.…`);
    const button = el("button", {class: "btn btn-outline-danger", type: "button", id: "replace-token"}, "Replace my token");
    button.addEventListener("click", async () => {
      if (!confirm("Replace your token? The current one stops working at once, for every script that uses it.")) return;
      try {
        const made = await send("POST", "/account/token");
        await renewSession();
        id.textContent = `${made.tokenId}.…`;
        shown("Your new token", made.token);
      } catch (err) { showError(err, "Replacing the token"); }
    });
    return section("account-token", "API token",
      el("p", {}, "Scripts and UWS clients (curl -u name:token, pyvo, TOPCAT) use your token. It begins with ", id,
        "; the rest is never shown again."), button);
  }

  function passwordSection(me) {
    const form = el("form", {id: "password-form", class: "col-md-6", "aria-label": "Change your password"},
      me.password ? field("current-password", "Current password", {type: "password", autocomplete: "current-password", required: true}) : "",
      field("new-password", "New password", {type: "password", autocomplete: "new-password", required: true, minlength: 1}),
      field("new-password2", "New password again", {type: "password", autocomplete: "new-password", required: true}),
      el("button", {class: "btn btn-primary", type: "submit"}, me.password ? "Change the password" : "Set a password"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const value = form.querySelector("#new-password").value;
      if (value !== form.querySelector("#new-password2").value) { notify("The two passwords differ."); return; }
      const current = form.querySelector("#current-password");
      try {
        await send("POST", "/account/password", {password: value, ...(current ? {current: current.value} : {})});
        await renewSession();
        form.reset();
        notify("Your password is changed. Your other sessions have ended.", "success");
      } catch (err) { showError(err, "Changing the password"); }
    });
    return section("account-password-section", "Password", form);
  }

  // The address notifications go to (PUT /notifications): used once its owner opened the link sent to it.
  function emailSection(me) {
    const state = el("p", {class: "small mb-0", id: "email-state", "aria-live": "polite"});
    const input = el("input", {class: "form-control", id: "account-email", type: "email", autocomplete: "email",
      value: me.email || "", "aria-describedby": "email-state"});
    const show = (email, confirmed, sent) => {
      state.textContent = !email ? "No address: OPUS cannot tell you when your jobs end."
        : confirmed ? `${email} is confirmed: notifications go there.`
        : sent ? `A confirmation link was sent to ${email}: open it to receive notifications there.`
        : `${email} is not confirmed yet: open the link sent to it (a new one can be sent every 10 minutes).`;
      state.dataset.confirmed = confirmed ? "yes" : "no";
    };
    const form = el("form", {class: "row g-2 align-items-end", id: "email-form", "aria-label": "Your e-mail address"},
      el("div", {class: "col-sm-6"}, el("label", {class: "form-label", for: "account-email"}, "E-mail address"), input),
      el("div", {class: "col-sm-auto"}, el("button", {class: "btn btn-primary", type: "submit"}, "Save")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const r = await send("PUT", "/notifications", {email: input.value.trim() || null});
        show(r.email, r.emailConfirmed, r.confirmationSent);
      } catch (err) { showError(err, "Saving the address"); }
    });
    show(me.email, me.emailVerified, false);
    return section("account-email-section", "E-mail for notifications", form, state);
  }

  function serviceSection(tokens) {
    const body = el("tbody", {id: "service-tokens"});
    const draw = (list) => {
      body.replaceChildren(...list.map((t) => {
        const revoke = el("button", {class: "btn btn-sm btn-outline-danger", type: "button"}, "Revoke");
        revoke.setAttribute("aria-label", `Revoke ${t.name}`);
        revoke.addEventListener("click", async () => {
          try { await send("DELETE", `/account/tokens/${encodeURIComponent(t.id)}`); await refresh(); }
          catch (err) { showError(err, "Revoking"); }
        });
        return el("tr", {dataset: {token: t.id}}, el("td", {}, t.name), el("td", {}, t.scope),
          el("td", {}, OPUS.timeEl(t.expires)), el("td", {}, OPUS.timeEl(t.created)), el("td", {}, revoke));
      }));
      if (!list.length) body.append(el("tr", {}, el("td", {colspan: 5, class: "text-body-secondary"}, "No service tokens.")));
    };
    const refresh = async () => draw((await client.json("/account/tokens")).tokens);
    const scope = el("select", {class: "form-select", id: "token-scope"},
      el("option", {value: "read"}, "read: look only (GET)"), el("option", {value: "submit"}, "submit: run and manage jobs"));
    const form = el("form", {class: "row g-2 align-items-end mb-3", id: "service-token-form", "aria-label": "New service token"},
      el("div", {class: "col-sm-4"}, field("token-name", "Name", {required: true, maxlength: 64, autocomplete: "off"})),
      el("div", {class: "col-sm-3 mb-2"}, el("label", {class: "form-label", for: "token-scope"}, "Scope"), scope),
      el("div", {class: "col-sm-2"}, field("token-days", "Days", {type: "number", min: 1, value: 30, required: true})),
      el("div", {class: "col-sm-auto mb-2"}, el("button", {class: "btn btn-primary", type: "submit"}, "Create")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const made = await send("POST", "/account/tokens", {name: form.querySelector("#token-name").value.trim(),
          scope: scope.value, days: Number(form.querySelector("#token-days").value)});
        shown(`Service token ${made.name}`, made.token);
        form.reset();
        await refresh();
      } catch (err) { showError(err, "Creating a service token"); }
    });
    draw(tokens);
    return section("account-service-tokens", "Service tokens",
      el("p", {}, "Named tokens for applications, each with a scope and an expiry; they never have admin or editor rights."),
      form, el("div", {class: "table-responsive"}, el("table", {class: "table table-sm align-middle"},
        el("thead", {}, el("tr", {}, ...["Name", "Scope", "Expires", "Created", ""].map((h) => el("th", {scope: "col"}, h)))), body)));
  }

  async function load() {
    try {
      const me = await client.json("/account");
      box.replaceChildren(...details(me), emailSection(me), tokenSection(me), passwordSection(me),
        serviceSection(me.serviceTokens));
    } catch (err) {
      box.replaceChildren();
      showError(err, "Loading your account");
    }
  }
  load();
})();
