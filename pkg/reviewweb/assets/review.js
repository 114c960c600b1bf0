// Keyboard-first review: j/k move, o/Enter open, f/l/u label, c clusters,
// q queue. Keys typed into a text field are left alone. Every action is a
// plain link or form the page would offer without this script.
(function () {
  "use strict";
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
  }
  var page = document.body.getAttribute("data-page");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr"));
  var sel = 0;
  function select(i) {
    if (!rows.length) return;
    sel = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, k) { r.classList.toggle("sel", k === sel); });
    rows[sel].scrollIntoView({ block: "nearest" });
  }
  function go(href) { if (href) window.location.href = href; }
  var labels = { f: "fraud", l: "legitimate", u: "unsure" };
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || typing(e)) return;
    var k = e.key;
    if (k === "q") return go("/queue");
    if (k === "c") return go("/clusters");
    if (page === "queue") {
      if (k === "j" || k === "ArrowDown") { select(sel + 1); e.preventDefault(); }
      else if (k === "k" || k === "ArrowUp") { select(sel - 1); e.preventDefault(); }
      else if ((k === "o" || k === "Enter") && rows.length) go(rows[sel].getAttribute("data-href"));
      else if (labels[k] && rows.length) {
        var b = rows[sel].querySelector('button[value="' + labels[k] + '"]');
        if (b) b.click();
      }
    } else if (page === "case") {
      if (k === "j" || k === "n") go(document.body.getAttribute("data-next"));
      else if (k === "k" || k === "p") go(document.body.getAttribute("data-prev"));
      else if (labels[k]) {
        var btn = document.getElementById("label-" + labels[k]);
        if (btn) btn.click();
      }
    }
  });
  select(0);
})();
