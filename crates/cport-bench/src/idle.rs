//! Idle load: opens and holds many connections, checks each still answers,
//! and reports the target server's memory growth per connection.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, OpKind, Port};

use crate::conn;

/// What to run.
#[derive(Clone, Debug)]
pub struct IdleConfig {
    /// An echo server.
    pub target: SocketAddr,
    /// Connections to open and hold.
    pub conns: usize,
    /// How long to hold them before checking.
    pub hold: Duration,
    /// The server's pid, to read its resident memory.
    pub server_pid: Option<u32>,
    /// Connections opened at once (the rest wait for those to finish).
    pub parallel: usize,
    /// Client backend.
    pub backend: Backend,
}

/// What an idle run found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub conns: usize,
    /// Connections established.
    pub connected: usize,
    /// Connections that echoed a probe byte after the hold.
    pub answered: usize,
    /// Seconds taken to establish them all.
    pub connect_seconds: f64,
    /// Server resident memory before connecting (KiB).
    pub rss_before_kib: Option<u64>,
    /// Server resident memory with every connection open (KiB).
    pub rss_after_kib: Option<u64>,
    /// `(after - before) / connected`, in bytes.
    pub rss_per_conn_bytes: Option<f64>,
    /// Source addresses used.
    pub source_addrs: usize,
}

/// Resident memory of `pid` in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

const CONNECT: u64 = 1;
const PROBE_SEND: u64 = 2;
const PROBE_RECV: u64 = 3;

/// Runs the load.
///
/// # Errors
/// When the client's port cannot be built.
pub fn run(cfg: &IdleConfig) -> io::Result<IdleReport> {
    let port = Port::builder()
        .concurrency(1)
        .backend(cfg.backend)
        .queue_limit(4 * cfg.conns.max(1024))
        .build()?;
    // About 28,000 ephemeral ports per source address; spread wider than that.
    let spread = cfg.conns.div_ceil(20_000).max(1);
    let mut rep = IdleReport {
        conns: cfg.conns,
        source_addrs: spread,
        ..IdleReport::default()
    };
    rep.rss_before_kib = cfg.server_pid.and_then(rss_kib);
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(cfg.conns);
    let mut opened = 0;
    let mut pending = 0usize;
    let mut done = 0usize;
    let deadline = t0 + Duration::from_secs(120);
    while done < cfg.conns && Instant::now() < deadline {
        while opened < cfg.conns && pending < cfg.parallel.max(1) {
            let src = conn::source_for(cfg.target, opened, spread);
            match conn::open(&port, cfg.target, src, opened as u64, CONNECT) {
                Ok(h) => {
                    handles.push(Some(h));
                    pending += 1;
                }
                Err(_) => {
                    handles.push(None);
                    done += 1;
                }
            }
            opened += 1;
        }
        match port.get(Some(Duration::from_secs(5))) {
            Ok(c) if c.kind() == OpKind::Connect => {
                pending -= 1;
                done += 1;
                if c.result().is_ok() {
                    rep.connected += 1;
                } else if let Some(h) = handles[c.key().0 as usize].take() {
                    let _ = port.close(&h);
                }
            }
            Ok(_) => {}
            Err(cport::GetError::Timeout) => break,
            Err(e) => return Err(e.into()),
        }
    }
    rep.connect_seconds = t0.elapsed().as_secs_f64();
    std::thread::sleep(cfg.hold);
    rep.rss_after_kib = cfg.server_pid.and_then(rss_kib);
    if let (Some(a), Some(b)) = (rep.rss_after_kib, rep.rss_before_kib) {
        if rep.connected > 0 {
            rep.rss_per_conn_bytes = Some(a.saturating_sub(b) as f64 * 1024.0 / rep.connected as f64);
        }
    }
    // Probe: one byte each, echoed back.
    let probe = Bytes::from_static(b"?");
    let mut waiting = 0;
    for h in handles.iter().flatten() {
        if port.send(h, probe.clone(), PROBE_SEND).is_ok() && port.recv(h, Vec::with_capacity(8), PROBE_RECV).is_ok() {
            waiting += 1;
        }
    }
    let until = Instant::now() + Duration::from_secs(60);
    while waiting > 0 && Instant::now() < until {
        match port.get(Some(Duration::from_secs(5))) {
            Ok(c) if c.ctx() == PROBE_RECV => {
                waiting -= 1;
                if c.bytes() == 1 {
                    rep.answered += 1;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for h in handles.iter().flatten() {
        let _ = port.close(h);
    }
    Ok(rep)
}
