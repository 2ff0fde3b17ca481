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
const { connect, run } = require("./lib/cdp");

const [browserUrl, webAddr, token, file, shot] = process.argv.slice(2);
const deadline = Date.now() + 90_000;

run("browser-upload", async () => {
  const browser = await connect(browserUrl, deadline);
  const page = await browser.openPage(`http://${webAddr}/`, { width: 1100, height: 760, domains: ["DOM"] });
  const evaluate = page.eval;
  const until = page.until;
  await until("document.readyState === 'complete' && document.getElementById('upload-state').textContent === 'on'", "uploads on");

  const { root } = await page.cdp("DOM.getDocument");
  const { nodeId } = await page.cdp("DOM.querySelector", { nodeId: root.nodeId, selector: "#upload-file" });
  await page.cdp("DOM.setFileInputFiles", { nodeId, files: [file] });
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

  browser.checkErrors();
  await evaluate("document.getElementById('uploads').scrollIntoView(); true");
  await page.screenshot(shot, { captureBeyondViewport: false });
  console.log(`browser-upload: refused with a wrong token, stored and verified with the right one, listed and served back identical; no script or console errors; screenshot in ${shot}`);
});
