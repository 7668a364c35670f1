// cloaca dashboard: refreshes pages of running work in place, and asks before destructive actions.
// A page opts in with <body data-refresh="ms">; each refresh fetches the page again and swaps its
// <main>, keeping open <details>. The fetched page says whether to keep refreshing.
(function () {
  "use strict";
  var body = document.body;

  function interval() {
    var ms = parseInt(body.getAttribute("data-refresh") || "0", 10);
    return isNaN(ms) ? 0 : ms;
  }

  function schedule() {
    var ms = interval();
    var live = document.getElementById("live");
    if (live) { live.textContent = ms > 0 ? "live" : ""; }
    if (ms > 0) { window.setTimeout(refresh, ms); }
  }

  function openDetails() {
    var ids = [];
    document.querySelectorAll("main details[open][id]").forEach(function (d) { ids.push(d.id); });
    return ids;
  }

  function refresh() {
    if (document.hidden) { schedule(); return; }
    var keepOpen = openDetails();
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var next = fresh.querySelector("main");
        var current = document.querySelector("main");
        if (next && current) {
          current.replaceWith(document.adoptNode(next));
          keepOpen.forEach(function (id) {
            var d = document.getElementById(id);
            if (d) { d.open = true; }
          });
        }
        body.setAttribute("data-refresh", fresh.body.getAttribute("data-refresh") || "0");
        document.title = fresh.title;
      })
      .catch(function () { /* the server is away for a moment: try again at the next tick */ })
      .then(schedule);
  }

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  schedule();
})();
