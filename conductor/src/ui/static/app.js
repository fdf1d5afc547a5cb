// Ferrite dashboard: filters the fleet table, sends the verb buttons' API requests and
// refreshes the live region from its server-rendered fragment every 2 s. No library.
"use strict";
(function () {
  var live = document.getElementById("live");
  var msg = document.getElementById("msg");

  function say(text, bad) {
    msg.textContent = text;
    msg.className = bad ? "bad" : "";
  }

  function applyFilter() {
    var input = document.getElementById("filter");
    if (!input) return;
    var q = input.value.trim().toLowerCase();
    var rows = document.querySelectorAll("#fleet tbody tr");
    for (var i = 0; i < rows.length; i++) {
      var hit = !q || rows[i].getAttribute("data-search").indexOf(q) >= 0;
      rows[i].hidden = !hit;
    }
  }

  function refresh() {
    var url = live.getAttribute("data-live");
    var target = document.getElementById("fleet-live") || live;
    return fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        target.innerHTML = html;
        applyFilter();
      })
      .catch(function (e) {
        say("refresh failed: " + e.message, true);
      });
  }

  function send(path, body, what) {
    say(what + "…", false);
    return fetch(path, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-OpenStack-Ironic-API-Version": "1.68" },
      body: JSON.stringify(body),
    }).then(function (r) {
      if (r.ok) {
        say(what + ": accepted", false);
        return refresh();
      }
      return r.json().then(function (j) {
        var fault = j.error_message;
        try { fault = JSON.parse(j.error_message).faultstring; } catch (e) { /* plain text */ }
        say(what + ": " + fault, true);
      });
    }).catch(function (e) {
      say(what + ": " + e.message, true);
    });
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-node]");
    if (!b) return;
    var node = b.getAttribute("data-node");
    var verb = b.getAttribute("data-verb");
    var power = b.getAttribute("data-power");
    if (verb) {
      send("/v1/nodes/" + node + "/states/provision", { target: verb }, verb);
    } else if (power) {
      send("/v1/nodes/" + node + "/states/power", { target: power }, power);
    }
  });

  var input = document.getElementById("filter");
  if (input) input.addEventListener("input", applyFilter);
  setInterval(refresh, 2000);
})();
