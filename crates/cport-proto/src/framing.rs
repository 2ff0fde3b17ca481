//! Framing codecs: cut a session's receive buffer into messages and frame outgoing ones.
//!
//! TCP delivers a byte stream, not messages: one receive may hold half a
//! message or three of them. A [`Decoder`] takes whole frames off the front of
//! the buffer the session accumulates, without copying the payload (the frame
//! is split off the buffer and frozen); an [`Encoder`] appends one framed
//! message to an output buffer. Both refuse oversized frames *before* the bytes
//! arrive, so a peer cannot make the server buffer without bound.
//!
//! Call order: append received bytes to the buffer, then call
//! [`Decoder::decode`] until it returns `Ok(None)`. After an error the stream
//! is out of sync; close the session.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use cport_proto::framing::{Decoder, Encoder, LengthPrefixed, LengthWidth};
//!
//! let mut codec = LengthPrefixed::new(LengthWidth::U16, 1024);
//! let mut wire = BytesMut::new();
//! codec.encode(b"ping", &mut wire).unwrap();
//! codec.encode(b"pong", &mut wire).unwrap();
//!
//! // Bytes arrive in arbitrary pieces; frames come out whole.
//! let mut rx = BytesMut::new();
//! rx.extend_from_slice(&wire[..5]);
//! assert_eq!(codec.decode(&mut rx).unwrap(), None);
//! rx.extend_from_slice(&wire[5..]);
//! assert_eq!(&codec.decode(&mut rx).unwrap().unwrap()[..], b"ping");
//! assert_eq!(&codec.decode(&mut rx).unwrap().unwrap()[..], b"pong");
//! ```

mod codec;
mod stream;
#[cfg(test)]
mod tests;

pub(crate) use codec::{scan_line, LineScan};
pub use codec::{split_newlines, Decoder, Encoder, FrameError, LengthPrefixed, LengthWidth, Lines};
pub use stream::FrameStream;
