//! What the application implements, and what it is handed.

use std::fmt;
use std::io;
use std::ops::Deref;

use bytes::Bytes;
use cport::Buf;
use cport_proto::framing::{FrameError, LengthPrefixed};

use crate::session::Session;

/// How a server cuts each session's byte stream into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No framing: every received chunk is a message, handed over as the
    /// receive buffer itself ([`Message::Chunk`], zero copy). Echo servers
    /// and protocols with their own parser (HTTP) use this.
    Raw,
    /// Binary packets behind a little-endian length (the game-server packet).
    LengthPrefixed(LengthPrefixed),
    /// Newline-delimited text; a line holds at most `max_line` bytes.
    Lines {
        /// The longest accepted line, terminator excluded.
        max_line: usize,
    },
}

/// What to do about a frame that broke the codec's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAction {
    /// End the session ([`DisconnectReason::Frame`]).
    Close,
    /// Drop the oversized frame and go on with the next one (for lines: up to
    /// the next newline; for length-prefixed packets: the declared length).
    /// Only [`FrameError::TooLarge`] can be skipped; anything else closes.
    Skip,
}

/// One message handed to [`Handler::on_message`].
#[derive(Debug)]
pub enum Message {
    /// A received chunk as it arrived (raw framing): the pooled receive
    /// buffer itself. Send it back with [`Session::send`] without copying.
    Chunk(Buf),
    /// One decoded frame, split off the session's reassembly buffer.
    Frame(Bytes),
}

impl Message {
    /// The message's bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Message::Chunk(b) => b,
            Message::Frame(b) => b,
        }
    }

    /// The message as shared bytes (copies a pooled chunk, nothing else).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Chunk(b) => b.into_bytes(),
            Message::Frame(b) => b,
        }
    }
}

impl Deref for Message {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Message> for Buf {
    fn from(m: Message) -> Buf {
        match m {
            Message::Chunk(b) => b,
            Message::Frame(b) => Buf::Bytes(b),
        }
    }
}

/// Why a session ended. Counted per kind in [`ServerStats`](crate::ServerStats).
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed its side; whatever was queued for it was sent first.
    PeerClosed,
    /// The application called [`Session::close`].
    Closed,
    /// The application called [`Session::abort`].
    Aborted,
    /// A receive or send failed (reset by the peer, broken pipe, ...).
    Io(io::Error),
    /// The peer did not read what it was sent: its queue stayed past the cap
    /// for the slow-consumer timeout (or would have passed twice the cap).
    SlowConsumer {
        /// Bytes queued when the session was cut.
        queued: usize,
        /// The cap.
        cap: usize,
    },
    /// A frame broke the codec's rules (oversized, malformed).
    Frame(FrameError),
    /// Nothing was received or sent for the idle timeout.
    IdleTimeout,
    /// A frame was started and not finished in time (slow-loris defence).
    FrameTimeout,
    /// A queued file range could not be sent in full (the file shrank).
    FileEnded,
    /// The server is shutting down.
    Shutdown,
    /// A handler method panicked for this session (the panic was caught and
    /// logged; the worker thread lives on).
    HandlerPanicked,
}

impl DisconnectReason {
    /// The reason's kind, for counters.
    pub fn kind(&self) -> ReasonKind {
        match self {
            DisconnectReason::PeerClosed => ReasonKind::PeerClosed,
            DisconnectReason::Closed => ReasonKind::Closed,
            DisconnectReason::Aborted => ReasonKind::Aborted,
            DisconnectReason::Io(_) => ReasonKind::Io,
            DisconnectReason::SlowConsumer { .. } => ReasonKind::SlowConsumer,
            DisconnectReason::Frame(_) => ReasonKind::Frame,
            DisconnectReason::IdleTimeout => ReasonKind::IdleTimeout,
            DisconnectReason::FrameTimeout => ReasonKind::FrameTimeout,
            DisconnectReason::FileEnded => ReasonKind::FileEnded,
            DisconnectReason::Shutdown => ReasonKind::Shutdown,
            DisconnectReason::HandlerPanicked => ReasonKind::HandlerPanicked,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("peer closed the connection"),
            DisconnectReason::Closed => f.write_str("closed by the server"),
            DisconnectReason::Aborted => f.write_str("aborted by the server"),
            DisconnectReason::Io(e) => write!(f, "I/O error: {e}"),
            DisconnectReason::SlowConsumer { queued, cap } => {
                write!(f, "slow consumer: {queued} bytes queued, cap {cap}")
            }
            DisconnectReason::Frame(e) => write!(f, "bad frame: {e}"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::FrameTimeout => f.write_str("frame not completed in time"),
            DisconnectReason::FileEnded => f.write_str("file ended before the queued range"),
            DisconnectReason::Shutdown => f.write_str("server shutdown"),
            DisconnectReason::HandlerPanicked => f.write_str("handler panicked"),
        }
    }
}

/// The kind of a [`DisconnectReason`], without its details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ReasonKind {
    PeerClosed,
    Closed,
    Aborted,
    Io,
    SlowConsumer,
    Frame,
    IdleTimeout,
    FrameTimeout,
    FileEnded,
    Shutdown,
    HandlerPanicked,
}

