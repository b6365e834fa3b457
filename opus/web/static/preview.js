/*
 * In-page previews of results, shown at once on the job page: images; CSV, TSV and VOTable as a
 * sortable table of their first rows; FITS headers (read from the file's first 2880-byte blocks with
 * a Range request; the PNG preview beside it when the job made one); JSON pretty-printed; other text.
 */
(function () {
  "use strict";
  const {client, el, local} = OPUS;
  const LIMIT = 256 * 1024;
  const ROWS = 50;
  const FITS_BLOCK = 2880;
  const FITS_BLOCKS = 12;  // a header of up to 432 cards
  const TEXT = /^(text\/|application\/(json|xml|x-votable\+xml|javascript|x-yaml|yaml)|[^;]*\+(xml|json))/;
  const type = (r) => (r.mimeType || "").split(";")[0].trim().toLowerCase();
  const isFits = (r) => /fits/.test(type(r)) || /\.fits?(\.gz)?$/i.test(r.fileName || r.href || "");
  const isImage = (r) => /^image\/(png|jpeg|gif|webp)$/.test(type(r));
  const isVotable = (r) => /votable/.test(type(r)) || /\.vot(able)?$/i.test(r.fileName || "");
  const isDelimited = (r) => /^text\/(csv|tab-separated-values)$/.test(type(r)) || /\.(csv|tsv)$/i.test(r.fileName || "");
  const isJson = (r) => /json/.test(type(r));

  /** What a preview of this result shows: "image", "table", "fits", "json", "text" or "". */
  function kind(result) {
    if (isImage(result)) return "image";
    if (isFits(result)) return "fits";
    if (isDelimited(result) || isVotable(result)) return "table";
    if (isJson(result)) return "json";
    return TEXT.test(type(result)) ? "text" : "";
  }

  /** The PNG that previews a FITS result: a result whose role or name says "preview". */
  function fitsPreview(result, results) {
    return results.find((r) => r !== result && /^image\/png/.test(r.mimeType || "")
      && /preview/i.test(`${r.role || ""} ${r.id} ${r.name || ""}`)) || null;
  }

  function previewable(result) { return Boolean(kind(result)); }

  // ---- tables ------------------------------------------------------------------------------------
  /** Rows of CSV (RFC 4180 quotes) or TSV text; the last line is dropped when the text was cut. */
  function delimited(text, separator, truncated) {
    const rows = [];
    let row = []; let field = ""; let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
      } else if (c === '"' && field === "" && separator === ",") quoted = true;
      else if (c === separator) { row.push(field); field = ""; } else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(field); rows.push(row); row = []; field = "";
        if (rows.length > ROWS) break;
      } else field += c;
    }
    if (!truncated && (field !== "" || row.length)) { row.push(field); rows.push(row); }
    return {columns: (rows.shift() || []).map((name) => ({name})), rows: rows.slice(0, ROWS)};
  }

  /** The first TABLE of a VOTable (TABLEDATA): its FIELDs and first rows. */
  function votable(text) {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const byName = (node, name) => [...node.getElementsByTagNameNS("*", name)];
    const table = byName(doc, "TABLE")[0];
    if (!table) return null;
    const columns = byName(table, "FIELD").map((f) => ({name: f.getAttribute("name") || f.getAttribute("ID") || "?",
      unit: f.getAttribute("unit") || ""}));
    const rows = byName(table, "TR").slice(0, ROWS).map((tr) => byName(tr, "TD").map((td) => td.textContent));
    return {columns, rows, name: table.getAttribute("name") || ""};
  }

  const numeric = (v) => v.trim() !== "" && !isNaN(Number(v));

  /** A table whose column headers sort it (numbers as numbers), ascending then descending. */
  function sortableTable({columns, rows}, caption) {
    const body = el("tbody");
    const fill = (list) => body.replaceChildren(...list.map((r) => el("tr", {}, ...columns.map((_c, i) => el("td", {}, r[i] ?? "")))));
    const heads = columns.map((c, i) => {
      const button = el("button", {type: "button", class: "btn btn-link btn-sm p-0 sort-button text-nowrap",
        "aria-label": `Sort by ${c.name}${c.unit ? ` (${c.unit})` : ""}`}, c.name, c.unit ? el("span", {class: "text-body-secondary"}, ` (${c.unit})`) : "");
      const th = el("th", {scope: "col", "aria-sort": "none"}, button);
      button.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        for (const other of th.parentNode.children) other.setAttribute("aria-sort", "none");
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const all = rows.every((r) => r[i] === undefined || r[i] === "" || numeric(r[i]));
        const sorted = [...rows].sort((a, b) => {
          const x = a[i] ?? ""; const y = b[i] ?? "";
          const d = all ? Number(x) - Number(y) : x.localeCompare(y);
          return ascending ? d : -d;
        });
        fill(sorted);
      });
      return th;
    });
    fill(rows);
    return el("div", {class: "table-responsive preview-table"},
      el("table", {class: "table table-sm table-striped small mb-1"}, el("caption", {class: "small"}, caption),
        el("thead", {}, el("tr", {}, ...heads)), body));
  }

  // ---- FITS ----------------------------------------------------------------------------------------
  /** The primary header's cards, read with a Range request for its first blocks only. */
  async function fitsHeader(href) {
    const r = await client.request("GET", href, {headers: {Range: `bytes=0-${FITS_BLOCK * FITS_BLOCKS - 1}`}});
    const reader = r.body.getReader();
    const chunks = []; let size = 0;
    while (size < FITS_BLOCK * FITS_BLOCKS) {  // a server ignoring Range: stop reading after the limit
      const {done, value} = await reader.read();
      if (done) break;
      chunks.push(value); size += value.length;
    }
    reader.cancel().catch(() => null);
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) { bytes.set(c.subarray(0, size - at), at); at += c.length; }
    const text = new TextDecoder("ascii").decode(bytes.subarray(0, Math.min(size, FITS_BLOCK * FITS_BLOCKS)));
    if (!text.startsWith("SIMPLE  =")) throw new Error("not a FITS file (no SIMPLE card)");
    const cards = [];
    for (let i = 0; i + 80 <= text.length; i += 80) {
      const card = text.slice(i, i + 80).trimEnd();
      cards.push(card);
      if (/^END\s*$/.test(card)) return {cards, complete: true};
    }
    return {cards, complete: false};
  }

  // ---- showing -------------------------------------------------------------------------------------
  async function show(result, results, box) {
    const name = result.name || result.id;
    const what = kind(result);
    box.dataset.preview = what;
    if (what === "image") {
      box.replaceChildren(el("img", {class: "img-fluid border preview-image", src: local(result.href), alt: `Result ${name}`, loading: "lazy"}));
      return;
    }
    if (what === "fits") {
      const png = fitsPreview(result, results);
      const {cards, complete} = await fitsHeader(result.href);
      box.replaceChildren(
        png ? el("figure", {class: "figure"}, el("img", {class: "figure-img img-fluid border", src: local(png.href), alt: `PNG preview of ${name}`}),
          el("figcaption", {class: "figure-caption"}, `${name} (FITS), shown through its preview ${png.name || png.id}`)) : "",
        el("details", {class: "fits-header", open: !png},
          el("summary", {class: "small"}, `Primary header (${cards.length} cards${complete ? "" : ", first ones"})`),
          el("pre", {class: "output fits-cards", tabindex: "0"}, cards.join("\n"))));
      return;
    }
    const {text, truncated} = await client.text(result.href, {limit: LIMIT});
    const note = truncated ? el("p", {class: "small text-body-secondary"}, `The first ${LIMIT / 1024} KiB; download the result for the rest.`) : "";
    if (what === "table") {
      const table = isVotable(result) ? votable(text) : delimited(text, /tab-separated|\.tsv$/i.test(type(result) + (result.fileName || "")) ? "\t" : ",", truncated);
      if (table && table.columns.length) {
        box.replaceChildren(sortableTable(table, `${name}: first ${table.rows.length} rows${table.name ? ` of ${table.name}` : ""}; sort by a column`), note);
        return;
      }
    }
    let shown = text;
    if (what === "json" && !truncated) {
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as it is */ }
    }
    box.replaceChildren(el("pre", {class: "output preview-text", tabindex: "0"}, shown), note);
  }

  OPUS.preview = {previewable, show, kind, fitsHeader, delimited, votable};
})();
