// The upload form: PUT /upload/<name> with the token typed in, a progress
// bar fed by the request's upload events, the sha-256 sent as Repr-Digest
// (and compared with the server's) when the browser can compute it, and
// the recent uploads from /_cport/uploads.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("upload-form");
  const state = $("upload-state");
  const status = $("upload-status");
  const bar = $("upload-progress");
  // Files up to this size are hashed in the page before they are sent.
  const HASH_MAX = 64 << 20;

  const size = (n) =>
    n >= 1 << 30 ? (n / (1 << 30)).toFixed(2) + " GiB"
    : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB"
    : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";

  // The server takes one plain path segment: letters, digits and . _ - + ( ) , @ and spaces.
  const cleanName = (n) =>
    n.replace(/[^\p{L}\p{N}._\-+(),@ ]/gu, "_").replace(/^[.\- ]+/, "").replace(/[. ]+$/, "").slice(0, 200) || "upload";

  async function sha256Field(file) {
    if (!window.crypto || !crypto.subtle || file.size > HASH_MAX) return null;
    const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
    return "sha-256=:" + btoa(String.fromCharCode(...sum)) + ":";
  }

  function showRecent(list) {
    const body = $("upload-recent").tBodies[0];
    body.replaceChildren();
    if (list.length === 0) {
      body.insertRow().insertCell().textContent = "none yet";
      return;
    }
    for (const u of list) {
      const row = body.insertRow();
      const a = document.createElement("a");
      a.href = u.url;
      a.textContent = u.name;
      row.insertCell().append(a);
      row.insertCell().textContent = size(u.size);
      row.insertCell().textContent = new Date(u.at * 1000).toLocaleTimeString();
      const d = row.insertCell();
      d.className = "muted";
      d.textContent = u.digest.slice(0, 24) + "…";
    }
  }

  async function refresh() {
    const r = await fetch("/_cport/uploads", { cache: "no-store" });
    if (r.status === 404) {
      state.textContent = "uploads are off on this server (start it with --upload-dir and --upload-token-file)";
      $("upload-send").disabled = true;
      return false;
    }
    state.textContent = "on";
    state.className = "ok";
    showRecent(await r.json());
    return true;
  }

  function put(name, file, token, digest) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", "/upload/" + encodeURIComponent(name));
      xhr.setRequestHeader("Authorization", "Bearer " + token);
      if (digest) xhr.setRequestHeader("Repr-Digest", digest);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable && e.total > 0) {
          bar.value = e.loaded / e.total;
          status.textContent = `sending ${name}: ${size(e.loaded)} of ${size(e.total)}`;
        }
      };
      xhr.onload = () => resolve({ status: xhr.status, digest: xhr.getResponseHeader("Repr-Digest"), text: xhr.responseText });
      xhr.onerror = () => resolve({ status: 0, text: "the connection failed" });
      xhr.send(file);
    });
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("upload-file").files[0];
    if (!file) return;
    const name = cleanName(file.name);
    $("upload-send").disabled = true;
    bar.value = 0;
    status.className = "muted";
    status.textContent = "hashing " + name + "…";
    const digest = await sha256Field(file);
    const r = await put(name, file, $("upload-token").value.trim(), digest);
    $("upload-send").disabled = false;
    if (r.status === 201) {
      bar.value = 1;
      status.className = "ok";
      status.textContent = `stored ${name} (${size(file.size)})` + (digest && r.digest === digest ? ", sha-256 verified" : "");
      await refresh();
    } else {
      status.className = "err";
      const why = { 401: "a token is needed", 403: "wrong token, or a name not allowed", 409: "an upload of this name is in progress",
        413: "too large", 507: "the server's disk is full" }[r.status] || r.text.trim();
      status.textContent = `upload failed: ${r.status} ${why}`;
    }
  });

  refresh();
})();
