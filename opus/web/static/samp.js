/*
 * Sending a result to TOPCAT, Aladin or any SAMP tool through the SAMP Web Profile (IVOA SAMP 1.3,
 * section 5): XML-RPC over HTTP to the hub on http://localhost:21012/, only when the user clicks.
 * register, declareMetadata, notifyAll with the result's URL, unregister.  No library.
 * The URL sent is a share link (POST /share: signed, expiring in a day): the tools that fetch it hold
 * no session, and the server may require sign-in.
 */
(function () {
  "use strict";
  const HUB = "http://localhost:21012/";

  const escape = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  function xmlValue(v) {
    if (v !== null && typeof v === "object") {
      if (Array.isArray(v)) return `<array><data>${v.map((x) => `<value>${xmlValue(x)}</value>`).join("")}</data></array>`;
      return `<struct>${Object.entries(v).map(([k, x]) => `<member><name>${escape(k)}</name><value>${xmlValue(x)}</value></member>`).join("")}</struct>`;
    }
    return `<string>${escape(v)}</string>`;  // SAMP sends every scalar as a string
  }
  /** An XML-RPC methodCall document. */
  function methodCall(method, params) {
    return `<?xml version="1.0"?><methodCall><methodName>${escape(method)}</methodName><params>${
      params.map((p) => `<param><value>${xmlValue(p)}</value></param>`).join("")}</params></methodCall>`;
  }
  function parseValue(node) {
    const v = node.firstElementChild;
    if (!v) return node.textContent;
    if (v.localName === "struct") {
      const out = {};
      for (const m of v.children) out[m.querySelector("name").textContent] = parseValue(m.querySelector("value"));
      return out;
    }
    if (v.localName === "array") return [...v.querySelector("data").children].map(parseValue);
    return v.textContent;
  }

  async function call(method, params) {
    let r;
    try {
      r = await fetch(HUB, {method: "POST", headers: {"Content-Type": "text/xml"}, body: methodCall(method, params),
        credentials: "omit"});
    } catch (err) {
      throw new Error("no SAMP hub answers on this computer: start TOPCAT or Aladin (with its hub) and try again");
    }
    if (!r.ok) throw new Error(`the SAMP hub answered ${r.status}`);
    const doc = new DOMParser().parseFromString(await r.text(), "text/xml");
    const fault = doc.querySelector("fault value");
    if (fault) { const f = parseValue(fault); throw new Error(`SAMP hub: ${f.faultString || "refused"}`); }
    const value = doc.querySelector("params param value");
    return value ? parseValue(value) : null;
  }

  /** The SAMP message that loads this result, or null when no standard mtype fits its type. */
  function message(result, url) {
    const type = (result.mimeType || "").toLowerCase();
    const name = result.name || result.id;
    if (/votable/.test(type)) return {"samp.mtype": "table.load.votable", "samp.params": {url, "table-id": url, name}};
    if (/fits/.test(type)) {
      const image = /image|map/i.test(`${result.role || ""} ${name}`);
      return image ? {"samp.mtype": "image.load.fits", "samp.params": {url, "image-id": url, name}}
        : {"samp.mtype": "table.load.fits", "samp.params": {url, "table-id": url, name}};
    }
    return null;
  }

  /** Send to every tool that subscribes (notifyAll); resolves with the ids of the recipients. */
  async function send(result, url) {
    const msg = message(result, url);
    if (!msg) throw new Error(`SAMP has no message for ${result.mimeType || "this type"}`);
    const reg = await call("samp.webhub.register", [{"samp.name": "OPUS"}]);
    const key = reg["samp.private-key"];
    try {
      await call("samp.webhub.declareMetadata", [key, {"samp.name": "OPUS",
        "samp.description.text": "OPUS job server: job results", "author.name": "OPUS"}]);
      return await call("samp.webhub.notifyAll", [key, msg]);
    } finally {
      await call("samp.webhub.unregister", [key]).catch(() => null);
    }
  }

  /** A share link to the entity (a result in the store) for tools without credentials, valid ``lifetime`` s. */
  async function shareLink(entityId, lifetime = 86400) {
    const link = await OPUS.client._jsonBody("POST", "/share", {entity: entityId, lifetime});
    return link.url;
  }

  OPUS.samp = {HUB, message, methodCall, send, shareLink};
})();
