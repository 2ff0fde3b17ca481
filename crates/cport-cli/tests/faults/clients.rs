//! What the cases drive the servers with: plain blocking clients with
//! timeouts (echo, HTTP), a scratch web root, and a bounded wait.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cport_testutil::cli::{connect, LineClient};

use crate::server::LONG;

/// One echo round trip of `n` bytes on `s`; `Err` if the server closed or
/// sent something else.
pub fn echo_once(s: &mut TcpStream, n: usize) -> io::Result<()> {
    let msg: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    s.write_all(&msg)?;
    let mut back = vec![0u8; n];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echoed bytes differ"));
    }
    Ok(())
}

/// A fresh connection echoes `n` bytes back.
pub fn echo_works(addr: SocketAddr) -> bool {
    TcpStream::connect(addr)
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            echo_once(&mut s, 100)
        })
        .is_ok()
}

/// A parsed HTTP response head.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, if sent.
    pub content_length: Option<u64>,
}

/// Reads one response head from `s`, leaving any body bytes read past it
/// in `rest`.
pub fn read_head(s: &mut TcpStream, rest: &mut Vec<u8>) -> io::Result<Head> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = memchr::memmem::find(rest, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end]).into_owned();
            rest.drain(..end + 4);
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad status line: {head:?}")))?;
            let content_length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            });
            return Ok(Head { status, content_length });
        }
        if rest.len() > 64 * 1024 {
            return Err(io::Error::other("response head too long"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        rest.extend_from_slice(&chunk[..n]);
    }
}

/// Reads and discards `len` body bytes, `rest` first; returns what was
/// left over past the body.
pub fn skip_body(s: &mut TcpStream, rest: &mut Vec<u8>, len: u64) -> io::Result<()> {
    let from_rest = (rest.len() as u64).min(len) as usize;
    rest.drain(..from_rest);
    let mut left = len - from_rest as u64;
    let mut chunk = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = (left as usize).min(chunk.len());
        let n = s.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

/// `GET path` on a new connection (`Connection: close`): the status and
/// the number of body bytes received, which must match `Content-Length`.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, u64)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(LONG))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut rest = Vec::new();
    let head = read_head(&mut s, &mut rest)?;
    let len = head.content_length.unwrap_or(0);
    skip_body(&mut s, &mut rest, len)?;
    Ok((head.status, len))
}

/// A directory under the system's temp dir, removed on drop (also when the
/// test panics).
pub struct Scratch {
    /// Its path.
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scratch {
    /// A new empty directory named after `what`.
    pub fn new(what: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cport-faults-{what}-"))
            .tempdir()
            .unwrap();
        Scratch {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }

    /// Creates `name` with `len` bytes (sparse: no disk written).
    pub fn file(&self, name: &str, len: u64) -> PathBuf {
        let p = self.path.join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    }

    /// The directory as a string, for `--root`.
    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

/// Polls `f` every 20 ms until it holds or `limit` passes; whether it held.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the peer closed `s`: a read sees end of stream or a reset within
/// `limit` (bytes read before that are discarded).
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Round trips that make a server take every buffer of its receive pool
/// once (4,096 by default): io_uring's provided-buffer ring hands them out
/// in turn, so the whole pool becomes resident in the first few thousand
/// receives. Measuring after this tells growth from the pool paging in.
const WARM_ROUND_TRIPS: usize = 4_500;

/// Warms an echo server's receive pool.
pub fn warm_echo(addr: SocketAddr) {
    let mut s = connect(addr);
    s.set_nodelay(true).unwrap();
    for _ in 0..WARM_ROUND_TRIPS {
        echo_once(&mut s, 1).unwrap();
    }
}

/// Warms an HTTP server's receive pool (and its `send_file` path, whose
/// first use starts io_uring's kernel worker and a pooled pipe) with
/// `path`, a small file, and `big`, one larger than the in-memory cache.
pub fn warm_http(addr: SocketAddr, small: &str, big: &str) {
    assert_eq!(http_get(addr, big).unwrap().0, 200);
    let mut s = connect(addr);
    s.set_nodelay(true).unwrap();
    let req = format!("GET {small} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut rest = Vec::new();
    for _ in 0..WARM_ROUND_TRIPS {
        s.write_all(req.as_bytes()).unwrap();
        let head = read_head(&mut s, &mut rest).unwrap();
        skip_body(&mut s, &mut rest, head.content_length.unwrap_or(0)).unwrap();
    }
}

/// Warms a chat server's receive pool.
pub fn warm_chat(addr: SocketAddr) {
    let mut c = LineClient::connect(addr);
    c.stream.set_nodelay(true).unwrap();
    c.line(); // the welcome
    for _ in 0..WARM_ROUND_TRIPS {
        c.send("/rooms\n");
        c.line().expect("an answer to /rooms");
    }
}
