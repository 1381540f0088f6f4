// roomgate console, floor page: the room cards follow the gateway live. The server renders
// the cards (escaped) and sends them over server-sent events; this only swaps them in.
"use strict";
(function () {
  const grid = document.getElementById("floor-grid");
  const summary = document.getElementById("floor-summary");
  if (!grid || !window.rg || !grid.dataset.live) return;
  window.rg.live(grid.dataset.live, (d) => {
    if (typeof d.grid === "string") grid.innerHTML = d.grid;
    if (summary && typeof d.summary === "string") summary.innerHTML = d.summary;
  });
})();
