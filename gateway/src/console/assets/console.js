// roomgate console: form submission with the session's CSRF token, field errors next to their
// fields, POST buttons, and a server-sent-events helper for live pages. No framework.
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf"]') || {}).content || "";

  async function send(method, url, body, type) {
    const headers = { "x-csrf-token": csrf(), "accept": "application/json" };
    if (type) headers["content-type"] = type;
    const r = await fetch(url, { method, headers, body, credentials: "same-origin" });
    let data = {};
    try { data = await r.json(); } catch (_) { data = {}; }
    return { status: r.status, ok: r.ok, data };
  }

  function clearErrors(form) {
    form.querySelectorAll(".err[data-for]").forEach((e) => { e.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
    const general = form.querySelector(".form-error");
    if (general) general.textContent = "";
  }

  function showErrors(form, data) {
    let shown = false;
    (data.errors || []).forEach((e) => {
      const slot = e.field && form.querySelector('.err[data-for="' + CSS.escape(e.field) + '"]');
      const input = e.field && form.querySelector('[name="' + CSS.escape(e.field) + '"]');
      if (input) input.classList.add("invalid");
      if (slot) { slot.textContent = e.message; shown = true; return; }
      append(form, e.message);
      shown = true;
    });
    if (!shown || data.error) append(form, data.error || "refused");
  }

  function append(form, text) {
    let general = form.querySelector(".form-error");
    if (!general) {
      general = document.createElement("p");
      general.className = "form-error err";
      form.appendChild(general);
    }
    general.textContent = (general.textContent ? general.textContent + " " : "") + text;
  }

  function done(form, data) {
    if (data.redirect) { location.assign(data.redirect); return; }
    if (data.reload) { location.reload(); return; }
    const out = form && (form.querySelector(".form-result") || document.getElementById(form.dataset.result || ""));
    if (out) out.textContent = data.message || JSON.stringify(data, null, 2);
  }

  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!(form instanceof HTMLFormElement) || form.hasAttribute("data-plain")) return;
    ev.preventDefault();
    clearErrors(form);
    const method = (form.getAttribute("method") || "post").toUpperCase();
    let body, type;
    if (form.enctype === "multipart/form-data") {
      body = new FormData(form);
    } else {
      body = new URLSearchParams(new FormData(form)).toString();
      type = "application/x-www-form-urlencoded";
    }
    const button = form.querySelector('button[type="submit"], button:not([type])');
    if (button) button.disabled = true;
    try {
      const r = await send(method, form.action, body, type);
      if (r.ok) done(form, r.data); else showErrors(form, r.data);
    } catch (e) {
      append(form, String(e));
    } finally {
      if (button) button.disabled = false;
    }
  });

  document.addEventListener("click", async (ev) => {
    const b = ev.target.closest && ev.target.closest("[data-post]");
    if (!b) return;
    ev.preventDefault();
    if (b.dataset.confirm && !confirm(b.dataset.confirm)) return;
    const out = document.getElementById(b.dataset.result || "") || null;
    const r = await send("POST", b.dataset.post, b.dataset.body || "", b.dataset.body ? "application/json" : undefined);
    if (r.ok && (r.data.redirect || r.data.reload)) { done(null, r.data); return; }
    const text = r.ok ? (r.data.message || r.data.result || "OK") : (r.data.error || ("HTTP " + r.status));
    if (out) { out.textContent = text; out.classList.toggle("err", !r.ok); }
    else if (!r.ok) alert(text);
  });

  // Live data: rg.live(url, onData) opens an EventSource and falls back to polling `poll`.
  window.rg = {
    send,
    live(url, onData, poll) {
      let source;
      const connect = () => {
        source = new EventSource(url);
        source.onmessage = (m) => { try { onData(JSON.parse(m.data)); } catch (_) {} };
        source.onerror = () => { source.close(); setTimeout(connect, 3000); };
      };
      if (window.EventSource) connect();
      else if (poll) setInterval(async () => {
        const r = await fetch(poll, { cache: "no-store" });
        if (r.ok) onData(await r.json());
      }, 5000);
    },
  };
})();
