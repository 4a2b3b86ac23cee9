/*
 * DEPRECATED: replaced by the theme app extension's app embed (extensions/bazico-reserve/;
 * Online Store > Themes > Customize > App embeds > "Bázico stock holds"). This route stays for
 * one release so themes that paste it keep working; remove the <script> tag once the embed is
 * on. It still writes the `_bazico_cart` attribute with /cart/update.js before adding (which
 * the service keeps accepting), asks by the SKU written in the form rather than the selected
 * variant, and does not fail open.
 *
 * Bázico theme snippet: reserve stock through the App Proxy before adding to the cart.
 *
 * Add to the theme (e.g. in theme.liquid, before </body>):
 *   <script src="https://YOUR-APP/static/bazico-reserve.js" defer></script>
 * and give each product form the selected variant's SKU:
 *   <form action="/cart/add" data-bazico-sku="{{ product.selected_or_first_available_variant.sku }}">
 *
 * On add-to-cart it asks /apps/bazico/stock/{sku}/reserve (Shopify signs and forwards it to the
 * service's /proxy routes) for a hold keyed by the cart token. Only on 200 does it add the item;
 * on 409 the shopper sees that it sold out, on 429 (or 422) the service's own message about the
 * per-cart limits (Portuguese, with when to try again). It also stores the cart token as the cart attribute
 * `_bazico_cart`, which reaches the order as a note attribute and links the order to its holds.
 */
(function (root) {
  "use strict";

  var PROXY = "/apps/bazico";
  var ATTRIBUTE = "_bazico_cart";
  var MESSAGES = {
    soldOut: "Esgotado: alguém acabou de garantir a última unidade deste tamanho.",
    error: "Não conseguimos reservar agora. Tente de novo em instantes.",
    limited: "Muitas tentativas em pouco tempo. Tente de novo em instantes."
  };

  function json(fetchImpl, url, body) {
    return fetchImpl(url, {
      method: body === undefined ? "GET" : "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin"
    });
  }

  /** Reserve, and only then add to the cart. Resolves to {added, reason?}. */
  async function reserveThenAdd(options) {
    var fetchImpl = options.fetch;
    var quantity = options.quantity || 1;
    var cart = await (await json(fetchImpl, "/cart.js")).json();
    var token = cart.token;
    var url = PROXY + "/stock/" + encodeURIComponent(options.sku) + "/reserve";
    var response;
    try {
      response = await json(fetchImpl, url, { quantity: quantity, cart_token: token });
    } catch (err) {
      options.notify(MESSAGES.error);
      return { added: false, reason: "error" };
    }
    if (response.status === 409) {
      options.notify(MESSAGES.soldOut);
      return { added: false, reason: "sold_out" };
    }
    if (response.status === 429 || response.status === 422) {
      // A per-cart cap or a request rate: the service says which, in Portuguese.
      var refusal = {};
      try { refusal = await response.json(); } catch (err) { refusal = {}; }
      var said = refusal && typeof refusal.message === "string" ? refusal.message : "";
      options.notify(said || MESSAGES.limited);
      return { added: false, reason: "limited" };
    }
    if (!response.ok) {
      options.notify(MESSAGES.error);
      return { added: false, reason: "error" };
    }
    var attributes = {};
    attributes[ATTRIBUTE] = token;
    await json(fetchImpl, "/cart/update.js", { attributes: attributes });
    await json(fetchImpl, "/cart/add.js", {
      items: [{ id: Number(options.variantId), quantity: quantity }]
    });
    return { added: true };
  }

  var DEPRECATION = "[Bázico] /static/bazico-reserve.js is deprecated and goes away in the next " +
    "release: switch on the \"Bázico stock holds\" app embed (Online Store > Themes > Customize > " +
    "App embeds) and remove this <script> tag.";

  function install(doc, win) {
    if (win.console && win.console.warn) win.console.warn(DEPRECATION);
    doc.addEventListener("submit", function (event) {
      var form = event.target.closest && event.target.closest("form[data-bazico-sku]");
      if (!form) return;
      event.preventDefault();
      var data = new win.FormData(form);
      reserveThenAdd({
        fetch: win.fetch.bind(win),
        sku: form.getAttribute("data-bazico-sku"),
        variantId: data.get("id"),
        quantity: Number(data.get("quantity") || 1),
        notify: function (message) { win.alert(message); }
      }).then(function (result) {
        if (result.added) win.location.href = "/cart";
      });
    });
  }

  var api = {
    reserveThenAdd: reserveThenAdd, install: install, ATTRIBUTE: ATTRIBUTE, MESSAGES: MESSAGES,
    DEPRECATION: DEPRECATION
  };
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.BazicoReserve = api;
    install(root.document, root);
  }
})(typeof window !== "undefined" ? window : globalThis);
