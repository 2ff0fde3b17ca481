//! WebSocket echo load: N connections upgrade, then each sends a masked
//! binary message and waits for its whole echo before sending the next
//! (closed loop), as [`crate::echo`] does over raw TCP.
//!
//! The echo is counted in bytes (frame head plus payload) without parsing
//! the server's frames: the client spends its core on load, not decoding.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, Handle, OpKind, Payload, Port};
use cport_proto::ws::{encode_client_frame, FrameHead, Opcode};

use crate::conn;
use crate::report::{LatencyRecorder, Report, Window};

/// What to run.
#[derive(Clone, Debug)]
pub struct WsLoadConfig {
    /// Server address.
    pub target: SocketAddr,
    /// The `Host` header and request path of the upgrade.
    pub host: String,
    /// The request path.
    pub path: String,
    /// Connections to open.
    pub conns: usize,
    /// Message payload size in bytes.
    pub size: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time run but not measured.
    pub warmup: Duration,
    /// Backend of the client's own port.
    pub backend: Backend,
}

/// Splits `ws://host:port/path` into the address, the `Host` value and the path.
///
/// # Errors
/// Another scheme, or a host that does not resolve.
pub fn parse_url(url: &str) -> io::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "only ws:// URLs"))?;
    crate::http::parse_url(&format!("http://{rest}"))
}

struct Conn {
    h: Handle,
    /// Still reading the 101 answer: the bytes of its head so far.
    head: Option<Vec<u8>>,
    sent_at: VecDeque<Instant>,
    got: usize,
}

const CTX_CONNECT: u64 = 1;
const CTX_RECV: u64 = 2;
const CTX_SEND: u64 = 3;

/// Runs the load and returns its report (`kind` "ws").
///
/// # Errors
/// When the client's port cannot be built; connection and handshake
/// failures are counted in the report.
pub fn run(cfg: &WsLoadConfig) -> io::Result<Report> {
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    let pool = port.buf_pool(
        (cfg.conns * 4).clamp(256, 32768).next_power_of_two().min(32768) as u16,
        16 * 1024,
    )?;
    let payload = vec![b'x'; cfg.size.max(1)];
    let frame = Bytes::from(encode_client_frame(
        Opcode::Binary,
        true,
        &payload,
        [0x1b, 0x2c, 0x3d, 0x4e],
    ));
    // What comes back: an unmasked frame with the same payload.
    let echo_len = FrameHead::new(Opcode::Binary, true, payload.len() as u64, None)
        .as_bytes()
        .len()
        + payload.len();
    let request = Bytes::from(format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        cfg.path, cfg.host
    ));
    let mut report = Report {
        kind: "ws".into(),
        target: format!("ws://{}{}", cfg.host, cfg.path),
        conns: cfg.conns,
        size: payload.len(),
        ..Report::default()
    };
    let mut conns = Vec::with_capacity(cfg.conns);
    for i in 0..cfg.conns {
        let h = conn::open(&port, cfg.target, None, i as u64, CTX_CONNECT)?;
        conns.push(Conn {
            h,
            head: Some(Vec::new()),
            sent_at: VecDeque::new(),
            got: 0,
        });
    }
    let mut window = Window::start(cfg.warmup, cfg.duration);
    let mut lat = LatencyRecorder::default();
    while let Some(c) = window.next(&port)? {
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
                port.recv_pooled_multi(&conn.h, &pool, CTX_RECV)?;
                port.send(&conn.h, request.clone(), CTX_SEND)?;
            }
            OpKind::RecvPooled => {
                let more = c.more();
                let (res, buf) = c.into_parts();
                let n = match res {
                    Ok(n) if n > 0 => n,
                    // The pool ran dry: re-arm below.
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => 0,
                    _ => {
                        report.errors += 1;
                        let _ = port.close(&conn.h);
                        continue;
                    }
                };
                let mut n = n;
                if let (Some(head), Payload::Buf(b)) = (conn.head.as_mut(), &buf) {
                    head.extend_from_slice(&b[..n]);
                    match memchr::memmem::find(head, b"\r\n\r\n") {
                        Some(end) if head.starts_with(b"HTTP/1.1 101 ") => {
                            n = head.len() - (end + 4);
                            conn.head = None;
                            conn.sent_at.push_back(Instant::now());
                            port.send(&conn.h, frame.clone(), CTX_SEND)?;
                        }
                        Some(_) => {
                            report.errors += 1; // refused the upgrade
                            let _ = port.close(&conn.h);
                            continue;
                        }
                        None if head.len() > 4096 => {
                            report.errors += 1;
                            let _ = port.close(&conn.h);
                            continue;
                        }
                        None => n = 0,
                    }
                }
                conn.got += n;
                let now = Instant::now();
                while conn.got >= echo_len && !conn.sent_at.is_empty() {
                    conn.got -= echo_len;
                    let sent = conn.sent_at.pop_front().expect("checked non-empty");
                    if window.measures(now) && window.measures(sent) {
                        lat.record(now - sent);
                        report.messages += 1;
                        report.bytes += payload.len() as u64;
                    }
                    conn.sent_at.push_back(now);
                    if port.send(&conn.h, frame.clone(), CTX_SEND).is_err() {
                        report.errors += 1;
                    }
                }
                if !more {
                    port.recv_pooled_multi(&conn.h, &pool, CTX_RECV)?;
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
