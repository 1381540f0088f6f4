// roomgate console, scenes page: add and remove step rows in a scene's form. A new row is
// the form's <template> with its row number filled in; a removed row is simply not posted.
"use strict";
(function () {
  document.addEventListener("click", (ev) => {
    const add = ev.target.closest && ev.target.closest("[data-add-row]");
    if (add) {
      ev.preventDefault();
      const form = add.closest("form");
      const tpl = form && form.querySelector("template.step-template");
      const rows = form && form.querySelector(".steps");
      if (!tpl || !rows) return;
      const n = Number(rows.dataset.next || rows.children.length);
      rows.dataset.next = String(n + 1);
      rows.insertAdjacentHTML("beforeend", tpl.innerHTML.split("__N__").join(String(n)));
      return;
    }
    const remove = ev.target.closest && ev.target.closest("[data-remove-row]");
    if (remove) {
      ev.preventDefault();
      const row = remove.closest(".step-row");
      if (row) row.remove();
    }
  });
})();
