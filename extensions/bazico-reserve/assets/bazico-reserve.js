/*
 * Bázico Stock: the app embed's script (theme app extension "bazico-reserve").
 *
 * Before the theme adds anything to the cart, ask the service (through the App Proxy,
 * {proxy}/stock/{sku}/reserve) to hold the units for this cart; only then let the theme's own
 * request go, carrying the hold's id as the line-item property `_bazico_hold` in that same
 * /cart/add call. It works with the theme as it is, at two places:
 *
 * - `submit` of product forms (action …/cart/add) and cart forms (…/cart, …/cart/change,
 *   …/cart/update), caught in the capture phase, before the theme's own handler: the event is
 *   stopped, the hold asked for, and the submit dispatched again (the theme's handler then runs
 *   once, with a hidden properties[_bazico_hold] input in the form);
 * - `fetch` and `XMLHttpRequest` POSTs to …/cart/add(.js), …/cart/change(.js), …/cart/update(.js)
 *   (quick-add buttons, cart drawers): the request waits for the hold and goes out with the
 *   property added; when the hold is refused it never goes out and the caller gets an answer
 *   shaped like Shopify's own 422 cart error, so the theme shows its usual error state.
 *
 * Quantity increases (change/update) ask for the extra units only, reading the line from
 * /cart.js; decreases and removals pass through (the cart webhook releases those units).
 *
 * Answers: 200 hold; 409 sold out, 422/429 a per-cart limit or too many tries (the service's
 * Portuguese message is shown, with the wait); 404 unknown_sku/unknown_variant: not tracked,
 * add as usual. Anything else (5xx, network error, timeout, a misconfigured proxy) fails OPEN:
 * the item is added without a hold and console.warn says so; the checkout rule still guards
 * the last unit.
 *
 * Plain ES2017, no build step. Under Node (`module` exists) it only exports its parts.
 *
 * Long because a theme app extension's asset is served as one file with no build step (no
 * bundler runs between this repository and the storefront), so the form, fetch and XHR hooks,
 * the cart-drawer quantity handling and the messages live together.
 */
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else if (root && root.document && !root.BazicoReserveEmbed) {
    root.BazicoReserveEmbed = api;
    api.start(root);
  }
})(typeof window !== "undefined" ? window : globalThis, function () {
  "use strict";

  var HOLD_PROPERTY = "_bazico_hold";
  var HOLD_FIELD = "properties[" + HOLD_PROPERTY + "]";
  var CONFIG_ID = "bazico-reserve-config";
  var STATUS_ID = "bazico-reserve-status";
  var LOG_PREFIX = "[Bázico]";
  // Optional market/locale prefix (/pt, /en-us) before Shopify's cart endpoints.
  var CART_ENDPOINT = /^(?:\/[a-z]{2}(?:-[a-z0-9]{2,4})?)?\/cart\/(add|change|update)(?:\.js(?:on)?)?\/?$/i;
  var CART_FORM = /^(?:\/[a-z]{2}(?:-[a-z0-9]{2,4})?)?\/cart(?:\/(add|change|update))?\/?$/i;
  var UNTRACKED = { unknown_sku: true, unknown_variant: true };

  var DEFAULTS = {
    proxy: "/apps/bazico",
    root: "/",
    placement: "theme",
    timeoutMs: 8000,
    messages: {
      soldOut: "Esgotado: alguém acabou de garantir a última unidade deste tamanho.",
      limited: "Limite de reservas atingido para este carrinho.",
      wait: "Tente de novo em {{ seconds }} s."
    }
  };

  // --- configuration and catalog (variant → SKU) ------------------------------------------

  function readConfig(doc) {
    var config = { messages: {} };
    var given = {};
    var el = doc && doc.getElementById(CONFIG_ID);
    if (el) {
      try { given = JSON.parse(el.textContent || "{}") || {}; } catch (err) { given = {}; }
    }
    Object.keys(DEFAULTS).forEach(function (key) {
      config[key] = key === "messages" ? config.messages : (given[key] != null && given[key] !== "" ? given[key] : DEFAULTS[key]);
    });
    var messages = given.messages || {};
    Object.keys(DEFAULTS.messages).forEach(function (key) {
      config.messages[key] = typeof messages[key] === "string" && messages[key] ? messages[key] : DEFAULTS.messages[key];
    });
    config.proxy = String(config.proxy).replace(/\/+$/, "");
    if (!/\/$/.test(config.root)) config.root += "/";
    return config;
  }

  /** The variants listed by one product JSON document: Shopify's `product | json`, a bare
   * variants array (Dawn's variant picker), or the embed's own {variants: [{id, sku}]}. */
  function variantsIn(data) {
    if (Array.isArray(data)) return data;
    if (data && Array.isArray(data.variants)) return data.variants;
    if (data && data.product && Array.isArray(data.product.variants)) return data.product.variants;
    return [];
  }

  /** variant id (string) → SKU ("" when the variant has none), from every product JSON on
   * the page. Read at each add, so sections the theme loaded later count too. */
  function catalogFrom(doc) {
    var catalog = new Map();
    var selector = [
      "script[data-bazico-variants]",
      "script[type='application/json'][data-product-json]",
      "product-info script[type='application/json']",
      "variant-selects script[type='application/json']",
      "variant-radios script[type='application/json']"
    ].join(",");
    Array.prototype.forEach.call(doc.querySelectorAll(selector), function (script) {
      var data;
      try { data = JSON.parse(script.textContent || "null"); } catch (err) { return; }
      variantsIn(data).forEach(function (variant) {
        if (variant && variant.id != null && !catalog.has(String(variant.id))) {
          catalog.set(String(variant.id), typeof variant.sku === "string" ? variant.sku : "");
        }
      });
    });
    return catalog;
  }

  // --- recognising the cart's endpoints and reading their bodies -------------------------

  /** "add" | "change" | "update" for a same-origin cart endpoint URL, else null. */
  function cartAction(url, base, pattern) {
    var parsed;
    try { parsed = new URL(String(url), base || "http://localhost/"); } catch (err) { return null; }
    if (base && parsed.origin !== new URL(base).origin) return null;
    var match = (pattern || CART_ENDPOINT).exec(parsed.pathname);
    return match ? (match[1] || "update").toLowerCase() : null;
  }

  function isFormData(body) { return typeof FormData !== "undefined" && body instanceof FormData; }
  function isParams(body) { return typeof URLSearchParams !== "undefined" && body instanceof URLSearchParams; }

  /** A request body as a small object the rest can read and rewrite:
   * {type: "form"|"params"|"json", data} or null when it cannot be read (then: pass through). */
  function readBody(body, contentType) {
    if (isFormData(body)) return { type: "form", data: body };
    if (isParams(body)) return { type: "params", data: body };
    if (typeof body !== "string") return null;
    var text = body.trim();
    if (/json/i.test(contentType || "") || text.charAt(0) === "{") {
      try { return { type: "json", data: JSON.parse(text) }; } catch (err) { return null; }
    }
    return { type: "params", data: new URLSearchParams(text), wasString: true };
  }

  function entriesOf(read) {
    var out = [];
    read.data.forEach(function (value, key) { out.push([key, value]); });
    return out;
  }

  function positiveInt(value, fallback) {
    var n = Number(value);
    return Number.isFinite(n) && n >= 0 ? Math.floor(n) : fallback;
  }

  /** The items an add request asks for: [{variantId, quantity, hold}] (hold: an id already
   * on the item, or null). */
  function addItems(read) {
    if (read.type === "json") {
      var list = Array.isArray(read.data.items) ? read.data.items : [read.data];
      return list.filter(function (item) { return item && item.id != null; }).map(function (item) {
        var props = item.properties || {};
        return { variantId: String(item.id), quantity: positiveInt(item.quantity, 1), hold: props[HOLD_PROPERTY] || null };
      });
    }
    var single = { hold: null, quantity: 1 };
    var indexed = {};
    entriesOf(read).forEach(function (pair) {
      var key = pair[0], value = String(pair[1]);
      var m = /^items\[(\d+)\]\[(id|quantity)\]$/.exec(key) || /^items\[(\d+)\]\[properties\]\[_bazico_hold\]$/.exec(key);
      if (m) {
        var item = indexed[m[1]] = indexed[m[1]] || { quantity: 1, hold: null };
        if (m[2] === "id") item.variantId = value;
        else if (m[2] === "quantity") item.quantity = positiveInt(value, 1);
        else item.hold = value;
      } else if (key === "id") single.variantId = value;
      else if (key === "quantity") single.quantity = positiveInt(value, 1);
      else if (key === HOLD_FIELD) single.hold = value;
    });
    var items = Object.keys(indexed).sort(function (a, b) { return a - b; }).map(function (k) {
      indexed[k].index = k;
      return indexed[k];
    });
    if (single.variantId) items.unshift(single);
    return items.filter(function (item) { return item.variantId; });
  }

  /** The add body again, each item carrying its hold id (null: leave that item alone). */
  function withHolds(read, items, holds) {
    if (read.type === "json") {
      var data = JSON.parse(JSON.stringify(read.data));
      var list = Array.isArray(data.items) ? data.items : [data];
      var at = 0;
      list.forEach(function (item) {
        if (!item || item.id == null) return;
        var hold = holds[at++];
        if (hold) item.properties = Object.assign({}, item.properties || {}, { [HOLD_PROPERTY]: hold });
      });
      return JSON.stringify(data);
    }
    var copy = read.type === "form" ? new FormData() : new URLSearchParams();
    entriesOf(read).forEach(function (pair) { copy.append(pair[0], pair[1]); });
    items.forEach(function (item, i) {
      if (!holds[i]) return;
      copy.set(item.index != null ? "items[" + item.index + "][properties][" + HOLD_PROPERTY + "]" : HOLD_FIELD, holds[i]);
    });
    return read.wasString ? copy.toString() : copy;
  }

  /** What a change/update request wants: [{line?, key?, variantId?, quantity}]. */
  function quantityChanges(action, read) {
    var changes = [];
    if (read.type === "json") {
      var data = read.data || {};
      if (action === "change") {
        changes.push(lineRef(data.line, data.id, data.quantity, false));
      } else if (Array.isArray(data.updates)) {
        data.updates.forEach(function (q, i) { changes.push({ line: i + 1, quantity: positiveInt(q, null) }); });
      } else if (data.updates && typeof data.updates === "object") {
        Object.keys(data.updates).forEach(function (k) { changes.push(lineRef(null, k, data.updates[k], true)); });
      }
    } else {
      var fields = {};
      var positional = 0;
      entriesOf(read).forEach(function (pair) {
        var key = pair[0], value = pair[1];
        if (key === "updates[]") changes.push({ line: ++positional, quantity: positiveInt(value, null) });
        else if (/^updates\[.+\]$/.test(key)) changes.push(lineRef(null, key.slice(8, -1), value, true));
        else fields[key] = value;
      });
      if (action === "change" && fields.quantity != null) changes.push(lineRef(fields.line, fields.id, fields.quantity, false));
    }
    return changes.filter(function (c) { return c.quantity != null && (c.line || c.key || c.variantId); });
  }

  /** `adds`: a variant id not in the cart yet is added (/cart/update does, /cart/change refuses). */
  function lineRef(line, id, quantity, adds) {
    var ref = { quantity: positiveInt(quantity, null), adds: adds };
    if (line != null && line !== "") ref.line = positiveInt(line, 0);
    else if (id != null && String(id).indexOf(":") >= 0) ref.key = String(id);
    else if (id != null) ref.variantId = String(id);
    return ref;
  }

  /** The extra units each change asks for, against the cart as it is: [{sku, variantId, quantity}]. */
  function increases(changes, cart, catalog) {
    var items = (cart && cart.items) || [];
    var out = [];
    changes.forEach(function (change) {
      var line = null;
      if (change.line) line = items[change.line - 1] || null;
      else if (change.key) line = items.find(function (i) { return i.key === change.key; }) || null;
      else line = items.find(function (i) { return String(i.variant_id) === change.variantId; }) || null;
      if (!line && !(change.variantId && change.adds)) return; // Shopify refuses it anyway
      var now = line ? Number(line.quantity) || 0 : 0; // /cart/update adds a variant not yet in the cart
      var extra = change.quantity - now;
      if (extra <= 0) return;
      var variantId = line ? String(line.variant_id) : change.variantId;
      var sku = line && typeof line.sku === "string" && line.sku ? line.sku : catalog.get(variantId) || "";
      // The extra units join the line's hold id, so the line keeps naming all of its units.
      out.push({ sku: sku, variantId: variantId, quantity: extra, holdId: lineHold(line) });
    });
    return out;
  }

  /** The hold id a cart line carries (`_bazico_hold`), or null. */
  function lineHold(line) {
    var props = line && line.properties;
    var value = props && !Array.isArray(props) ? props[HOLD_PROPERTY] : null;
    return typeof value === "string" && value ? value : null;
  }

  /** The hold id of the line an add of `variantId` lands on: the cart's line of that variant
   * with a hold (Shopify merges lines whose properties match, so the added units join it). */
  function holdOfVariant(cart, variantId) {
    var items = (cart && cart.items) || [];
    for (var i = 0; i < items.length; i++) {
      if (String(items[i].variant_id) === String(variantId) && lineHold(items[i])) return lineHold(items[i]);
    }
    return null;
  }

  // --- asking the service -------------------------------------------------------------------

  function formatWait(template, seconds) {
    return template.replace(/\{\{\s*seconds\s*\}\}/g, String(seconds));
  }

  /** The shopper-facing text of a refusal: the service's own (Portuguese) message, with the
   * wait when it says there is one and the message does not already. */
  function refusalMessage(status, body, messages) {
    var said = body && typeof body.message === "string" ? body.message : "";
    var message = said || (status === 409 ? messages.soldOut : messages.limited);
    var wait = body && Number(body.retry_after);
    if (status === 429 && wait > 0 && message.indexOf(String(wait)) < 0) {
      message += " " + formatWait(messages.wait, wait);
    }
    return message;
  }

  async function readJson(response) {
    try { return await response.json(); } catch (err) { return null; }
  }

  function withTimeout(fetchImpl, url, init, ms) {
    if (typeof AbortController === "undefined" || !ms) return fetchImpl(url, init);
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, ms);
    var stop = function () { clearTimeout(timer); };
    return fetchImpl(url, Object.assign({}, init, { signal: controller.signal })).then(
      function (response) { stop(); return response; },
      function (err) { stop(); throw err; }
    );
  }

  /** Ask for one hold. Resolves (never rejects) to one of
   *   {kind: "hold", id, hold} | {kind: "untracked"} | {kind: "refused", status, message, body}
   *   | {kind: "open", reason}. */
  async function askHold(env, want, cartToken) {
    var path = want.sku
      ? "/stock/" + encodeURIComponent(want.sku) + "/reserve"
      : "/variants/" + encodeURIComponent(want.variantId) + "/reserve";
    var response;
    try {
      response = await withTimeout(env.fetch, env.config.proxy + path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(want.holdId
          ? { cart_token: cartToken, quantity: want.quantity, hold_id: want.holdId }
          : { cart_token: cartToken, quantity: want.quantity }),
        credentials: "same-origin"
      }, env.config.timeoutMs);
    } catch (err) {
      return { kind: "open", reason: "network error (" + ((err && err.name) || err) + ")" };
    }
    var body = await readJson(response);
    if (response.status === 200 && body && body.reservation_id) {
      // The id for the cart line: the line's own when these units joined it.
      return { kind: "hold", id: String(body.line_hold || body.reservation_id), hold: body };
    }
    if (response.status === 404 && body && UNTRACKED[body.error]) return { kind: "untracked" };
    if (response.status === 409 || response.status === 422 || response.status === 429) {
      return { kind: "refused", status: response.status, message: refusalMessage(response.status, body, env.config.messages), body: body };
    }
    return { kind: "open", reason: "HTTP " + response.status + (body && body.error ? " " + body.error : "") };
  }

  async function cartOf(env) {
    var response = await env.fetch(env.config.root + "cart.js", {
      headers: { Accept: "application/json" }, credentials: "same-origin"
    });
    if (!response.ok) throw new Error("/cart.js answered " + response.status);
    return response.json();
  }

  /** Holds for a list of wants [{sku, variantId, quantity}], in order, stopping at the first
   * refusal. Resolves to {refused?: decision, holds: [id|null], open: [reasons]}. */
  async function holdAll(env, wants, cart) {
    var result = { holds: [], open: [] };
    if (!wants.length) return result;
    var token;
    try {
      cart = cart || await cartOf(env);
      token = cart && cart.token;
    } catch (err) {
      token = null;
    }
    if (!token) {
      result.open.push("no cart token from /cart.js");
      wants.forEach(function () { result.holds.push(null); });
      return result;
    }
    for (var i = 0; i < wants.length; i++) {
      var want = wants[i];
      if (!want.sku && !want.variantId) { result.holds.push(null); continue; }
      if (want.holdId === undefined) want.holdId = holdOfVariant(cart, want.variantId);
      var decision = await askHold(env, want, token);
      if (decision.kind === "refused") { result.refused = decision; return result; }
      if (decision.kind === "open") result.open.push(decision.reason);
      result.holds.push(decision.kind === "hold" ? decision.id : null);
    }
    return result;
  }

  function warnOpen(env, reasons) {
    if (!reasons.length) return;
    env.console.warn(LOG_PREFIX + " stock service unavailable (" + reasons.join("; ") +
      "): the item goes to the cart WITHOUT a hold (fail open; the checkout rule still applies).");
  }

  /** Shopify's own shape for a refused cart change (status 422), which themes already show. */
  function refusalResponse(message) {
    var body = JSON.stringify({ status: 422, message: message, description: message, errors: message });
    return new Response(body, { status: 422, statusText: "Unprocessable Entity", headers: { "Content-Type": "application/json; charset=utf-8" } });
  }

  // --- the decision for one cart request ------------------------------------------------------

  /**
   * Decide what to do with one POST to a cart endpoint. Resolves to
   *   {send: body}            send it, with this (possibly rewritten) body;
   *   {refuse: message}       do not send it; the shopper was told `message`.
   * `preset` is a decision already taken for this request (the form submit being replayed).
   */
  async function decide(env, action, body, contentType, preset) {
    var read = readBody(body, contentType);
    if (!read) {
      if (action === "add" && !preset) {
        env.console.warn(LOG_PREFIX + " cannot read this /cart/add body; sent WITHOUT a hold.");
      }
      return { send: body };
    }
    if (action === "add") {
      var items = addItems(read);
      var todo = items.map(function (item) { return item.hold ? null : item; });
      if (!todo.some(Boolean)) return { send: body };
      var result;
      if (preset) {
        result = { holds: todo.map(function (item, i) { return item ? preset.holds[i] || null : null; }), open: [] };
      } else {
        var catalog = env.catalog();
        var wants = todo.filter(Boolean).map(function (item) {
          return { sku: catalog.get(item.variantId) || "", variantId: item.variantId, quantity: item.quantity };
        });
        var got = await holdAll(env, wants);
        if (got.refused) return { refuse: got.refused.message, decision: got.refused };
        warnOpen(env, got.open);
        var k = 0;
        result = { holds: todo.map(function (item) { return item ? got.holds[k++] || null : null; }) };
      }
      if (!result.holds.some(Boolean)) return { send: body };
      return { send: withHolds(read, items, result.holds) };
    }
    if (preset) return { send: body };
    var changes = quantityChanges(action, read);
    if (!changes.length) return { send: body };
    var cart;
    try { cart = await cartOf(env); } catch (err) {
      warnOpen(env, ["cannot read /cart.js: " + (err && err.message)]);
      return { send: body };
    }
    var wantsMore = increases(changes, cart, env.catalog());
    if (!wantsMore.length) return { send: body };
    var more = await holdAll(env, wantsMore, cart);
    if (more.refused) return { refuse: more.refused.message, decision: more.refused };
    warnOpen(env, more.open);
    return { send: body };
  }

  // --- fetch and XMLHttpRequest -----------------------------------------------------------------

  function headerOf(headers, name) {
    if (!headers) return "";
    if (typeof headers.get === "function") return headers.get(name) || "";
    var found = "";
    Object.keys(headers).forEach(function (k) { if (k.toLowerCase() === name) found = headers[k]; });
    return found;
  }

  /** A fetch that lets cart POSTs through only after `decide`. */
  function wrapFetch(env, original, base) {
    return async function bazicoFetch(input, init) {
      var isRequest = typeof Request !== "undefined" && input instanceof Request;
      var url = isRequest ? input.url : input;
      var method = String((init && init.method) || (isRequest && input.method) || "GET").toUpperCase();
      var action = method === "POST" ? cartAction(url, base()) : null;
      if (!action) return original(input, init);
      var preset = env.preset(action); // read now: a replayed submit is decided synchronously
      var contentType, body;
      if (isRequest && !(init && "body" in init)) {
        contentType = input.headers.get("content-type") || "";
        body = /multipart\/form-data/i.test(contentType) ? await input.clone().formData() : await input.clone().text();
      } else {
        body = init && init.body;
        contentType = headerOf(init && init.headers, "content-type");
      }
      var outcome;
      try {
        outcome = await decide(env, action, body, contentType, preset);
      } catch (err) {
        env.console.warn(LOG_PREFIX + " could not check the cart request; sent as is.", err);
        return original(input, init);
      }
      if (outcome.refuse !== undefined) {
        env.notifyUnlessShown(outcome.refuse);
        return refusalResponse(outcome.refuse);
      }
      if (outcome.send === body) return original(input, init);
      if (isRequest) {
        var headers = new Headers(input.headers);
        if (isFormData(outcome.send)) headers.delete("content-type");
        return original(new Request(input.url, {
          method: input.method, headers: headers, body: outcome.send, credentials: input.credentials, mode: input.mode
        }));
      }
      var next = Object.assign({}, init, { body: outcome.send });
      if (isFormData(outcome.send) && init && init.headers) {
        // A new FormData has a new multipart boundary: let the browser write the header.
        next.headers = new Headers(init.headers);
        next.headers.delete("content-type");
      }
      return original(input, next);
    };
  }

  /** Answer an XMLHttpRequest ourselves (a refusal): the 422 the theme knows how to show. */
  function answerXhr(xhr, message) {
    var text = JSON.stringify({ status: 422, message: message, description: message, errors: message });
    var fixed = {
      readyState: 4, status: 422, statusText: "Unprocessable Entity", responseText: text,
      response: xhr.responseType === "json" ? JSON.parse(text) : text
    };
    Object.keys(fixed).forEach(function (key) {
      Object.defineProperty(xhr, key, { configurable: true, get: function () { return fixed[key]; } });
    });
    xhr.getResponseHeader = function (name) { return /content-type/i.test(name) ? "application/json" : null; };
    xhr.getAllResponseHeaders = function () { return "content-type: application/json\r\n"; };
    ["readystatechange", "load", "loadend"].forEach(function (type) {
      var Ctor = type === "readystatechange" ? Event : (typeof ProgressEvent !== "undefined" ? ProgressEvent : Event);
      xhr.dispatchEvent(new Ctor(type));
    });
  }

  function patchXhr(env, win) {
    var XHR = win.XMLHttpRequest;
    if (!XHR || XHR.prototype.__bazicoPatched) return;
    var proto = XHR.prototype;
    var open = proto.open, send = proto.send, setHeader = proto.setRequestHeader;
    proto.__bazicoPatched = true;
    proto.open = function (method, url) {
      this.__bazico = { method: String(method).toUpperCase(), url: String(url), contentType: "" };
      return open.apply(this, arguments);
    };
    proto.setRequestHeader = function (name, value) {
      if (this.__bazico && /^content-type$/i.test(name)) this.__bazico.contentType = String(value);
      return setHeader.apply(this, arguments);
    };
    proto.send = function (body) {
      var meta = this.__bazico;
      var action = meta && meta.method === "POST" ? cartAction(meta.url, win.location.href) : null;
      if (!action) return send.apply(this, arguments);
      var xhr = this;
      decide(env, action, body, meta.contentType, env.preset(action)).then(function (outcome) {
        if (outcome.refuse !== undefined) {
          env.notifyUnlessShown(outcome.refuse);
          answerXhr(xhr, outcome.refuse);
        } else {
          send.call(xhr, outcome.send);
        }
      }, function (err) {
        env.console.warn(LOG_PREFIX + " could not check the cart request; sent as is.", err);
        send.call(xhr, body);
      });
    };
  }

  // --- forms (capture phase) ---------------------------------------------------------------------

  function setBusy(form, busy) {
    if (busy) form.setAttribute("aria-busy", "true");
    else form.removeAttribute("aria-busy");
    Array.prototype.forEach.call(form.querySelectorAll("[type='submit']"), function (button) {
      if (busy && !button.hasAttribute("aria-disabled")) { // the theme's own state stays its own
        button.setAttribute("data-bazico-busy", "");
        button.setAttribute("aria-disabled", "true");
      } else if (button.hasAttribute("data-bazico-busy")) {
        button.removeAttribute("data-bazico-busy");
        button.removeAttribute("aria-disabled");
      }
    });
  }

  function replay(env, form, submitter, preset) {
    env.replaying = { form: form, preset: preset };
    try {
      if (typeof form.requestSubmit === "function") {
        if (submitter && submitter.form === form) form.requestSubmit(submitter);
        else form.requestSubmit();
      } else {
        var event = new Event("submit", { bubbles: true, cancelable: true });
        if (form.dispatchEvent(event)) form.submit();
      }
    } finally {
      env.replaying = null;
    }
  }

  function onSubmit(env, win, event) {
    var form = event.target;
    if (!form || form.tagName !== "FORM") return;
    if (env.replaying && env.replaying.form === form) return; // our own second dispatch
    var action = cartAction(form.action, win.location.href, CART_FORM);
    if (!action || String(form.method).toLowerCase() !== "post") return;
    var submitter = event.submitter || null;
    if (env.pending.has(form)) { // a second click while the first is being decided
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    Array.prototype.forEach.call(form.querySelectorAll("input[data-bazico-hold]"), function (input) {
      input.parentNode.removeChild(input);
    });
    var data = new FormData(form);
    var read = { type: "form", data: data };
    if (action === "add") {
      // A form without its own `id` value: the variant the picker last announced.
      if (!data.get("id") && !data.has("items[0][id]") && env.lastVariant) data.set("id", env.lastVariant);
      var items = addItems(read);
      if (!items.length || items.every(function (item) { return item.hold; })) return;
    } else if (!quantityChanges(action, read).length) {
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    env.pending.add(form);
    setBusy(form, true);
    env.clear(form);
    var done = function () { env.pending.delete(form); setBusy(form, false); };
    decide(env, action, data, "multipart/form-data", null).then(function (outcome) {
      done();
      if (outcome.refuse !== undefined) {
        env.notify(outcome.refuse, form);
        return;
      }
      var preset = null;
      if (action === "add" && isFormData(outcome.send)) {
        var holds = addItems({ type: "form", data: outcome.send }).map(function (item) { return item.hold; });
        var hold = holds[0];
        if (hold) {
          var input = form.ownerDocument.createElement("input");
          input.type = "hidden";
          input.name = HOLD_FIELD;
          input.value = hold;
          input.setAttribute("data-bazico-hold", "");
          form.appendChild(input);
        }
        preset = { holds: holds };
      }
      // The theme's handler now runs once, as if the shopper had just clicked: its own
      // request to /cart/add carries the hold (the hidden input, or added on the way out).
      replay(env, form, submitter, preset || { holds: [] });
    }, function (err) {
      done();
      env.console.warn(LOG_PREFIX + " could not check the form; submitted as is.", err);
      replay(env, form, submitter, { holds: [] });
    });
  }

  // --- messages ----------------------------------------------------------------------------------

  /** Where the theme shows its add-to-cart errors (Dawn's product-form wrapper), if anywhere. */
  function themeErrorTarget(form) {
    if (!form) return null;
    var scope = form.closest("product-form, [data-product-form], .product-form") || form.parentNode;
    var explicit = form.querySelector("[data-bazico-error]") || (scope && scope.querySelector("[data-bazico-error]"));
    if (explicit) return { wrapper: explicit, text: explicit };
    var wrapper = scope && scope.querySelector(".product-form__error-message-wrapper");
    if (!wrapper) return null;
    return { wrapper: wrapper, text: wrapper.querySelector(".product-form__error-message") || wrapper };
  }

  function statusRegion(doc) {
    var el = doc.getElementById(STATUS_ID);
    if (!el) {
      el = doc.createElement("div");
      el.id = STATUS_ID;
      el.className = "bazico-reserve-status";
      el.setAttribute("role", "status");
      el.setAttribute("aria-live", "polite");
      el.hidden = true;
      doc.body.appendChild(el);
    }
    return el;
  }

  function makeNotifier(doc, config, win) {
    var shown = [];
    var notifier = {
      notify: function (message, form) {
        var target = config.placement === "banner" ? null : themeErrorTarget(form);
        if (target) {
          target.text.textContent = message;
          target.wrapper.hidden = false;
          target.wrapper.removeAttribute("hidden");
          shown.push(target.wrapper);
        } else {
          var region = statusRegion(doc);
          region.textContent = message;
          region.hidden = false;
          shown.push(region);
        }
      },
      /** A refused fetch/XHR: its caller got the 422 and most themes show its description;
       * the banner shows the message only when, a moment later, nothing on the page does. */
      notifyUnlessShown: function (message) {
        win.setTimeout(function () {
          var region = doc.getElementById(STATUS_ID);
          var text = (doc.body && doc.body.innerText) || "";
          if (region && !region.hidden) text = text.replace(region.innerText || "", "");
          if (text.indexOf(message) < 0) notifier.notify(message, null);
        }, 600);
      },
      clear: function () {
        shown.splice(0).forEach(function (el) { el.hidden = true; });
      }
    };
    return notifier;
  }

  // --- start -------------------------------------------------------------------------------------

  function start(win) {
    var doc = win.document;
    var config = readConfig(doc);
    var originalFetch = win.fetch.bind(win);
    var notifier = makeNotifier(doc, config, win);
    var env = {
      config: config,
      fetch: originalFetch,
      console: win.console,
      catalog: function () { return catalogFrom(doc); },
      notify: notifier.notify,
      notifyUnlessShown: notifier.notifyUnlessShown,
      clear: notifier.clear,
      pending: new WeakSet(),
      replaying: null,
      lastVariant: null,
      preset: function (action) {
        // Requests the theme makes while we replay a decided form submit are already decided.
        return env.replaying && action === "add" ? env.replaying.preset : (env.replaying ? { holds: [] } : null);
      }
    };
    win.fetch = wrapFetch(env, originalFetch, function () { return win.location.href; });
    patchXhr(env, win);
    // Capture on window: before any listener of the theme, including its own capture ones.
    win.addEventListener("submit", function (event) { onSubmit(env, win, event); }, true);
    // The selected variant, for forms that do not carry it in an `id` field themselves.
    doc.addEventListener("change", function (event) {
      var el = event.target;
      if (el && el.name === "id" && el.value) env.lastVariant = String(el.value);
    }, true);
    doc.addEventListener("variant:change", function (event) {
      var variant = event.detail && event.detail.variant;
      if (variant && variant.id != null) env.lastVariant = String(variant.id);
    });
    return env;
  }

  return {
    HOLD_PROPERTY: HOLD_PROPERTY,
    DEFAULTS: DEFAULTS,
    readConfig: readConfig,
    variantsIn: variantsIn,
    catalogFrom: catalogFrom,
    cartAction: cartAction,
    readBody: readBody,
    addItems: addItems,
    withHolds: withHolds,
    quantityChanges: quantityChanges,
    increases: increases,
    refusalMessage: refusalMessage,
    askHold: askHold,
    decide: decide,
    wrapFetch: wrapFetch,
    refusalResponse: refusalResponse,
    start: start
  };
});
