// Carnet's only script (CSP: script-src 'self'). Pages work without it; it
// adds the session expiry warning and confirmation prompts.
(function () {
  "use strict";
  function sessionWarning() {
    var box = document.getElementById("session-warning");
    // Seconds left when the page was made: the deadline is counted on the
    // browser's own clock, whatever its skew with the server's.
    var secs = parseInt(document.body.getAttribute("data-expires-in") || "0", 10);
    if (!box || !secs) { return; }
    var deadline = Date.now() + secs * 1000;
    var msg = box.querySelector("span");
    function tick() {
      var left = deadline - Date.now();
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
  // An element with data-autorefresh="30" (the security console's alerts)
  // reloads its page every 30 s, at most 20 times in a row (auto=N in the
  // URL: an unattended console does not keep its session alive forever),
  // and not while a form field is focused or a note is being written.
  function autoRefresh() {
    var el = document.querySelector("[data-autorefresh]");
    var secs = el ? parseInt(el.getAttribute("data-autorefresh"), 10) : 0;
    var url = new URL(window.location.href);
    var n = parseInt(url.searchParams.get("auto") || "0", 10);
    if (!(secs >= 5) || n >= 20) { return; }
    function tick() {
      var a = document.activeElement, busy = a && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName);
      document.querySelectorAll("textarea").forEach(function (t) { if (t.value) { busy = true; } });
      if (busy) { window.setTimeout(tick, secs * 1000); return; }
      url.searchParams.set("auto", String(n + 1));
      url.searchParams.delete("done");
      window.location.replace(url.toString());
    }
    window.setTimeout(tick, secs * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () { sessionWarning(); confirmations(); autoRefresh(); });
})();
