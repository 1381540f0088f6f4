// The door panel: renders the server's translated room view, keeps it live over server-sent
// events (polling while the stream is down), and sends the panel's actions.
"use strict";
const body = document.body;
const ROOM = body.dataset.room, LANG = body.dataset.lang;
const Q = "?lang=" + encodeURIComponent(LANG);
const $ = id => document.getElementById(id);
let view = JSON.parse($("view-data").textContent);
let busy = false, poller = null, source = null, resultTimer = null, modalTimer = null;

function text(id, s) { const e = $(id); if (e.textContent !== (s || "")) e.textContent = s || ""; }
function show(id, on) { $(id).hidden = !on; }

function meeting(prefix, m) {
  text(prefix + "-subject", m ? m.subject : "");
  text(prefix + "-time", m ? m.time : "");
  text(prefix + "-organizer", m ? m.organizer : "");
}

function render(floor) {
  const r = floor.rooms[0];
  if (!r) return;
  view = floor;
  $("panel").className = "state-" + r.state;
  text("room-name", r.name); text("seats", r.seats);
  text("clock", floor.clock); text("date", floor.date);
  text("state", r.label); text("headline", r.headline);
  show("current", !!r.current);
  meeting("current", r.current);
  text("current-note", r.current && r.current.note);
  meeting("next", r.next);
  document.querySelectorAll("#next .subject, #next .meta").forEach(e => e.hidden = !r.next);
  text("next-none", r.next ? "" : r.nothing_next);
  show("checkin", r.can_check_in);
  show("walkin", r.walk_in.length > 0);
  r.walk_in.forEach(c => { const b = $("walkin-" + c.minutes); if (b) b.disabled = !c.enabled || busy; });
  show("extend", r.extend.length > 0);
  r.extend.forEach(c => { const b = $("extend-" + c.minutes); if (b) b.disabled = !c.enabled || busy; });
  show("end", r.can_end);
  $("checkin").disabled = busy; $("end").disabled = busy;
}

function connection(up) {
  const c = $("conn");
  c.textContent = up ? "" : body.dataset.unreachable;
  c.classList.toggle("down", !up);
}

function startPolling() {
  if (poller) return;
  poller = setInterval(async () => {
    try {
      const r = await fetch("/panel/" + encodeURIComponent(ROOM) + "/state" + Q, { cache: "no-store" });
      if (r.ok) { render(await r.json()); connection(true); }
    } catch (e) { connection(false); }
    if (!source || source.readyState === EventSource.CLOSED) connect();
  }, 5000);
}
function stopPolling() { clearInterval(poller); poller = null; }

function connect() {
  if (!window.EventSource) { startPolling(); return; }
  if (source) source.close();
  source = new EventSource("/panel/" + encodeURIComponent(ROOM) + "/events" + Q);
  source.addEventListener("view", e => { render(JSON.parse(e.data)); connection(true); stopPolling(); });
  // The browser retries a dropped stream by itself; a refused one (CLOSED) is retried by the
  // poller. Either way the panel polls until the stream is back.
  source.onerror = () => { connection(false); startPolling(); };
}

function result(ok, message, detail) {
  const e = $("result");
  e.className = "result" + (ok ? "" : " refused");
  e.textContent = message;
  if (detail) { const d = document.createElement("span"); d.className = "detail"; d.textContent = detail; e.appendChild(d); }
  e.hidden = false;
  clearTimeout(resultTimer);
  resultTimer = setTimeout(() => { e.hidden = true; }, ok ? 6000 : 10000);
}

async function act(what, payload) {
  if (busy) return;
  busy = true; render(view);
  result(true, body.dataset.working);
  let answer;
  try {
    const r = await fetch("/panel/" + encodeURIComponent(ROOM) + "/" + what + Q, {
      method: "POST", headers: { "content-type": "application/json", "x-roomgate-panel": "1" }, body: JSON.stringify(payload || {}),
    });
    const a = await r.json().catch(() => ({ ok: false, message: r.statusText }));
    answer = [!!a.ok, a.message || a.error, a.detail];
    // The room as it is after the action, before the answer shows (the stream follows too).
    const s = await fetch("/panel/" + encodeURIComponent(ROOM) + "/state" + Q, { cache: "no-store" });
    if (s.ok) view = await s.json();
  } catch (e) {
    answer = answer || [false, body.dataset.unreachable];
  }
  busy = false;
  render(view);
  result(...answer);
}

// Modals close by themselves when nobody finishes them.
function openModal(id) { $(id).hidden = false; clearTimeout(modalTimer); modalTimer = setTimeout(closeModals, 30000); }
function closeModals() { $("pin").hidden = true; $("confirm").hidden = true; pin = ""; digits(); }

let pin = "";
function digits() { $("pin-digits").textContent = "•".repeat(pin.length); }
document.querySelectorAll("#pin [data-key]").forEach(b => b.addEventListener("click", () => {
  if (pin.length < 8) { pin += b.dataset.key; digits(); }
  openModal("pin");
}));
$("pin-clear").addEventListener("click", () => { pin = ""; digits(); });
$("pin-cancel").addEventListener("click", closeModals);
$("pin-ok").addEventListener("click", () => { const p = pin; closeModals(); act("checkin", { pin: p }); });

$("checkin").addEventListener("click", () => {
  const r = view.rooms[0];
  if (r && r.pin) { pin = ""; digits(); openModal("pin"); } else act("checkin");
});
document.querySelectorAll("#walkin button").forEach(b =>
  b.addEventListener("click", () => act("walkin", { minutes: Number(b.dataset.minutes) })));
document.querySelectorAll("#extend button").forEach(b =>
  b.addEventListener("click", () => act("extend", { minutes: Number(b.dataset.minutes) })));
$("end").addEventListener("click", () => openModal("confirm"));
$("confirm-cancel").addEventListener("click", closeModals);
$("confirm-ok").addEventListener("click", () => { closeModals(); act("end"); });

render(view);
connect();
