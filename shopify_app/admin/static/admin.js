// The admin pages' behaviour, plain ES2017 with no build step. App Bridge (loaded from
// Shopify's CDN) provides `shopify.idToken()`: every JSON call and action carries that session
// token as a bearer header (never a cookie), and in-app links carry a fresh one as `id_token`.
// In ADMIN_DEV_MODE there is no App Bridge and the server asks for no token.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("admin-config").textContent);

  function sessionToken() {
    if (window.shopify && typeof window.shopify.idToken === "function") {
      return window.shopify.idToken();
    }
    return Promise.resolve(null);
  }

  function call(path, options) {
    options = options || {};
    return sessionToken().then(function (token) {
      var headers = { Accept: "application/json" };
      if (token) headers.Authorization = "Bearer " + token;
      if (options.body !== undefined) headers["Content-Type"] = "application/json";
      var url = new URL(path, location.href);
      if (config.locale) url.searchParams.set("locale", config.locale);
      return fetch(url.toString(), {
        method: options.method || "GET",
        headers: headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        credentials: "omit",
      }).then(function (response) {
        return response.json().then(function (body) {
          return { status: response.status, body: body };
        });
      });
    });
  }

  function apply(html) {
    Object.keys(html || {}).forEach(function (name) {
      document.querySelectorAll('[data-live="' + name + '"]').forEach(function (node) {
        node.innerHTML = html[name];
      });
    });
    tick();
  }

  var liveUrl = config.live;
  var refreshing = false;
  function refresh() {
    var url = liveUrl;
    if (!url) {
      var node = document.querySelector("[data-refresh]");
      url = node && node.dataset.refresh;
    }
    if (!url || refreshing) return Promise.resolve();
    refreshing = true;
    return call(url)
      .then(function (answer) {
        if (answer.status === 200) {
          apply(answer.body.html);
          document.body.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () { refreshing = false; });
  }
  if (liveUrl) setInterval(refresh, config.refreshMs || 2000);

  // Hold timers count down between refreshes.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (node) {
      var left = Math.max(0, Math.round((Date.parse(node.dataset.expires) - now) / 1000));
      node.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    });
  }
  setInterval(tick, 1000);

  function show(message, failed) {
    var box = document.getElementById("action-result");
    if (!box) return;
    box.hidden = false;
    box.textContent = message;
    box.className = "result" + (failed ? " failed" : "");
    if (window.shopify && window.shopify.toast) window.shopify.toast.show(message, { isError: !!failed });
  }

  function describe(answer) {
    var body = answer.body || {};
    if (answer.status >= 400) return (body.error || "error") + ": " + (body.message || "");
    var level = body.level;
    var parts = [body.status || "ok"];
    if (body.sku) parts.push(body.sku);
    if (level) parts.push("on_hand " + level.on_hand + ", available " + level.available);
    if (body.job) parts.push("job #" + body.job.id + " " + body.job.status);
    return parts.join(" · ");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (button) {
      event.preventDefault();
      if (button.hasAttribute("disabled") || button.dataset.busy) return;
      var body = {};
      if (button.dataset.bodyFrom) {
        body[button.dataset.bodyKey] = document.querySelector(button.dataset.bodyFrom).value;
      }
      button.dataset.busy = "1";
      call(button.dataset.action, { method: "POST", body: body })
        .then(function (answer) {
          show(describe(answer), answer.status >= 400);
          return refresh();
        })
        .catch(function (error) { show(String(error), true); })
        .then(function () { delete button.dataset.busy; });
      return;
    }
    var link = event.target.closest("a[data-nav]");
    if (link && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      sessionToken().then(function (token) {
        var url = new URL(link.getAttribute("href"), location.href);
        if (token) url.searchParams.set("id_token", token);
        if (config.locale) url.searchParams.set("locale", config.locale);
        location.assign(url.toString());
      });
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("[data-open-sku]");
    if (!form) return;
    event.preventDefault();
    var sku = form.querySelector("input[name=sku]").value.trim();
    if (!sku) return;
    var link = document.createElement("a");
    link.setAttribute("data-nav", "");
    link.setAttribute("href", "/admin/skus/" + encodeURIComponent(sku));
    document.body.appendChild(link);
    link.click();
  });

  tick();
})();
