//! A blocking loopback game client and server helpers for the tests.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cport::Backend;
use cport_game::{GameConfig, GameServer, Rules};
use cport_proto::game::{decode, encode_to_bytes, Input, KickReason, LoginOk, Packet, Update, MAX_PACKET};
use cport_server::Server;

pub use cport::backend_tests;

/// How long a test waits for something that should happen soon (generous:
/// the suite runs beside other builds on two cores).
pub const LONG: Duration = Duration::from_secs(20);

/// A world of one 200x200 zone: with 100-unit cells everyone sees everyone.
pub fn small_world() -> Rules {
    let mut r = Rules::default();
    r.world.zones_x = 1;
    r.world.zones_y = 1;
    r.world.zone_size = 200;
    r.world.cell_size = 100;
    r
}

/// A game configuration on `backend` with `rules` and two zone threads.
pub fn config(backend: Backend, rules: Rules) -> GameConfig {
    GameConfig {
        rules,
        backend,
        zone_threads: 2,
        ..GameConfig::default()
    }
}

/// Starts a game server on a free loopback port (tick 50 ms), logging to the test's output.
pub fn start(cfg: GameConfig) -> GameServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let b = Server::builder().name("game").tick(Duration::from_millis(50));
    GameServer::start(b, "127.0.0.1:0".parse().unwrap(), cfg).expect("game server starts")
}

/// A fresh directory under the system's temp dir, removed on drop (also
/// when the test panics).
pub struct TempDir(pub PathBuf, tempfile::TempDir);

impl TempDir {
    /// A new directory whose name starts `cport-game-TAG-`.
    pub fn new(tag: &str) -> TempDir {
        let d = tempfile::Builder::new()
            .prefix(&format!("cport-game-{tag}-"))
            .tempdir()
            .expect("creating a temp dir");
        TempDir(d.path().to_path_buf(), d)
    }
}

/// A blocking client.
pub struct Client {
    /// The connection.
    pub s: TcpStream,
    buf: Vec<u8>,
    /// The last input sequence number sent ([`Client::step`] counts it up).
    pub seq: u32,
}

impl Client {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// A client over a stream connected already (`TCP_NODELAY` set).
    pub fn from_stream(s: TcpStream) -> Client {
        s.set_nodelay(true).unwrap();
        Client {
            s,
            buf: Vec::new(),
            seq: 0,
        }
    }

    /// Encodes and writes one packet.
    pub fn send(&mut self, p: &Packet) {
        self.s.write_all(&encode_to_bytes(p)).unwrap();
    }

    /// Sends, ignoring a connection the server already closed.
    pub fn try_send(&mut self, p: &Packet) {
        let _ = self.s.write_all(&encode_to_bytes(p));
    }

    /// Writes bytes as they are (for malformed input).
    pub fn send_raw(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// The next packet, or `Err` at EOF or after `within`.
    pub fn recv(&mut self, within: Duration) -> io::Result<Packet> {
        let until = Instant::now() + within;
        loop {
            if let Some((p, used)) = decode(&self.buf, MAX_PACKET).map_err(io::Error::other)? {
                self.buf.drain(..used);
                return Ok(p);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.s.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16384];
            // A thread that shut an io_uring server down may see EINTR later
            // (the kernel runs completion work on the submitting thread).
            let n = match self.s.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => r?,
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until `f` picks something out of a packet, within `LONG`.
    pub fn until<T>(&mut self, mut f: impl FnMut(&Packet) -> Option<T>) -> T {
        let until = Instant::now() + LONG;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let p = self.recv(left).expect("the awaited packet came");
            if let Some(t) = f(&p) {
                return t;
            }
        }
    }

    /// Logs in as `name` and returns the server's `LoginOk`; panics on a kick.
    pub fn login(&mut self, name: &str) -> LoginOk {
        self.send(&Packet::Login { name: name.into() });
        self.until(|p| match p {
            Packet::LoginOk(ok) => Some(ok.clone()),
            Packet::Kick { reason } => panic!("login refused: {}", reason.name()),
            _ => None,
        })
    }

    /// Sends one move input and returns its sequence number.
    pub fn step(&mut self, dx: i8, dy: i8) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(&Packet::Input(Input { seq, dx, dy }));
        seq
    }

    /// The first update acknowledging `seq`.
    pub fn acked(&mut self, seq: u32) -> Update {
        self.until(|p| match p {
            Packet::Update(u) if u.last_seq >= seq => Some(u.clone()),
            _ => None,
        })
    }

    /// The kick reason, then the connection's end.
    pub fn kicked(&mut self) -> KickReason {
        let why = self.until(|p| match p {
            Packet::Kick { reason } => Some(*reason),
            _ => None,
        });
        let until = Instant::now() + LONG;
        loop {
            match self.recv(until.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => panic!("not closed after the kick"),
                Err(_) => return why,
            }
        }
    }
}

/// Waits until `f` holds, within `LONG`.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
