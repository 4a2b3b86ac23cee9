// Unit tests of the app embed's script (extensions/bazico-reserve/assets/bazico-reserve.js),
// under node --test, with a stand-in storefront behind `fetch`. The DOM side (forms, the
// theme's own handlers) is the browser test's: tests/e2e/test_storefront_browser.py.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const embed = require("../../extensions/bazico-reserve/assets/bazico-reserve.js");

const BASE = "https://bazico.example/products/camiseta";
const CATALOG = new Map([["101", "CAM-P"], ["102", "CAM-M"], ["103", ""]]);

/** A storefront: /cart.js answers `cart`, the proxy answers `reserve(url, body)`. */
function storefront({ reserve = () => [200, { reservation_id: "hold-1" }], cart = {} } = {}) {
  const calls = [];
  const warnings = [];
  const shown = [];
  const fetch = async (input, init = {}) => {
    const url = String(input);
    const body = init.body;
    calls.push({ url, body: typeof body === "string" && body.startsWith("{") ? JSON.parse(body) : body });
    if (url === "/cart.js") {
      return Response.json({ token: "c1-tok?key=9", items: [], ...cart });
    }
    if (url.startsWith("/apps/bazico/")) {
      const answer = reserve(url, JSON.parse(body));
      if (answer instanceof Error) throw answer;
      return Response.json(answer[1], { status: answer[0] });
    }
    return Response.json({ ok: true, url });
  };
  const env = {
    config: embed.readConfig(null),
    fetch,
    console: { warn: (...args) => warnings.push(args.join(" ")) },
    catalog: () => CATALOG,
    notify: (m) => shown.push(m),
    notifyUnlessShown: (m) => shown.push(m),
    preset: () => null,
  };
  const wrapped = embed.wrapFetch(env, fetch, () => BASE);
  return { env, fetch: wrapped, calls, warnings, shown, urls: () => calls.map((c) => c.url) };
}

function form(fields) {
  const data = new FormData();
  Object.entries(fields).forEach(([k, v]) => data.append(k, v));
  return data;
}

test("recognises the cart endpoints, with or without .js and a locale prefix", () => {
  const add = ["/cart/add", "/cart/add.js", "/pt/cart/add.js", "/pt-br/cart/add", "/en-us/cart/add.js"];
  add.forEach((path) => assert.equal(embed.cartAction(path, BASE), "add", path));
  assert.equal(embed.cartAction("/cart/change.js", BASE), "change");
  assert.equal(embed.cartAction("/pt/cart/update", BASE), "update");
  ["/cart.js", "/cart", "/apps/bazico/stock/X/reserve", "/products/cart/add.js"].forEach((path) =>
    assert.equal(embed.cartAction(path, BASE), null, path));
  assert.equal(embed.cartAction("https://other.example/cart/add.js", BASE), null, "other origins");
});

test("maps variants to SKUs from any product JSON shape", () => {
  assert.deepEqual(embed.variantsIn([{ id: 1, sku: "A" }]), [{ id: 1, sku: "A" }]);
  assert.deepEqual(embed.variantsIn({ variants: [{ id: 2 }] }), [{ id: 2 }]);
  assert.deepEqual(embed.variantsIn({ product: { variants: [{ id: 3 }] } }), [{ id: 3 }]);
  assert.deepEqual(embed.variantsIn(null), []);
});

test("the theme's FormData add waits for the hold of the selected variant and carries it", async () => {
  const shop = storefront();
  const body = form({ id: "102", quantity: "2", sections: "cart-drawer" });
  const response = await shop.fetch("/cart/add", { method: "POST", body });
  assert.equal(response.status, 200);
  assert.deepEqual(shop.urls(), ["/cart.js", "/apps/bazico/stock/CAM-M/reserve", "/cart/add"]);
  assert.deepEqual(shop.calls[1].body, { cart_token: "c1-tok?key=9", quantity: 2 });
  const sent = shop.calls[2].body;
  assert.equal(sent.get("properties[_bazico_hold]"), "hold-1");
  assert.equal(sent.get("sections"), "cart-drawer", "the theme's own fields stay");
  assert.equal(body.get("properties[_bazico_hold]"), null, "the theme's object is not changed");
  assert.deepEqual(shop.warnings, []);
});

test("JSON adds get the property on the item, single or in items[]", async () => {
  const shop = storefront();
  await shop.fetch("/cart/add.js", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ items: [{ id: 101, quantity: 1, properties: { Gravação: "Ana" } }] }),
  });
  assert.deepEqual(shop.calls[2].body, {
    items: [{ id: 101, quantity: 1, properties: { Gravação: "Ana", _bazico_hold: "hold-1" } }],
  });
  const single = storefront();
  await single.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 102 }) });
  assert.deepEqual(single.calls[2].body, { id: 102, properties: { _bazico_hold: "hold-1" } });
});

test("a variant without a SKU is asked for by its variant id", async () => {
  const shop = storefront();
  await shop.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 103 }) });
  assert.equal(shop.urls()[1], "/apps/bazico/variants/103/reserve");
});

