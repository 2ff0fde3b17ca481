// cport game, seen from the browser: a spectator on one WebSocket. The
// server sends the world's geometry (JSON) once, then each tick one binary
// message of `Snapshot` packets (docs/GAME.md) and once a second a JSON
// line of counters. The page sends nothing. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const SNAPSHOT = 0x88;
const ENTRY = 14; // u32 id, u16 zone, i32 x, i32 y

const view = {
  world: null, // {tick_hz, zones_x, zones_y, zone_size, cell_size}
  tick: 0,
  players: new Map(), // id -> {zone, x, y}
  parts: [], // entries of the tick being received
  frames: 0, // whole snapshots drawn
  following: 0, // a player id, 0 for the whole world
  near: 0, // players in the followed player's area of interest
  stats: null,
  lastStats: null, // {at, stats} a second ago
  received: 0, // bytes this page received
  receivedAt: [performance.now(), 0],
  backoff: 500,
};
window.gameView = view; // read by scripts/browser-game.js

// The socket sits beside the page: /ws for `cport game --web`, /game/ws
// under `cport serve`.
function socketUrl() {
  const u = new URL("ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

function connect() {
  setStatus(false, "connecting…");
  const ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    view.backoff = 500;
    setStatus(true, "live");
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      view.received += ev.data.length;
      onText(JSON.parse(ev.data));
    } else {
      view.received += ev.data.byteLength;
      onSnapshot(new DataView(ev.data));
    }
  };
  ws.onclose = () => {
    setStatus(false, "reconnecting in " + Math.round(view.backoff / 1000) + " s");
    setTimeout(connect, view.backoff);
    view.backoff = Math.min(view.backoff * 2, 15000);
  };
}

function setStatus(on, text) {
  $("status").textContent = text;
  $("status").className = "status " + (on ? "on" : "off");
}

function onText(msg) {
  if (msg.world) {
    view.world = msg.world;
    resize();
  }
  if (msg.stats) {
    view.lastStats = view.stats ? { at: view.statsAt, stats: view.stats } : null;
    view.stats = msg.stats;
    view.statsAt = performance.now();
    showCounters();
  }
}

// One message: one or more Snapshot packets; the last part ends the tick.
function onSnapshot(d) {
  let off = 0;
  while (off + 4 <= d.byteLength) {
    const len = d.getUint16(off, true);
    const type = d.getUint8(off + 2);
    const end = off + 2 + len;
    if (end > d.byteLength) break;
    if (type === SNAPSHOT && len >= 16) {
      const tick = d.getUint32(off + 4, true);
      const part = d.getUint16(off + 8, true);
      const parts = d.getUint16(off + 10, true);
      const n = d.getUint16(off + 16, true);
      if (part === 0) view.parts = [];
      let p = off + 18;
      for (let i = 0; i < n && p + ENTRY <= end; i++, p += ENTRY) {
        view.parts.push([d.getUint32(p, true), d.getUint16(p + 4, true), d.getInt32(p + 6, true), d.getInt32(p + 10, true)]);
      }
      if (part + 1 === parts) {
        const players = new Map();
        for (const [id, zone, x, y] of view.parts) players.set(id, { zone, x, y });
        view.players = players;
        view.parts = [];
        view.tick = tick;
        view.frames++;
        draw();
      }
    }
    off = end;
  }
}

const canvas = $("world");
const ctx = canvas.getContext("2d");

function resize() {
  const r = canvas.getBoundingClientRect();
  canvas.width = Math.floor(r.width * devicePixelRatio);
  canvas.height = Math.floor(r.height * devicePixelRatio);
  draw();
}
window.addEventListener("resize", resize);

// World units to canvas pixels: the whole world, or three zones' worth of
// it around the followed player.
function camera() {
  const w = view.world;
  const width = w.zones_x * w.zone_size;
  const height = w.zones_y * w.zone_size;
  const f = view.players.get(view.following);
  let span = Math.max(width, height);
  let cx = width / 2;
  let cy = height / 2;
  if (f) {
    span = Math.min(span, w.zone_size * 1.5);
    cx = f.x;
    cy = f.y;
  }
  const scale = (Math.min(canvas.width, canvas.height) - 20) / span;
  return {
    scale,
    x: (wx) => canvas.width / 2 + (wx - cx) * scale,
    y: (wy) => canvas.height / 2 + (wy - cy) * scale,
    wx: (px) => cx + (px - canvas.width / 2) / scale,
    wy: (py) => cy + (py - canvas.height / 2) / scale,
  };
}

const zoneColor = (z) => `hsl(${(z * 137.5) % 360}, 70%, 62%)`;

