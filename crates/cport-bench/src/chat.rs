//! Chat load: clients in rooms, each posting on a schedule; measures how long
//! a message takes to reach every member of its room (fan-out latency).
//!
//! Every message carries its send time (µs since the run started, one clock
//! for all clients: they live in this process), so each delivery yields one
//! latency sample.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, OpKind, Payload, Port};
use cport_proto::framing::Lines;

use crate::conn;
use crate::report::{LatencyRecorder, Report, Window};

/// What to run.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Chat server address.
    pub target: SocketAddr,
    /// Nodes of one chat cluster: client `i` connects to `targets[i % n]`
    /// (empty: every client to `target`).
    pub targets: Vec<SocketAddr>,
    /// Clients.
    pub conns: usize,
    /// Rooms the clients are spread over.
    pub rooms: usize,
    /// Messages per second each client posts.
    pub rate_per_client: f64,
    /// Measured time.
    pub duration: Duration,
    /// Time for joining and settling before measuring.
    pub warmup: Duration,
    /// Client backend.
    pub backend: Backend,
}

struct Client {
    h: cport::Handle,
    /// Received bytes of a line not yet complete.
    pending: Vec<u8>,
    /// The server's line framing (`cport_proto::framing::Lines`).
    lines: Lines,
    live: bool,
}

/// Longest line a client keeps; past it the partial line is dropped.
const MAX_LINE: usize = 64 * 1024;

const TICK: u64 = u64::MAX;

/// Extracts the send time from a room line `[room] nick: m <micros>`.
fn stamp(line: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(line).ok()?;
    if !s.starts_with('[') {
        return None;
    }
    let text = s.split_once(": ")?.1;
    text.strip_prefix("m ")?.trim().parse().ok()
}

/// Runs the load. `messages` in the report counts deliveries (a message to a
/// room of 100 counts 100).
///
/// # Errors
/// When the client's port cannot be built.
pub fn run(cfg: &ChatConfig) -> io::Result<Report> {
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    let mut rep = Report {
        kind: "chat".into(),
        target: if cfg.targets.is_empty() {
            cfg.target.to_string()
        } else {
            cfg.targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        conns: cfg.conns,
        ..Report::default()
    };
    let mut clients = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let target = match cfg.targets.len() {
            0 => cfg.target,
            n => cfg.targets[i % n],
        };
        let h = conn::open(&port, target, None, i as u64, 0)?;
        clients.push(Client {
            h,
            pending: Vec::new(),
            lines: Lines::new(MAX_LINE),
            live: false,
        });
    }
    let t0 = Instant::now();
    let mut window = Window::start(cfg.warmup, cfg.duration);
    // Messages sent in the measured window carry at least this stamp.
    let from_us = window.from.duration_since(t0).as_micros() as u64;
    let step = Duration::from_secs_f64(1.0 / (cfg.rate_per_client * cfg.conns as f64).max(1e-3));
    let mut next = window.from;
    let mut rr = 0usize;
    port.timeout(Duration::from_millis(1), TICK)?;
    let mut lat = LatencyRecorder::default();
    while let Some(c) = window.next(&port)? {
        if c.ctx() == TICK {
            let now = Instant::now();
            while next <= now && !clients.is_empty() {
                let k = rr % clients.len();
                rr += 1;
                if clients[k].live {
                    let us = next.duration_since(t0).as_micros();
                    let msg = Bytes::from(format!("m {us}\n"));
                    if port.send(&clients[k].h, msg, 0).is_err() {
                        rep.errors += 1;
                    }
                }
                next += step;
            }
            port.timeout(Duration::from_millis(1), TICK)?;
            continue;
        }
        let i = c.key().0 as usize;
        let Some(cl) = clients.get_mut(i) else { continue };
        match c.kind() {
            OpKind::Connect if c.result().is_ok() => {
                cl.live = true;
                let hello = format!("/nick c{i}\n/join room{}\n", i % cfg.rooms.max(1));
                port.send(&cl.h, Bytes::from(hello), 0)?;
                port.recv(&cl.h, Vec::with_capacity(16 * 1024), 0)?;
            }
            OpKind::Connect => rep.connect_errors += 1,
            OpKind::Recv => match c.into_parts() {
                (Ok(n), Payload::Buf(b)) if n > 0 => {
                    let mut v = b.into_vec();
                    let now = Instant::now();
                    let since = now.duration_since(t0).as_micros() as u64;
                    // Lines are cut from the received buffer in place; only a
                    // partial line is copied aside until its rest arrives.
                    let mut buf = std::mem::take(&mut cl.pending);
                    let in_buf = !buf.is_empty();
                    let input: &[u8] = if !in_buf {
                        &v
                    } else {
                        buf.extend_from_slice(&v);
                        &buf
                    };
                    let mut at = 0;
                    loop {
                        let line = match cl.lines.decode_slice(&input[at..]) {
                            Ok(Some((line, used))) => {
                                at += used;
                                line
                            }
                            Ok(None) => break,
                            Err(_) => {
                                // Longer than any line the server sends: drop it.
                                at = input.len();
                                cl.lines = Lines::new(MAX_LINE);
                                break;
                            }
                        };
                        if let Some(sent) = stamp(line) {
                            if window.measures(now) && sent >= from_us {
                                lat.record(Duration::from_micros(since.saturating_sub(sent)));
                                rep.messages += 1;
                                rep.bytes += line.len() as u64 + 1;
                            }
                        } else if line.starts_with(b"! ") {
                            rep.errors += 1;
                        }
                    }
                    if in_buf {
                        buf.drain(..at);
                    } else {
                        buf.extend_from_slice(&v[at..]);
                    }
                    cl.pending = buf;
                    v.clear();
                    port.recv(&cl.h, v, 0)?;
                }
                _ => {
                    cl.live = false;
                    rep.errors += 1;
                }
            },
            _ => {}
        }
    }
    window.finish(&mut rep, &lat);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_from_room_lines_only() {
        assert_eq!(stamp(b"[room3] c7: m 12345"), Some(12345));
        assert_eq!(stamp(b"* c7 joined room3"), None);
        assert_eq!(stamp(b"[room3] c7: hello"), None);
    }
}
