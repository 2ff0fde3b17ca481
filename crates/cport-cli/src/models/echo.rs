//! The echo work the readiness models share: one connection, and accepting.
//!
//! `select`, `poll` and `epoll` differ only in how a server learns that a
//! socket is ready; what it does then is the same. Writing that once here keeps
//! each model's file down to its readiness loop, which is the part worth
//! comparing.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use super::model::{Model, ModelReport};

/// Bytes read from a connection at a time: also the most a connection can
/// have waiting to be written back.
pub(super) const READ_BUFFER_SIZE: usize = 16 * 1024;

/// How long accepting pauses after the process ran out of descriptors or
/// memory, unless a connection closes first.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// Where a step on a connection stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Bytes moved; there may be more to do.
    Progress,
    /// The socket said `EAGAIN`: wait until it is ready again.
    WouldBlock,
    /// End-of-file or an error: drop the connection.
    Closed,
}

/// One echo connection on a non-blocking socket.
///
/// An idle connection holds no buffer: bytes are read into the model's one
/// scratch buffer and written straight back from it. Only what the socket
/// would not take at once is copied into `unsent`, which is never more than
/// one read's worth because nothing more is read until it has gone. That is
/// the bound on memory per connection, and the back-pressure on a peer that
/// sends without reading.
#[derive(Debug)]
pub(super) struct EchoConn {
    stream: TcpStream,
    unsent: Vec<u8>,
    sent: usize,
}

impl EchoConn {
    /// Takes a freshly accepted stream, switching it to non-blocking mode.
    pub(super) fn new(stream: TcpStream) -> io::Result<EchoConn> {
        stream.set_nonblocking(true)?;
        Ok(EchoConn {
            stream,
            unsent: Vec::new(),
            sent: 0,
        })
    }

    pub(super) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Whether bytes are waiting to be written back; while they are, the
    /// connection is not read from.
    pub(super) fn has_unsent(&self) -> bool {
        self.sent < self.unsent.len()
    }

    /// Reads once into `scratch` and writes what came back, keeping whatever
    /// the socket would not take. Call only when nothing is unsent.
    pub(super) fn read_and_echo(&mut self, scratch: &mut [u8], report: &mut ModelReport) -> Step {
        debug_assert!(!self.has_unsent(), "read while earlier bytes are unsent");
        let len = match retry_interrupted(|| self.stream.read(scratch)) {
            Ok(0) => return Step::Closed,
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Step::WouldBlock,
            Err(_) => return Step::Closed,
        };
        handler_work(&scratch[..len]);
        let mut written = 0;
        while written < len {
            match retry_interrupted(|| self.stream.write(&scratch[written..len])) {
                Ok(0) => return Step::Closed,
                Ok(n) => {
                    written += n;
                    report.bytes_echoed += n as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.unsent.extend_from_slice(&scratch[written..len]);
                    self.sent = 0;
                    return Step::Progress;
                }
                Err(_) => return Step::Closed,
            }
        }
        Step::Progress
    }

    /// Writes the unsent bytes, as many as the socket takes.
    pub(super) fn flush(&mut self, report: &mut ModelReport) -> Step {
        while self.has_unsent() {
            match retry_interrupted(|| self.stream.write(&self.unsent[self.sent..])) {
                Ok(0) => return Step::Closed,
                Ok(n) => {
                    self.sent += n;
                    report.bytes_echoed += n as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Step::WouldBlock,
                Err(_) => return Step::Closed,
            }
        }
        // Give the buffer back so a connection that goes idle costs nothing.
        self.unsent = Vec::new();
        self.sent = 0;
        Step::Progress
    }
}

fn retry_interrupted<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// What one attempt to accept came to.
#[derive(Debug)]
pub(super) enum Accept {
    /// A new connection.
    Conn(TcpStream),
    /// No connection is waiting (`EAGAIN`).
    Drained,
    /// The process is out of descriptors or memory; counted in
    /// `accept_errors`. Stop accepting for a moment (see [`AcceptPause`]).
    OutOfResources,
}

/// Accepts one connection, skipping those the peer abandoned on the way.
///
/// # Errors
///
/// Errors that are about the listener rather than one connection.
pub(super) fn accept(listener: &TcpListener, report: &mut ModelReport) -> io::Result<Accept> {
    loop {
        let error = match listener.accept() {
            Ok((stream, _peer)) => return Ok(Accept::Conn(stream)),
            Err(error) => error,
        };
        match error.kind() {
            io::ErrorKind::WouldBlock => return Ok(Accept::Drained),
            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
            _ if is_out_of_resources(&error) => {
                report.accept_errors += 1;
                return Ok(Accept::OutOfResources);
            }
            _ => return Err(error),
        }
    }
}

/// Accepts every waiting connection on a non-blocking listener and hands
/// each to `admit`, until none is left or accepting has to pause.
///
/// # Errors
///
/// Errors that are about the listener rather than one connection.
pub(super) fn accept_ready(
    listener: &TcpListener,
    model: Model,
    report: &mut ModelReport,
    pause: &mut AcceptPause,
    mut admit: impl FnMut(EchoConn, &mut ModelReport),
) -> io::Result<()> {
    loop {
        match accept(listener, report)? {
            Accept::Conn(stream) => match EchoConn::new(stream) {
                Ok(conn) => admit(conn, report),
                Err(_) => report.refuse(model, "could not make the socket non-blocking"),
            },
            Accept::Drained => return Ok(()),
            Accept::OutOfResources => {
                pause.start();
                return Ok(());
            }
        }
    }
}

/// `accept` failures that say the process, not the listener, is short of
/// something, so that accepting again later can succeed.
fn is_out_of_resources(error: &io::Error) -> bool {
    matches!(
        Errno::from_io_error(error),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

/// Whether accepting is paused after [`Accept::OutOfResources`].
///
/// A listener with connections waiting stays readable, so a model that kept
/// calling `accept` while out of descriptors would spin. It stops watching
/// the listener instead, until a connection closes (freeing a descriptor) or
/// a short while has passed.
#[derive(Debug, Default)]
pub(super) struct AcceptPause {
    until: Option<Instant>,
}

impl AcceptPause {
    pub(super) fn start(&mut self) {
        self.until = Some(Instant::now() + ACCEPT_PAUSE);
    }

    /// Ends the pause early: a connection closed and freed a descriptor.
    pub(super) fn end(&mut self) {
        self.until = None;
    }

    /// Whether accepting is still paused; a pause that has run out ends here.
    pub(super) fn is_paused(&mut self) -> bool {
        if self.until.is_some_and(|until| Instant::now() >= until) {
            self.until = None;
        }
        self.until.is_some()
    }
}

/// How long a handler blocks on a request that asks it to ("handlers that
/// block", `cport models --block-every`); `None`: never.
static BLOCK: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// Makes every model's handler block for `d` on each request that asks to
/// (the serving child of `cport models --block-every`).
pub(super) fn set_handler_block(d: std::time::Duration) {
    let _ = BLOCK.set(d);
}

/// The handler's own work on what was just read: with
/// [`set_handler_block`], a request of `cport bench blocking` (16 bytes,
/// byte 8 set to 1 to ask) makes the handler sleep, as a database call or a
/// synchronous disk read would; the client keeps one request in flight per
/// connection, so a read holds whole requests.
pub(super) fn handler_work(read: &[u8]) {
    if let Some(d) = BLOCK.get() {
        let asks = read.chunks_exact(16).filter(|r| r[8] == 1).count();
        for _ in 0..asks {
            std::thread::sleep(*d);
        }
    }
}
