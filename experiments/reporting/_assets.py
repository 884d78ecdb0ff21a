"""Inline CSS and JavaScript of the HTML report (no external assets, no CDN)."""

from __future__ import annotations

import base64
import hashlib

__all__ = ["CSS", "JS", "csp"]

CSS = """
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#d9dce1; --bg:#ffffff; --soft:#f4f6f8; --accent:#ff2d55; --link:#0b57d0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:var(--fg); background:var(--bg); }
header { padding:16px 24px 10px; border-bottom:1px solid var(--line); background:var(--soft); }
header h1 { margin:0 0 4px; font-size:22px; }
header .sub { color:var(--muted); font-size:13px; word-break:break-all; }
nav { display:flex; flex-wrap:wrap; gap:14px; padding:8px 24px; border-bottom:1px solid var(--line); position:sticky; top:0; background:var(--bg); z-index:5; }
nav a { color:var(--link); text-decoration:none; font-weight:600; }
main { padding:8px 24px 40px; max-width:1500px; }
section { scroll-margin-top:44px; }
h2 { margin:28px 0 10px; font-size:18px; border-bottom:2px solid var(--line); padding-bottom:4px; }
a { color:var(--link); }
.cards { display:flex; flex-wrap:wrap; gap:12px; }
.card { background:var(--soft); border:1px solid var(--line); border-radius:8px; padding:10px 14px; min-width:150px; }
.card .v { font-size:22px; font-weight:700; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.note { background:#fff7e0; border:1px solid #f0d58c; border-radius:6px; padding:8px 12px; margin:8px 0; }
.bad { color:#b3261e; font-weight:600; }
.tablewrap { overflow:auto; max-height:75vh; border:1px solid var(--line); border-radius:6px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:5px 9px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.wrap { white-space:normal; word-break:break-word; min-width:220px; max-width:520px; }
thead th { position:sticky; top:0; background:#eef1f5; z-index:1; }
table.sortable thead th { cursor:pointer; user-select:none; }
table.sortable thead th::after { content:" \\2195"; color:#9aa0a6; font-weight:400; }
table.sortable thead th[aria-sort=ascending]::after { content:" \\25B2"; color:var(--fg); }
table.sortable thead th[aria-sort=descending]::after { content:" \\25BC"; color:var(--fg); }
tbody tr:nth-child(even) { background:#fafbfc; }
tbody tr:hover { background:#eef4ff; }
.filters { display:flex; flex-wrap:wrap; gap:10px; align-items:center; margin:6px 0 8px; }
.filters input, .filters select { font:inherit; padding:4px 8px; border:1px solid var(--line); border-radius:4px; }
.filters .count { color:var(--muted); }
.gallery { display:grid; grid-template-columns:repeat(auto-fill,minmax(330px,1fr)); gap:14px; }
.gallery figure { margin:0; border:1px solid var(--line); border-radius:8px; padding:8px; background:var(--bg); }
.gallery img { width:100%; height:auto; display:block; image-rendering:auto; }
.gallery figcaption { font-size:12px; color:var(--muted); margin-top:6px; }
.gallery figcaption b { color:var(--fg); }
.plots img, .heatmap img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
pre { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px 12px; overflow:auto; max-height:60vh; font-size:12px; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:0; }
dl.facts dt { color:var(--muted); }
dl.facts dd { margin:0; word-break:break-word; }
"""

JS = """
(function () {
  "use strict";
  function key(row, i, num) {
    var c = row.cells[i];
    if (!c) { return num ? -Infinity : ""; }
    var v = c.getAttribute("data-v");
    if (v === null) { v = c.textContent.trim(); }
    if (num) { var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  function sortBy(table, i, th) {
    var num = th.getAttribute("data-type") === "num";
    var asc = th.getAttribute("aria-sort") !== "ascending";
    var heads = table.tHead.rows[0].cells;
    for (var h = 0; h < heads.length; h++) { heads[h].removeAttribute("aria-sort"); }
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = asc ? 1 : -1;
    rows.sort(function (a, b) {
      var x = key(a, i, num), y = key(b, i, num);
      return x < y ? -dir : (x > y ? dir : 0);
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r); });
    body.appendChild(frag);
  }
  function applyFilters(table) {
    var id = table.id;
    var text = document.querySelector('input[data-table="' + id + '"]');
    var q = text ? text.value.trim().toLowerCase() : "";
    var selects = document.querySelectorAll('select[data-table="' + id + '"]');
    var rows = table.tBodies[0].rows, shown = 0;
    for (var r = 0; r < rows.length; r++) {
      var row = rows[r], ok = !q || row.textContent.toLowerCase().indexOf(q) !== -1;
      for (var s = 0; ok && s < selects.length; s++) {
        var want = selects[s].value, col = parseInt(selects[s].getAttribute("data-col"), 10);
        if (want && (!row.cells[col] || row.cells[col].textContent.trim() !== want)) { ok = false; }
      }
      row.hidden = !ok;
      if (ok) { shown++; }
    }
    var count = document.getElementById(id + "-count");
    if (count) { count.textContent = shown + " of " + rows.length + " rows"; }
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () { sortBy(table, i, th); });
    });
    if (table.id) {
      var ctrls = document.querySelectorAll('[data-table="' + table.id + '"]');
      Array.prototype.forEach.call(ctrls, function (el) {
        el.addEventListener("input", function () { applyFilters(table); });
        el.addEventListener("change", function () { applyFilters(table); });
      });
      applyFilters(table);
    }
  });
})();
"""


def csp() -> str:
    """Content-Security-Policy: no network, only this page's inline script (by hash) and local images."""
    digest = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
