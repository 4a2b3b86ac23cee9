// Unit tests of the (deprecated) theme snippet (node --test), with a stand-in for the storefront's fetch.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const snippet = require("../../shopify_app/static/bazico-reserve.js");

function storefront(reserveStatus, reserveBody = {}) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url, method: init.method || "GET", body: init.body ? JSON.parse(init.body) : null });
    if (url === "/cart.js") return { ok: true, status: 200, json: async () => ({ token: "c1-tok?key=9" }) };
    if (url.startsWith("/apps/bazico/stock/")) {
      return { ok: reserveStatus === 200, status: reserveStatus, json: async () => reserveBody };
    }
    return { ok: true, status: 200, json: async () => ({}) };
  };
  return { fetch, calls };
}

test("adds to cart only after the hold is granted, and tags the cart", async () => {
  const shop = storefront(200);
  const notes = [];
  const result = await snippet.reserveThenAdd({
    fetch: shop.fetch, sku: "TEE P/M", variantId: "42", quantity: 2, notify: (m) => notes.push(m),
  });
  assert.deepEqual(result, { added: true });
  assert.deepEqual(shop.calls.map((c) => c.url), [
    "/cart.js", "/apps/bazico/stock/TEE%20P%2FM/reserve", "/cart/update.js", "/cart/add.js",
  ]);
  assert.deepEqual(shop.calls[1].body, { quantity: 2, cart_token: "c1-tok?key=9" });
  assert.deepEqual(shop.calls[2].body, { attributes: { _bazico_cart: "c1-tok?key=9" } });
  assert.deepEqual(shop.calls[3].body, { items: [{ id: 42, quantity: 2 }] });
  assert.deepEqual(notes, []);
});

test("sold out: tells the shopper and does not add", async () => {
  const shop = storefront(409);
  const notes = [];
  const result = await snippet.reserveThenAdd({
    fetch: shop.fetch, sku: "TEE", variantId: 1, notify: (m) => notes.push(m),
  });
  assert.deepEqual(result, { added: false, reason: "sold_out" });
  assert.ok(!shop.calls.some((c) => c.url === "/cart/add.js"));
  assert.deepEqual(notes, [snippet.MESSAGES.soldOut]);
});

test("any other failure does not add either", async () => {
  const shop = storefront(503);
  const notes = [];
  const result = await snippet.reserveThenAdd({
    fetch: shop.fetch, sku: "TEE", variantId: 1, notify: (m) => notes.push(m),
  });
  assert.equal(result.added, false);
  assert.ok(!shop.calls.some((c) => c.url === "/cart/add.js"));
  assert.deepEqual(notes, [snippet.MESSAGES.error]);
});

test("over a per-cart limit: shows the service's message and does not add", async () => {
  const message = "Limite de 5 unidades deste produto por carrinho.";
  const shop = storefront(429, { error: "hold_limit_exceeded", message, retry_after: 900 });
  const notes = [];
  const result = await snippet.reserveThenAdd({
    fetch: shop.fetch, sku: "TEE", variantId: 1, notify: (m) => notes.push(m),
  });
  assert.deepEqual(result, { added: false, reason: "limited" });
  assert.ok(!shop.calls.some((c) => c.url === "/cart/add.js"));
  assert.deepEqual(notes, [message]);
});

test("a limit answer without a readable message falls back to a generic one", async () => {
  const shop = storefront(429, null);
  const notes = [];
  await snippet.reserveThenAdd({
    fetch: shop.fetch, sku: "TEE", variantId: 1, notify: (m) => notes.push(m),
  });
  assert.deepEqual(notes, [snippet.MESSAGES.limited]);
});

test("installing the deprecated snippet says once where its replacement is", () => {
  const warned = [];
  const listeners = [];
  const doc = { addEventListener: (type) => listeners.push(type) };
  snippet.install(doc, { console: { warn: (m) => warned.push(m) } });
  assert.deepEqual(warned, [snippet.DEPRECATION]);
  assert.match(snippet.DEPRECATION, /App embeds/);
  assert.deepEqual(listeners, ["submit"], "and it keeps working");
});
