//! Full-speed readers: a client that sends a lot at once and reads the
//! answers as fast as it can must get every byte. Flow control, never loss:
//! the server pauses receiving while its own answers queue up, instead of
//! cutting the client as a slow consumer.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crate::clients::{connect, read_head, skip_body, warm_echo, warm_http, Scratch};
use crate::server::{Backend, Launch, Tolerance};

/// 64 MiB through echo, read at full speed while it is written.
pub fn echo_64_mib(b: Backend) {
    const TOTAL: usize = 64 << 20;
    let server = Launch::new(&["echo", "--listen", "127.0.0.1:0"], &["echo"]).spawn(b);
    warm_echo(server.addr("echo"));
    let before = server.quiet_usage();
    let mut s = connect(server.addr("echo"));
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk: Vec<u8> = (0..64 << 10).map(|i: u32| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < TOTAL {
            if w.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        let _ = w.shutdown(Shutdown::Write);
        sent
    });
    let t0 = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 << 10];
    // The chunk pattern, long enough to compare any read against a slice of it.
    let pattern: Vec<u8> = (0..(64 << 10) + buf.len())
        .map(|i| ((i % (64 << 10)) % 251) as u8)
        .collect();
    while got < TOTAL && t0.elapsed() < Duration::from_secs(60) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // The stream is the chunk pattern repeated: check it as it comes.
                let off = got % (64 << 10);
                assert!(
                    buf[..n] == pattern[off..off + n],
                    "{b:?}: echoed bytes differ near offset {got}"
                );
                got += n;
            }
        }
    }
    let sent = writer.join().unwrap();
    assert_eq!(sent, TOTAL, "{b:?}: the server stopped taking input");
    assert_eq!(
        got,
        TOTAL,
        "{b:?}: a full-speed reader got {got} of {TOTAL} bytes in {:?}",
        t0.elapsed()
    );
    assert_eq!(s.read(&mut buf).unwrap(), 0, "{b:?}: the stream ends after the echo");
    drop(s);
    server.assert_flat(&before, Tolerance::BULK);
    server.assert_no_panic();
}

/// 20,000 pipelined requests in one stream, answers read at full speed.
pub fn http_20000(b: Backend) {
    const REQUESTS: usize = 20_000;
    let root = Scratch::new("pipeline");
    root.file("small.txt", 200);
    root.file("warm.bin", 1 << 20);
    let server = Launch::new(&["http", "--listen", "127.0.0.1:0", "--root", root.as_str()], &["http"]).spawn(b);
    warm_http(server.addr("http"), "/small.txt", "/warm.bin");
    let before = server.quiet_usage();
    let mut s = connect(server.addr("http"));
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let all = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS);
        w.write_all(&all).is_ok()
    });
    let mut rest = Vec::new();
    for i in 0..REQUESTS {
        let head = read_head(&mut s, &mut rest).unwrap_or_else(|e| panic!("{b:?}: answer {i} of {REQUESTS}: {e}"));
        assert_eq!(
            (head.status, head.content_length),
            (200, Some(200)),
            "{b:?}: answer {i}"
        );
        skip_body(&mut s, &mut rest, 200).unwrap();
    }
    assert!(writer.join().unwrap(), "{b:?}: the server stopped taking requests");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        s.read(&mut [0u8; 64]).unwrap(),
        0,
        "{b:?}: nothing past the last answer"
    );
    drop(s);
    server.assert_flat(&before, Tolerance::BULK);
    server.assert_no_panic();
}
