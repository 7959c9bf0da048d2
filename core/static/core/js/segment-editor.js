// The segment editor: each row offers the operators that fit its field and
// the inputs its value needs (the server checks all of it anyway).
(function () {
  "use strict";
  function start() {
    var source = document.getElementById("segment-kind-ops");
    if (!source) { return; }
    var kindOps = JSON.parse(source.textContent);
    document.querySelectorAll(".segment-condition").forEach(function (row) {
      var field = row.querySelector(".segment-field");
      function fit() {
        var option = field.options[field.selectedIndex];
        var kind = option ? option.getAttribute("data-kind") : null;
        var allowed = kind ? kindOps[kind] : null;
        var op = row.querySelector(".segment-op");
        Array.prototype.forEach.call(op.options, function (choice) {
          choice.hidden = allowed !== null && allowed.indexOf(choice.value) < 0;
        });
        if (allowed && allowed.indexOf(op.value) < 0) { op.value = allowed[0]; }
        // style.display, not `hidden`: the admin's styles show every select.
        var event = kind === "event";
        row.querySelector(".segment-value").style.display = event ? "none" : "";
        row.querySelector(".segment-activity").style.display = event ? "" : "none";
        var value = row.querySelector(".segment-value");
        if (kind === "tag") {
          value.setAttribute("list", "segment-tags");
        } else if (document.getElementById("segment-choices-" + field.value)) {
          value.setAttribute("list", "segment-choices-" + field.value);
        } else {
          value.removeAttribute("list");
        }
      }
      field.addEventListener("change", fit);
      fit();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
