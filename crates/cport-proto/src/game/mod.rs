//! The game server's binary protocol (see `docs/GAME.md` for the wire layout).
//!
//! Every packet is a header and a fixed-layout little-endian body:
//!
//! ```text
//! len: u16   bytes after this field (type + version + body), 2..=65535
//! type: u8   the packet type (client -> server 0x01..=0x08, server -> client 0x81..=0x88)
//! ver: u8    VERSION (1)
//! body       the type's fields in order; strings are a u8 length then bytes
//! ```
//!
//! Sans-I/O: [`decode`] takes bytes off the front of a buffer, [`parse_frame`]
//! reads one packet whose length prefix was already cut off (the server core's
//! length-prefixed framing does that), [`encode`] appends one packet. None of
//! them panics on any input; [`fuzz_stream`] is the entry point for a fuzz
//! target. [`spectator_snapshot`] is what a viewer (and the server's
//! broadcast-everything mode) receives.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use cport_proto::game::{decode, encode, Input, Packet, MAX_PACKET};
//!
//! let mut wire = BytesMut::new();
//! encode(&Packet::Input(Input { seq: 7, dx: 1, dy: -1 }), &mut wire);
//! let (p, used) = decode(&wire, MAX_PACKET).unwrap().unwrap();
//! assert_eq!(used, wire.len());
//! assert_eq!(p, Packet::Input(Input { seq: 7, dx: 1, dy: -1 }));
//! ```

mod codec;
mod packet;
mod snapshot;
#[cfg(test)]
mod tests;

pub use codec::{
    decode, encode, encode_to_bytes, encode_update, fuzz_stream, parse_client_frame, parse_frame, DecodeError,
    UPDATE_MAX_ENTRIES,
};
pub use packet::{
    valid_name, ChatMsg, Entity, EntityMove, Input, KickReason, LoginOk, Packet, PacketType, SnapEntry, Snapshot,
    Stats, Update, WorldInfo, HEADER_LEN, MAX_CHAT, MAX_NAME, MAX_PACKET, SNAPSHOT_PART_ENTRIES, VERSION,
};
pub use snapshot::spectator_snapshot;
