/* The job definitions page: the definitions the caller may run, with their descriptions. */
(function () {
  "use strict";
  const {client, el, root, showError} = OPUS;
  const box = document.getElementById("definitions");

  async function load() {
    let defs;
    try {
      defs = await client.definitions();
    } catch (err) {
      box.replaceChildren();
      box.removeAttribute("aria-busy");
      showError(err, "Job definitions");
      return;
    }
    box.replaceChildren();
    box.removeAttribute("aria-busy");  // tests (and assistive technologies) wait for this
    if (!defs.length) { box.append(el("p", {class: "text-body-secondary"}, "No job definition is open to you.")); return; }
    for (const d of defs) {
      const name = encodeURIComponent(d.name);
      const formats = ["votable", "json", "wadl"].map((f) =>
        el("a", {class: "link-secondary me-2", href: `${root}/jdl/${name}?format=${f}`}, f === "votable" ? "VOTable" : f.toUpperCase()));
      box.append(el("div", {class: "col"}, el("div", {class: "card h-100 shadow-sm definition", dataset: {name: d.name}},
        el("div", {class: "card-body"},
          el("h2", {class: "h5 card-title"}, d.name, " ",
            el("span", {class: "badge text-bg-light border fw-normal"}, "v" + (d.version || "?"))),
          el("p", {class: "card-subtitle mb-2 small text-body-secondary"}, [d.type, d.subtype].filter(Boolean).join(" · ")),
          el("p", {class: "card-text"}, d.description || "")),
        el("div", {class: "card-footer bg-transparent d-flex flex-wrap align-items-center gap-2"},
          el("a", {class: "btn btn-primary btn-sm", href: `${root}/web/new/${name}`}, "New job"),
          el("a", {class: "btn btn-outline-secondary btn-sm", href: `${root}/web/jobs/${name}`}, "Jobs"),
          el("a", {class: "btn btn-outline-secondary btn-sm", href: `${root}/web/editor?name=${name}`}, "Edit"),
          el("span", {class: "ms-auto small"}, formats)))));
    }
  }
  load();
})();
