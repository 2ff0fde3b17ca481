//! The HTTP server's counters and the JSON of the stats endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cport::Stats;
use cport_server::ServerStats;
use serde_json::{json, Map, Value};

use crate::cache::CacheStats;

/// A snapshot of the HTTP layer's counters, from [`HttpServer::stats`](crate::HttpServer::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests answered (refusals included).
    pub requests: u64,
    /// Answers by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub by_class: [u64; 5],
    /// 304 Not Modified answers.
    pub not_modified: u64,
    /// 206 Partial Content answers.
    pub partial: u64,
    /// Requests refused with 408 because their head came too slowly.
    pub timeouts: u64,
    /// Body bytes queued (files and in-memory bodies; heads not counted).
    pub body_bytes: u64,
    /// Bodies sent as file ranges (zero-copy).
    pub file_bodies: u64,
    /// The in-memory file cache.
    pub cache: CacheStats,
}

#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// Every answer counts in exactly one class: their sum is the requests.
    by_class: [AtomicU64; 5],
    not_modified: AtomicU64,
    partial: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    body_bytes: AtomicU64,
    file_bodies: AtomicU64,
}

impl HttpCounters {
    /// Counts one answer.
    pub(crate) fn answered(&self, status: u16, body: u64, file: bool) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        match status {
            304 => {
                self.not_modified.fetch_add(1, Relaxed);
            }
            206 => {
                self.partial.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if body > 0 {
            self.body_bytes.fetch_add(body, Relaxed);
        }
        if file {
            self.file_bodies.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, cache: CacheStats) -> HttpStats {
        let by_class: [u64; 5] = std::array::from_fn(|i| self.by_class[i].load(Relaxed));
        HttpStats {
            requests: by_class.iter().sum(),
            by_class,
            not_modified: self.not_modified.load(Relaxed),
            partial: self.partial.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            body_bytes: self.body_bytes.load(Relaxed),
            file_bodies: self.file_bodies.load(Relaxed),
            cache,
        }
    }
}

/// Everything the stats endpoint shows.
pub(crate) struct Snapshot<'a> {
    pub backend: &'a str,
    pub threads: usize,
    pub uptime: Duration,
    pub server: Option<ServerStats>,
    pub port: Option<Stats>,
    pub http: HttpStats,
}

/// The JSON document of the stats endpoint.
pub(crate) fn to_json(s: &Snapshot<'_>) -> String {
    let server = s.server.as_ref().map_or(Value::Null, |v| {
        let disconnects: Map<String, Value> = v
            .disconnects
            .iter()
            .map(|(k, n)| (k.name().to_owned(), json!(n)))
            .collect();
        json!({
            "sessions": v.sessions,
            "accepted": v.accepted,
            "rejected": v.rejected,
            "messages_in": v.messages_in,
            "messages_out": v.messages_out,
            "bytes_in": v.bytes_in,
            "bytes_out": v.bytes_out,
            "disconnects": disconnects,
        })
    });
    let port = s.port.as_ref().map_or(Value::Null, |p| {
        let completed: Map<String, Value> = p
            .completed
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.name().to_owned(), json!(n)))
            .collect();
        let threads: Vec<Value> = p
            .threads
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "completions": t.completions,
                    "busy_ms": t.busy.as_millis() as u64,
                })
            })
            .collect();
        json!({
            "in_flight": p.in_flight,
            "queued": p.queued,
            "running": p.running,
            "max_running": p.max_running,
            "waiting": p.waiting,
            "completed": completed,
            "completed_total": p.total_completed(),
            "errors": p.errors,
            "backend_calls": p.backend_calls,
            "handles": p.handles,
            "threads": threads,
        })
    });
    let h = &s.http;
    let (servers, ports) = crate::process::servers_and_ports();
    let doc = json!({
        "servers": servers,
        "ports": ports,
        "backend": s.backend,
        "threads": s.threads,
        "uptime_secs": s.uptime.as_secs_f64(),
        "server": server,
        "port": port,
        "http": {
            "requests": h.requests,
            "status": {
                "1xx": h.by_class[0],
                "2xx": h.by_class[1],
                "3xx": h.by_class[2],
                "4xx": h.by_class[3],
                "5xx": h.by_class[4],
            },
            "not_modified": h.not_modified,
            "partial": h.partial,
            "timeouts": h.timeouts,
            "body_bytes": h.body_bytes,
            "file_bodies": h.file_bodies,
            "cache": {
                "hits": h.cache.hits,
                "misses": h.cache.misses,
                "entries": h.cache.entries,
                "bytes": h.cache.bytes,
            },
        },
    });
    let mut text = doc.to_string();
    text.push('\n');
    text
}
