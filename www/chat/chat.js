// cport chat in the browser: one WebSocket, each text message one line of
// the same protocol `nc` users type (/nick, /join, /who, /msg, /rooms).
// Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  nick: null,
  wantNick: localStorage.getItem("cport-chat-nick") || "",
  room: null,
  view: null, // "room:NAME" or "pm:NICK"
  logs: new Map(), // view -> [{time, nick, text, cls}]
  unread: new Map(),
  rooms: new Map(), // name -> member count
  members: [],
  backoff: 500,
  sawHistory: new Set(),
};

// The socket sits beside the page: /ws for `cport chat --web`, /chat/ws
// under `cport serve`.
function socketUrl() {
  const u = new URL("ws", location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

function connect() {
  setStatus(false, "connecting…");
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  ws.onopen = () => {
    state.backoff = 500;
    setStatus(true, "connected");
    if (state.wantNick) send("/nick " + state.wantNick);
    if (state.room) { const r = state.room; state.room = null; send("/join " + r); }
    send("/rooms");
  };
  ws.onmessage = (ev) => onLine(String(ev.data));
  ws.onclose = () => {
    setStatus(false, "reconnecting in " + Math.round(state.backoff / 1000) + " s");
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 15000) * (0.8 + Math.random() * 0.4);
  };
}

function send(line) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(line);
}

function setStatus(on, text) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (on ? "on" : "off");
}

function hhmm(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function add(view, entry) {
  if (!state.logs.has(view)) state.logs.set(view, []);
  const log = state.logs.get(view);
  log.push(entry);
  if (log.length > 500) log.shift();
  if (view !== state.view) state.unread.set(view, (state.unread.get(view) || 0) + 1);
  renderSide();
  if (view === state.view) appendMessage(entry);
}

// Lines of the protocol, as cport-proto's hub writes them.
const RE = {
  history: /^\[history (\S+) (\d+)\] ([^:]+): (.*)$/,
  room: /^\[([^\] ]+)\] ([^:]+): (.*)$/,
  pmFrom: /^\[pm from (\S+)\] (.*)$/,
  pmTo: /^\[pm to (\S+)\] (.*)$/,
  welcome: /^\* welcome, you are (\S+?)\./,
  renamed: /^\* (\S+) is now known as (\S+)$/,
  joined: /^\* (\S+) joined (\S+)$/,
  left: /^\* (\S+) left (\S+)$/,
  rooms: /^\* rooms: (.*)$/,
  who: /^\* in (\S+): (.*)$/,
};

function onLine(line) {
  const now = Date.now();
  let m;
  if ((m = RE.history.exec(line))) {
    add("room:" + m[1], { time: Number(m[2]), nick: m[3], text: m[4], cls: "history" });
  } else if ((m = RE.room.exec(line)) && !line.startsWith("[pm ")) {
    add("room:" + m[1], { time: now, nick: m[2], text: m[3], cls: m[2] === state.nick ? "me" : "" });
  } else if ((m = RE.pmFrom.exec(line))) {
    add("pm:" + m[1], { time: now, nick: m[1], text: m[2], cls: "pm" });
  } else if ((m = RE.pmTo.exec(line))) {
    add("pm:" + m[1], { time: now, nick: state.nick, text: m[2], cls: "pm me" });
  } else if ((m = RE.welcome.exec(line))) {
    state.nick = m[1];
    $("nick").placeholder = m[1];
  } else if ((m = RE.renamed.exec(line))) {
    if (m[1] === state.nick) { state.nick = m[2]; $("nick").value = m[2]; }
    if (state.room) { notice("room:" + state.room, line.slice(2)); send("/who"); }
  } else if ((m = RE.joined.exec(line))) {
    if (m[1] === state.nick) {
      state.room = m[2];
      state.logs.set("room:" + m[2], []); // history follows
      show("room:" + m[2]);
      send("/rooms");
    }
    notice("room:" + m[2], line.slice(2));
    send("/who");
    if (m[1] !== state.nick) send("/rooms");
  } else if ((m = RE.left.exec(line))) {
    notice("room:" + m[2], line.slice(2));
    if (m[1] === state.nick && state.room === m[2]) { state.room = null; state.members = []; }
    else send("/who");
    send("/rooms");
    renderSide();
  } else if ((m = RE.rooms.exec(line))) {
    state.rooms.clear();
    for (const part of m[1].split(", ")) {
      const r = /^(\S+) \((\d+)\)$/.exec(part);
      if (r) state.rooms.set(r[1], Number(r[2]));
    }
    renderSide();
  } else if ((m = RE.who.exec(line))) {
    state.members = m[2].split(", ");
    renderSide();
  } else if (line.startsWith("! ")) {
    notice(state.view || "room:" + (state.room || ""), line.slice(2), "error");
  } else if (line.startsWith("* ") && !line.startsWith("* no rooms")) {
    notice(state.view || "room:" + (state.room || ""), line.slice(2));
  }
}

