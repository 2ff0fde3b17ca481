//! What a session's byte stream is cut into: the framing, the messages a
//! handler is handed, and what to do about a bad frame. A leaf: it imports
//! nothing else of the crate.

use std::ops::Deref;

use bytes::Bytes;
use cport::Buf;
use cport_proto::framing::{FrameStream, LengthPrefixed};

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

impl Framing {
    /// A new session's frame reassembly, or `None` for raw framing (chunks
    /// are messages).
    pub(crate) fn stream(&self) -> Option<FrameStream> {
        match self {
            Framing::Raw => None,
            Framing::LengthPrefixed(c) => Some(FrameStream::length_prefixed(*c)),
            Framing::Lines { max_line } => Some(FrameStream::lines(*max_line)),
        }
    }
}

/// What to do about a frame that broke the codec's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAction {
    /// End the session ([`DisconnectReason::Frame`](crate::DisconnectReason::Frame)).
    Close,
    /// Drop the oversized frame and go on with the next one (for lines: up to
    /// the next newline; for length-prefixed packets: the declared length).
    /// Only [`FrameError::TooLarge`](cport_proto::framing::FrameError::TooLarge) can be skipped; anything else closes.
    Skip,
}

/// One message handed to [`Handler::on_message`](crate::Handler::on_message).
#[derive(Debug)]
pub enum Message {
    /// A received chunk as it arrived (raw framing): the pooled receive
    /// buffer itself. Send it back with [`Session::send`](crate::Session::send) without copying.
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
