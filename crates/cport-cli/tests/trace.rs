//! `RUST_LOG=cport=trace` tells one connection's story: the session opened
//! under its key, then each of its operations issued and completed inside
//! that session's span, each completion under that key.

use cport_testutil::cli as util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use util::*;

#[test]
fn trace_logs_follow_one_session_from_open_to_close() {
    let (mut cmd, _data) = command(&["echo", "--listen", "127.0.0.1:0", "--backend", "uring"]);
    cmd.env("RUST_LOG", "cport=trace").env("NO_COLOR", "1");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cport echo");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .split(": listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listening line");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = child.wait();
    let err = strip_ansi(&err);

    let opened = err
        .lines()
        .find(|l| l.contains("session opened"))
        .unwrap_or_else(|| panic!("no session opened:\n{err}"));
    let key = opened
        .split_whitespace()
        .find_map(|w| w.strip_prefix("key="))
        .expect("the session's key")
        .to_owned();
    let span = format!("key={key}}}");
    let in_span: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("session{") && l.contains(&span))
        .collect();
    // Completions are reaped in batches by whichever thread leads, outside
    // any session: each names its key.
    let keyed = format!("key={key} ");
    assert!(
        err.lines()
            .any(|l| l.contains("completed") && l.contains("kind=recv") && l.contains(&keyed)),
        "the receive's completion names the key:\n{err}"
    );
    assert!(
        in_span.iter().any(|l| l.contains("issued") && l.contains("kind=send")),
        "the echo's send issued in it:\n{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("completed") && l.contains("kind=send") && l.contains(&keyed)),
        "the send's completion names the key:\n{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("session closed")),
        "the close is told:\n{err}"
    );
}

/// The log without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
