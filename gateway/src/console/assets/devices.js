// roomgate console, device pages: the device form shows the fields of the chosen protocol,
// and the live stream puts each device's state, counters and point values into the page.
"use strict";
(function () {
  // Fields of other protocols are hidden and disabled (a disabled field is not posted).
  function applyProtocol(form) {
    const select = form.querySelector('select[name="protocol"]');
    if (!select) return;
    form.querySelectorAll("fieldset[data-protocols]").forEach((set) => {
      const on = set.dataset.protocols.split(" ").includes(select.value);
      set.hidden = !on;
      set.disabled = !on;
    });
  }
  document.querySelectorAll("form[data-device-form]").forEach((form) => {
    applyProtocol(form);
    form.addEventListener("change", (ev) => {
      if (ev.target.name === "protocol") applyProtocol(form);
    });
  });

  function valueText(p) {
    if (p.value === null || p.value === undefined) return "—";
    let text = String(p.value);
    if (p.label) text += " (" + p.label + ")";
    if (p.unit) text += " " + p.unit;
    return text;
  }

  function fill(row, data, words) {
    row.querySelectorAll("[data-k]").forEach((cell) => {
      const k = cell.dataset.k;
      if (k === "condition" || k === "state") {
        const state = k === "condition" ? data.condition : data.state;
        cell.className = state;
        cell.textContent = words[state] || state;
      } else if (k === "open") {
        cell.textContent = words[data.open ? "yes" : "no"] || String(data.open);
      } else if (k in data) {
        cell.textContent = data[k] === null ? "" : String(data[k]);
      }
    });
  }

  function update(view) {
    const words = view.words || {};
    (view.devices || []).forEach((d) => {
      document.querySelectorAll('[data-device="' + CSS.escape(d.id) + '"]').forEach((row) => fill(row, d, words));
      (d.points || []).forEach((p) => {
        const cell = document.querySelector('[data-point="' + CSS.escape(d.id + "/" + p.id) + '"]');
        if (cell) cell.textContent = valueText(p);
      });
    });
    (view.buses || []).forEach((b) => {
      const table = document.querySelector('table[data-bus="' + CSS.escape(b.id) + '"]');
      if (table) fill(table, b, words);
      (b.units || []).forEach((u) => {
        const row = document.querySelector('[data-unit="' + CSS.escape(b.id + "/" + u.device) + '"]');
        if (row) fill(row, u, words);
      });
    });
  }

  const live = document.getElementById("live");
  if (live && window.rg) window.rg.live(live.dataset.live, update, live.dataset.poll);
})();
