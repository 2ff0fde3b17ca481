//! The Redis link on the completion port: one more associated socket of
//! the chat server's port, driven by its workers (connect, send, receive
//! and a timer, each completing in `Handler::on_completion`). No thread or
//! runtime of its own.
//!
//! Every operation's tag carries the connection's generation, so a
//! completion of a connection already given up (its handle closed) is
//! recognised and dropped.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cport::{Handle, Key};
use cport_server::{app_ctx, Completion, Port};
use socket2::{Domain, Protocol, Socket, Type};

use super::node::ClusterNode;
use super::resp::{encode_command, error_of, int_of, map_get, str_of, Decoder};

/// Kinds of the link's operations (the low byte of the app tag).
const KICK: u64 = 1;
const CONNECT: u64 = 2;
const SEND: u64 = 3;
const RECV: u64 = 4;
const TICK: u64 = 5;

/// How often the timer looks at reconnects and heartbeats.
const TICK_EVERY: Duration = Duration::from_millis(100);

/// Bytes one receive may bring.
const RECV_BUF: usize = 64 << 10;

fn tag(kind: u64, gen: u64) -> u64 {
    kind | (gen << 8)
}

/// The node and the link's sockets on the port.
#[derive(Debug)]
pub struct ClusterIo {
    /// The clustered node (sans-I/O).
    pub node: ClusterNode,
    addr: SocketAddr,
    port: Option<Port>,
    handle: Option<Handle>,
    /// The connection's generation; completions of older ones are dropped.
    gen: u64,
    /// What of the buffer in flight is still to be written.
    sending: Option<Bytes>,
    stopped: bool,
}

impl ClusterIo {
    /// The glue for `node`, talking to Redis at `addr`; idle until
    /// [`start`](Self::start).
    #[must_use]
    pub fn new(node: ClusterNode, addr: SocketAddr) -> ClusterIo {
        ClusterIo {
            node,
            addr,
            port: None,
            handle: None,
            gen: 0,
            sending: None,
            stopped: false,
        }
    }

    /// Starts on `port`: a posted job makes a worker connect and arm the
    /// timer (operations are issued from workers, not this thread).
    ///
    /// # Errors
    /// When the port refuses the job.
    pub fn start(&mut self, port: Port) -> io::Result<()> {
        port.post(Key(0), 0, app_ctx(KICK))
            .map_err(|e| io::Error::other(format!("chat cluster: cannot start the Redis link: {e}")))?;
        self.port = Some(port);
        Ok(())
    }

    /// Whether `tag` is one of the link's.
    #[must_use]
    pub fn owns(tag: u64) -> bool {
        (KICK..=TICK).contains(&(tag & 0xff))
    }

    /// A completion of one of the link's operations.
    pub fn on_completion(&mut self, tag_value: u64, mut c: Completion, now: Instant) {
        let kind = tag_value & 0xff;
        let gen = tag_value >> 8;
        if c.is_shutdown() {
            self.stop();
            return;
        }
        match kind {
            KICK => self.arm_tick(),
            TICK if !self.stopped => self.arm_tick(),
            TICK => {}
            _ if gen != self.gen || self.handle.is_none() => {} // an old connection's
            CONNECT => match c.result() {
                Ok(_) => {
                    self.node.link().on_connected();
                    self.arm_recv(Vec::with_capacity(RECV_BUF), now);
                }
                Err(e) => {
                    let reason = format!("connect to {}: {e}", self.addr);
                    self.lost(now, &reason);
                }
            },
            SEND => match c.result() {
                Ok(n) => {
                    let n = *n;
                    match self.sending.take() {
                        Some(mut rest) if n < rest.len() => {
                            let _ = rest.split_to(n);
                            self.send(rest, now);
                        }
                        _ => self.node.link().on_sent(),
                    }
                }
                Err(e) => {
                    let reason = format!("send: {e}");
                    self.lost(now, &reason);
                }
            },
            RECV => {
                let res = c.result().as_ref().map(|n| *n).map_err(|e| e.to_string());
                let buf = c.take_buf().map(cport::Buf::into_vec);
                match (res, buf) {
                    (Ok(0), _) => self.lost(now, "Redis closed the connection"),
                    (Ok(_), Some(mut buf)) => {
                        self.node.link().on_received(&buf, now);
                        if self.node.link().state() == super::link::LinkState::Down {
                            self.close_handle();
                        } else {
                            buf.clear();
                            self.arm_recv(buf, now);
                        }
                    }
                    (Ok(_), None) => self.lost(now, "receive returned no buffer"),
                    (Err(e), _) => self.lost(now, &format!("receive: {e}")),
                }
            }
            _ => {}
        }
    }

