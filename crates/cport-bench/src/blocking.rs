//! Blocking-handler load: N connections in a closed loop, each sending a
//! 16-byte request and waiting for its answer; every `block_every`-th
//! request (counted over all connections) asks the server for a blocking
//! call. Latency is kept apart for the requests that block and for those
//! that do not: what a blocked worker costs everyone else shows in the
//! second.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, Handle, OpKind, Port};
use serde::Serialize;

use crate::conn;
use crate::report::{LatencyRecorder, Report, Window};

/// A request's size; the server answers with the same bytes.
pub const REQUEST: usize = 16;

/// What to run.
#[derive(Clone, Debug)]
pub struct BlockingConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Connections.
    pub conns: usize,
    /// One request in this many asks for the blocking call (20: 5%).
    pub block_every: u64,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time run but not measured.
    pub warmup: Duration,
    /// Backend of the client's own port.
    pub backend: Backend,
}

/// The outcome: every request, and the two kinds apart.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlockingReport {
    /// All requests (rate, latency).
    pub all: Report,
    /// Requests that did not ask to block: median and 99th percentile, µs.
    pub fast_p50_us: u64,
    /// See `fast_p50_us`.
    pub fast_p99_us: u64,
    /// Requests that asked to block: median and 99th percentile, µs.
    pub blocking_p50_us: u64,
    /// See `blocking_p50_us`.
    pub blocking_p99_us: u64,
}

impl std::fmt::Display for BlockingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.all)?;
        write!(
            f,
            "  non-blocking requests µs: p50={} p99={}   blocking requests µs: p50={} p99={}",
            self.fast_p50_us, self.fast_p99_us, self.blocking_p50_us, self.blocking_p99_us
        )
    }
}

struct Conn {
    h: Handle,
    /// When the outstanding request left, and whether it asks to block.
    sent: Option<(Instant, bool)>,
    got: usize,
}

const CTX_CONNECT: u64 = 1;
const CTX_RECV: u64 = 2;
const CTX_SEND: u64 = 3;

/// Runs the load and returns its report.
///
/// # Errors
/// When the client's port cannot be built; connection failures are counted
/// in the report instead.
pub fn run(cfg: &BlockingConfig) -> io::Result<BlockingReport> {
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    let mut conns: Vec<Conn> = Vec::with_capacity(cfg.conns);
    let mut report = Report {
        kind: "blocking".into(),
        target: cfg.target.to_string(),
        conns: cfg.conns,
        size: REQUEST,
        ..Report::default()
    };
    for i in 0..cfg.conns {
        let h = conn::open(&port, cfg.target, None, i as u64, CTX_CONNECT)?;
        conns.push(Conn { h, sent: None, got: 0 });
    }
    let mut window = Window::start(cfg.warmup, cfg.duration);
    let (mut all, mut fast, mut slow) = (
        LatencyRecorder::default(),
        LatencyRecorder::default(),
        LatencyRecorder::default(),
    );
    let mut seq = 0u64;
    let every = cfg.block_every.max(1);
    let mut send = |port: &Port, conn: &mut Conn| {
        seq += 1;
        let blocks = seq.is_multiple_of(every);
        let mut req = [0u8; REQUEST];
        req[..8].copy_from_slice(&seq.to_le_bytes());
        req[8] = u8::from(blocks);
        conn.sent = Some((Instant::now(), blocks));
        conn.got = 0;
        port.send(&conn.h, Bytes::copy_from_slice(&req), CTX_SEND).is_ok()
    };
    while let Some(mut c) = window.next(&port)? {
        let Some(conn) = conns.get_mut(c.key().0 as usize) else {
            continue;
        };
        match c.kind() {
            OpKind::Connect => {
                if c.result().is_err() {
                    report.connect_errors += 1;
                    let _ = port.close(&conn.h);
                    continue;
                }
                port.recv(&conn.h, Vec::with_capacity(4 * REQUEST), CTX_RECV)?;
                if !send(&port, conn) {
                    report.errors += 1;
                }
            }
            OpKind::Recv => {
                let n = match c.result() {
                    Ok(n) if *n > 0 => *n,
                    _ => {
                        report.errors += 1;
                        continue;
                    }
                };
                let buf = c.take_buf();
                conn.got += n;
                if conn.got >= REQUEST {
                    if let Some((at, blocks)) = conn.sent.take() {
                        let now = Instant::now();
                        if window.measures(at) {
                            let d = now - at;
                            all.record(d);
                            if blocks { &mut slow } else { &mut fast }.record(d);
                            report.messages += 1;
                            report.bytes += REQUEST as u64;
                        }
                    }
                    if !send(&port, conn) {
                        report.errors += 1;
                    }
                }
                if let Some(cport::Buf::Vec(mut v)) = buf {
                    v.clear();
                    port.recv(&conn.h, v, CTX_RECV)?;
                }
            }
            OpKind::Send => report.errors += u64::from(!conn::finish_send(&port, &conn.h, c, CTX_SEND)),
            _ => {}
        }
    }
    window.finish(&mut report, &all);
    for conn in &conns {
        let _ = port.close(&conn.h);
    }
    Ok(BlockingReport {
        all: report,
        fast_p50_us: fast.quantile_us(0.5),
        fast_p99_us: fast.quantile_us(0.99),
        blocking_p50_us: slow.quantile_us(0.5),
        blocking_p99_us: slow.quantile_us(0.99),
    })
}
