// Keyboard navigation of the review service (no inline script: the CSP allows this file only).
// "/" focuses the search; j/k or the arrow keys move through the change rows, Enter opens one;
// n/p go to the next/previous page; Escape on a change page goes back to the list.
(function () {
  "use strict";
  function typing(target) {
    var name = (target && target.tagName) || "";
    return name === "INPUT" || name === "TEXTAREA" || name === "SELECT" || (target && target.isContentEditable);
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#rows tr[data-run-id]")); }
  var current = -1;
  function select(index) {
    var all = rows();
    if (!all.length) { return; }
    index = Math.max(0, Math.min(all.length - 1, index));
    if (current >= 0 && all[current]) { all[current].classList.remove("selected"); all[current].removeAttribute("aria-selected"); }
    current = index;
    all[current].classList.add("selected");
    all[current].setAttribute("aria-selected", "true");
    all[current].focus();
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var link;
    if (event.key === "/") {
      var search = document.getElementById("f-search");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (event.key === "j" || event.key === "ArrowDown") {
      if (rows().length) { event.preventDefault(); select(current + 1); }
    } else if (event.key === "k" || event.key === "ArrowUp") {
      if (rows().length) { event.preventDefault(); select(current - 1); }
    } else if (event.key === "Enter" && current >= 0) {
      link = rows()[current].querySelector("a");
      if (link) { event.preventDefault(); link.click(); }
    } else if (event.key === "n" || event.key === "p") {
      link = document.getElementById(event.key === "n" ? "next" : "prev");
      if (link) { event.preventDefault(); link.click(); }
    } else if (event.key === "Escape") {
      link = document.getElementById("back");
      if (link) { event.preventDefault(); link.click(); }
    }
  });
  // the rows-per-page select submits its form
  var perPage = document.getElementById("per-page");
  if (perPage) { perPage.addEventListener("change", function () { perPage.form.submit(); }); }
  document.documentElement.setAttribute("data-ready", "true");
}());
