// The WATI sandbox's stand-in for the human-check widgets' client API, Cloudflare
// Turnstile's `window.turnstile` and hCaptcha's `window.hcaptcha`, as far as a login page
// uses them: render(container, {sitekey, callback, 'error-callback', 'expired-callback',
// action, cData}) answers a widget id; reset(id), remove(id), getResponse(id),
// execute(id); Turnstile's isExpired(id) and ready(fn). A widget is a button, "I am
// human": a click asks the sandbox for a token (POST solve, beside this script) and hands
// it to `callback` and to a hidden form field, as the real widgets do
// (cf-turnstile-response; h-captcha-response and g-recaptcha-response). When the token's
// life is over the widget calls `expired-callback` and can be clicked again; a refused
// solve calls `error-callback` with "sandbox-solve-failed" (the stub's own code).
// The script's query follows both providers: `onload=fn` calls window[fn]() once the API
// is ready; `render=explicit` leaves .cf-turnstile and .h-captcha elements alone (else
// they are rendered from their data- attributes).
(function () {
  "use strict";
  var here = document.currentScript;
  var src = new URL(here ? here.src : "/sandbox/captcha/api.js", location.href);
  var solveUrl = new URL("solve", src).href;
  var widgets = {};
  var count = 0;

  function find(container) {
    return typeof container === "string" ? document.querySelector(container) : container;
  }

  // A callback given as a function, or by the name of a global one (data- attributes).
  function named(value) {
    if (typeof value === "function") return value;
    if (typeof value === "string" && typeof window[value] === "function") return window[value];
    return null;
  }

  // A widget by id, by container, or (none given) the provider's first.
  function widgetOf(provider, id) {
    if (typeof id === "string" && widgets[id]) return widgets[id];
    var any = id === undefined || id === null;
    var container = any ? null : find(id);
    if (!any && !container) return null;
    for (var key in widgets) {
      var w = widgets[key];
      if (w.provider === provider && (any || w.container === container)) return w;
    }
    return null;
  }

  function setToken(w, token) {
    w.token = token;
    w.fields.forEach(function (field) { field.value = token || ""; });
  }

  function ready(w, label) {
    w.button.disabled = false;
    w.button.textContent = label || "I am human";
  }

  function solve(w) {
    if (w.busy || w.token) return;
    w.busy = true;
    w.button.disabled = true;
    w.button.textContent = "Checking\u2026";
    var o = w.options;
    fetch(solveUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ provider: w.provider, sitekey: o.sitekey, action: o.action, cdata: o.cData })
    }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok || typeof body.token !== "string") throw new Error(body.error || "HTTP " + r.status);
        return body;
      });
    }).then(function (body) {
      w.busy = false;
      if (!widgets[w.id]) return;
      setToken(w, body.token);
      w.expired = false;
      w.button.textContent = "Verified";
      w.expiry = setTimeout(function () { expire(w); }, body.expiresInSeconds * 1000);
      var callback = named(o.callback);
      if (callback) callback(body.token);
    }, function (error) {
      w.busy = false;
      if (!widgets[w.id]) return;
      ready(w, "I am human (try again)");
      var callback = named(o["error-callback"]);
      if (callback) callback("sandbox-solve-failed");
      else console.warn("captcha stub: " + error.message);
    });
  }

  function expire(w) {
    setToken(w, null);
    w.expired = true;
    ready(w);
    var callback = named(w.options["expired-callback"]);
    if (callback) callback();
  }

  function clear(w) {
    clearTimeout(w.expiry);
    setToken(w, null);
    w.expired = false;
    ready(w);
  }

  function api(provider, fieldNames) {
    return {
      render: function (container, options) {
        var el = find(container);
        if (!el) throw new Error(provider + ".render: no container " + container);
        var box = document.createElement("div");
        box.className = "sandbox-captcha";
        box.style.display = "inline-block";
        box.style.padding = "8px";
        box.style.border = "1px solid #999";
        var button = document.createElement("button");
        button.type = "button";
        box.appendChild(button);
        var fields = fieldNames.map(function (name) {
          var field = document.createElement("input");
          field.type = "hidden";
          field.name = name;
          box.appendChild(field);
          return field;
        });
        el.appendChild(box);
        var w = {
          id: "sandbox-captcha-" + ++count, provider: provider, container: el, box: box,
          button: button, fields: fields, options: options || {}, token: null
        };
        widgets[w.id] = w;
        ready(w);
        button.addEventListener("click", function () { solve(w); });
        return w.id;
      },
      reset: function (id) {
        var w = widgetOf(provider, id);
        if (w) clear(w);
      },
      remove: function (id) {
        var w = widgetOf(provider, id);
        if (!w) return;
        clearTimeout(w.expiry);
        w.box.remove();
        delete widgets[w.id];
      },
      getResponse: function (id) {
        var w = widgetOf(provider, id);
        return (w && w.token) || "";
      },
      execute: function (id) {
        var w = widgetOf(provider, id);
        if (w) solve(w);
      }
    };
  }

  var turnstile = api("turnstile", ["cf-turnstile-response"]);
  turnstile.isExpired = function (id) {
    var w = widgetOf("turnstile", id);
    return !!(w && w.expired);
  };
  turnstile.ready = function (callback) { setTimeout(callback, 0); };
  window.turnstile = turnstile;
  window.hcaptcha = api("hcaptcha", ["h-captcha-response", "g-recaptcha-response"]);

  function renderImplicitly() {
    [["turnstile", ".cf-turnstile"], ["hcaptcha", ".h-captcha"]].forEach(function (kind) {
      document.querySelectorAll(kind[1]).forEach(function (el) {
        if (el.querySelector(".sandbox-captcha")) return;
        var d = el.dataset;
        window[kind[0]].render(el, {
          sitekey: d.sitekey, action: d.action, cData: d.cdata, callback: d.callback,
          "error-callback": d.errorCallback, "expired-callback": d.expiredCallback
        });
      });
    });
  }

  function start() {
    if (src.searchParams.get("render") !== "explicit") renderImplicitly();
    var onload = named(src.searchParams.get("onload"));
    if (onload) onload();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
