//! SIGTERM under load: downloads in flight when the signal comes are
//! finished (every promised byte sent), then the server exits cleanly. Its
//! exit is the check on what it held: a thread per download is the stalled
//! downloads case's to catch.

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::clients::{connect, http_get, read_head, Scratch};
use crate::server::{Backend, Launch};

const CLIENTS: usize = 16;
const LEN: u64 = 8 << 20;

pub fn case(b: Backend) {
    let root = Scratch::new("sigterm");
    root.file("big.bin", LEN);
    let mut server = Launch::new(
        &[
            "http",
            "--listen",
            "127.0.0.1:0",
            "--root",
            root.as_str(),
            "--shutdown-timeout",
            "20",
        ],
        &["http"],
    )
    .spawn(b);
    let addr = server.addr("http");
    assert_eq!(http_get(addr, "/big.bin").unwrap(), (200, LEN));
    // Downloads read at about 8 MiB/s each: still in flight at the signal.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            thread::spawn(move || {
                let mut rest = Vec::new();
                let head = read_head(&mut s, &mut rest)?;
                let mut got = rest.len() as u64;
                let mut buf = vec![0u8; 80 << 10];
                while got < head.content_length.unwrap_or(0) {
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                    thread::sleep(Duration::from_millis(10));
                }
                Ok::<_, std::io::Error>((head.status, got))
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    server.signal(Signal::TERM);
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.ok(), Some((200, LEN)), "{b:?}: a download in flight at SIGTERM");
    }
    let status = server.wait_exit(Duration::from_secs(25)).expect("cport exited");
    assert!(status.success(), "{b:?}: {status:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{b:?}: exited before the downloads could finish"
    );
    let said = server.next_line(Duration::from_secs(2)).unwrap_or_default();
    assert!(said.starts_with("cport http: shut down in"), "{said}");
    assert!(said.contains("0 cut at the deadline"), "{said}");
    server.assert_no_panic();
}