impl ReasonKind {
    /// Every kind, in counter order.
    pub const ALL: [ReasonKind; 11] = [
        ReasonKind::PeerClosed,
        ReasonKind::Closed,
        ReasonKind::Aborted,
        ReasonKind::Io,
        ReasonKind::SlowConsumer,
        ReasonKind::Frame,
        ReasonKind::IdleTimeout,
        ReasonKind::FrameTimeout,
        ReasonKind::FileEnded,
        ReasonKind::Shutdown,
        ReasonKind::HandlerPanicked,
    ];

    /// A short snake_case name, for logs and the stats endpoint.
    pub fn name(self) -> &'static str {
        match self {
            ReasonKind::PeerClosed => "peer_closed",
            ReasonKind::Closed => "closed",
            ReasonKind::Aborted => "aborted",
            ReasonKind::Io => "io_error",
            ReasonKind::SlowConsumer => "slow_consumer",
            ReasonKind::Frame => "bad_frame",
            ReasonKind::IdleTimeout => "idle_timeout",
            ReasonKind::FrameTimeout => "frame_timeout",
            ReasonKind::FileEnded => "file_ended",
            ReasonKind::Shutdown => "shutdown",
            ReasonKind::HandlerPanicked => "handler_panicked",
        }
    }
}

/// The application's side of a server: called by the worker threads.
///
/// For one session, calls never overlap and come in order: `on_connect`
/// first, then `on_message` once per message in the order the bytes
/// arrived, then `on_disconnect` exactly once. Different sessions are
/// handled in parallel when the server has more than one worker thread.
/// Handlers should not block: a worker that blocks holds up every session
/// it would serve next. A panic in a handler method is caught: it is
/// logged and ends that session ([`DisconnectReason::HandlerPanicked`]).
///
/// # Examples
///
/// ```no_run
/// use cport_server::{Handler, Message, Server, Session};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_connect(&self, _: &Session) {}
///     fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
///         let _ = s.send(msg); // the receive buffer goes back out, no copy
///     }
/// }
///
/// let server = Server::builder().bind("127.0.0.1:7000".parse().unwrap()).start(Echo)?;
/// println!("listening on {}", server.local_addr());
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Per-session state, created by `on_connect` and handed back to
    /// `on_disconnect`. Use `()` when the handler keeps none.
    type State: Send + 'static;

    /// A connection was accepted. Runs before any message of the session.
    fn on_connect(&self, session: &Session) -> Self::State;

    /// One message arrived (a chunk for raw framing, else one decoded frame).
    fn on_message(&self, session: &Session, state: &mut Self::State, msg: Message);

    /// The session ended; its handle no longer sends. Called exactly once.
    fn on_disconnect(&self, session: &Session, state: Self::State, reason: &DisconnectReason) {
        let _ = (session, state, reason);
    }

    /// An operation the handler issued on the server's port itself
    /// ([`Session::port`]: file reads and writes, fsync, timers, posts)
    /// completed. Its context is the handler's own; the default ignores it.
    fn on_completion(&self, completion: cport::Completion) {
        let _ = completion;
    }

    /// The handler released its hold on the session's input
    /// ([`Session::resume_receiving`]): continue with what was held back
    /// (for example requests that followed in the same chunk). Runs before
    /// receiving resumes, in order with `on_message`.
    fn on_resume(&self, session: &Session, state: &mut Self::State) {
        let _ = (session, state);
    }

    /// A received frame broke the codec's rules. The default ends the session;
    /// return [`FrameAction::Skip`] to drop the frame and go on (after, for
    /// example, sending the peer an error line).
    fn on_frame_error(&self, session: &Session, state: &mut Self::State, err: &FrameError) -> FrameAction {
        let _ = (session, state, err);
        FrameAction::Close
    }
}
