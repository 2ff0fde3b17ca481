// A small Chrome DevTools Protocol client for the browser checks
// (scripts/browser-*.js): Node's built-in WebSocket, no npm packages.
// It opens pages, evaluates expressions in them, waits for a condition
// until one deadline, records every script exception and console.error
// on any page (a check fails on any), and takes screenshots.
//   const { connect, run, sleep } = require("./lib/cdp");
//   run("browser-x", async () => {
//     const browser = await connect(devtoolsUrl, Date.now() + 60_000);
//     const page = await browser.openPage(`http://${addr}/`, { width: 1100, height: 620 });
//     await page.until("document.readyState === 'complete'", "the page");
//     browser.checkErrors();
//     await page.screenshot(shot);
//   });
"use strict";
const fs = require("fs");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Connects to the browser's DevTools WebSocket; every wait ends by `deadline` (ms since the epoch).
async function connect(browserUrl, deadline) {
  const ws = new WebSocket(browserUrl);
  let nextId = 1;
  const pending = new Map();
  // Script errors and console.error calls on any page.
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
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = j; });

  function cdp(method, params = {}, sessionId) {
    const id = nextId++;
    ws.send(JSON.stringify({ id, method, params, sessionId }));
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  }

  // A new tab of `width` x `height` at `url`, with the Page and Runtime
  // domains (and `domains`, e.g. ["DOM"]) enabled. `name` prefixes its errors.
  async function openPage(url, { name = "", width, height, domains = [] }) {
    const { targetId } = await cdp("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await cdp("Target.attachToTarget", { targetId, flatten: true });
    await cdp("Page.enable", {}, sessionId);
    await cdp("Runtime.enable", {}, sessionId);
    for (const d of domains) await cdp(`${d}.enable`, {}, sessionId);
    await cdp("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
    await cdp("Page.navigate", { url }, sessionId);
    const who = name ? `${name}: ` : "";
    const page = {
      name,
      sessionId,
      // A DevTools call in this page's session.
      cdp: (method, params = {}) => cdp(method, params, sessionId),
      // The value of `expr` (awaited if a promise).
      eval: async (expr) => {
        const r = await cdp("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true }, sessionId);
        if (r.exceptionDetails) throw new Error(`${who}${JSON.stringify(r.exceptionDetails)}`);
        return r.result.value;
      },
      // Polls `expr` until it is true; past the deadline, fails naming `what` with the page's text.
      until: async (expr, what) => {
        while (Date.now() < deadline) {
          if (await page.eval(expr)) return;
          await sleep(100);
        }
        const text = await page.eval("document.body.innerText");
        throw new Error(`${who}timed out waiting for ${what}\n--- page text ---\n${text}`);
      },
      // Saves a PNG of the page to `file`.
      screenshot: async (file, params = {}) => {
        const { data } = await cdp("Page.captureScreenshot", { format: "png", ...params }, sessionId);
        fs.writeFileSync(file, Buffer.from(data, "base64"));
      },
    };
    return page;
  }

  // Fails if any page threw or logged an error so far.
  function checkErrors(where = "the page") {
    if (pageErrors.length) throw new Error(`errors on ${where}: ` + pageErrors.join("; "));
  }

  return { cdp, openPage, checkErrors, close: () => ws.close() };
}

// Runs the check `main` as script `name`: exit status 0 when it resolves,
// 1 with "NAME: FAILED: why" on stderr when it throws.
function run(name, main) {
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(`${name}: FAILED: ${e.message}`);
      process.exit(1);
    },
  );
}

module.exports = { connect, run, sleep };
