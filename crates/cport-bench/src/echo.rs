//! Echo load: N connections, each sending a message and counting the echo.
//!
//! Closed loop (default): each connection sends its next message when the
//! previous echo is complete. Open loop (`rate`): messages leave on a fixed
//! schedule whatever the server does, and latency runs from the *intended*
//! send time, so a stalled server cannot hide its stall (coordinated omission).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, Handle, OpKind, Port};

use crate::conn;
use crate::report::{LatencyRecorder, Report, Window};

/// What to run.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Server address.
    pub target: SocketAddr,
    /// Connections to open.
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time run but not measured.
    pub warmup: Duration,
    /// Open loop: messages per second over all connections.
    pub rate: Option<f64>,
    /// Backend of the client's own port.
    pub backend: Backend,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 7000)),
            conns: 50,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            rate: None,
            backend: Backend::Auto,
        }
    }
}

struct Conn {
    h: Handle,
    /// When each message still awaiting its echo was (meant to be) sent.
    sent_at: VecDeque<Instant>,
    /// Echo bytes received towards the oldest outstanding message.
    got: usize,
    live: bool,
}

const TICK: u64 = u64::MAX;
const CTX_CONNECT: u64 = 1;
const CTX_RECV: u64 = 2;
const CTX_SEND: u64 = 3;

/// Runs the load and returns its report.
///
/// # Errors
/// When the client's port cannot be built; connection failures are counted
/// in the report instead.
pub fn run(cfg: &EchoConfig) -> io::Result<Report> {
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    let pool = port.buf_pool(pool_size(cfg.conns), 16 * 1024)?;
    let msg = Bytes::from(vec![b'x'; cfg.size.max(1)]);
    let mut conns: Vec<Conn> = Vec::with_capacity(cfg.conns);
    let mut report = Report {
        kind: "echo".into(),
        target: cfg.target.to_string(),
        conns: cfg.conns,
        size: msg.len(),
        ..Report::default()
    };

    for i in 0..cfg.conns {
        let h = conn::open(&port, cfg.target, None, i as u64, CTX_CONNECT)?;
        conns.push(Conn {
            h,
            sent_at: VecDeque::new(),
            got: 0,
            live: false,
        });
    }

    let start = Instant::now();
    let mut window = Window::start(cfg.warmup, cfg.duration);
    let mut lat = LatencyRecorder::default();
    // Open loop: each tick sends what the schedule says is due.
    let interval = cfg.rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let mut next_send = start;
    let mut rr = 0usize;
    if interval.is_some() {
        port.timeout(Duration::from_millis(1), TICK)?;
    }

    while let Some(c) = window.next(&port)? {
        if c.ctx() == TICK {
            let now = Instant::now();
            let step = interval.expect("ticks only in open loop");
            while next_send <= now {
                // Round-robin over live connections; a dead one skips its turn.
                if let Some(conn) = (0..conns.len())
                    .map(|k| (rr + k) % conns.len())
                    .find(|&k| conns[k].live)
                {
                    let conn = &mut conns[conn];
                    conn.sent_at.push_back(next_send);
                    if port.send(&conn.h, msg.clone(), CTX_SEND).is_err() {
                        report.errors += 1;
                    }
                    rr = rr.wrapping_add(1);
                }
                next_send += step;
            }
            port.timeout(Duration::from_millis(1), TICK)?;
            continue;
        }
        let idx = c.key().0 as usize;
        let Some(conn) = conns.get_mut(idx) else { continue };
        match c.kind() {
            OpKind::Connect => {
                if c.result().is_err() {
                    report.connect_errors += 1;
                    let _ = port.close(&conn.h);
                    continue;
                }
                conn.live = true;
                port.recv_pooled_multi(&conn.h, &pool, CTX_RECV)?;
                if interval.is_none() {
                    conn.sent_at.push_back(Instant::now());
                    port.send(&conn.h, msg.clone(), CTX_SEND)?;
                }
            }
            OpKind::RecvPooled => {
                let more = c.more();
                let (res, _buf) = c.into_parts();
                match res {
                    Ok(0) => {
                        conn.live = false;
                        report.errors += 1;
                    }
                    Ok(n) => {
                        conn.got += n;
                        let now = Instant::now();
                        while conn.got >= msg.len() && !conn.sent_at.is_empty() {
                            conn.got -= msg.len();
                            let sent = conn.sent_at.pop_front().expect("checked non-empty");
                            if window.measures(now) && window.measures(sent) {
                                lat.record(now - sent);
                                report.messages += 1;
                                report.bytes += msg.len() as u64;
                            }
                            if interval.is_none() {
                                conn.sent_at.push_back(now);
                                if port.send(&conn.h, msg.clone(), CTX_SEND).is_err() {
                                    report.errors += 1;
                                }
                            }
                        }
                        if !more {
                            port.recv_pooled_multi(&conn.h, &pool, CTX_RECV)?;
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc_enobufs()) => {
                        port.recv_pooled_multi(&conn.h, &pool, CTX_RECV)?;
                    }
                    Err(_) => {
                        conn.live = false;
                        report.errors += 1;
                    }
                }
            }
            OpKind::Send => {
                let sent = conn::finish_send(&port, &conn.h, c, CTX_SEND);
                if !sent {
                    report.errors += 1;
                }
            }
            _ => {}
        }
    }
    window.finish(&mut report, &lat);
    for conn in &conns {
        let _ = port.close(&conn.h);
    }
    Ok(report)
}

/// Enough pooled receive buffers for every connection to have a few in use.
fn pool_size(conns: usize) -> u16 {
    (conns * 4).clamp(256, 32768).next_power_of_two().min(32768) as u16
}

/// ENOBUFS: the pool ran dry; re-arm the receive.
fn libc_enobufs() -> i32 {
    rustix::io::Errno::NOBUFS.raw_os_error()
}
