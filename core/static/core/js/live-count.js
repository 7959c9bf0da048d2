// Counts, while a form is edited, who it would reach: the form is posted
// (unsaved) to the URL of the element marked data-live-count-url, which
// answers {"html": ...} or {"errors": [...]}.
(function () {
  "use strict";
  function start() {
    var target = document.querySelector("[data-live-count-url]");
    if (!target) { return; }
    var form = target.closest("form") || document.querySelector("#content-main form");
    if (!form) { return; }
    var timer = null;
    var token = form.querySelector("input[name=csrfmiddlewaretoken]");
    function refresh() {
      var data = new FormData(form);
      fetch(target.getAttribute("data-live-count-url"), {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": token ? token.value : "" }
      }).then(function (response) { return response.json(); }).then(function (answer) {
        if (answer.errors) {
          target.textContent = answer.errors.join(" ");
          target.classList.add("text-danger");
        } else {
          target.innerHTML = answer.html;
          target.classList.remove("text-danger");
        }
      }).catch(function () { /* the count is a help, not a step */ });
    }
    function later() {
      clearTimeout(timer);
      timer = setTimeout(refresh, 400);
    }
    form.addEventListener("change", later);
    form.addEventListener("input", later);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
