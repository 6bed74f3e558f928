// pam-totp portal: small conveniences; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () {
      var el = document.getElementById(b.dataset.copy);
      if (!el || !navigator.clipboard) { return; }
      navigator.clipboard.writeText(el.textContent.replace(/\s+/g, "")).then(function () {
        var was = b.textContent;
        b.textContent = "Copied";
        setTimeout(function () { b.textContent = was; }, 1500);
      });
    });
  });

  // The live count of login nodes that applied the new token.
  var nodes = document.getElementById("nodes");
  if (nodes && nodes.dataset.id) {
    // Asked at once, then every 250 ms for the first 5 s (nodes apply a change within a
    // second), then every second.
    var polls = 0;
    var again = function () { polls++; setTimeout(poll, polls < 20 ? 250 : 1000); };
    var poll = function () {
      if (Number(nodes.dataset.active) >= Number(nodes.dataset.total) && Number(nodes.dataset.total) > 0) { return; }
      fetch("/portal/tokens/" + encodeURIComponent(nodes.dataset.id) + "/nodes", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (n) {
          if (n) {
            nodes.dataset.active = n.active;
            nodes.dataset.total = n.total;
            nodes.textContent = "active on " + n.active + " of " + n.total + " login nodes";
            if (n.active >= n.total && n.total > 0) { return; }
          }
          again();
        })
        .catch(again);
    };
    poll();
  }

  // Backup codes: print, and a confirmation before leaving them unsaved.
  var print = document.getElementById("print-backup");
  if (print) { print.addEventListener("click", function () { window.print(); }); }
  var codes = document.getElementById("backup-codes");
  if (codes) {
    var leaving = function (e) { e.preventDefault(); e.returnValue = ""; return ""; };
    window.addEventListener("beforeunload", leaving);
    var saved = document.getElementById("backup-saved");
    if (saved) { saved.addEventListener("submit", function () { window.removeEventListener("beforeunload", leaving); }); }
    var dl = document.getElementById("download-backup");
    if (dl) { dl.addEventListener("click", function () { window.removeEventListener("beforeunload", leaving); setTimeout(function () { window.addEventListener("beforeunload", leaving); }, 0); }); }
  }
});
