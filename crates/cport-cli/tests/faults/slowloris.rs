//! Slowloris: clients that hold a connection open by sending a request (or
//! a line, or nothing) too slowly. Each server's deadline cuts them, and
//! the clients that behave are served all the while.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::clients::{
    closed_within, connect, echo_once, http_get, warm_chat, warm_echo, warm_http, LineClient, Scratch,
};
use crate::server::{Backend, Launch, Tolerance};

/// Slow clients per case.
const SLOW: usize = 50;

/// Slow clients, each trickling `piece` every `every` until the server
/// closes it; checks `healthy` once per round. Returns when each slow
/// client was cut (`None`: still open at `limit`) and what it was sent.
fn trickle(
    addr: SocketAddr,
    opening: &[u8],
    piece: &[u8],
    every: Duration,
    limit: Duration,
    mut healthy: impl FnMut(),
) -> Vec<(Option<Duration>, Vec<u8>)> {
    let t0 = Instant::now();
    let mut slow: Vec<(TcpStream, Option<Duration>, Vec<u8>)> = (0..SLOW)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(opening).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, None, Vec::new())
        })
        .collect();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit && slow.iter().any(|(_, cut, _)| cut.is_none()) {
        for (s, cut, got) in slow.iter_mut().filter(|(_, cut, _)| cut.is_none()) {
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break *cut = Some(t0.elapsed()),
                    Ok(n) if got.len() < 4096 => got.extend_from_slice(&buf[..n]),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Still open: one more piece (a reset shows on the next read).
                        let _ = s.write(piece);
                        break;
                    }
                    Err(_) => break *cut = Some(t0.elapsed()),
                }
            }
        }
        healthy();
        std::thread::sleep(every);
    }
    slow.into_iter().map(|(_, cut, got)| (cut, got)).collect()
}

/// HTTP: request heads trickled a header line at a time are answered 408
/// and closed at the request deadline (10 s); normal requests are served
/// meanwhile.
pub fn http(b: Backend) {
    let root = Scratch::new("slowloris");
    root.file("small.txt", 100);
    root.file("warm.bin", 1 << 20);
    let server = Launch::new(&["http", "--listen", "127.0.0.1:0", "--root", root.as_str()], &["http"]).spawn(b);
    let addr = server.addr("http");
    assert_eq!(http_get(addr, "/small.txt").unwrap(), (200, 100));
    warm_http(addr, "/small.txt", "/warm.bin");
    let before = server.quiet_usage();
    let mut served = 0;
    let cuts = trickle(
        addr,
        b"GET /small.txt HTTP/1.1\r\nHost: x\r\n",
        b"X-a: b\r\n",
        Duration::from_millis(500),
        Duration::from_secs(16),
        || {
            assert_eq!(
                http_get(addr, "/small.txt").unwrap(),
                (200, 100),
                "served amid slowloris"
            );
            served += 1;
        },
    );
    assert!(served >= 10, "{served}");
    for (cut, got) in &cuts {
        let cut = cut.unwrap_or_else(|| panic!("{b:?}: a slowloris request was still open after 16 s"));
        assert!(
            cut >= Duration::from_secs(9),
            "{b:?}: cut at {cut:?}, before the 10 s deadline"
        );
        assert!(got.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(got));
    }
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}

/// Chat: lines that never end are cut at the line deadline (`--line-timeout
/// 1`); a member chatting meanwhile gets its room's messages.
pub fn chat(b: Backend) {
    let server = Launch::new(&["chat", "--listen", "127.0.0.1:0", "--line-timeout", "1"], &["chat"]).spawn(b);
    let addr = server.addr("chat");
    warm_chat(addr);
    let mut a = LineClient::member(addr, "a", "r");
    let mut z = LineClient::member(addr, "z", "r");
    a.until_line("* z joined r");
    let before = server.quiet_usage();
    let mut n = 0;
    let cuts = trickle(
        addr,
        b"hel",
        b"l",
        Duration::from_millis(200),
        Duration::from_secs(8),
        || {
            z.send(&format!("hi {n}\n"));
            a.until_line(&format!("[r] z: hi {n}"));
            n += 1;
        },
    );
    for (cut, _) in &cuts {
        let cut = cut.unwrap_or_else(|| panic!("{b:?}: an unfinished line was still open after 8 s"));
        assert!(cut < Duration::from_secs(5), "{b:?}: cut only at {cut:?}");
    }
    z.send("still here\n");
    a.until_line("[r] z: still here");
    drop((a, z));
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}

/// Echo has no request to finish: a slowloris there is a connection that
/// goes silent. `--idle-timeout 1` cuts silent ones; a client that keeps
/// talking is never cut.
pub fn echo(b: Backend) {
    let server = Launch::new(&["echo", "--listen", "127.0.0.1:0", "--idle-timeout", "1"], &["echo"]).spawn(b);
    let addr = server.addr("echo");
    warm_echo(addr);
    let before = server.quiet_usage();
    let mut busy = connect(addr);
    let mut silent: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = connect(addr);
            echo_once(&mut s, 1).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        echo_once(&mut busy, 10).expect("a busy client is never cut");
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(2)),
            "{b:?}: silent for 4 s, still open"
        );
    }
    drop((busy, silent));
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}

/// `--idle-timeout 1` never closes a connection less than 1 s after its
/// last byte (the docs' promise), and does close it by 3 s.
pub fn never_early(b: Backend) {
    let server = Launch::new(&["echo", "--listen", "127.0.0.1:0", "--idle-timeout", "1"], &["echo"]).spawn(b);
    let addr = server.addr("echo");
    warm_echo(addr);
    let before = server.quiet_usage();
    let watchers: Vec<_> = (0..10)
        .map(|i| {
            // Spread over a tick or two of the server's timer.
            std::thread::sleep(Duration::from_millis(70));
            std::thread::spawn(move || {
                let mut s = connect(addr);
                echo_once(&mut s, 1).unwrap();
                let last = Instant::now();
                s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
                let r = s.read(&mut [0u8; 16]);
                (i, r.map_err(|e| e.kind()), last.elapsed())
            })
        })
        .collect();
    for w in watchers {
        let (i, r, idle) = w.join().unwrap();
        assert!(
            matches!(r, Ok(0) | Err(io::ErrorKind::ConnectionReset)),
            "{b:?}: connection {i} not cut after {idle:?} idle: {r:?}"
        );
        assert!(
            idle >= Duration::from_secs(1),
            "{b:?}: connection {i} cut after {idle:?} idle, under 1 s"
        );
        assert!(
            idle < Duration::from_secs(3),
            "{b:?}: connection {i} cut only after {idle:?}"
        );
    }
    server.assert_flat(&before, Tolerance::CONNECTIONS);
}
