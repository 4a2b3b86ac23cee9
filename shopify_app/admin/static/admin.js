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

  // Reservations and 409s per minute: each poll brings the global totals (every web process's
  // counters summed), the page keeps them, and a minute's rate is the difference at its ends.
  var MINUTES = 15;
  var samples = [];
  function totalsAt(moment) {
    var found = null;
    for (var i = 0; i < samples.length && samples[i][0] <= moment; i++) found = samples[i];
    return found;
  }
  function totalsFrom(start, end) {
    var found = totalsAt(start);
    if (found) return found;
    for (var i = 0; i < samples.length; i++) {
      if (samples[i][0] >= start && samples[i][0] <= end) return samples[i];
    }
    return null;
  }
  function perMinute(now) {
    var current = now - (now % 60);
    var out = [];
    for (var k = MINUTES - 1; k >= 0; k--) {
      var start = current - 60 * k;
      var end = Math.min(start + 60, now);
      var a = totalsFrom(start, end);
      var b = totalsAt(end);
      out.push(a && b ? [Math.max(0, b[1] - a[1]), Math.max(0, b[2] - a[2])] : null);
    }
    return out;
  }
  function drawRates(totals) {
    if (!totals) return;
    var now = Date.now() / 1000;
    samples.push([now, totals.granted, totals.refused]);
    while (samples.length && now - samples[0][0] > (MINUTES + 2) * 60) samples.shift();
    var rates = perMinute(now);
    var top = 1;
    rates.forEach(function (r) { if (r) top = Math.max(top, r[0], r[1]); });
    var svg = document.querySelector("[data-chart]");
    if (!svg) return;
    var width = 24 * MINUTES;
    var parts = ['<line x1="0" y1="100.5" x2="' + width + '" y2="100.5" class="axis"/>'];
    rates.forEach(function (r, i) {
      if (!r) {
        parts.push('<text x="' + (i * 24 + 7) + '" y="98" class="unknown">—</text>');
        return;
      }
      [[r[0], "ok", 2], [r[1], "refused", 12]].forEach(function (bar) {
        var h = (bar[0] * 90) / top;
        parts.push('<rect class="' + bar[1] + '" x="' + (i * 24 + bar[2]) + '" y="' + (100 - h) +
          '" width="9" height="' + h + '"><title>' + bar[0] + "</title></rect>");
      });
    });
    svg.setAttribute("viewBox", "0 0 " + width + " 110");
    svg.innerHTML = parts.join("");
    var last = rates[rates.length - 1];
    var shownOk = document.querySelector('[data-figure="reservations-minute"]');
    var shownRefused = document.querySelector('[data-figure="refusals-minute"]');
    if (shownOk) shownOk.textContent = last ? String(last[0]) : "—";
    if (shownRefused) shownRefused.textContent = last ? String(last[1]) : "—";
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
          drawRates(answer.body.data && answer.body.data.totals);
          document.body.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () { refreshing = false; });
  }
  if (liveUrl) {
    refresh();
    setInterval(refresh, config.refreshMs || 2000);
  }

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
