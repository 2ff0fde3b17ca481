//! Sans-I/O protocol code for cport's servers.
//!
//! Everything here is plain functions and state machines over bytes: no
//! socket, no clock, no file system access except where a function says so.
//! That keeps the parsers testable and fuzzable without a network.
//!
//! - [`framing`]: codecs that cut a receive buffer into frames (length-prefixed
//!   binary packets, text lines) and frame outgoing messages.
//! - [`chat`]: the messenger's line protocol and its room/nickname state.
//! - [`game`]: the game server's binary packets and the spectator snapshot.
//! - [`http`]: HTTP/1.1 request parsing, path and range rules, and response
//!   heads for a static file server.
//! - [`ws`]: WebSocket (RFC 6455): the upgrade handshake and the frame codec.

#![deny(missing_docs)]

pub mod chat;
pub mod framing;
pub mod game;
pub mod http;
pub mod ws;

#[cfg(test)]
mod coverage;
