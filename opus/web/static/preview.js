/* In-page previews of results: images, text, JSON and XML; FITS through the job's PNG preview. */
(function () {
  "use strict";
  const {client, el, local} = OPUS;
  const LIMIT = 256 * 1024;
  const TEXT = /^(text\/|application\/(json|xml|x-votable\+xml|javascript|x-yaml|yaml)|[^;]*\+(xml|json))/;
  const isFits = (r) => /fits/i.test(r.mimeType || "") || /\.fits?(\.gz)?$/i.test(r.href || "");
  const isImage = (r) => /^image\/(png|jpeg|gif|webp|svg\+xml)/.test(r.mimeType || "");

  /** The PNG that previews a FITS result: a result whose role or name says "preview". */
  function fitsPreview(result, results) {
    return results.find((r) => r !== result && /^image\/png/.test(r.mimeType || "")
      && /preview/i.test(`${r.role || ""} ${r.id} ${r.name || ""}`)) || null;
  }

  function previewable(result, results) {
    if (isImage(result) || TEXT.test(result.mimeType || "")) return true;
    return isFits(result) && Boolean(fitsPreview(result, results));
  }

  async function show(result, results, box) {
    const name = result.name || result.id;
    if (isFits(result)) {
      const png = fitsPreview(result, results);
      box.replaceChildren(el("figure", {class: "figure"},
        el("img", {class: "figure-img img-fluid border", src: local(png.href), alt: `PNG preview of ${name}`}),
        el("figcaption", {class: "figure-caption"}, `${name} (FITS), shown through its preview ${png.name || png.id}`)));
      return;
    }
    if (isImage(result)) {
      box.replaceChildren(el("img", {class: "img-fluid border", src: local(result.href), alt: `Result ${name}`}));
      return;
    }
    box.replaceChildren(el("p", {class: "text-body-secondary"}, "Loading…"));
    // result.href is an absolute URL of this page's origin (job.js): fetched as it is, with the session.
    const {text, truncated} = await client.text(result.href, {limit: LIMIT});
    let shown = text;
    if (/json/.test(result.mimeType || "") && !truncated) {
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as it is */ }
    }
    box.replaceChildren(el("pre", {class: "output preview-text", tabindex: "0"}, shown),
      truncated ? el("p", {class: "small text-body-secondary"}, `The first ${LIMIT / 1024} KiB; download the result for the rest.`) : "");
  }

  OPUS.preview = {previewable, show};
})();
