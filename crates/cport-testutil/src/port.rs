//! Helpers shared by the integration tests: ports built on the backend under
//! test, the macro that runs every test on both backends, loopback socket
//! pairs, temp files, and bounded waiting (no test waits forever).

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cport::{Backend, Buf, Completion, GetError, Handle, Key, OpKind, Port, PortBuilder};

/// How long a test waits for something that should happen at once before
/// it calls it a failure.
pub const LONG: Duration = Duration::from_secs(5);

/// How long a test waits to be reasonably sure something does *not* happen.
pub const SHORT: Duration = Duration::from_millis(100);

/// One test body, both backends (see `cport::backend_tests!`).
pub use cport::backend_tests;

/// A port on `backend` with the default settings.
pub fn port(backend: Backend) -> Port {
    port_with(backend, |b| b)
}

/// A port on `backend`, configured by `f`; the backend under test always
/// wins over `f` and over `CPORT_BACKEND`.
pub fn port_with(backend: Backend, f: impl FnOnce(PortBuilder) -> PortBuilder) -> Port {
    let port = f(Port::builder())
        .backend(backend)
        .ignore_env()
        .build()
        .unwrap_or_else(|e| panic!("building a port on {}: {e}", backend.name()));
    assert_eq!(port.backend(), backend);
    port
}

/// Dequeues one completion, failing the test if none comes within [`LONG`].
pub fn next(port: &Port) -> Completion {
    match port.get(Some(LONG)) {
        Ok(c) => c,
        Err(e) => panic!("no completion within {LONG:?}: {e}"),
    }
}

/// Dequeues one completion and checks its kind and ctx.
pub fn next_of(port: &Port, kind: OpKind, ctx: u64) -> Completion {
    let c = next(port);
    assert_eq!((c.kind(), c.ctx()), (kind, ctx), "unexpected completion {c:?}");
    c
}

/// Checks that nothing more is delivered (waits [`SHORT`]).
pub fn assert_nothing_more(port: &Port) {
    match port.get(Some(SHORT)) {
        Err(GetError::Timeout) => {}
        Ok(c) => panic!("unexpected extra completion {c:?}"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

/// The `Vec` a completion handed back (panics if it was another kind of buffer).
pub fn vec_of(c: &mut Completion) -> Vec<u8> {
    match c.take_buf() {
        Some(Buf::Vec(v)) => v,
        other => panic!("expected a Vec buffer back, got {other:?}"),
    }
}

/// Dequeues until the port reports [`GetError::ShutDown`], handing each
/// completion to `f`; fails the test on a timeout (none within [`LONG`]) or
/// any other error. Returns how many completions were delivered.
pub fn drain_until_shut_down(port: &Port, mut f: impl FnMut(Completion)) -> usize {
    let mut delivered = 0;
    loop {
        match port.get(Some(LONG)) {
            Ok(c) => {
                delivered += 1;
                f(c);
            }
            Err(GetError::ShutDown) => return delivered,
            Err(e) => panic!("after {delivered} completions: {e}"),
        }
    }
}

/// Spawns `n` threads that dequeue and run `handle` on each completion until
/// a quit packet; any error from `get` (nothing within [`LONG`]) fails the test.
pub fn spawn_workers(
    port: &Port,
    n: usize,
    handle: impl Fn(Completion) + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    let handle = std::sync::Arc::new(handle);
    (0..n)
        .map(|i| {
            let port = port.clone();
            let handle = handle.clone();
            std::thread::Builder::new()
                .name(format!("test-worker-{i}"))
                .spawn(move || loop {
                    match port.get(Some(LONG)) {
                        Ok(c) if c.kind() == OpKind::Quit => return,
                        Ok(c) => handle(c),
                        Err(e) => panic!("worker {i}: {e}"),
                    }
                })
                .unwrap()
        })
        .collect()
}

/// The OS error number of a completion's result, if it failed with one.
pub fn errno(c: &Completion) -> Option<i32> {
    c.result().as_ref().err().and_then(io::Error::raw_os_error)
}

/// Polls `cond` every millisecond until it holds; fails the test after
/// [`LONG`], naming `what` was awaited.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_for(LONG, what, cond)
}

/// As [`wait_until`], with an explicit limit.
pub fn wait_until_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A loopback listener on an ephemeral port.
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// A connected loopback pair `(client, server)`, both plain std sockets with
/// read/write timeouts of [`LONG`] so a test never blocks forever on them.
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = listener();
    tcp_pair_on(&l)
}

/// A connected pair through an existing listener.
pub fn tcp_pair_on(l: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (server, _) = l.accept().expect("accept");
    for s in [&client, &server] {
        s.set_read_timeout(Some(LONG)).unwrap();
        s.set_write_timeout(Some(LONG)).unwrap();
        s.set_nodelay(true).unwrap();
    }
    (client, server)
}

/// A loopback connection whose one end is associated with `port` under
/// `key`; the other end is returned as a plain std stream (the peer).
pub fn associated_pair(port: &Port, key: Key) -> (Handle, TcpStream) {
    let (peer, ours) = tcp_pair();
    let h = port.associate(ours, key).expect("associate");
    (h, peer)
}

/// `len` deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let n = (len - out.len()).min(8);
        out.extend_from_slice(&bytes[..n]);
    }
    out
}

