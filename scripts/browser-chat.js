// Drives two headless Chromium pages on a running `cport chat --web`
// through the DevTools protocol (Node's built-in WebSocket; no npm
// packages), plus one TCP line client beside them:
//   alice (browser) joins, says hello; bob (browser) joins and sees it in
//   the history; a TCP client joins and speaks; bob answers; alice sends
//   bob a private message. Each page must show the others' messages.
// Usage: node --experimental-websocket scripts/browser-chat.js DEVTOOLS_WS_URL WEB_ADDR TCP_ADDR SCREENSHOT
"use strict";
const net = require("net");
const { connect, run, sleep } = require("./lib/cdp");

const [browserUrl, webAddr, tcpAddr, shot] = process.argv.slice(2);
const deadline = Date.now() + 60_000;

async function openPage(browser, name) {
  const page = await browser.openPage(`http://${webAddr}/`, { name, width: 1100, height: 620 });
  await page.until("document.readyState === 'complete' && document.getElementById('status').classList.contains('on')", "connected");
  return page;
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

run("browser-chat", async () => {
  const browser = await connect(browserUrl, deadline);
  const alice = await openPage(browser, "alice");
  const bob = await openPage(browser, "bob");

  await submit(alice, "nick", "alice", "nick-form");
  await submit(alice, "join", "lobby", "join-form");
  await alice.until(shows("alice joined lobby"), "alice in lobby");
  await submit(alice, "say", "hello from alice", "say-form");
  await alice.until(shows("hello from alice"), "alice's own message");

  await submit(bob, "nick", "bob", "nick-form");
  await submit(bob, "join", "lobby", "join-form");
  await bob.until(shows("hello from alice"), "alice's message in bob's history");

  const nc = tcpClient();
  nc.send("/nick terminal");
  nc.send("/join lobby");
  await nc.until("* terminal joined lobby");
  nc.send("hello from nc");
  await bob.until(shows("hello from nc"), "the TCP client's message on bob's page");

  await submit(bob, "say", "hi alice, bob here", "say-form");
  await alice.until(shows("hi alice, bob here"), "bob's message on alice's page");
  await nc.until("[lobby] bob: hi alice, bob here");
  await alice.until(shows("hello from nc"), "the TCP client's message on alice's page");

  await submit(alice, "say", "/msg bob see you at five", "say-form");
  await bob.until("document.querySelector('#pms .unread') !== null", "an unread mark for the private message");
  await bob.until("document.getElementById('members').innerText.includes('terminal')", "members list");
  await bob.until("document.getElementById('rooms').innerText.includes('lobby (3)')", "room list");

  browser.checkErrors("the pages");
  await bob.screenshot(shot);
  nc.end();
  console.log("browser-chat: both pages saw each other's messages (and the TCP client's), no script or console errors; screenshot in " + shot);
});
