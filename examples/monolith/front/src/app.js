// Front-end of the monolith: shows when the page was rendered.
/* The bundle is built by the `front` service and collected by `collect-static`. */
document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("rendered");
  if (el) {
    el.textContent = "rendered " + new Date().toISOString();
  }
});
