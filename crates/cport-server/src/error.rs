//! Why things end: a refused send, a session's disconnect reason. A leaf:
//! it imports nothing else of the crate.

use std::error::Error;
use std::fmt;
use std::io;

use cport_proto::framing::FrameError;

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// The session has ended or is closing.
    Closed,
    /// The session's queue stayed past its cap for the slow-consumer
    /// timeout, or would have passed twice the cap: the session is being
    /// disconnected as a slow consumer.
    Overflow {
        /// Bytes queued when the send came.
        queued: usize,
        /// The cap.
        cap: usize,
    },
}

/// A refused send; the payload comes back.
#[derive(Debug)]
pub struct SendError<T> {
    /// Why.
    pub kind: SendErrorKind,
    /// What was to be sent, handed back.
    pub payload: T,
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SendErrorKind::Closed => f.write_str("session is closed"),
            SendErrorKind::Overflow { queued, cap } => {
                write!(
                    f,
                    "send queue cap reached ({queued} bytes queued, cap {cap}): session disconnected"
                )
            }
        }
    }
}

impl<T: fmt::Debug> Error for SendError<T> {}

/// Why a session ended. Counted per kind in [`ServerStats`](crate::ServerStats).
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed its side; whatever was queued for it was sent first.
    PeerClosed,
    /// The application called [`Session::close`](crate::Session::close).
    Closed,
    /// The application called [`Session::abort`](crate::Session::abort).
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
#[non_exhaustive]
pub enum ReasonKind {
    /// [`DisconnectReason::PeerClosed`].
    PeerClosed,
    /// [`DisconnectReason::Closed`].
    Closed,
    /// [`DisconnectReason::Aborted`].
    Aborted,
    /// [`DisconnectReason::Io`].
    Io,
    /// [`DisconnectReason::SlowConsumer`].
    SlowConsumer,
    /// [`DisconnectReason::Frame`].
    Frame,
    /// [`DisconnectReason::IdleTimeout`].
    IdleTimeout,
    /// [`DisconnectReason::FrameTimeout`].
    FrameTimeout,
    /// [`DisconnectReason::FileEnded`].
    FileEnded,
    /// [`DisconnectReason::Shutdown`].
    Shutdown,
    /// [`DisconnectReason::HandlerPanicked`].
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