function notice(view, text, cls = "notice") {
  add(view, { time: Date.now(), nick: null, text, cls });
}

function show(view) {
  state.view = view;
  state.unread.delete(view);
  const [kind, name] = view.split(/:(.*)/s);
  $("title").textContent = kind === "room" ? "# " + name : "private with " + name;
  const ol = $("messages");
  ol.textContent = "";
  for (const e of state.logs.get(view) || []) appendMessage(e);
  renderSide();
}

function appendMessage(e) {
  const li = document.createElement("li");
  li.className = e.cls || "";
  const t = document.createElement("span");
  t.className = "time";
  t.textContent = hhmm(e.time);
  li.append(t);
  if (e.nick) {
    const n = document.createElement("span");
    n.className = "nick";
    n.textContent = e.nick;
    li.append(n);
  }
  const body = document.createElement("span");
  body.className = "text" + (e.nick ? "" : " " + e.cls);
  body.textContent = e.text;
  li.append(body);
  const ol = $("messages");
  ol.append(li);
  ol.scrollTop = ol.scrollHeight;
}

function item(cls, label, view, extra) {
  const li = document.createElement("li");
  li.className = cls + (view === state.view ? " current" : "");
  const name = document.createElement("span");
  name.textContent = label + (extra || "");
  li.append(name);
  const n = state.unread.get(view);
  if (n) {
    const u = document.createElement("span");
    u.className = "unread";
    u.textContent = n;
    li.append(u);
  }
  li.onclick = () => {
    if (view.startsWith("room:") && view.slice(5) !== state.room) send("/join " + view.slice(5));
    else show(view);
  };
  return li;
}

function renderSide() {
  const rooms = $("rooms");
  rooms.textContent = "";
  const names = new Set(state.rooms.keys());
  for (const v of state.logs.keys()) if (v.startsWith("room:") && v.length > 5) names.add(v.slice(5));
  for (const r of [...names].sort()) {
    const count = state.rooms.has(r) ? " (" + state.rooms.get(r) + ")" : "";
    rooms.append(item("room", "# " + r, "room:" + r, count));
  }
  const pms = $("pms");
  pms.textContent = "";
  for (const v of state.logs.keys()) if (v.startsWith("pm:")) pms.append(item("pm", v.slice(3), v));
  const members = $("members");
  members.textContent = "";
  for (const m of state.members) {
    const li = document.createElement("li");
    li.className = "member";
    li.textContent = m + (m === state.nick ? " (you)" : "");
    li.title = "double-click to message privately";
    li.ondblclick = () => { if (m !== state.nick) { $("say").value = "/msg " + m + " "; $("say").focus(); } };
    members.append(li);
  }
}

$("nick-form").onsubmit = (e) => {
  e.preventDefault();
  const n = $("nick").value.trim();
  if (!n) return;
  state.wantNick = n;
  localStorage.setItem("cport-chat-nick", n);
  send("/nick " + n);
};
$("join-form").onsubmit = (e) => {
  e.preventDefault();
  const r = $("join").value.trim();
  if (r) send("/join " + r);
  $("join").value = "";
};
$("say-form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("say").value;
  if (!text.trim()) return;
  if (!text.startsWith("/") && state.view && state.view.startsWith("pm:")) {
    send("/msg " + state.view.slice(3) + " " + text);
  } else {
    send(text);
  }
  $("say").value = "";
};

connect();
