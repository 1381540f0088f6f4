// The lobby display: every room of the floor on one screen, live over server-sent events
// (polling while the stream is down), laid out so all rooms fit without scrolling.
"use strict";
const body = document.body;
const Q = "?lang=" + encodeURIComponent(body.dataset.lang);
const $ = id => document.getElementById(id);
let view = JSON.parse($("view-data").textContent), poller = null, source = null;

function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }

function line(key, m) {
  const l = el("div", "line");
  l.appendChild(el("span", "k", key));
  const v = el("span", "v");
  v.appendChild(el("span", "t", m.time));
  v.appendChild(document.createTextNode(m.subject));
  l.appendChild(v);
  return l;
}

function card(r) {
  const c = el("section", "card state-" + r.state);
  c.dataset.room = r.id; c.dataset.state = r.state;
  const h = el("div", "head");
  h.appendChild(el("span", "name", r.name));
  h.appendChild(el("span", "seats", r.seats));
  c.appendChild(h);
  c.appendChild(el("span", "label", r.label));
  c.appendChild(el("div", "headline", r.headline));
  const lines = el("div", "lines");
  if (r.current) lines.appendChild(line(body.dataset.now, r.current));
  if (r.next) lines.appendChild(line(body.dataset.next, r.next));
  c.appendChild(lines);
  return c;
}

// Picks the column count that gives the largest cards for this screen and room count.
function layout() {
  const grid = $("rooms"), n = Math.max(1, view.rooms.length);
  const w = grid.clientWidth - 64, h = grid.clientHeight;
  let best = { cols: 1, size: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const cw = (w - 16 * (cols - 1)) / cols, ch = (h - 16 * (rows - 1)) / rows;
    const size = Math.min(cw / 1.7, ch);
    if (size > best.size) best = { cols, size, ch };
  }
  grid.style.gridTemplateColumns = "repeat(" + best.cols + ", 1fr)";
  grid.style.gridAutoRows = Math.max(120, best.ch) + "px";
  grid.style.setProperty("--fs", Math.max(13, Math.min(30, best.size / 11)) + "px");
  grid.style.overflowY = best.ch < 120 ? "auto" : "hidden";
}

function render(floor) {
  view = floor;
  $("clock").textContent = floor.clock; $("date").textContent = floor.date;
  $("summary").textContent = floor.summary; $("site").textContent = floor.site;
  $("rooms").replaceChildren(...floor.rooms.map(card));
  layout();
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
      const r = await fetch("/display/state" + Q, { cache: "no-store" });
      if (r.ok) { render(await r.json()); connection(true); }
    } catch (e) { connection(false); }
    if (!source || source.readyState === EventSource.CLOSED) connect();
  }, 5000);
}

function connect() {
  if (!window.EventSource) { startPolling(); return; }
  if (source) source.close();
  source = new EventSource("/display/events" + Q);
  source.addEventListener("view", e => { render(JSON.parse(e.data)); connection(true); clearInterval(poller); poller = null; });
  source.onerror = () => { connection(false); startPolling(); };
}

window.addEventListener("resize", layout);
render(view);
connect();
