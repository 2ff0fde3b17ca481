//! WebSocket on the HTTP server's port: upgrades only on configured paths
//! (ordinary requests still served beside them), the `Origin` allow-list,
//! and the server core's send cap applying to an upgraded session; idle
//! pings and close deadlines on the session's own timer.

use cport_testutil::http as util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cport_http::{WsClose, WsCloseCause, WsHandler, WsMessage, WsSession};
use cport_proto::ws::{encode_client_frame, Opcode};
use util::*;

/// Answers every message with `n` copies of a 64 KiB binary message.
struct Flood {
    opened: AtomicUsize,
}

impl WsHandler for Flood {
    fn on_open(&self, _: &WsSession) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    fn on_message(&self, ws: &WsSession, msg: WsMessage) {
        let n: usize = msg.as_text().and_then(|t| t.parse().ok()).unwrap_or(1);
        let big = bytes::Bytes::from(vec![7u8; 64 << 10]);
        for _ in 0..n {
            if !ws.send(WsMessage::Binary(big.clone())) {
                break;
            }
        }
    }
}

/// Closes the WebSocket when a message says `bye`; records how each ended.
#[derive(Default)]
struct Closer {
    closed: parking_lot::Mutex<Vec<Option<WsCloseCause>>>,
}

impl WsHandler for Closer {
    fn on_message(&self, ws: &WsSession, msg: WsMessage) {
        if msg.as_text() == Some("bye") {
            ws.close(1000, "bye");
        }
    }
    fn on_close(&self, _: &WsSession, close: Option<&WsClose>) {
        self.closed.lock().push(close.map(|c| c.cause));
    }
}

/// Threads of this process named `name` (Linux's /proc/self/task/*/comm).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

fn upgrade(addr: SocketAddr, path: &str, origin: Option<&str>) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

backend_tests! {
    fn upgrades_only_on_configured_paths_with_allowed_origins(backend: Backend) {
        let site = site();
        let flood = Arc::new(Flood { opened: AtomicUsize::new(0) });
        let server = serve_with(backend, site.path(), |c| {
            c.websocket("/ws", flood.clone())
                .ws_origins(vec!["http://good.example".into()])
        });
        let addr = server.local_addr();
        let (_, h) = upgrade(addr, "/ws", Some("http://good.example"));
        assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
        let (_, h) = upgrade(addr, "/ws?x=1", Some("HTTP://GOOD.example"));
        assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
        let (_, h) = upgrade(addr, "/ws", Some("http://evil.example"));
        assert!(h.starts_with("HTTP/1.1 403 "), "{h}");
        let (_, h) = upgrade(addr, "/ws", None);
        assert!(h.starts_with("HTTP/1.1 403 "), "no Origin with an allow-list: {h}");
        // Elsewhere an upgrade request is an ordinary request.
        let (_, h) = upgrade(addr, "/hello.txt", Some("http://good.example"));
        assert!(h.starts_with("HTTP/1.1 200 "), "{h}");
        assert_eq!(flood.opened.load(Ordering::Relaxed), 2);
        // Files are still served on the same port.
        assert_eq!(get(addr, "/hello.txt", &[]).status(), 200);
    }

    fn a_websocket_client_that_never_reads_is_cut_at_the_send_cap(backend: Backend) {
        let site = site();
        let flood = Arc::new(Flood { opened: AtomicUsize::new(0) });
        let server = serve_with(backend, site.path(), |c| {
            c.websocket("/ws", flood.clone()).max_queued_bytes(1 << 20)
        });
        let addr = server.local_addr();
        let (mut s, h) = upgrade(addr, "/ws", None);
        assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
        // Ask for 2 GiB and never read.
        s.write_all(&encode_client_frame(Opcode::Text, true, b"32768", [1, 2, 3, 4])).unwrap();
        let end = Instant::now() + LONG;
        while server.server_stats().sessions > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = server.server_stats();
        assert_eq!(stats.sessions, 0, "cut off, not buffered");
        assert_eq!(stats.disconnects_of(cport_server::ReasonKind::SlowConsumer), 1);
        // Another client is served normally afterwards.
        let (mut s2, h) = upgrade(addr, "/ws", None);
        assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
        s2.write_all(&encode_client_frame(Opcode::Text, true, b"1", [1, 2, 3, 4])).unwrap();
        let mut head = [0u8; 4];
        s2.read_exact(&mut head).unwrap();
        assert_eq!(head, [0x82, 127, 0, 0]);
    }

    fn an_idle_peer_is_pinged_and_dropped_when_it_does_not_answer(backend: Backend) {
        let site = site();
        let flood = Arc::new(Flood { opened: AtomicUsize::new(0) });
        let server = serve_with(backend, site.path(), |c| {
            c.websocket("/ws", flood.clone()).ws_config(cport_http::WsConfig {
                ping_interval: Some(Duration::from_millis(300)),
                ping_timeout: Duration::from_millis(300),
                ..cport_http::WsConfig::default()
            })
        });
        let (mut s, h) = upgrade(server.local_addr(), "/ws", None);
        assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
        let t0 = Instant::now();
        let mut ping = [0u8; 2];
        s.read_exact(&mut ping).unwrap();
        assert_eq!(ping, [0x89, 0], "an empty ping after the idle interval");
        assert!(t0.elapsed() >= Duration::from_millis(250));
        // No pong: the connection ends at the deadline.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

        // A peer that answers stays.
        let (mut s, _) = upgrade(server.local_addr(), "/ws", None);
        for _ in 0..3 {
            s.read_exact(&mut ping).unwrap();
            assert_eq!(ping, [0x89, 0]);
            s.write_all(&encode_client_frame(Opcode::Pong, true, b"", [5; 4])).unwrap();
        }
        s.write_all(&encode_client_frame(Opcode::Text, true, b"1", [5; 4])).unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head, [0x82, 127, 0, 0], "still served after three pings");
    }

    fn pings_and_the_close_deadline_run_on_the_sessions_timer(backend: Backend) {
        let site = site();
        let closer = Arc::new(Closer::default());
        let server = serve_with(backend, site.path(), |c| {
            c.websocket("/ws", closer.clone()).ws_config(cport_http::WsConfig {
                ping_interval: Some(Duration::from_millis(300)),
                ping_timeout: Duration::from_secs(5),
                close_timeout: Duration::from_millis(300),
                ..cport_http::WsConfig::default()
            })
        });
        assert_eq!(threads_named("cport-ws-timer"), 0, "no timer thread of its own");
        // An upgrade that arrives in two pieces ran the request timeout
        // first: the session's timer is handed over, and the ping comes.
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
        let mut ping = [0u8; 2];
        s.read_exact(&mut ping).unwrap();
        assert_eq!(ping, [0x89, 0], "an empty ping after the idle interval");
        s.write_all(&encode_client_frame(Opcode::Pong, true, b"", [5; 4])).unwrap();
        // A close the server starts, never answered: the TCP side ends at
        // the close deadline, and the handler hears it timed out.
        s.write_all(&encode_client_frame(Opcode::Text, true, b"bye", [5; 4])).unwrap();
        let t0 = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(t0.elapsed() < Duration::from_secs(5), "closed after {:?}", t0.elapsed());
        assert_eq!(rest.first(), Some(&0x88), "our close frame went out first: {rest:?}");
        let until = Instant::now() + LONG;
        while closer.closed.lock().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*closer.closed.lock(), vec![Some(WsCloseCause::Timeout)]);
    }
}
