// A "copy" button next to each value a user must paste elsewhere (DNS
// records): it copies the value of the element its data-copy names.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  event.preventDefault();
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.value !== undefined ? source.value : source.textContent;
  var done = function () {
    var label = button.textContent;
    button.textContent = button.getAttribute("data-copied") || "✓";
    setTimeout(function () { button.textContent = label; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    source.select && source.select();
    document.execCommand("copy");
    done();
  }
});