test("sold out: the request never goes out and the caller gets Shopify's 422 shape", async () => {
  const message = "Esgotado: não há unidades suficientes deste produto.";
  const shop = storefront({ reserve: () => [409, { error: "out_of_stock", message, available: 0 }] });
  const response = await shop.fetch("/cart/add", { method: "POST", body: form({ id: "102" }) });
  assert.equal(response.status, 422);
  assert.deepEqual(await response.json(), { status: 422, message, description: message, errors: message });
  assert.ok(!shop.urls().includes("/cart/add"));
  assert.deepEqual(shop.shown, [message]);
});

test("a limit shows the service's message with the wait", async () => {
  const message = "Limite de 5 unidades deste produto por carrinho.";
  const shop = storefront({ reserve: () => [429, { error: "hold_limit_exceeded", message, retry_after: 900 }] });
  const response = await shop.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 102 }) });
  assert.equal(response.status, 422);
  assert.deepEqual(shop.shown, [message + " Tente de novo em 900 s."]);
  const rate = "Muitas tentativas em pouco tempo; tente de novo em 30 s.";
  assert.equal(embed.refusalMessage(429, { message: rate, retry_after: 30 }, embed.DEFAULTS.messages), rate,
    "a message that already says the wait is shown as it is");
  assert.equal(embed.refusalMessage(422, null, embed.DEFAULTS.messages), embed.DEFAULTS.messages.limited);
});

test("an untracked SKU is added as usual, without a hold or a warning", async () => {
  const shop = storefront({ reserve: () => [404, { error: "unknown_sku", message: "unknown" }] });
  const body = form({ id: "101" });
  await shop.fetch("/cart/add", { method: "POST", body });
  assert.equal(shop.calls[2].body, body, "the theme's own body, untouched");
  assert.deepEqual(shop.warnings, []);
  const variant = storefront({ reserve: () => [404, { error: "unknown_variant" }] });
  await variant.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 103 }) });
  assert.deepEqual(variant.calls[2].body, { id: 103 });
});

for (const [what, reserve] of [
  ["a 5xx", () => [503, { error: "unavailable" }]],
  ["a network failure", () => new TypeError("Failed to fetch")],
  ["a 404 that is not the service's (proxy not set up)", () => [404, null]],
  ["a bad signature (401)", () => [401, { error: "invalid_signature" }]],
]) {
  test(`${what} fails open: added without a hold, and the console says so`, async () => {
    const shop = storefront({ reserve });
    const response = await shop.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 102 }) });
    assert.equal(response.status, 200);
    assert.deepEqual(shop.calls[2].body, { id: 102 });
    assert.equal(shop.warnings.length, 1);
    assert.match(shop.warnings[0], /WITHOUT a hold/);
    assert.deepEqual(shop.shown, []);
  });
}

test("a body already carrying a hold, or a replayed submit, is not asked for twice", async () => {
  const shop = storefront();
  await shop.fetch("/cart/add", { method: "POST", body: form({ id: "102", "properties[_bazico_hold]": "h0" }) });
  assert.deepEqual(shop.urls(), ["/cart/add"]);
  const replay = storefront();
  replay.env.preset = () => ({ holds: ["h-form"] });
  await replay.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 102 }) });
  assert.deepEqual(replay.urls(), ["/cart/add.js"]);
  assert.deepEqual(replay.calls[0].body, { id: 102, properties: { _bazico_hold: "h-form" } });
});

const CART = {
  items: [
    { key: "102:aa", variant_id: 102, sku: "CAM-M", quantity: 1 },
    { key: "101:bb", variant_id: 101, sku: "CAM-P", quantity: 3 },
  ],
};

test("a quantity increase asks for the extra units only, then sends the theme's request", async () => {
  const shop = storefront({ cart: CART });
  const body = JSON.stringify({ line: 1, quantity: 3 });
  await shop.fetch("/cart/change.js", { method: "POST", body });
  assert.deepEqual(shop.urls(), ["/cart.js", "/apps/bazico/stock/CAM-M/reserve", "/cart/change.js"]);
  assert.equal(shop.calls[1].body.quantity, 2);
  assert.deepEqual(shop.calls[2].body, { line: 1, quantity: 3 });
  const byKey = storefront({ cart: CART });
  await byKey.fetch("/cart/change", { method: "POST", body: form({ id: "101:bb", quantity: "4" }) });
  assert.equal(byKey.calls[1].url, "/apps/bazico/stock/CAM-P/reserve");
  assert.equal(byKey.calls[1].body.quantity, 1);
});

test("decreases and removals pass straight through", async () => {
  const shop = storefront({ cart: CART });
  await shop.fetch("/cart/change.js", { method: "POST", body: JSON.stringify({ id: "101:bb", quantity: 0 }) });
  await shop.fetch("/cart/update.js", { method: "POST", body: JSON.stringify({ updates: [1, 2] }) });
  assert.deepEqual(shop.urls().filter((u) => u.startsWith("/apps/")), []);
});

