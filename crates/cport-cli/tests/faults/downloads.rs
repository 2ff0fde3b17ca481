//! Downloads that go wrong: a thousand clients that stop reading, and a
//! file cut short while it is being sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::clients::{connect, http_get, read_head, warm_http, Scratch};
use crate::server::{Backend, Launch, PidsCgroup, Tolerance};

/// Stalled downloads.
const STALLED: usize = 1_000;
/// The downloaded file: far more than socket buffers hold.
const BIG: u64 = 16 << 20;
/// Tasks the server may have. It needs a handful; a kernel worker per
/// stalled download would need a thousand.
const PIDS_MAX: usize = 64;
/// Threads a server may add while downloads are stalled.
const EXTRA_THREADS: usize = 8;

/// A download that asks for `path` and never reads.
fn stall(addr: SocketAddr, path: &str) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // A small window: the server's sends block after a few KiB.
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s: TcpStream = s.into();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s
}

/// 1,000 stalled downloads under a pids limit; a normal download of the
/// same file still finishes promptly, and the server's thread count stays
/// flat. The limit is a pids cgroup (RLIMIT_NPROC does not bind root); where
/// none can be created the thread count alone is asserted.
pub fn stalled(b: Backend) {
    let _heavy = crate::kernel_memory_heavy();
    let root = Scratch::new("stalled");
    root.file("big.bin", BIG);
    root.file("small.txt", 100);
    let mut launch = Launch::new(&["http", "--listen", "127.0.0.1:0", "--root", root.as_str()], &["http"]);
    let cgroup = PidsCgroup::create(PIDS_MAX);
    match cgroup {
        Some(cg) => launch = launch.cgroup(cg),
        None => eprintln!("no writable pids cgroup here: asserting the thread count only"),
    }
    let server = launch.spawn(b);
    let addr = server.addr("http");
    assert_eq!(http_get(addr, "/big.bin").unwrap(), (200, BIG));
    warm_http(addr, "/small.txt", "/big.bin");
    let before = server.quiet_usage();

    let stalled: Vec<TcpStream> = (0..STALLED).map(|_| stall(addr, "/big.bin")).collect();
    // Let every download fill its socket and block.
    std::thread::sleep(Duration::from_secs(2));
    let during = server.usage();
    assert!(
        during.threads <= before.threads + EXTRA_THREADS,
        "{b:?}: {} threads with {STALLED} stalled downloads (were {})",
        during.threads,
        before.threads
    );
    let t0 = Instant::now();
    let got = http_get(addr, "/big.bin");
    let took = t0.elapsed();
    assert_eq!(
        got.as_ref().ok(),
        Some(&(200, BIG)),
        "{b:?}: a normal download amid stalled ones: {got:?}"
    );
    assert!(took < Duration::from_secs(10), "{b:?}: a normal download took {took:?}");
    assert!(server.usage().threads <= before.threads + EXTRA_THREADS);

    drop(stalled);
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}

/// A file truncated while it is being sent: the connection is closed (the
/// promised length can no longer be sent), nothing hangs or panics, and the
/// server serves the next request.
pub fn truncated(b: Backend) {
    const LEN: u64 = 64 << 20;
    const KEEP: u64 = 1 << 20;
    let root = Scratch::new("truncated");
    let path = root.file("shrinking.bin", LEN);
    root.file("small.txt", 100);
    root.file("warm.bin", 1 << 20);
    let server = Launch::new(&["http", "--listen", "127.0.0.1:0", "--root", root.as_str()], &["http"]).spawn(b);
    let addr = server.addr("http");
    warm_http(addr, "/small.txt", "/warm.bin");
    let before = server.quiet_usage();

    let mut s = connect(addr);
    cport_testutil::set_rcvbuf(&s, 65536);
    s.write_all(b"GET /shrinking.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let head = read_head(&mut s, &mut rest).unwrap();
    assert_eq!((head.status, head.content_length), (200, Some(LEN)));
    // Part of the body, then the file shrinks under the send.
    let mut got = rest.len() as u64;
    let mut buf = vec![0u8; 64 << 10];
    while got < KEEP / 2 {
        got += s.read(&mut buf).unwrap() as u64;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(KEEP)
        .unwrap();
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n as u64,
            Err(e) => break Err(e),
        }
    };
    match end {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "{b:?}: the truncated download hung ({e}) after {got} bytes, {:?}",
            t0.elapsed()
        ),
    }
    assert!(got < LEN, "{b:?}: {got} bytes of a file cut to {KEEP}");
    assert_eq!(
        http_get(addr, "/small.txt").unwrap(),
        (200, 100),
        "{b:?}: served afterwards"
    );
    assert_eq!(
        http_get(addr, "/shrinking.bin").unwrap(),
        (200, KEEP),
        "{b:?}: the new length is served"
    );
    drop(s);
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}
