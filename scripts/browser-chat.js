// Drives two headless Chromium pages on a running `cport chat --web`
// through the DevTools protocol (Node's built-in WebSocket; no npm
// packages), plus one TCP line client beside them:
//   alice (browser) joins, says hello; bob (browser) joins and sees it in
//   the history; a TCP client joins and speaks; bob answers; alice sends
//   bob a private message. Each page must show the others' messages.
// Usage: node --experimental-websocket scripts/browser-chat.js DEVTOOLS_WS_URL WEB_ADDR TCP_ADDR SCREENSHOT
"use strict";
const fs = require("fs");
const net = require("net");

const [browserUrl, webAddr, tcpAddr, shot] = process.argv.slice(2);
const deadline = Date.now() + 60_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ws = new WebSocket(browserUrl);
let nextId = 1;
const pending = new Map();
// Script errors and console.error calls on any page: the run fails on any.
const pageErrors = [];
ws.onmessage = (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.method === "Runtime.exceptionThrown") {
    pageErrors.push(JSON.stringify(msg.params.exceptionDetails));
  } else if (msg.method === "Runtime.consoleAPICalled" && msg.params.type === "error") {
    pageErrors.push(msg.params.args.map((a) => a.value ?? a.description).join(" "));
  }
  if (msg.id && pending.has(msg.id)) {
    const { resolve, reject } = pending.get(msg.id);
    pending.delete(msg.id);
    if (msg.error) reject(new Error(JSON.stringify(msg.error)));
    else resolve(msg.result);
  }
};
function cdp(method, params = {}, sessionId) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params, sessionId }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

async function openPage(name) {
  const { targetId } = await cdp("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await cdp("Target.attachToTarget", { targetId, flatten: true });
  await cdp("Page.enable", {}, sessionId);
  await cdp("Runtime.enable", {}, sessionId);
  await cdp("Emulation.setDeviceMetricsOverride", { width: 1100, height: 620, deviceScaleFactor: 1, mobile: false }, sessionId);
  await cdp("Page.navigate", { url: `http://${webAddr}/` }, sessionId);
  const page = {
    name,
    eval: async (expr) => {
      const r = await cdp("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true }, sessionId);
      if (r.exceptionDetails) throw new Error(`${name}: ${JSON.stringify(r.exceptionDetails)}`);
      return r.result.value;
    },
    sessionId,
  };
  await until(page, "document.readyState === 'complete' && document.getElementById('status').classList.contains('on')", "connected");
  return page;
}

async function until(page, expr, what) {
  while (Date.now() < deadline) {
    if (await page.eval(expr)) return;
    await sleep(100);
  }
  const text = await page.eval("document.body.innerText");
  throw new Error(`${page.name}: timed out waiting for ${what}\n--- page text ---\n${text}`);
}

const submit = (page, input, value, form) =>
  page.eval(`(() => { document.getElementById(${JSON.stringify(input)}).value = ${JSON.stringify(value)};
    document.getElementById(${JSON.stringify(form)}).requestSubmit(); return true; })()`);
const shows = (text) => `document.getElementById('messages').innerText.includes(${JSON.stringify(text)})`;

function tcpClient() {
  const [host, port] = tcpAddr.split(":");
  const sock = net.connect(Number(port), host);
  let buf = "";
  sock.on("data", (d) => (buf += d.toString()));
  return {
    send: (line) => sock.write(line + "\n"),
    until: async (text) => {
      while (Date.now() < deadline) {
        if (buf.includes(text)) return;
        await sleep(50);
      }
      throw new Error(`tcp client: timed out waiting for ${text}\n${buf}`);
    },
    end: () => sock.end(),
  };
}

(async () => {
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
  const alice = await openPage("alice");
  const bob = await openPage("bob");

  await submit(alice, "nick", "alice", "nick-form");
  await submit(alice, "join", "lobby", "join-form");
  await until(alice, shows("alice joined lobby"), "alice in lobby");
  await submit(alice, "say", "hello from alice", "say-form");
  await until(alice, shows("hello from alice"), "alice's own message");

  await submit(bob, "nick", "bob", "nick-form");
  await submit(bob, "join", "lobby", "join-form");
  await until(bob, shows("hello from alice"), "alice's message in bob's history");

  const nc = tcpClient();
  nc.send("/nick terminal");
  nc.send("/join lobby");
  await nc.until("* terminal joined lobby");
  nc.send("hello from nc");
  await until(bob, shows("hello from nc"), "the TCP client's message on bob's page");

  await submit(bob, "say", "hi alice, bob here", "say-form");
  await until(alice, shows("hi alice, bob here"), "bob's message on alice's page");
  await nc.until("[lobby] bob: hi alice, bob here");
  await until(alice, shows("hello from nc"), "the TCP client's message on alice's page");

  await submit(alice, "say", "/msg bob see you at five", "say-form");
  await until(bob, "document.querySelector('#pms .unread') !== null", "an unread mark for the private message");
  await until(bob, "document.getElementById('members').innerText.includes('terminal')", "members list");
  await until(bob, "document.getElementById('rooms').innerText.includes('lobby (3)')", "room list");

  if (pageErrors.length) throw new Error("errors on the pages: " + pageErrors.join("; "));
  const { data } = await cdp("Page.captureScreenshot", { format: "png" }, bob.sessionId);
  fs.writeFileSync(shot, Buffer.from(data, "base64"));
  nc.end();
  console.log("browser-chat: both pages saw each other's messages (and the TCP client's), no script or console errors; screenshot in " + shot);
  ws.close();
  process.exit(0);
})().catch((e) => {
  console.error("browser-chat: FAILED: " + e.message);
  process.exit(1);
});
