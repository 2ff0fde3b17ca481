//! The world stepped on one thread: every zone, then the hand-offs. The
//! engine does the same with zones in parallel; this is its reference, and
//! what the tests drive.

use std::collections::BTreeMap;

use cport_proto::game::{KickReason, Update};

use crate::rules::{PlayerId, Rules};
use crate::zone::{ChatOut, Cmd, Player, Seen, Zone};

/// Every zone of a world, and the tick.
#[derive(Debug)]
pub struct World {
    rules: Rules,
    zones: Vec<Zone>,
    tick: u32,
}

/// What one tick of the whole world produced.
#[derive(Debug, Default)]
#[must_use]
pub struct WorldStep {
    /// Updates per player (a handed-over player hears from its new zone
    /// at the next tick).
    pub updates: BTreeMap<PlayerId, Update>,
    /// Chat lines.
    pub chats: Vec<ChatOut>,
    /// Kicked players and why.
    pub kicks: Vec<(PlayerId, KickReason)>,
    /// Players handed to another zone: (id, from, to).
    pub handoffs: Vec<(PlayerId, u16, u16)>,
}

impl World {
    /// An empty world under `rules`.
    pub fn new(rules: Rules) -> World {
        World {
            rules,
            zones: (0..rules.zones()).map(|z| Zone::new(z as u16, rules)).collect(),
            tick: 0,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Adds a player at its position's zone.
    pub fn insert(&mut self, p: Player) {
        let z = self.rules.zone_of(p.x, p.y);
        self.zones[usize::from(z)].insert(p);
    }

    /// Finds a player.
    pub fn get(&self, id: PlayerId) -> Option<&Player> {
        self.zones.iter().find_map(|z| z.get(id))
    }

    /// One tick at `now_ms`: commands go to the zone each player is in;
    /// zones hand over who walked out; then each zone works out what its
    /// players see, across zone edges (the engine's order, on one thread).
    pub fn step(&mut self, now_ms: u64, cmds: impl IntoIterator<Item = (PlayerId, Cmd)>) -> WorldStep {
        self.tick += 1;
        let mut per_zone: Vec<Vec<(PlayerId, Cmd)>> = vec![Vec::new(); self.zones.len()];
        for (id, c) in cmds {
            if let Some(z) = self.zones.iter().position(|z| z.get(id).is_some()) {
                per_zone[z].push((id, c));
            }
        }
        let mut out = WorldStep::default();
        let mut moving = Vec::new();
        for (z, cmds) in self.zones.iter_mut().zip(per_zone) {
            let s = z.apply(self.tick, now_ms, cmds);
            out.chats.extend(s.chats);
            out.kicks.extend(s.kicks.into_iter().map(|(p, r)| (p.id, r)));
            moving.extend(s.handoffs.into_iter().map(|p| (z.id(), p)));
        }
        for (from, p) in moving {
            let to = self.rules.zone_of(p.x, p.y);
            out.handoffs.push((p.id, from, to));
            self.zones[usize::from(to)].insert(p);
        }
        let rims: Vec<Vec<Seen>> = self.zones.iter().map(Zone::rim).collect();
        for z in 0..self.zones.len() {
            let around = self.rules.neighbours(z as u16);
            let near: Vec<&[Seen]> = around.iter().map(|&n| rims[usize::from(n)].as_slice()).collect();
            out.updates.extend(self.zones[z].view(self.tick, &near));
        }
        out
    }
}
