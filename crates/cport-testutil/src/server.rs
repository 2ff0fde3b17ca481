//! Helpers shared by the server integration tests: the macro that runs a
//! test on both backends, small handlers, loopback clients, bounded waiting.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cport_server::{Backend, DisconnectReason, Handler, Message, ReasonKind, Server, ServerBuilder, Session};
use parking_lot::Mutex;

/// How long a test waits for something that should happen soon.
pub const LONG: Duration = Duration::from_secs(10);

/// One test body, both backends (see `cport::backend_tests!`).
pub use cport::backend_tests;

/// A builder on `backend`, listening on a free loopback port, with a fast tick.
pub fn builder(backend: Backend) -> ServerBuilder {
    // Logs only when asked for: RUST_LOG=cport_server=debug cargo test ...
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Server::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .backend(backend)
        .tick(Duration::from_millis(50))
        .recv_buffers(1024, 4096)
}

/// Disconnects seen by a handler: (session id, reason kind).
pub type Disconnects = Arc<Mutex<Vec<(u64, ReasonKind)>>>;

/// Echo: by default every raw chunk goes straight back; with `lines` (for
/// line framing) each line goes back with its newline.
#[derive(Default, Clone)]
pub struct Echo {
    /// Every disconnect this handler saw.
    pub gone: Disconnects,
    /// Echo line by line (newline restored) instead of chunk by chunk.
    pub lines: bool,
}

impl Echo {
    /// A line echo.
    pub fn lines() -> Self {
        Echo {
            lines: true,
            ..Echo::default()
        }
    }
}

impl Handler for Echo {
    type State = ();
    fn on_connect(&self, _: &Session) {}
    fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
        if self.lines {
            let mut v = msg.to_vec();
            v.push(b'\n');
            let _ = s.send(v);
        } else {
            let _ = s.send(msg);
        }
    }
    fn on_disconnect(&self, s: &Session, _: (), reason: &DisconnectReason) {
        self.gone.lock().push((s.id(), reason.kind()));
    }
}

/// A handler that runs `f` on each message and records disconnects.
#[derive(Clone)]
pub struct OnMessage<F> {
    /// Every disconnect this handler saw.
    pub gone: Disconnects,
    f: F,
}

/// A handler from a closure (see [`OnMessage`]).
pub fn on_message<F: Fn(&Session, Message) + Clone + Send + Sync + 'static>(f: F) -> OnMessage<F> {
    OnMessage {
        gone: Disconnects::default(),
        f,
    }
}

impl<F: Fn(&Session, Message) + Send + Sync + 'static> Handler for OnMessage<F> {
    type State = ();
    fn on_connect(&self, _: &Session) {}
    fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
        (self.f)(s, msg)
    }
    fn on_disconnect(&self, s: &Session, _: (), reason: &DisconnectReason) {
        self.gone.lock().push((s.id(), reason.kind()));
    }
}

/// Remembers every open session, so the test can send to them from
/// outside (a session leaves the list when it ends).
#[derive(Default, Clone)]
pub struct Keep {
    /// The sessions open now.
    pub sessions: Arc<Mutex<Vec<Session>>>,
    /// Every disconnect this handler saw.
    pub gone: Disconnects,
}

impl Handler for Keep {
    type State = ();
    fn on_connect(&self, s: &Session) {
        self.sessions.lock().push(s.clone());
    }
    fn on_message(&self, _: &Session, _: &mut (), _: Message) {}
    fn on_disconnect(&self, s: &Session, _: (), reason: &DisconnectReason) {
        self.sessions.lock().retain(|x| x.id() != s.id());
        self.gone.lock().push((s.id(), reason.kind()));
    }
}

/// The session `keep` holds for `client` (found by the client's address),
/// waiting up to [`LONG`] for it to connect.
pub fn session_of(keep: &Keep, client: &TcpStream) -> Session {
    let local = client.local_addr().unwrap();
    let mut found = None;
    assert!(eventually(LONG, || {
        found = keep
            .sessions
            .lock()
            .iter()
            .find(|s| s.peer_addr() == Some(local))
            .cloned();
        found.is_some()
    }));
    found.unwrap()
}

/// A loopback client with timeouts, so no test can hang on a read.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LONG)).unwrap();
    s.set_write_timeout(Some(LONG)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until end of stream; errors (a reset) end the read too.
pub fn read_to_end_or_reset(s: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(e)),
        }
    }
}

/// Writes a line and reads back exactly `want` bytes.
pub fn round_trip(s: &mut TcpStream, line: &[u8], want: usize) -> Vec<u8> {
    s.write_all(line).unwrap();
    let mut got = vec![0u8; want];
    s.read_exact(&mut got).unwrap();
    got
}

/// Writes `data` while another thread reads back as many bytes (so a large
/// echo cannot fill both directions' buffers and stall).
pub fn write_and_read_back(s: &TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut got = vec![0u8; data.len()];
            (&*s).read_exact(&mut got).map(|_| got)
        });
        (&*s).write_all(data).unwrap();
        reader.join().unwrap()
    })
}

/// Waits until `f` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

pub use crate::fd_count;

/// A small deterministic generator (xorshift), for sizes and contents.
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}
