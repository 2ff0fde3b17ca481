//! What `cport top` shows, read from a server's `/_cport/stats` document:
//! the documents' shape (a subset, deserialized), and completions per second
//! from two samples.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// The stats document, as far as `cport top` reads it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Doc {
    /// The web server's backend.
    pub backend: String,
    /// Seconds since the web server started.
    pub uptime_secs: f64,
    /// Every server of the process.
    #[serde(default)]
    pub servers: Vec<ServerDoc>,
    /// Every completion port of the process.
    #[serde(default)]
    pub ports: Vec<PortDoc>,
}

/// One server.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerDoc {
    pub name: String,
    #[serde(default)]
    pub addrs: Vec<String>,
    /// Index into `Doc::ports`.
    pub port: usize,
    pub sessions: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(default)]
    pub top_sessions: Vec<SessionDoc>,
}

/// One of a server's busiest sessions.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SessionDoc {
    pub id: u64,
    pub peer: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One completion port's snapshot.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PortDoc {
    pub backend: String,
    pub completed: u64,
    pub in_flight: BTreeMap<String, InFlightDoc>,
    pub in_flight_total: u64,
    pub queued: u64,
    pub running: u64,
    pub concurrency: u64,
    pub workers: Vec<WorkerDoc>,
    pub handoffs: u64,
    pub latency: BTreeMap<String, LatencyDoc>,
    pub stuck: u64,
}

/// Operations of one kind in flight.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct InFlightDoc {
    pub count: u64,
    pub oldest_us: Option<u64>,
}

/// Latency of one kind.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LatencyDoc {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The last one to two minutes' p99.
    #[serde(default)]
    pub recent_p99_us: Option<u64>,
}

/// One worker thread.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WorkerDoc {
    pub name: Option<String>,
    pub state: String,
    pub completions: u64,
}

/// One poll's document and when it came.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub doc: Doc,
}

/// Fetches and parses the stats document at `url`.
pub fn fetch(url: &str, timeout: Duration) -> Result<Sample, String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let body = agent
        .get(url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .into_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let doc = serde_json::from_str(&body).map_err(|e| format!("{url}: not a cport stats document: {e}"))?;
    Ok(Sample {
        at: Instant::now(),
        doc,
    })
}

/// Completions per second of port `i` between two samples (`None` without
/// an earlier sample of that port).
pub fn rate(prev: Option<&Sample>, now: &Sample, i: usize) -> Option<f64> {
    let prev = prev?;
    let (a, b) = (prev.doc.ports.get(i)?, now.doc.ports.get(i)?);
    let dt = now.at.saturating_duration_since(prev.at).as_secs_f64();
    (dt > 0.0).then(|| b.completed.saturating_sub(a.completed) as f64 / dt)
}

/// The names of the servers on port `i`, joined with commas.
pub fn servers_on(doc: &Doc, i: usize) -> String {
    let names: Vec<&str> = doc
        .servers
        .iter()
        .filter(|s| s.port == i)
        .map(|s| s.name.as_str())
        .collect();
    names.join(",")
}

/// A duration in microseconds, short and human (`850us`, `12.3ms`, `4.0s`).
pub fn human_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.1}s", us as f64 / 1e6),
    }
}

/// A byte count, short and human.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
