// smtpshim settings: provider presets, confirmations and live activity.
// The page works without this file; it only saves typing and reloads.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var preset = document.getElementById("preset");
  var server = document.getElementById("server");
  var address = document.getElementById("address");
  var note = document.getElementById("preset-note");
  function showPreset() {
    var o = preset.options[preset.selectedIndex];
    if (o && o.dataset.server) { server.value = o.dataset.server; }
    note.textContent = (o && o.dataset.note) || "";
    // Providers with a sign-in page offer only their own button.
    var box = document.getElementById("signin-options");
    if (box) {
      var which = (o && o.dataset.oauth) || "", shown = false;
      box.querySelectorAll("button[data-oauth]").forEach(function (b) {
        b.hidden = which === "" || b.dataset.oauth !== which;
        shown = shown || !b.hidden;
      });
      box.hidden = !shown;
    }
  }
  if (preset && server) {
    preset.addEventListener("change", showPreset);
    showPreset();
    if (address) {
      address.addEventListener("change", function () {
        var dom = address.value.split("@").pop().toLowerCase();
        for (var i = 0; i < preset.options.length; i++) {
          var ds = (preset.options[i].dataset.domains || "").split(" ");
          if (dom && ds.indexOf(dom) >= 0) { preset.selectedIndex = i; showPreset(); return; }
        }
      });
    }
  }

  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.dataset.confirm)) { e.preventDefault(); }
    });
  });

  var list = document.getElementById("activity");
  if (list && window.EventSource) {
    var state = document.getElementById("live-state");
    var es = new EventSource("/events");
    es.onopen = function () { state.textContent = "Live: updates as mail goes through."; };
    es.onerror = function () { state.textContent = "Not live right now; reconnecting…"; };
    es.onmessage = function (m) {
      var ev = JSON.parse(m.data);
      var empty = list.querySelector(".empty");
      if (empty) { empty.remove(); }
      var li = document.createElement("li");
      li.className = "ev ev-" + ev.kind;
      var t = document.createElement("time"); t.textContent = ev.time;
      var s = document.createElement("span"); s.textContent = ev.text;
      li.append(t, " ", s);
      if (ev.error) { var e = document.createElement("samp"); e.textContent = ev.error; li.append(document.createElement("br"), e); }
      if (ev.hint) { var h = document.createElement("em"); h.textContent = ev.hint.charAt(0).toUpperCase() + ev.hint.slice(1); li.append(document.createElement("br"), h); }
      list.insertBefore(li, list.firstChild);
    };
  }
});
