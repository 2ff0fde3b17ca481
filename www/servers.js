// Every server of the process, live: a table of the servers (from
// /_cport/stats, which covers them all) and three charts drawn on canvases
// (completions/s, operations in flight, latency p99 of the last minute or
// two), one line per completion port, over the last five minutes. Plain
// JS, no build step.
"use strict";

const serversView = (function () {
  const $ = (id) => document.getElementById(id);
  const KEEP = 300; // samples (one a second): five minutes
  const COLORS = ["#ffb454", "#7fd962", "#59c2ff", "#f07178", "#d2a6ff", "#95e6cb", "#e6b673"];
  const view = {
    samples: [], // {t, ports: [{rate, in_flight, p99}]}
    names: [], // per port: the servers on it
    last: null, // the previous document and when it came
    errors: 0,
  };

  function human(n) {
    const units = ["", " K", " M", " G"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + units[i];
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  function micros(us) {
    if (us < 1000) return Math.round(us) + " µs";
    if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
    return (us / 1e6).toFixed(1) + " s";
  }

  // The p99 of a port's own work: the worst p99 over its kinds, leaving out
  // what waits on a peer or a clock (receives and accepts last as long as
  // the peer is silent, a timeout as long as it was set for).
  const WAITS = /^(recv|accept|timeout)/;
  function p99(port) {
    let worst = 0;
    for (const [kind, l] of Object.entries(port.latency || {})) {
      const v = l.recent_p99_us ?? null; // the last minute or two
      if (!WAITS.test(kind) && v !== null) worst = Math.max(worst, v);
    }
    return worst;
  }

  function record(doc, now) {
    const ports = doc.ports || [];
    view.names = ports.map((_, i) => (doc.servers || []).filter((s) => s.port === i).map((s) => s.name).join(", "));
    const prev = view.last;
    const sample = {
      t: now,
      ports: ports.map((p, i) => {
        let rate = null;
        if (prev && prev.doc.ports && prev.doc.ports[i]) {
          const dt = (now - prev.t) / 1000;
          if (dt > 0) rate = Math.max(0, (p.completed - prev.doc.ports[i].completed) / dt);
        }
        return { rate, in_flight: p.in_flight_total, p99: p99(p) };
      }),
    };
    view.last = { doc, t: now };
    view.samples.push(sample);
    if (view.samples.length > KEEP) view.samples.shift();
    return sample;
  }

  function table(doc, sample) {
    const body = document.querySelector("#servers tbody");
    body.textContent = "";
    for (const s of doc.servers || []) {
      const port = (doc.ports || [])[s.port] || {};
      const ps = sample.ports[s.port] || {};
      const cells = [
        s.name,
        (s.addrs || []).join(" "),
        human(s.sessions),
        bytes(s.bytes_in),
        bytes(s.bytes_out),
        ps.rate === null || ps.rate === undefined ? "–" : human(ps.rate),
        human(port.in_flight_total || 0),
        micros(ps.p99 || 0),
        (port.workers || []).map((w) => w.state).join(" "),
      ];
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.append(td);
      }
      body.append(tr);
    }
  }

  // One chart: a line per port of `pick(sample.ports[i])`, the newest at
  // the right edge, the scale from zero to the largest value shown.
  function chart(canvas, pick, format) {
    const ctx = canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
      canvas.width = w * dpr;
      canvas.height = h * dpr;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#1a2029";
    ctx.fillRect(0, 0, w, h);
    const left = 64, right = 8, top = 8, bottom = 18;
    const pw = w - left - right, ph = h - top - bottom;
    let max = 0;
    for (const s of view.samples) {
      for (const p of s.ports) {
        const v = pick(p);
        if (v !== null && v !== undefined) max = Math.max(max, v);
      }
    }
    max = max > 0 ? max * 1.1 : 1;
    ctx.strokeStyle = "#2a3340";
    ctx.fillStyle = "#8a8f98";
    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    for (let g = 0; g <= 4; g++) {
      const y = top + ph - (ph * g) / 4;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + pw, y);
      ctx.stroke();
      ctx.fillText(format((max * g) / 4), 4, y + 4);
    }
    ctx.fillText("-5 min", left, h - 4);
    ctx.fillText("now", left + pw - 22, h - 4);
    const n = view.samples.length;
    const ports = n ? view.samples[n - 1].ports.length : 0;
    ctx.lineWidth = 2;
    for (let i = 0; i < ports; i++) {
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.beginPath();
      let started = false;
      view.samples.forEach((s, k) => {
        const p = s.ports[i];
        const v = p ? pick(p) : null;
        if (v === null || v === undefined) return;
        const x = left + pw - ((n - 1 - k) * pw) / (KEEP - 1);
        const y = top + ph - (v / max) * ph;
        if (started) ctx.lineTo(x, y);
        else { ctx.moveTo(x, y); started = true; }
      });
      ctx.stroke();
    }
  }

  function legend() {
    const el = $("chart-legend");
    el.textContent = "";
    view.names.forEach((name, i) => {
      const span = document.createElement("span");
      span.className = "legend-item";
      const dot = document.createElement("i");
      dot.style.background = COLORS[i % COLORS.length];
      span.append(dot, document.createTextNode(name || "port " + i));
      el.append(span);
    });
  }

  function draw() {
    chart($("chart-rate"), (p) => p.rate, human);
    chart($("chart-inflight"), (p) => p.in_flight, human);
    chart($("chart-p99"), (p) => p.p99, micros);
  }

  async function poll() {
    try {
      const r = await fetch("/_cport/stats", { cache: "no-store" });
      if (!r.ok) throw new Error(r.status + " " + r.statusText);
      const doc = await r.json();
      const sample = record(doc, performance.now());
      table(doc, sample);
      legend();
      draw();
      $("servers-state").textContent = "live";
      $("servers-state").className = "ok";
    } catch (e) {
      view.errors++;
      $("servers-state").textContent = "unavailable (" + e.message + ")";
      $("servers-state").className = "err";
    }
  }

  poll();
  setInterval(poll, 1000);
  window.addEventListener("resize", draw);
  return view;
})();
