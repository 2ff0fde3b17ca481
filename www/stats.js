// Polls the server's JSON counters and shows them on the page.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let last = null;

  function human(n) {
    if (n === undefined || n === null) return "–";
    const units = ["", " K", " M", " G", " T"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + units[i];
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  function duration(secs) {
    secs = Math.floor(secs);
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }

  function show(s) {
    const server = s.server || {}, port = s.port || {}, http = s.http || {};
    $("backend").textContent = s.backend + " · " + s.threads + " thread" + (s.threads === 1 ? "" : "s");
    $("sessions").textContent = human(server.sessions);
    $("accepted").textContent = human(server.accepted);
    $("requests").textContent = human(http.requests);
    $("bytes_out").textContent = bytes(server.bytes_out || 0);
    $("completions").textContent = human(port.completed_total);
    $("in_flight").textContent = human(port.in_flight);
    $("backend_calls").textContent = human(port.backend_calls);
    $("cache_hits").textContent = human(http.cache ? http.cache.hits : 0);
    $("uptime").textContent = duration(s.uptime_secs || 0);
    if (last) {
      const dt = s.uptime_secs - last.uptime_secs;
      if (dt > 0) $("rate").textContent = human(Math.round((http.requests - last.http.requests) / dt));
    }
    last = s;

    const body = document.querySelector("#kinds tbody");
    body.textContent = "";
    for (const [kind, n] of Object.entries(port.completed || {})) {
      const tr = document.createElement("tr");
      const k = document.createElement("td");
      const v = document.createElement("td");
      k.textContent = kind;
      v.textContent = human(n);
      tr.append(k, v);
      body.append(tr);
    }
  }

  async function poll() {
    try {
      const r = await fetch("/_cport/stats", { cache: "no-store" });
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      show(await r.json());
      $("state").textContent = "live";
      $("state").className = "ok";
    } catch (e) {
      $("state").textContent = "unavailable (" + e.message + ")";
      $("state").className = "err";
    }
  }

  poll();
  setInterval(poll, 1000);
})();
