/*
 * The provenance graph of the job page: PROV-JSON (the job's /provenance, or /provsap across jobs)
 * drawn with Cytoscape.js and the dagre layered layout, left to right in the order data flowed:
 * inputs and parameters -> activity -> results.  Nodes are labelled by result, file, job and user
 * names (never bare ids); a click shows a node's attributes; the wheel or a pinch zooms, a drag pans.
 */
(function () {
  "use strict";
  const {el} = OPUS;
  if (window.cytoscape && window.cytoscapeDagre) cytoscape.use(cytoscapeDagre);

  const KINDS = ["activity", "entity", "agent"];
  /* relation -> [source key, target key, label]: edges drawn source -> target, as the data flowed. */
  const RELATIONS = {
    used: ["prov:entity", "prov:activity", "used"],
    wasGeneratedBy: ["prov:activity", "prov:entity", "generated"],
    wasAssociatedWith: ["prov:agent", "prov:activity", "ran"],
    wasAttributedTo: ["prov:agent", "prov:entity", "attributed"],
    wasDerivedFrom: ["prov:usedEntity", "prov:generatedEntity", "derived"],
    wasInformedBy: ["prov:informant", "prov:informed", "informed"],
    wasInfluencedBy: ["prov:influencer", "prov:influencee", "configured"],
    actedOnBehalfOf: ["prov:responsible", "prov:delegate", "on behalf of"],
    hadMember: ["prov:entity", "prov:collection", "member of"],
  };

  const value = (v) => (v && typeof v === "object" && "$" in v ? v.$ : v);
  const values = (v) => (Array.isArray(v) ? v.map(value) : v === undefined ? [] : [value(v)]);
  const first = (attrs, ...keys) => { for (const k of keys) { const v = values(attrs[k])[0]; if (v) return String(v); } return ""; };

  function describe(kind, id, attrs) {
    const types = values(attrs["prov:type"]).map(String);
    let role = kind;
    if (types.includes("voprov:Parameter")) role = "parameter";
    else if (types.includes("prov:Plan")) role = "plan";
    let label;
    if (role === "parameter") label = `${first(attrs, "voprov:name")} = ${first(attrs, "prov:value")}`;
    else if (kind === "activity") {
      const job = (id.split("/").pop() || "").slice(0, 8);
      label = `${first(attrs, "voprov:name", "prov:label") || "job"}\njob ${job}…`;
    } else if (role === "plan") label = `${first(attrs, "voprov:name")} v${first(attrs, "voprov:version")}`;
    else label = first(attrs, "voprov:result_name", "prov:label", "voprov:name", "voprov:file_name") || id.split(/[:/]/).pop();
    if (kind === "entity" && role === "entity") {
      const file = first(attrs, "voprov:file_name", "prov:label");
      if (file && file !== label) label += `\n${file}`;
    }
    return {role, label: label.length > 60 ? label.slice(0, 57) + "…" : label};
  }

  /** A node's box for its label (Cytoscape sizes nodes by data, not by text). */
  function size(label) {
    const lines = label.split("\n");
    return {w: Math.min(170, 12 + 6.6 * Math.max(...lines.map((l) => l.length))), h: 10 + 14 * lines.length};
  }

  /** Cytoscape elements from a PROV-JSON document (bundles flattened). */
  function elements(doc) {
    const nodes = new Map();
    const edges = [];
    const add = (part) => {
      for (const kind of KINDS) {
        for (const [id, attrs] of Object.entries(part[kind] || {})) {
          const {role, label} = describe(kind, id, attrs || {});
          nodes.set(id, {data: {id, label, kind, role, attrs: attrs || {}, ...size(label)}});
        }
      }
      for (const [relation, [from, to, label]] of Object.entries(RELATIONS)) {
        for (const [rid, attrs] of Object.entries(part[relation] || {})) {
          const source = attrs[from];
          const target = attrs[to];
          if (!source || !target) continue;
          const type = values(attrs["prov:type"]).map(String);
          edges.push({data: {id: `${relation}:${rid}:${edges.length}`, source, target, relation,
            label: type.includes("voprov:wasConfiguredBy") ? "configured" : label, attrs}});
          if (relation === "wasAssociatedWith" && attrs["prov:plan"]) {  // the job definition it followed
            edges.push({data: {id: `plan:${rid}:${edges.length}`, source: attrs["prov:plan"], target: attrs["prov:activity"],
              relation: "hadPlan", label: "plan", attrs}});
          }
        }
      }
    };
    add(doc);
    for (const bundle of Object.values(doc.bundle || {})) add(bundle);
    for (const e of edges) {  // a relation to a record the answer left out: a bare node
      for (const id of [e.data.source, e.data.target]) {
        if (!nodes.has(id)) {
          const label = id.split(/[:/]/).pop();
          nodes.set(id, {data: {id, label, kind: "entity", role: "entity", attrs: {}, ...size(label)}});
        }
      }
    }
    return {nodes: [...nodes.values()], edges};
  }

  const STYLE = [
    {selector: "node", style: {
      label: "data(label)", "text-wrap": "wrap", "text-max-width": 150, "font-size": 11, "text-valign": "center",
      "text-halign": "center", width: "data(w)", height: "data(h)", padding: 6, "border-width": 1, "border-color": "#555",
      color: "#111"}},
    {selector: "node[kind = 'entity']", style: {shape: "ellipse", "background-color": "#fffbd6", "border-color": "#a08f2b"}},
    {selector: "node[role = 'parameter']", style: {shape: "round-rectangle", "background-color": "#eef3e8",
      "border-color": "#6c8a4b", "font-size": 10}},
    {selector: "node[role = 'plan']", style: {shape: "cut-rectangle", "background-color": "#f1ecf8", "border-color": "#7a5aa8"}},
    {selector: "node[kind = 'activity']", style: {shape: "rectangle", "background-color": "#dbe7fb", "border-color": "#2f5597",
      "font-weight": "bold"}},
    {selector: "node[kind = 'agent']", style: {shape: "pentagon", "background-color": "#fde4cf", "border-color": "#b5651d",
      padding: 12}},
    {selector: "node:selected", style: {"border-width": 3, "border-color": "#d63384"}},
    {selector: "edge", style: {width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle",
      "line-color": "#888", "target-arrow-color": "#888", label: "data(label)", "font-size": 9, color: "#555",
      "text-rotation": "autorotate", "text-background-color": "#fff", "text-background-opacity": 0.8}},
  ];

  /** Draw doc in box; onSelect(data or null) on clicks.  Returns the Cytoscape instance. */
  function draw(box, doc, onSelect) {
    const {nodes, edges} = elements(doc);
    box.replaceChildren();
    const cy = cytoscape({container: box, elements: [...nodes, ...edges], style: STYLE, 
      minZoom: 0.1, maxZoom: 4, boxSelectionEnabled: false,
      // Left to right; top to bottom on a phone held upright, where width is what is short.
      layout: {name: "dagre", rankDir: box.clientWidth < 500 && box.clientHeight > box.clientWidth ? "TB" : "LR", nodeSep: 18, rankSep: 70, edgeSep: 8, fit: true, padding: 16}});
    cy.on("tap", "node, edge", (e) => onSelect(e.target.data()));
    cy.on("tap", (e) => { if (e.target === cy) onSelect(null); });
    box.dataset.nodes = String(nodes.length);
    box.dataset.edges = String(edges.length);
    return cy;
  }

  /** A node's or edge's attributes as a definition list. */
  function details(data) {
    const rows = Object.entries(data.attrs || {}).flatMap(([k, v]) => {
      const shown = values(v).map(String).join(", ");
      const link = /^https?:\/\//.test(shown) && k === "prov:location";
      return [el("dt", {class: "col-sm-4 text-truncate", title: k}, k),
        el("dd", {class: "col-sm-8 text-break mb-1"}, link ? el("a", {href: OPUS.local(shown)}, shown) : shown)];
    });
    const title = data.source ? `${data.relation}` : `${data.kind}${data.role !== data.kind ? ` (${data.role})` : ""}`;
    return [el("h3", {class: "h6 mb-1"}, (data.label || "").replace(/\n/g, " · ")),
      el("p", {class: "small text-body-secondary mb-1 font-monospace text-break"}, `${title}: ${data.source ? `${data.source} → ${data.target}` : data.id}`),
      el("dl", {class: "row small mb-0"}, ...rows)];
  }

  // ---- the job page's provenance section ------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  let cy = null;
  let shownFor = null;

  /** Where the graph's document comes from: the job's /provenance, or ProvSAP back or forth. */
  function source(job) {
    const view = $("prov-view").value;
    const depth = $("prov-depth").value;
    const path = OPUS.client.jobPath(job.jobName, job.jobId);
    if (view === "job") return {path: `${path}/provenance`, query: {DEPTH: depth}};
    return {path: "/provsap", query: {ID: job.jobId, DEPTH: depth, DIRECTION: view}};
  }

  function links(job) {
    const {root} = OPUS;
    const prov = `${root}${OPUS.client.jobPath(job.jobName, job.jobId)}/provenance`;
    const formats = [["SVG", "svg"], ["PNG", "png"], ["PROV-JSON", "json"], ["PROV-XML", "xml"], ["PROV-N", "provn"], ["PROV-VOTABLE", "votable"]];
    $("provenance-links").replaceChildren("Download: ", ...formats.map(([label, f]) =>
      el("a", {href: `${prov}?format=${f}`, class: "me-2", download: ""}, label)),
    " · ", el("a", {href: `${root}/provsap?ID=${job.jobId}&DEPTH=ALL&RESPONSEFORMAT=svg`, download: ""}, "ProvSAP (all steps, SVG)"));
  }

  async function refresh(job) {
    const target = $("provenance");
    const {path, query} = source(job);
    target.setAttribute("aria-busy", "true");
    try {
      const doc = await OPUS.client.json(path, query);
      if (cy) cy.destroy();
      target.classList.add("prov-graph");
      cy = draw(target, doc, (data) => {
        $("prov-details").replaceChildren(...(data ? details(data) : [el("span", {class: "text-body-secondary"}, "Nothing selected.")]));
      });
      target.setAttribute("aria-label", `Provenance graph: ${target.dataset.nodes} nodes, ${target.dataset.edges} relations `
        + "(listed below the graph)");
      target.setAttribute("role", "img");
      nodeList();
    } catch (err) {
      target.replaceChildren(el("p", {class: "text-body-secondary small p-2", id: "provenance-missing"},
        `The provenance graph is not available (${err.status || "network"}: ${err.message})`));
    }
    target.removeAttribute("aria-busy");
  }

  /** The nodes as buttons too: the graph's details reached with a keyboard or a screen reader. */
  function nodeList() {
    const show = (node) => {
      cy.elements().unselect();
      node.select();
      $("prov-details").replaceChildren(...details(node.data()));
    };
    $("prov-nodes").replaceChildren(...cy.nodes().sort((a, b) => a.position("x") - b.position("x")).map((node) =>
      el("li", {}, el("button", {type: "button", class: "btn btn-link btn-sm p-0 text-start", onclick: () => show(node)},
        `${node.data("kind")}: ${node.data("label").replace(/\n/g, " · ")}`))));
  }

  /** The SVG drawing (Graphviz, server side), as the download gives it. */
  async function drawing(job) {
    const body = $("prov-drawing-body");
    try {
      const r = await OPUS.client.request("GET", `${OPUS.client.jobPath(job.jobName, job.jobId)}/provenance`, {query: {format: "svg"}});
      const url = URL.createObjectURL(await r.blob());
      body.replaceChildren(el("img", {src: url, class: "img-fluid border bg-white", id: "provenance-graph",
        alt: `Provenance graph of job ${job.jobId}, drawn by Graphviz: its activity, agent, parameters, inputs and results`}));
    } catch (err) {
      body.replaceChildren(el("p", {class: "text-body-secondary small"}, `No drawing (${err.status || "network"}: ${err.message})`));
    }
  }

  /** Show the finished job's provenance (called once per final phase). */
  function jobProvenance(job) {
    for (const node of document.querySelectorAll(".prov-only")) node.classList.remove("d-none");
    links(job);
    refresh(job);
    drawing(job);
    if (shownFor) { shownFor = job; return; }
    shownFor = job;
    $("prov-view").addEventListener("change", () => refresh(shownFor));
    $("prov-depth").addEventListener("change", () => refresh(shownFor));
    $("prov-fit").addEventListener("click", () => { if (cy) cy.fit(undefined, 16); });
    let resizing = null;  // a phone turned, a window resized: the whole graph in view again
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (cy) { cy.resize(); cy.fit(undefined, 16); } }, 150);
    });
  }

  OPUS.provgraph = {elements, draw, details, get cy() { return cy; }};
  OPUS.jobProvenance = jobProvenance;
})();
