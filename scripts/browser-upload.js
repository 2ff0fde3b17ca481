// Drives the bundled page's upload form in headless Chromium through the
// DevTools protocol (Node's built-in WebSocket; no npm packages): a wrong
// token is refused on the page, the right one stores the file with its
// sha-256 verified, the recent-uploads list shows it, and GET /files/<name>
// gives the same bytes. Fails on any script exception or console error.
// Usage: node --experimental-websocket scripts/browser-upload.js DEVTOOLS_WS_URL WEB_ADDR TOKEN FILE SCREENSHOT
"use strict";
const fs = require("fs");
const crypto = require("crypto");
const path = require("path");

const [browserUrl, webAddr, token, file, shot] = process.argv.slice(2);
const deadline = Date.now() + 90_000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ws = new WebSocket(browserUrl);
let nextId = 1;
const pending = new Map();
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

(async () => {
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });
  const { targetId } = await cdp("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await cdp("Target.attachToTarget", { targetId, flatten: true });
  await cdp("Page.enable", {}, sessionId);
  await cdp("Runtime.enable", {}, sessionId);
  await cdp("DOM.enable", {}, sessionId);
  await cdp("Emulation.setDeviceMetricsOverride", { width: 1100, height: 760, deviceScaleFactor: 1, mobile: false }, sessionId);
  await cdp("Page.navigate", { url: `http://${webAddr}/` }, sessionId);
  const evaluate = async (expr) => {
    const r = await cdp("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true }, sessionId);
    if (r.exceptionDetails) throw new Error(JSON.stringify(r.exceptionDetails));
    return r.result.value;
  };
  const until = async (expr, what) => {
    while (Date.now() < deadline) {
      if (await evaluate(expr)) return;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}\n--- page text ---\n${await evaluate("document.body.innerText")}`);
  };
  await until("document.readyState === 'complete' && document.getElementById('upload-state').textContent === 'on'", "uploads on");

  const { root } = await cdp("DOM.getDocument", {}, sessionId);
  const { nodeId } = await cdp("DOM.querySelector", { nodeId: root.nodeId, selector: "#upload-file" }, sessionId);
  await cdp("DOM.setFileInputFiles", { nodeId, files: [file] }, sessionId);
  const send = (tok) => evaluate(`(() => { document.getElementById('upload-token').value = ${JSON.stringify(tok)};
    document.getElementById('upload-form').requestSubmit(); return true; })()`);
  const status = "document.getElementById('upload-status').textContent";

  await send("not-the-token");
  await until(`${status}.includes('upload failed: 403')`, "the wrong token refused");
  await send(token);
  await until(`${status}.includes('stored') && ${status}.includes('sha-256 verified')`, "the upload stored and verified");
  await until("document.getElementById('upload-progress').value === 1", "a full progress bar");
  const name = path.basename(file);
  await until(`document.getElementById('upload-recent').innerText.includes(${JSON.stringify(name)})`, "the recent list");

  const href = await evaluate("document.querySelector('#upload-recent a').href");
  const got = Buffer.from(await (await fetch(href)).arrayBuffer());
  const want = fs.readFileSync(file);
  const sum = (b) => crypto.createHash("sha256").update(b).digest("hex");
  if (sum(got) !== sum(want)) throw new Error(`GET ${href}: ${got.length} bytes, not the file sent`);

  if (pageErrors.length) throw new Error("errors on the page: " + pageErrors.join("; "));
  await evaluate("document.getElementById('uploads').scrollIntoView(); true");
  const { data } = await cdp("Page.captureScreenshot", { format: "png", captureBeyondViewport: false }, sessionId);
  fs.writeFileSync(shot, Buffer.from(data, "base64"));
  console.log(`browser-upload: refused with a wrong token, stored and verified with the right one, listed and served back identical; no script or console errors; screenshot in ${shot}`);
  ws.close();
  process.exit(0);
})().catch((e) => {
  console.error("browser-upload: FAILED: " + e.message);
  process.exit(1);
});
