//! Helpers shared by the HTTP integration tests: the macro that runs a test
//! on both backends, temporary web roots, servers on a free loopback port,
//! a raw HTTP/1.1 response reader for pipelining and refusals, a `ureq`
//! agent, `curl` detection, and the 100 MiB test pattern.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cport_http::{Backend, HttpConfig, HttpServer};

/// How long a test waits for something that should happen at once.
pub const LONG: Duration = Duration::from_secs(10);

/// One test body, both backends (see `cport::backend_tests!`).
pub use cport::backend_tests;

/// A temporary directory, removed (with everything in it) on drop, also
/// when the test panics.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new empty directory under the system's temp dir.
    pub fn new(tag: &str) -> TempDir {
        let d = tempfile::Builder::new()
            .prefix(&format!("cport-http-{tag}-"))
            .tempdir()
            .expect("creating a temp dir");
        TempDir(d)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `rel` (creating parent directories) and returns its path.
    pub fn write(&self, rel: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("creating parent dirs");
        }
        fs::write(&p, data).expect("writing a test file");
        p
    }
}

/// A web root with the usual test files: `index.html`, `hello.txt`,
/// `style.css`, `app.js`, `data.json`, `blob.unknownext`, `empty.txt`,
/// `sub/index.html`, `noindex/a.txt`, `one.bin` (1 KiB).
pub fn site() -> TempDir {
    let d = TempDir::new("site");
    d.write("index.html", "<h1>home</h1>\n");
    d.write("hello.txt", "hello, world\n");
    d.write("style.css", "body{}\n");
    d.write("app.js", "1;\n");
    d.write("data.json", "{}\n");
    d.write("blob.unknownext", [0u8, 1, 2, 3]);
    d.write("empty.txt", "");
    d.write("sub/index.html", "<p>sub</p>\n");
    d.write("noindex/a.txt", "a\n");
    d.write("one.bin", (0..1024u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    d
}

/// Installs a test log writer once (set `RUST_LOG` to see the logs).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A server on `backend` serving `root` on a free loopback port, with
/// settings changed by `f`.
pub fn serve_with(backend: Backend, root: &Path, f: impl FnOnce(HttpConfig) -> HttpConfig) -> HttpServer {
    logs();
    let cfg = f(HttpConfig::new(root)
        .listen("127.0.0.1:0".parse().unwrap())
        .backend(backend));
    let server = HttpServer::start(cfg).unwrap_or_else(|e| panic!("starting on {}: {e}", backend.name()));
    assert_eq!(server.backend(), backend);
    server
}

/// A server on `backend` serving `root` with the defaults.
pub fn serve(backend: Backend, root: &Path) -> HttpServer {
    serve_with(backend, root, |c| c)
}

/// A `ureq` agent with bounded timeouts.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(LONG).redirects(0).build()
}

/// A GET (with extra headers) through `ureq`, any status.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> ureq::Response {
    let mut req = agent().get(&format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// The body of a `ureq` response.
pub fn body(r: ureq::Response) -> Vec<u8> {
    let mut v = Vec::new();
    r.into_reader().read_to_end(&mut v).expect("reading a body");
    v
}

/// A connected client socket with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connecting");
    s.set_read_timeout(Some(LONG)).unwrap();
    s.set_write_timeout(Some(LONG)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One parsed response read off a raw socket.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The status line's version, e.g. `HTTP/1.1`.
    pub version: String,
    /// Header fields as sent.
    pub headers: Vec<(String, String)>,
    /// The body (per `Content-Length`; empty for HEAD, 304 and 1xx).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response off `r`; `head` says the request was HEAD (no body).
pub fn read_response(r: &mut impl BufRead, head: bool) -> io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad header {l:?}")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut resp = Response {
        status,
        version,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if !head && status != 304 && status >= 200 {
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

/// Sends `request` on a new connection; the reader gets the answers.
pub fn send(addr: SocketAddr, request: &[u8]) -> BufReader<TcpStream> {
    let s = connect(addr);
    (&s).write_all(request).expect("sending");
    BufReader::new(s)
}

/// Sends `request` on a new connection and reads one response.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    exchange_conn(addr, request).0
}

/// Sends `request` on a new connection and reads one response; the
/// connection comes back to check what happens next ([`closes`], [`stays_open`]).
pub fn exchange_conn(addr: SocketAddr, request: &[u8]) -> (Response, BufReader<TcpStream>) {
    let mut r = send(addr, request);
    let resp = read_response(&mut r, request.starts_with(b"HEAD ")).expect("reading a response");
    (resp, r)
}

/// `true` if the peer closes (EOF or reset) within [`LONG`] without
/// sending anything more.
pub fn closes(r: &mut BufReader<TcpStream>) -> bool {
    read_one(r, LONG) == Some(0)
}

/// `true` if the connection is still open, with nothing more sent, after a
/// short wait.
pub fn stays_open(r: &mut BufReader<TcpStream>) -> bool {
    read_one(r, Duration::from_millis(300)).is_none()
}

/// Reads at most one byte within `wait`: `Some(0)` for EOF or an error,
/// `Some(1)` for data (buffered or new), `None` if nothing came.
fn read_one(r: &mut BufReader<TcpStream>, wait: Duration) -> Option<usize> {
    if !r.buffer().is_empty() {
        return Some(1);
    }
    r.get_ref().set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let got = match r.get_mut().read(&mut b) {
        Ok(n) => Some(n),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => None,
        Err(_) => Some(0),
    };
    r.get_ref().set_read_timeout(Some(LONG)).unwrap();
    got
}

/// Waits (bounded) until `f` holds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fails the test unless `curl` can be run: a test that needs it must not
/// report *ok* having checked nothing.
pub fn require_curl() {
    let ok = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "curl is not on PATH: install it (.ci/run does) to run the curl tests"
    );
}

/// Whether `curl` can be run; prints a note when it cannot.
pub fn curl_available() -> bool {
    let ok = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: curl is not on PATH: skipping the curl cases");
    }
    ok
}

/// Size of one block of the big-file pattern.
pub const BLOCK: usize = 1 << 20;

/// One pseudo-random block; each block of the pattern is this with its
/// index written over the first 8 bytes, so a shifted, repeated or
/// reordered block shows.
pub fn pattern_block() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut v = Vec::with_capacity(BLOCK);
    while v.len() < BLOCK {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// Block `i` of the pattern.
pub fn pattern(base: &[u8], i: u64) -> Vec<u8> {
    let mut b = base.to_vec();
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

/// Writes a file of `blocks` pattern blocks.
pub fn write_pattern_file(path: &Path, blocks: u64) {
    let base = pattern_block();
    let mut f = io::BufWriter::new(fs::File::create(path).expect("creating the big file"));
    for i in 0..blocks {
        f.write_all(&pattern(&base, i)).expect("writing the big file");
    }
    f.flush().unwrap();
}

/// Reads `len` bytes from `r` and checks them against the pattern from
/// byte `offset`, block by block (no second copy of the file in memory).
pub fn check_pattern(r: &mut impl Read, offset: u64, len: u64) {
    let base = pattern_block();
    let mut pos = offset;
    let end = offset + len;
    let mut buf = vec![0u8; 256 * 1024];
    let mut block_no = u64::MAX;
    let mut block = Vec::new();
    while pos < end {
        let want = ((end - pos) as usize).min(buf.len());
        let n = r.read(&mut buf[..want]).expect("reading the body");
        assert!(n > 0, "body ended at {pos}, expected {end}");
        let mut i = 0;
        while i < n {
            let b = pos / BLOCK as u64;
            if b != block_no {
                block = pattern(&base, b);
                block_no = b;
            }
            let at = (pos % BLOCK as u64) as usize;
            let take = (BLOCK - at).min(n - i);
            assert!(
                buf[i..i + take] == block[at..at + take],
                "body differs in block {b} from byte {pos}"
            );
            i += take;
            pos += take as u64;
        }
    }
}