    /// Connects when due and sends what is queued. Call after anything
    /// that may have queued commands.
    pub fn drive(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        let Some(port) = self.port.clone() else { return };
        if self.node.link().poll_connect(now) {
            if let Err(e) = self.connect(&port) {
                let reason = format!("connect to {}: {e}", self.addr);
                self.lost(now, &reason);
                return;
            }
        }
        if self.sending.is_none() && self.handle.is_some() {
            if let Some(out) = self.node.link().poll_transmit() {
                self.send(out, now);
            }
        }
    }

    fn connect(&mut self, port: &Port) -> io::Result<()> {
        let sock = Socket::new(Domain::for_address(self.addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_tcp_nodelay(true)?;
        let h = port.associate(OwnedFd::from(sock), Key(0))?;
        self.gen += 1;
        self.handle = Some(h);
        port.connect(&h, self.addr, app_ctx(tag(CONNECT, self.gen)))
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(())
    }

    fn send(&mut self, buf: Bytes, now: Instant) {
        let (Some(port), Some(h)) = (&self.port, &self.handle) else {
            return;
        };
        match port.send(h, buf.clone(), app_ctx(tag(SEND, self.gen))) {
            Ok(_) => self.sending = Some(buf),
            Err(e) => {
                let reason = format!("send: {e}");
                self.lost(now, &reason);
            }
        }
    }

    fn arm_recv(&mut self, buf: Vec<u8>, now: Instant) {
        let (Some(port), Some(h)) = (&self.port, &self.handle) else {
            return;
        };
        if let Err(e) = port.recv(h, buf, app_ctx(tag(RECV, self.gen))) {
            let reason = format!("receive: {e}");
            self.lost(now, &reason);
        }
    }

    fn arm_tick(&mut self) {
        if let Some(port) = &self.port {
            if let Err(e) = port.timeout(TICK_EVERY, app_ctx(tag(TICK, 0))) {
                tracing::error!(error = %e, "chat cluster: cannot arm the link's timer");
            }
        }
    }

    fn lost(&mut self, now: Instant, reason: &str) {
        self.node.link().on_lost(now, reason);
        self.close_handle();
    }

    fn close_handle(&mut self) {
        self.sending = None;
        if let (Some(port), Some(h)) = (&self.port, self.handle.take()) {
            let _ = port.close(&h);
        }
    }

    /// The server shut down: no more operations.
    fn stop(&mut self) {
        self.stopped = true;
        self.close_handle();
    }
}

/// Checks at start that Redis answers at `addr` and speaks RESP3, and
/// draws this node's number (unique among the nodes ever started on this
/// Redis). Blocking, with `timeout` per step: it runs before any server.
///
/// # Errors
/// A clear message when Redis cannot be reached or refuses.
pub fn probe(addr: SocketAddr, prefix: &str, timeout: Duration) -> io::Result<(String, u64)> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("chat cluster: Redis at redis://{addr} {what}: {e}"),
        )
    };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("cannot be reached", &e))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut out = BytesMut::new();
    encode_command(&mut out, &[Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
    let seq_key = format!("{prefix}node-seq");
    encode_command(&mut out, &[Bytes::from_static(b"INCR"), Bytes::from(seq_key)]);
    s.write_all(&out).map_err(|e| fail("cannot be written to", &e))?;
    let mut d = Decoder::new(1 << 20);
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout;
    while frames.len() < 2 {
        if Instant::now() > deadline {
            return Err(fail("did not answer", &"timed out"));
        }
        let n = s.read(&mut buf).map_err(|e| fail("did not answer", &e))?;
        if n == 0 {
            return Err(fail("closed the connection", &"end of stream"));
        }
        d.feed(&buf[..n]);
        while let Some(f) = d.next_frame().map_err(|e| fail("answered", &e))? {
            frames.push(f);
        }
    }
    if let Some(e) = error_of(&frames[0]) {
        return Err(fail("refused RESP3 (Redis 6 or later is needed)", &e));
    }
    let version = map_get(&frames[0], "version")
        .and_then(str_of)
        .unwrap_or("?")
        .to_owned();
    let n = int_of(&frames[1]).ok_or_else(|| fail("refused INCR", &format!("{:?}", frames[1])))?;
    Ok((version, n.max(0) as u64))
}
