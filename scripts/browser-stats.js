// Drives a headless Chromium page on a running `cport serve` with echo load,
// through the DevTools protocol (Node's built-in WebSocket; no npm
// packages). The "Every server, live" section must list echo, chat, game
// and http, show the echo port's completions/s rising under the load, and
// draw each chart (lines in the series colors on the dark canvas); no
// script or console error anywhere.
// Usage: node --experimental-websocket scripts/browser-stats.js DEVTOOLS_WS_URL WEB_ADDR SCREENSHOT [SAMPLES]
"use strict";
const { connect, run } = require("./lib/cdp");

const [browserUrl, webAddr, shot, samplesArg] = process.argv.slice(2);
const samples = Math.max(3, Number(samplesArg || 12));
const deadline = Date.now() + 90_000 + samples * 1000;

run("browser-stats", async () => {
  const browser = await connect(browserUrl, deadline);
  const page = await browser.openPage(`http://${webAddr}/`, { width: 1100, height: 900 });
  await page.until("document.readyState === 'complete' && document.getElementById('servers-state').className === 'ok'", "the first poll");
  const rows = `[...document.querySelectorAll('#servers tbody tr')].map((tr) => tr.cells[0].textContent)`;
  await page.until(`['echo', 'chat', 'game', 'http'].every((n) => ${rows}.includes(n))`, "every server listed");
  // The echo port's rate, under load: SAMPLES samples, the last well above idle.
  const echoRate = `(() => { const i = serversView.names.findIndex((n) => n.split(', ').includes('echo'));
    const s = serversView.samples; return i >= 0 && s.length >= ${samples} ? s[s.length - 1].ports[i].rate : null; })()`;
  await page.until(`(${echoRate} || 0) > 500`, "the echo port's completions/s under load");
  const rate = await page.eval(echoRate);
  // Each chart drew lines: pixels in a series color (bright, saturated) on the dark canvas.
  const lit = await page.eval(`['chart-rate', 'chart-inflight', 'chart-p99'].map((id) => {
    const c = document.getElementById(id); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) { const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
      if (mx > 150 && mx - mn > 60) n++; } return n; })`);
  // A short line is enough: on `cport serve` every server shares one port, so
  // a chart may hold one series that spans only the seconds sampled so far.
  if (lit.some((n) => n < 20)) throw new Error("a chart drew no lines: colored pixels " + lit.join(", "));
  const legend = await page.eval("document.getElementById('chart-legend').textContent");
  if (!/echo/.test(legend) || !/game/.test(legend)) throw new Error("legend: " + legend);

  browser.checkErrors();
  const box = await page.eval(`(() => { const r = document.getElementById('all-servers').getBoundingClientRect();
    return { x: r.left + window.scrollX - 16, y: r.top + window.scrollY - 8, width: r.width + 32, height: r.height + 16 }; })()`);
  await page.screenshot(shot, { captureBeyondViewport: true, clip: { ...box, scale: 1 } });
  console.log(`browser-stats: every server listed, echo port at ${Math.round(rate)} completions/s, three charts drawn (${lit.join("/")} colored pixels); no script or console errors; screenshot in ${shot}`);
  browser.close();
});