/// A file in the system temp directory with a unique name, removed on drop
/// (also when the test panics: `tempfile` owns the path).
pub struct TempFile {
    file: tempfile::TempPath,
}

impl TempFile {
    /// Creates an empty file whose name contains `label`.
    pub fn new(label: &str) -> TempFile {
        let file = tempfile::Builder::new()
            .prefix(&format!("cport-test-{label}-"))
            .tempfile()
            .expect("create temp file")
            .into_temp_path();
        TempFile { file }
    }

    /// Creates the file holding `data`.
    pub fn with_contents(label: &str, data: &[u8]) -> TempFile {
        let t = TempFile::new(label);
        std::fs::write(&t.file, data).expect("write temp file");
        t
    }

    /// Opens the file for reading and writing.
    pub fn open_rw(&self) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.file)
            .expect("open temp file")
    }

    /// Opens the file for reading.
    pub fn open_read(&self) -> File {
        File::open(&self.file).expect("open temp file")
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Entries in `/proc/self/fd` now (the read itself opens one, briefly,
/// the same way every time, so counts taken this way compare exactly).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count()
}

/// What `/proc/self/fd/<fd>` points at (`socket:[inode]` for a socket), or
/// `None` if no such fd is open.
pub fn fd_target(fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

pub use crate::raise_fd_limit;

/// How many loopback connections a test may open: `want`, or fewer if the
/// fd limit (shared by every test running in the process) is low. Each
/// connection costs two fds.
pub fn affordable_connections(want: usize) -> usize {
    let limit = raise_fd_limit() as usize;
    // Leave room for the other tests of the binary running in parallel.
    let n = want.min(limit.saturating_sub(512) / 8);
    if n < want {
        eprintln!("fd limit {limit}: using {n} connections instead of {want}");
    }
    n.max(16)
}

/// Runs `f` on its own thread and returns its result, failing the test if it
/// takes longer than `limit` (the thread is then left behind, so a hang in
/// the library fails one test instead of stalling the suite).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done after {limit:?}"),
    }
}

/// Holds a value whose drop may block (a worker pool joining its threads)
/// and, if the test ends without taking it back, drops it on a detached
/// thread so a failing test cannot hang while unwinding.
pub struct DropAside<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> DropAside<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        DropAside(Some(value))
    }
    /// Takes the value back.
    pub fn take(mut self) -> T {
        self.0.take().expect("taken once")
    }
}

impl<T: Send + 'static> Drop for DropAside<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            std::thread::spawn(move || drop(v));
        }
    }
}
