// Drives a headless Chromium page on a running `cport game --web` with bots
// playing, through the DevTools protocol (Node's built-in WebSocket; no npm
// packages). The page must connect, draw most bots, see them move from
// tick to tick, show the server's counters, and follow one player (its
// area of interest drawn around it); no script or console error anywhere.
// Usage: node --experimental-websocket scripts/browser-game.js DEVTOOLS_WS_URL WEB_ADDR BOTS SCREENSHOT
"use strict";
const { connect, run, sleep } = require("./lib/cdp");

const [browserUrl, webAddr, botsArg, shot] = process.argv.slice(2);
const bots = Number(botsArg);
const deadline = Date.now() + 90_000;

run("browser-game", async () => {
  const browser = await connect(browserUrl, deadline);
  const page = await browser.openPage(`http://${webAddr}/`, { width: 1200, height: 760 });
  const want = Math.floor(bots * 0.9);
  await page.until("document.readyState === 'complete' && document.getElementById('status').classList.contains('on')", "the socket");
  await page.until(`gameView.world !== null && gameView.players.size >= ${want}`, `${want} players in the snapshot`);
  await page.until(`gameView.stats !== null && gameView.stats.players >= ${want} && gameView.lastStats !== null`, "two rounds of counters");

  // The players move: positions a second apart differ for most of them.
  const before = await page.eval("JSON.stringify([gameView.tick, [...gameView.players]])");
  await sleep(1000);
  const moved = await page.eval(`(() => { const [t, b] = ${before}; let n = 0;
    for (const [id, p] of b) { const q = gameView.players.get(id); if (q && (q.x !== p.x || q.y !== p.y)) n++; }
    return [gameView.tick - t, n]; })()`);
  if (moved[0] < 10) throw new Error(`only ${moved[0]} ticks drawn in a second`);
  if (moved[1] < want / 2) throw new Error(`only ${moved[1]} of ${bots} players moved in a second`);

  // The canvas shows them: bright pixels (players) on the dark world.
  const lit = await page.eval(`(() => { const c = document.getElementById('world');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 360) n++; return n; })()`);
  if (lit < want) throw new Error(`only ${lit} bright pixels on the canvas for ${bots} players`);

  // The counters are filled in from the server's.
  const counters = await page.eval(`['players', 'ticktime', 'bytesout', 'bytesin'].map((k) => document.getElementById(k).textContent)`);
  if (counters.some((t) => t === "–") || !/ms/.test(counters[1]) || !/B\/s/.test(counters[2])) {
    throw new Error("counters not shown: " + counters.join(" | "));
  }

  // Follow the player nearest a zone corner (its area of interest crosses
  // zone edges), typed into the form as a user would.
  const id = await page.eval(`(() => { const w = gameView.world; let best = 0, bd = Infinity;
    for (const [id, p] of gameView.players) { const ex = Math.min(p.x % w.zone_size, w.zone_size - p.x % w.zone_size);
      const ey = Math.min(p.y % w.zone_size, w.zone_size - p.y % w.zone_size);
      const inner = p.x > w.zone_size / 2 && p.y > w.zone_size / 2 && p.x < (w.zones_x - 0.5) * w.zone_size && p.y < (w.zones_y - 0.5) * w.zone_size;
      if (inner && ex + ey < bd) { bd = ex + ey; best = id; } }
    document.getElementById('follow-id').value = best; document.getElementById('follow-form').requestSubmit(); return best; })()`);
  await page.until(`gameView.following === ${id} && document.getElementById('f-id').textContent === '#${id}'`, "following a player");
  const p0 = await page.eval(`JSON.stringify(gameView.players.get(${id}))`);
  await page.until(`JSON.stringify(gameView.players.get(${id})) !== ${JSON.stringify(p0)}`, "the followed player moving");
  await page.until(`document.getElementById('f-pos').textContent.includes(',')`, "the followed player's position");

  browser.checkErrors();
  await sleep(300);
  await page.screenshot(shot);
  console.log(`browser-game: ${moved[1]} of ${bots} players moved in a second (${moved[0]} ticks drawn), counters shown, followed player #${id}; no script or console errors; screenshot in ${shot}`);
});
