//! Arbitrary bytes never break the server: random and mangled requests go
//! to a live server (on both backends), each answered with a well-formed
//! response or a close; afterwards the server still serves a normal request
//! and no handler panicked.

mod util;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use cport_server::ReasonKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use util::*;

/// Pieces that requests, and attacks on request parsers, are made of.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        Just(b"GET ".to_vec()),
        Just(b"HEAD ".to_vec()),
        Just(b"POST ".to_vec()),
        Just(b"/hello.txt".to_vec()),
        Just(b"/one.bin".to_vec()),
        Just(b"/../".to_vec()),
        Just(b"%2e%2e/".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"\\".to_vec()),
        Just(b" HTTP/1.1\r\n".to_vec()),
        Just(b" HTTP/1.0\r\n".to_vec()),
        Just(b"Host: x\r\n".to_vec()),
        Just(b"Range: bytes=".to_vec()),
        Just(b"Content-Length: ".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"If-None-Match: ".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"999999999999999999999".to_vec()),
        Just(b"-".to_vec()),
        Just(b":".to_vec()),
    ]
}

fn input() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(piece(), 0..16).prop_map(|p| p.concat()), 1..4)
}

/// Sends `chunks` (as separate writes), then reads whatever comes back
/// until the server closes or goes quiet. Every response that comes back
/// must start with a status line.
fn throw(addr: SocketAddr, chunks: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let s = connect(addr);
    s.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    for c in chunks {
        if (&s).write_all(c).is_err() {
            break; // the server closed on an earlier chunk
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let _ = (&s).take(1 << 20).read_to_end(&mut got);
    if !got.is_empty() {
        prop_assert!(
            got.starts_with(b"HTTP/1.1 "),
            "answer: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(80)])
        );
    }
    Ok(())
}

fn still_serves(addr: SocketAddr) {
    let r = exchange(addr, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, world\n"[..]));
}

backend_tests! {
    fn arbitrary_bytes_never_break_the_server(backend: Backend) {
        let site = site();
        let server = serve_with(backend, site.path(), |c| {
            c.request_timeout(Duration::from_millis(100)).idle_timeout(Duration::from_millis(500))
        });
        let addr = server.local_addr();
        let mut runner = TestRunner::new(Config {
            cases: 96,
            failure_persistence: None,
            ..Config::default()
        });
        runner.run(&input(), |chunks| throw(addr, &chunks)).unwrap();
        still_serves(addr);
        let stats = server.server_stats();
        assert_eq!(stats.disconnects_of(ReasonKind::HandlerPanicked), 0);
        assert!(server.stats().requests > 0);
    }

    fn random_bytes_on_a_keep_alive_connection(backend: Backend) {
        let site = site();
        let server = serve(backend, site.path());
        let addr = server.local_addr();
        let mut runner = TestRunner::new(Config {
            cases: 48,
            failure_persistence: None,
            ..Config::default()
        });
        // A valid request first, then noise on the same connection: the
        // first answer is whole, whatever follows.
        runner
            .run(&prop::collection::vec(any::<u8>(), 1..2048), |noise| {
                let mut msg = b"GET /one.bin HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
                msg.extend_from_slice(&noise);
                let s = connect(addr);
                let _ = (&s).write_all(&msg);
                let mut rd = BufReader::new(s);
                let r = read_response(&mut rd, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!((r.status, r.body.len()), (200, 1024));
                Ok(())
            })
            .unwrap();
        still_serves(addr);
        assert_eq!(server.server_stats().disconnects_of(ReasonKind::HandlerPanicked), 0);
    }
}
