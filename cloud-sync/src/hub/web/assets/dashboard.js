// The hub's admin dashboard: refreshes a page's live part and submits the statistics selector.
// Embedded in the binary (dashboard.rs); the pages work without it, only less live.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const state = document.getElementById("live-state");
  if (live) {
    const every = (parseInt(live.dataset.refresh, 10) || 5) * 1000;
    const show = (text, bad) => {
      if (state) { state.textContent = text; state.className = bad ? "live-state bad" : "live-state"; }
    };
    const tick = async () => {
      try {
        const url = new URL(window.location.href);
        url.searchParams.set("part", "live");
        const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (r.status === 401) { window.location.reload(); return; }
        if (!r.ok) throw new Error("HTTP " + r.status);
        live.innerHTML = await r.text();
        show("live · " + new Date().toLocaleTimeString(), false);
      } catch (e) {
        show("hub unreachable, retrying", true);
      }
      window.setTimeout(tick, every);
    };
    window.setTimeout(tick, every);
  }
  for (const el of document.querySelectorAll("select[data-autosubmit]")) {
    el.addEventListener("change", () => {
      const form = el.form;
      if (el.name === "site") {
        for (const n of ["floor", "room"]) { if (form.elements[n]) form.elements[n].value = ""; }
      }
      if (el.name === "floor" && form.elements.room) form.elements.room.value = "";
      form.submit();
    });
  }
})();
