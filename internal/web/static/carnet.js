// Carnet's only script (CSP: script-src 'self'). Pages work without it; it
// adds the session expiry warning and confirmation prompts.
(function () {
  "use strict";
  function sessionWarning() {
    var box = document.getElementById("session-warning");
    var exp = parseInt(document.body.getAttribute("data-expires") || "0", 10);
    if (!box || !exp) { return; }
    var msg = box.querySelector("span");
    function tick() {
      var left = exp * 1000 - Date.now();
      if (left <= 0) {
        msg.textContent = msg.getAttribute("data-msg-ended");
        box.hidden = false;
        window.location.assign("/app/login?expired=1&next=" + encodeURIComponent(window.location.pathname + window.location.search));
        return;
      }
      if (left <= 3 * 60 * 1000) {
        msg.textContent = msg.getAttribute("data-msg-soon").replace("%d", String(Math.max(1, Math.ceil(left / 60000))));
        box.hidden = false;
      }
      window.setTimeout(tick, 15000);
    }
    tick();
  }
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { e.preventDefault(); }
      });
    });
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { sessionWarning(); confirmations(); });
})();
