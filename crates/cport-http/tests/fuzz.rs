//! Arbitrary bytes never break the server: random and mangled requests go
//! to a live server (on both backends), each answered with a well-formed
//! response or a close; afterwards the server still serves a normal request
//! and no handler panicked.

use cport_testutil::http as util;

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

/// What one case showed: the server answered, or closed without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Silent,
}

/// Sends `chunks` (as separate writes), half-closes, then reads until the
/// server closes. Every response must start with a status line; silence is
/// a pass only when the bytes never held a complete request head or a
/// framing error (the parser still waited for more when the client ended).
fn throw(addr: SocketAddr, chunks: &[Vec<u8>]) -> Result<Outcome, TestCaseError> {
    let s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut written = Vec::new();
    for c in chunks {
        if (&s).write_all(c).is_err() {
            break; // the server closed on an earlier chunk
        }
        written.extend_from_slice(c);
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    match (&s).take(1 << 20).read_to_end(&mut got) {
        Ok(_) => {}
        // A reset after an answer to a refused request is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "the server neither answered nor closed: {e}"
            )))
        }
    }
    if got.is_empty() {
        let parsed = cport_proto::http::parse_request(&written, &cport_proto::http::Limits::default());
        prop_assert!(
            matches!(parsed, Ok(cport_proto::http::Parse::Partial)),
            "no answer to {:?} (the parser says {:?})",
            String::from_utf8_lossy(&written[..written.len().min(120)]),
            parsed.map(|_| "a complete head")
        );
        return Ok(Outcome::Silent);
    }
    prop_assert!(
        got.starts_with(b"HTTP/1.1 "),
        "answer: {:?}",
        String::from_utf8_lossy(&got[..got.len().min(80)])
    );
    Ok(Outcome::Answered)
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
        let answered = std::cell::Cell::new(0);
        runner
            .run(&input(), |chunks| {
                if throw(addr, &chunks)? == Outcome::Answered {
                    answered.set(answered.get() + 1);
                }
                Ok(())
            })
            .unwrap();
        // The generator must reach the server's answers, not only its silence.
        assert!(answered.get() >= 24, "only {} of 96 cases were answered", answered.get());
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