function draw() {
  const w = view.world;
  ctx.fillStyle = "#0f1624";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!w) return;
  const cam = camera();
  const width = w.zones_x * w.zone_size;
  const height = w.zones_y * w.zone_size;
  // Zones: tinted squares with their index.
  for (let zy = 0; zy < w.zones_y; zy++) {
    for (let zx = 0; zx < w.zones_x; zx++) {
      const z = zy * w.zones_x + zx;
      const x0 = cam.x(zx * w.zone_size), y0 = cam.y(zy * w.zone_size);
      const s = w.zone_size * cam.scale;
      ctx.fillStyle = (zx + zy) % 2 ? "#152036" : "#18243c";
      ctx.fillRect(x0, y0, s, s);
      ctx.fillStyle = "#3b4a6b";
      ctx.font = `${Math.max(11, Math.min(28, s / 8))}px system-ui`;
      ctx.fillText("zone " + z, x0 + 6, y0 + Math.max(14, Math.min(30, s / 7)));
    }
  }
  // Cell grid lines, when they are far enough apart to read.
  if (w.cell_size * cam.scale >= 6) {
    ctx.strokeStyle = "#22304d";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = 0; x <= width; x += w.cell_size) { ctx.moveTo(cam.x(x), cam.y(0)); ctx.lineTo(cam.x(x), cam.y(height)); }
    for (let y = 0; y <= height; y += w.cell_size) { ctx.moveTo(cam.x(0), cam.y(y)); ctx.lineTo(cam.x(width), cam.y(y)); }
    ctx.stroke();
  }
  // Zone edges.
  ctx.strokeStyle = "#5a6b92";
  ctx.lineWidth = 2;
  ctx.beginPath();
  for (let zx = 0; zx <= w.zones_x; zx++) { ctx.moveTo(cam.x(zx * w.zone_size), cam.y(0)); ctx.lineTo(cam.x(zx * w.zone_size), cam.y(height)); }
  for (let zy = 0; zy <= w.zones_y; zy++) { ctx.moveTo(cam.x(0), cam.y(zy * w.zone_size)); ctx.lineTo(cam.x(width), cam.y(zy * w.zone_size)); }
  ctx.stroke();
  // The followed player's area of interest: its cell and the eight around.
  const f = view.players.get(view.following);
  let area = null;
  if (f) {
    const cx = Math.floor(f.x / w.cell_size), cy = Math.floor(f.y / w.cell_size);
    area = [(cx - 1) * w.cell_size, (cy - 1) * w.cell_size, (cx + 2) * w.cell_size, (cy + 2) * w.cell_size];
    ctx.fillStyle = "rgba(255, 214, 102, 0.12)";
    ctx.fillRect(cam.x(area[0]), cam.y(area[1]), (area[2] - area[0]) * cam.scale, (area[3] - area[1]) * cam.scale);
    ctx.strokeStyle = "#ffd666";
    ctx.strokeRect(cam.x(area[0]), cam.y(area[1]), (area[2] - area[0]) * cam.scale, (area[3] - area[1]) * cam.scale);
  }
  // Players, coloured by zone; those in the followed area brighter.
  const r = Math.max(2, Math.min(6, cam.scale * 10));
  let near = 0;
  for (const [id, p] of view.players) {
    const inside = area && p.x >= area[0] && p.x < area[2] && p.y >= area[1] && p.y < area[3] && id !== view.following;
    if (inside) near++;
    ctx.fillStyle = inside ? "#ffffff" : zoneColor(p.zone);
    ctx.fillRect(cam.x(p.x) - r / 2, cam.y(p.y) - r / 2, r, r);
  }
  if (f) {
    ctx.beginPath();
    ctx.arc(cam.x(f.x), cam.y(f.y), r + 5, 0, 2 * Math.PI);
    ctx.strokeStyle = "#ffd666";
    ctx.lineWidth = 2;
    ctx.stroke();
  }
  view.near = near;
  showFollowed(f);
}

function showFollowed(f) {
  if (!view.following) {
    $("f-id").textContent = "nobody";
    for (const k of ["f-zone", "f-pos", "f-near"]) $(k).textContent = "–";
    return;
  }
  $("f-id").textContent = "#" + view.following + (f ? "" : " (gone)");
  $("f-zone").textContent = f ? f.zone : "–";
  $("f-pos").textContent = f ? `${f.x}, ${f.y}` : "–";
  $("f-near").textContent = f ? view.near : "–";
}

const fmtBytes = (b) => (b >= 1e6 ? (b / 1e6).toFixed(2) + " MB/s" : (b / 1e3).toFixed(1) + " kB/s");
const ms = (us) => (us / 1000).toFixed(2) + " ms";

function showCounters() {
  const s = view.stats;
  $("players").textContent = s.players.toLocaleString();
  $("tick").textContent = s.ticks.toLocaleString() + (view.world ? ` (${view.world.tick_hz} Hz)` : "");
  $("ticktime").textContent = `${ms(s.tick_p50_us)} / ${ms(s.tick_p99_us)}`;
  $("tickmax").textContent = ms(s.tick_max_us);
  $("flush").textContent = ms(s.flush_p99_us);
  const now = performance.now();
  const last = view.lastStats;
  if (last) {
    const dt = (now - last.at) / 1000;
    $("bytesout").textContent = fmtBytes((s.bytes_out - last.stats.bytes_out) / dt);
    $("bytesin").textContent = fmtBytes((s.bytes_in - last.stats.bytes_in) / dt);
    $("handoffs").textContent = ((s.handoffs - last.stats.handoffs) / dt).toFixed(1) + " /s";
  }
  const [t0, b0] = view.receivedAt;
  if (now > t0) $("viewbytes").textContent = fmtBytes(((view.received - b0) * 1000) / (now - t0));
  view.receivedAt = [now, view.received];
}

function follow(id) {
  view.following = view.players.has(id) ? id : 0;
  draw();
}

canvas.addEventListener("click", (ev) => {
  if (!view.world) return;
  const cam = camera();
  const rect = canvas.getBoundingClientRect();
  const px = (ev.clientX - rect.left) * (canvas.width / rect.width);
  const py = (ev.clientY - rect.top) * (canvas.height / rect.height);
  const wx = cam.wx(px), wy = cam.wy(py);
  let best = 0, bestD = (12 / cam.scale) ** 2;
  for (const [id, p] of view.players) {
    const d = (p.x - wx) ** 2 + (p.y - wy) ** 2;
    if (d < bestD) { best = id; bestD = d; }
  }
  if (best) follow(best);
});
$("follow-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  follow(Number($("follow-id").value));
});
$("follow-any").addEventListener("click", () => {
  const ids = [...view.players.keys()];
  if (ids.length) follow(ids[Math.floor(Math.random() * ids.length)]);
});
$("follow-stop").addEventListener("click", () => follow(0));

resize();
connect();
