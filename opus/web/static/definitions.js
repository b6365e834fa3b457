/* The home page's job definitions: the ones the caller may run, with their descriptions and links. */
(function () {
  "use strict";
  const {client, el, root, showError} = OPUS;
  const box = document.getElementById("definitions");

  function card(d) {
    const name = encodeURIComponent(d.name);
    const of = () => el("span", {class: "visually-hidden"}, ` (${d.name})`);  // names the button for screen readers
    const formats = ["votable", "json", "wadl"].map((f) =>
      el("a", {class: "link-secondary me-2", href: `${root}/jdl/${name}?format=${f}`}, f === "votable" ? "VOTable" : f.toUpperCase(), of()));
    const kind = [d.type, d.subtype].filter(Boolean).join(" · ");
    return el("div", {class: "col"}, el("article", {class: "card h-100 shadow-sm definition", dataset: {name: d.name},
      "aria-labelledby": `def-${name}`},
      el("div", {class: "card-body"},
        el("h3", {class: "h5 card-title d-flex flex-wrap align-items-baseline gap-2", id: `def-${name}`}, d.name,
          el("span", {class: "badge text-bg-secondary fw-normal"}, "version " + (d.version || "?"))),
        kind ? el("p", {class: "card-subtitle mb-2 small text-body-secondary"}, kind) : "",
        el("p", {class: "card-text"}, d.description || "No description.")),
      el("div", {class: "card-footer bg-transparent d-flex flex-wrap align-items-center gap-2"},
        el("a", {class: "btn btn-primary btn-sm", href: `${root}/web/new/${name}`}, "New job", of()),
        el("a", {class: "btn btn-outline-secondary btn-sm", href: `${root}/web/jobs/${name}`}, "Jobs", of()),
        el("a", {class: "btn btn-outline-secondary btn-sm", href: `${root}/web/editor?name=${name}`}, "Edit", of()),
        el("span", {class: "ms-auto small"}, formats))));
  }

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
    box.append(...defs.map(card));
  }
  load();
})();
