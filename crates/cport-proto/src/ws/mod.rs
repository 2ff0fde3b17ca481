//! WebSocket (RFC 6455), server side, sans-I/O.
//!
//! - [`upgrade`] checks an HTTP upgrade request and builds the 101 answer
//!   ([`accept_key`] is the `Sec-WebSocket-Accept` derivation);
//! - [`WsConn`] is one connection after the handshake: received bytes and
//!   the time in, [`WsEvent`]s and frames to send out. It enforces the
//!   frame rules (masking, reserved bits and opcodes, control frames,
//!   fragmentation, UTF-8 validated as it arrives, the message limit),
//!   answers pings, runs the close handshake and the idle ping;
//! - [`encode_frame`] builds the unmasked frames a server sends: encode a
//!   broadcast once and queue the same buffer on every recipient.
//!
//! `permessage-deflate` is declined: it is left out of the answer, so a
//! client sends every frame uncompressed.
//!
//! # Examples
//!
//! ```
//! use std::time::Instant;
//! use cport_proto::ws::{encode_client_frame, Opcode, WsConfig, WsConn, WsEvent};
//!
//! let now = Instant::now();
//! let mut ws = WsConn::new(WsConfig::default(), now);
//! let mut events = Vec::new();
//! ws.feed(&encode_client_frame(Opcode::Text, true, b"hi", [1, 2, 3, 4]), now, &mut events);
//! assert_eq!(events, vec![WsEvent::Text("hi".into())]);
//! ```

mod conn;
mod frame;
mod handshake;
#[cfg(test)]
mod tests;

pub use conn::{Close, CloseCause, WsConfig, WsConn, WsEvent};
pub use frame::{
    apply_mask, close_payload, code, encode_client_frame, encode_frame, is_valid_close_code, FrameHead, Opcode,
    MAX_CONTROL_PAYLOAD, MAX_HEAD,
};
pub use handshake::{accept_key, upgrade, wants_upgrade, HandshakeError, Upgrade, VERSION};

/// Fuzzing entry point (for a cargo-fuzz target): the first bytes of
/// `data` choose where the rest is split, then the pieces are fed to a
/// connection with a small message limit. Panics only if the codec breaks
/// one of its own promises (it must never panic on any input).
pub fn fuzz_feed(data: &[u8]) {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let now = std::time::Instant::now();
    let cfg = WsConfig {
        max_message: 4096,
        ..WsConfig::default()
    };
    let mut ws = WsConn::new(cfg, now);
    let mut events = Vec::new();
    let step = usize::from(cut).max(1);
    for piece in rest.chunks(step) {
        ws.feed(piece, now, &mut events);
        while ws.poll_transmit().is_some() {}
    }
    let closes = events.iter().filter(|e| matches!(e, WsEvent::Closed(_))).count();
    assert!(closes <= 1, "one Closed event at most");
    if closes == 1 {
        assert!(
            matches!(events.last(), Some(WsEvent::Closed(_))),
            "nothing after Closed"
        );
        assert!(ws.is_closed());
    }
    for e in &events {
        if let WsEvent::Text(t) = e {
            assert!(std::str::from_utf8(t).is_ok(), "text events are UTF-8");
        }
    }
    let _ = upgrade(rest, &[]);
}
