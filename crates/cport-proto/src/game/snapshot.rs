//! The spectator snapshot: the whole world as a viewer draws it.

use bytes::{Bytes, BytesMut};

use super::codec::encode;
use super::packet::{Packet, SnapEntry, Snapshot, SNAPSHOT_PART_ENTRIES};

/// Encodes the world's players at `tick` as one or more [`Snapshot`]
/// packets, concatenated in one buffer (parts `0..parts`, in order).
///
/// This is what a spectator receives each tick (the browser viewer, and
/// every player when the server runs without its area-of-interest filter).
/// A world with no players is one empty part.
#[must_use]
pub fn spectator_snapshot(tick: u32, players: &[SnapEntry]) -> Bytes {
    let parts = players.len().div_ceil(SNAPSHOT_PART_ENTRIES).max(1);
    let mut out = BytesMut::with_capacity(players.len() * 14 + parts * 18);
    for part in 0..parts {
        let from = (part * SNAPSHOT_PART_ENTRIES).min(players.len());
        let to = (from + SNAPSHOT_PART_ENTRIES).min(players.len());
        let snap = Snapshot {
            tick,
            part: part as u16,
            parts: parts.min(u16::MAX as usize) as u16,
            players: players.len().min(u32::MAX as usize) as u32,
            entries: players[from..to].to_vec(),
        };
        encode(&Packet::Snapshot(snap), &mut out);
    }
    out.freeze()
}
