// Sort a table by the column whose heading is clicked (numbers by their
// data-v value), and open every cell before printing so that a printed
// report has everything in it.
(function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.tabIndex = 0;
      th.title = "sort";
      var sort = function () {
        var body = table.tBodies[0];
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var num = th.dataset.type === "num";
        var key = function (tr) {
          var td = tr.children[col];
          if (!td) return "";
          var v = td.dataset.v !== undefined ? td.dataset.v : td.textContent;
          return num ? (parseFloat(v) || 0) : v.trim();
        };
        Array.from(body.rows).sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = num ? x - y : String(x).localeCompare(String(y));
          return asc ? c : -c;
        }).forEach(function (tr) { body.appendChild(tr); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
    });
  });
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
