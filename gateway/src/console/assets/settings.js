// roomgate console, settings and site-file pages: files read into text areas, forms checked
// first and applied second (site file, CSV point lists), and the backup restore upload.
// Needs console.js (window.rg). No framework.
"use strict";
(function () {
  // <input type="file" data-fill="ID">: the chosen file's text goes into the text area ID.
  document.addEventListener("change", (ev) => {
    const input = ev.target;
    if (!(input instanceof HTMLInputElement) || !input.dataset.fill) return;
    const file = input.files && input.files[0];
    const target = document.getElementById(input.dataset.fill);
    if (!file || !target) return;
    const reader = new FileReader();
    reader.onload = () => {
      target.value = String(reader.result);
      target.dispatchEvent(new Event("input", { bubbles: true }));
    };
    reader.readAsText(file);
  });

  function line(parent, text, cls) {
    const el = document.createElement("div");
    el.textContent = text;
    if (cls) el.className = cls;
    parent.appendChild(el);
  }

  function heading(parent, text) {
    const el = document.createElement("strong");
    el.textContent = text;
    parent.appendChild(el);
  }

  // What a check or an apply answered, in the form's [data-out] element.
  function render(form, step, r) {
    const out = form.querySelector("[data-out]");
    if (!out) return;
    out.textContent = "";
    out.classList.toggle("err", !r.ok);
    const d = r.data || {};
    if (!r.ok) {
      if (d.error) line(out, d.error);
      (d.errors || []).forEach((e) => line(out, e.message));
      if (!d.error && !(d.errors || []).length) line(out, "HTTP " + r.status);
      return;
    }
    if (d.message) line(out, d.message, step === "apply" ? "ok" : "");
    const t = form.dataset;
    if (d.diff && d.diff.length) {
      heading(out, t.diffTitle || "Changes");
      d.diff.forEach((l) => line(out, l, / added$/.test(l) ? "diff-add" : / removed$/.test(l) ? "diff-del" : ""));
    }
    if (d.plan && d.plan.length) {
      heading(out, t.planTitle || "Reload");
      d.plan.forEach((l) => line(out, l));
    }
    if (d.pending_restart && d.pending_restart.length) {
      heading(out, t.restartTitle || "At the next restart");
      d.pending_restart.forEach((l) => line(out, l));
    }
    if (d.warning) line(out, d.warning, "err");
    if (d.file) line(out, d.file, "muted");
  }

  // <form data-twostep> with <button type="button" data-step="check|apply" data-url="...">:
  // apply is offered only after a check of the same text succeeded.
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest && ev.target.closest("button[data-step]");
    if (!b || !b.form) return;
    ev.preventDefault();
    const form = b.form;
    const apply = form.querySelector('button[data-step="apply"]');
    const body = new URLSearchParams(new FormData(form)).toString();
    b.disabled = true;
    let r;
    try {
      r = await window.rg.send("POST", b.dataset.url, body, "application/x-www-form-urlencoded");
    } catch (e) {
      r = { ok: false, status: 0, data: { error: String(e) } };
    }
    b.disabled = false;
    render(form, b.dataset.step, r);
    if (apply) {
      const checked = b.dataset.step === "check" && r.ok && !(r.data && r.data.blocked);
      apply.disabled = !checked;
      form.dataset.checked = checked ? body : "";
    }
  });

  // Any edit after a check withdraws the apply button until the next check.
  document.addEventListener("input", (ev) => {
    const form = ev.target && ev.target.form;
    if (!form || !form.hasAttribute("data-twostep")) return;
    const apply = form.querySelector('button[data-step="apply"]');
    if (apply) apply.disabled = true;
  });
  document.addEventListener("change", (ev) => {
    const form = ev.target && ev.target.form;
    if (!form || !form.hasAttribute("data-twostep") || ev.target.type === "file") return;
    const apply = form.querySelector('button[data-step="apply"]');
    if (apply) apply.disabled = true;
  });

  // The restore: <input type="file" id="restore-file">, buttons [data-restore="verify|stage"],
  // the answer in #restore-result. The archive is sent as it is, with the session's CSRF token.
  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest && ev.target.closest("button[data-restore]");
    if (!b) return;
    ev.preventDefault();
    const input = document.getElementById("restore-file");
    const out = document.getElementById("restore-result");
    const stage = document.querySelector('button[data-restore="stage"]');
    const file = input && input.files && input.files[0];
    if (!file || !out) return;
    const verify = b.dataset.restore === "verify";
    out.textContent = b.dataset.working || "…";
    out.classList.remove("err");
    b.disabled = true;
    let r;
    try {
      const body = await file.arrayBuffer();
      r = await window.rg.send("POST", verify ? "/api/restore?verify_only=1" : "/api/restore", body, "application/gzip");
    } catch (e) {
      r = { ok: false, status: 0, data: { error: String(e) } };
    }
    b.disabled = false;
    out.textContent = "";
    out.classList.toggle("err", !r.ok);
    const d = r.data || {};
    if (!r.ok) {
      line(out, d.error || "HTTP " + r.status);
      if (stage) stage.disabled = true;
      return;
    }
    const m = d.manifest || {};
    line(out, (b.dataset.done || "") + " " + (m.site || ""), "ok");
    line(out, "created " + (m.created_at || "?") + ", gateway " + (m.gateway_version || "?"));
    if (m.records) line(out, "records: " + JSON.stringify(m.records));
    (m.files || []).forEach((f) => line(out, f.name + " (" + f.size + " bytes)", "muted"));
    (m.not_included || []).forEach((n) => line(out, n.what + ": " + n.why, "muted"));
    if (d.next) line(out, d.next, "ok");
    if (stage) stage.disabled = !verify;
  });
  document.addEventListener("change", (ev) => {
    if (ev.target && ev.target.id === "restore-file") {
      const stage = document.querySelector('button[data-restore="stage"]');
      if (stage) stage.disabled = true;
    }
  });
})();