test("/cart/update asks for each line that grows (by key, by position, by variant)", async () => {
  const shop = storefront({ cart: CART });
  await shop.fetch("/cart/update.js", {
    method: "POST", body: JSON.stringify({ updates: { "102:aa": 2, 101: 5 } }),
  });
  const asked = shop.calls.filter((c) => c.url.startsWith("/apps/")).map((c) => [c.url, c.body.quantity]);
  // (JavaScript lists the integer-like key "101" first; the order does not matter)
  assert.deepEqual(asked.sort(), [["/apps/bazico/stock/CAM-M/reserve", 1], ["/apps/bazico/stock/CAM-P/reserve", 2]]);
  const positional = storefront({ cart: CART });
  await positional.fetch("/cart/update", { method: "POST", body: "updates%5B%5D=1&updates%5B%5D=4" });
  assert.deepEqual(positional.calls[1].body.quantity, 1);
  assert.equal(positional.calls[1].url, "/apps/bazico/stock/CAM-P/reserve");
});

test("a refused increase leaves the cart alone", async () => {
  const message = "Esgotado: não há unidades suficientes deste produto.";
  const shop = storefront({ cart: CART, reserve: () => [409, { error: "out_of_stock", message }] });
  const response = await shop.fetch("/cart/change.js", { method: "POST", body: JSON.stringify({ line: 1, quantity: 2 }) });
  assert.equal(response.status, 422);
  assert.equal((await response.json()).errors, message);
  assert.ok(!shop.urls().includes("/cart/change.js"));
});

test("requests that are not cart POSTs are not touched", async () => {
  const shop = storefront();
  await shop.fetch("/cart/add.js"); // a GET
  await shop.fetch("/products/camiseta.js", { method: "POST", body: "{}" });
  assert.deepEqual(shop.urls(), ["/cart/add.js", "/products/camiseta.js"]);
});

test("a Request object is read and rebuilt with the property", async () => {
  const shop = storefront();
  const request = new Request("https://bazico.example/cart/add.js", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id: 102 }),
  });
  const sent = [];
  const env = { ...shop.env, fetch: shop.env.fetch };
  const wrapped = embed.wrapFetch(env, async (req) => { sent.push(await req.json()); return Response.json({}); }, () => BASE);
  await wrapped(request);
  assert.deepEqual(sent, [{ id: 102, properties: { _bazico_hold: "hold-1" } }]);
});

test("configuration: the block's JSON over the defaults", () => {
  const doc = { getElementById: () => ({ textContent: JSON.stringify({ proxy: "/apps/loja/", root: "/pt", messages: { soldOut: "Acabou" } }) }) };
  const config = embed.readConfig(doc);
  assert.equal(config.proxy, "/apps/loja");
  assert.equal(config.root, "/pt/");
  assert.equal(config.messages.soldOut, "Acabou");
  assert.equal(config.messages.wait, embed.DEFAULTS.messages.wait);
});

test("an add body it cannot read goes out as it is, with a warning", async () => {
  const shop = storefront();
  const body = new Blob(["id=102"]);
  await shop.fetch("/cart/add.js", { method: "POST", body });
  assert.deepEqual(shop.urls(), ["/cart/add.js"]);
  assert.equal(shop.calls[0].body, body);
  assert.match(shop.warnings[0], /WITHOUT a hold/);
});

test("added units join the hold id of the line they land on, so one id names the whole line", async () => {
  const held = { token: "c1-tok?key=9", items: [
    { key: "102:aa", variant_id: 102, sku: "CAM-M", quantity: 1, properties: { _bazico_hold: "line-hold-1" } },
  ] };
  // The service grants a new hold and answers the line's id to carry (line_hold).
  const reserve = (url, body) => [200, { reservation_id: "hold-2", line_hold: body.hold_id || "hold-2" }];
  const increase = storefront({ cart: held, reserve });
  await increase.fetch("/cart/change.js", { method: "POST", body: JSON.stringify({ line: 1, quantity: 2 }) });
  assert.deepEqual(increase.calls[1].body, { cart_token: "c1-tok?key=9", quantity: 1, hold_id: "line-hold-1" });
  assert.deepEqual(increase.calls[2].body, { line: 1, quantity: 2 }, "the theme's change goes out as it was");

  // Adding the same variant again: the line's id goes on the add, so Shopify merges the lines.
  const again = storefront({ cart: held, reserve });
  await again.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 102, quantity: 1 }) });
  assert.equal(again.calls[1].body.hold_id, "line-hold-1");
  assert.equal(again.calls[2].body.properties._bazico_hold, "line-hold-1");

  // Another variant starts a line of its own.
  const other = storefront({ cart: held, reserve });
  await other.fetch("/cart/add.js", { method: "POST", body: JSON.stringify({ id: 101, quantity: 1 }) });
  assert.equal(other.calls[1].body.hold_id, undefined);
  assert.equal(other.calls[2].body.properties._bazico_hold, "hold-2");
});
