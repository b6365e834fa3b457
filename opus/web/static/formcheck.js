/*
 * formcheck.js: the checks the server applies to a submitted value (opus/jobdef/model.py,
 * opus/timeutil.py, opus/jobdef/slurm_options.py), made in the page so that the job form shows every
 * error at once, next to its field, before anything is sent.  Pure functions, no DOM:
 *
 *   OPUS.check.value(desc, text)  -> null when `text` may be sent as it is, else a message.
 *   OPUS.check.input(desc, text)  -> the same for an input (used entity) given as URLs or identifiers.
 *
 * `desc` is a parameter of the definition's JSON (type, required, default, options, min, max,
 * multiplicity), or a control parameter (plus `maxLength`, `pattern`, `patternHelp`).  An empty field
 * is an error when the parameter is required or has a default: the server would otherwise run the job
 * with a value the user did not see.  The server checks everything again; these checks only spare a
 * round trip and never accept what the server refuses, so far as the page can know.
 */
(function () {
  "use strict";
  const INTEGER = /^[+-]?[0-9]+$/;
  const NUMBER = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;
  const BOOLEAN = ["true", "false", "1", "0", "yes", "no"];
  const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;
  // Characters XML 1.0 cannot carry (opus/uws.py NOT_XML_CHAR): the server refuses them in values.
  const NOT_XML = /[^\t\n\r\x20-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;
  const HTTP = /^https?:\/\//i;
  const STORE = /\/store(\/[0-9a-f]{16}(\/[^/?#]*)?|\?ID=[0-9a-f]{16})$/;
  const IDENTIFIER = /^[^\s\x00-\x1f]{1,1024}$/;
  const BITS = {int: 31n, long: 63n};
  const quoted = (v) => `“${v.length > 60 ? v.slice(0, 60) + "…" : v}”`;
  const fmt = (n) => String(Number(n));

  /** [minimum, maximum or null] of a multiplicity: "1", "N", "M..N", "M..*" or "*" (model.py). */
  function multiplicityRange(text) {
    const t = String(text || "1");
    if (t === "*") return [0, null];
    let m = /^([0-9]{1,6})$/.exec(t);
    if (m) return [0, Number(m[1])];
    m = /^([0-9]{1,6})\.\.([0-9]{1,6}|\*)$/.exec(t);
    if (!m) return [0, 1];
    return [Number(m[1]), m[2] === "*" ? null : Number(m[2])];
  }
  const isMultiple = (desc) => multiplicityRange(desc.multiplicity)[1] !== 1;

  function describeRange([low, high]) {
    if (high === null) return low ? `at least ${low} value(s)` : "any number of values";
    if (high === 1) return "one value";
    return low ? `between ${low} and ${high} values` : `at most ${high} value(s)`;
  }

  /** null if `text` is an ISO 8601 instant the server accepts (timeutil.parse_instant), else why not. */
  function instantError(text) {
    const m = ISO.exec(text);
    if (!m) return `${quoted(text)} is not an ISO 8601 instant (e.g. 2030-01-01T00:00:00Z)`;
    const [year, month, day, hh, mm, ss] = m.slice(1, 7).map((v) => Number(v || 0));
    const d = new Date(0);
    d.setUTCFullYear(year, month - 1, day);
    d.setUTCHours(hh, mm, ss);
    if (year < 1 || d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day
        || hh > 23 || mm > 59 || ss > 59) return `${quoted(text)} is not a valid date`;
    const zone = m[8];
    if (zone && zone !== "Z") {
      const digits = zone.slice(1).replace(":", "");
      const hours = Number(digits.slice(0, 2));
      const minutes = Number(digits.slice(2));
      if (minutes > 59 || hours * 60 + minutes > 14 * 60) {
        return `${quoted(text)} has the zone offset ${zone}: offsets run from -14:00 to +14:00`;
      }
    }
    return null;
  }

  /** One value of a parameter (model.py ParameterDescription._check_one). */
  function oneError(desc, text) {
    const type = desc.type || "string";
    let number = null;
    if (type === "int" || type === "long") {
      if (!INTEGER.test(text)) return `${quoted(text)} is not an integer`;
      const big = BigInt(text);
      const bits = BITS[type];
      if (big < -(2n ** bits) || big >= 2n ** bits) return `${text} does not fit a ${bits + 1n}-bit ${type}`;
      number = Number(text);
    } else if (type === "float" || type === "double") {
      if (!NUMBER.test(text)) return `${quoted(text)} is not a number`;
      number = Number(text);
      if (!Number.isFinite(number)) return `${quoted(text)} is out of range`;
    } else if (type === "boolean") {
      if (!BOOLEAN.includes(text.toLowerCase())) return `${quoted(text)} is not a boolean (true or false)`;
    } else if (type === "dateTime") {
      const err = instantError(text);
      if (err) return err;
    } else if (type === "anyURI" && /\s/.test(text)) {
      return `${quoted(text)} is not a URI: a URI has no spaces (write them %20)`;
    }
    if (desc.options && desc.options.length && !desc.options.includes(text)) {
      return `${quoted(text)} is not one of the allowed values: ${desc.options.join(", ")}`;
    }
    if (number !== null) {
      if (desc.min !== undefined && desc.min !== null && number < desc.min) return `${text} is below the minimum ${fmt(desc.min)}`;
      if (desc.max !== undefined && desc.max !== null && number > desc.max) return `${text} is above the maximum ${fmt(desc.max)}`;
    }
    if (desc.pattern && !new RegExp(desc.pattern, "i").test(text)) {
      return `${quoted(text)} is not valid: ${desc.patternHelp || "see the description"}`;
    }
    return null;
  }

  function emptyError(desc) {
    if (desc.required) return "Required: give a value.";
    if (desc.default !== undefined && desc.default !== null) {
      return `Empty: give a value. The default is ${quoted(String(desc.default))}; an empty field is never replaced by it.`;
    }
    return null;
  }

  /** null when `text` (the field's content, as shown) may be sent; else what is wrong with it. */
  function value(desc, text) {
    const raw = text === undefined || text === null ? "" : String(text);
    if (NOT_XML.test(raw)) return "The value holds characters that cannot be sent (control characters); send such content as a file.";
    if (!raw.trim()) return emptyError(desc);
    if (desc.maxLength && raw.length > desc.maxLength) return `At most ${desc.maxLength} characters (${raw.length} given).`;
    if (!isMultiple(desc)) return oneError(desc, (desc.type || "string") === "string" ? raw : raw.trim());
    const items = raw.trim().split(/\s+/);
    const [low, high] = multiplicityRange(desc.multiplicity);
    if (items.length < Math.max(low, desc.required ? 1 : 0) || (high !== null && items.length > high)) {
      return `${items.length} value(s) given; it takes ${describeRange([low, high])} (separated by spaces)`;
    }
    for (const item of items) {
      const err = oneError(desc, item);
      if (err) return err;
    }
    return null;
  }

  /** An input given as URLs or identifiers (opus/service/inputs.py InputResolver.check). */
  function input(desc, text) {
    const raw = String(text || "").trim();
    if (!raw) return desc.required !== false ? "Required: upload a file or give a URL." : null;
    const items = raw.split(/\s+/);
    const range = multiplicityRange(desc.multiplicity);
    if (items.length < Math.max(range[0], 1) || (range[1] !== null && items.length > range[1])) {
      return `${items.length} value(s) given; it takes ${describeRange(range)} (separated by spaces)`;
    }
    for (const item of items) {
      if (HTTP.test(item)) {
        try { if (!new URL(item).hostname) return `${quoted(item)} names no host`; } catch (_) { return `${quoted(item)} is not a valid URL`; }
      } else if (!IDENTIFIER.test(item)) {
        return `${quoted(item)} is neither an http(s) URL nor an identifier`;
      } else if (!desc.url && !STORE.test(item)) {
        return `${quoted(item)} is not a file: upload one, or give an http(s) URL or this server's /store URL of an earlier result`;
      }
    }
    return null;
  }

  window.OPUS = window.OPUS || {};
  window.OPUS.check = {value, input, multiplicityRange, isMultiple, instantError};
})();
