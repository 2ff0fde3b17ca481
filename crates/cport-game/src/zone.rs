//! One zone of the world as a sans-I/O state machine: it takes the tick's
//! commands and hands back what each player is to be told, who leaves the
//! zone and who is kicked. No socket, no clock, no lock: the engine steps
//! zones in parallel, each under its own lock, and does the I/O after.
//!
//! Call order per tick: [`Zone::step`] once; between steps, [`Zone::insert`],
//! [`Zone::remove`] and [`Zone::reattach`] as players arrive and go.

use std::collections::BTreeMap;

use cport_proto::game::{ChatMsg, Entity, EntityMove, Input, KickReason, SnapEntry, Update};

use crate::rules::{PlayerId, Rules};

/// What a player asked for since the last tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// A movement input.
    Move(Input),
    /// A chat line to the zone.
    Chat(String),
}

/// A player as the world keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player {
    /// Its id.
    pub id: PlayerId,
    /// Its name.
    pub name: String,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// The last input sequence applied.
    pub last_seq: u32,
    /// Units walked (a persisted stat).
    pub distance: u64,
    /// Chat lines said (a persisted stat).
    pub chats: u64,
    /// Logins (a persisted stat).
    pub logins: u64,
    /// `false` while its connection is gone (grace period): it stays
    /// visible to others but is told nothing.
    pub attached: bool,
    /// Who it was told about, sorted.
    visible: Vec<PlayerId>,
    /// It moved or had an input acknowledged this tick.
    changed: bool,
    /// It must get an update this tick even if nothing changed (new here).
    fresh: bool,
    /// Input tokens, in thousandths.
    tokens: i64,
    /// When the tokens were last topped up (ms on the caller's clock).
    topped_ms: Option<u64>,
    /// Corrected impossible moves, forgiven one per second.
    cheats: u32,
    /// Inputs dropped past the rate, forgiven one per second.
    floods: u32,
}

impl Player {
    /// A player at (`x`, `y`), attached, with a full input bucket.
    pub fn new(id: PlayerId, name: String, x: i32, y: i32, rules: &Rules) -> Player {
        Player {
            id,
            name,
            x,
            y,
            last_seq: 0,
            distance: 0,
            chats: 0,
            logins: 0,
            attached: true,
            visible: Vec::new(),
            changed: false,
            fresh: true,
            tokens: i64::from(rules.world.max_input_rate) * 1000,
            topped_ms: None,
            cheats: 0,
            floods: 0,
        }
    }

    /// The players it was last told about (sorted ids).
    pub fn visible(&self) -> &[PlayerId] {
        &self.visible
    }
}

/// A chat line and who gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOut {
    /// Every attached player of the zone.
    pub to: Vec<PlayerId>,
    /// The line.
    pub msg: ChatMsg,
}

/// What one step of a zone produced.
#[derive(Debug, Default)]
#[must_use]
pub struct ZoneStep {
    /// One update per attached player that has something to hear.
    pub updates: Vec<(PlayerId, Update)>,
    /// Chat lines to deliver.
    pub chats: Vec<ChatOut>,
    /// Players removed for breaking the rules, and why.
    pub kicks: Vec<(Player, KickReason)>,
    /// Players removed because they walked into another zone: the engine
    /// inserts each into the zone of its position before the next tick.
    pub handoffs: Vec<Player>,
    /// Inputs corrected (clamped) or dropped (past the rate).
    pub corrections: u64,
}

/// One zone: its players, and the area-of-interest grid over its area.
#[derive(Debug)]
pub struct Zone {
    id: u16,
    rules: Rules,
    players: BTreeMap<PlayerId, Player>,
    /// Cells across (and down) the zone.
    side: usize,
    /// Scratch: ids per cell, rebuilt each step.
    cells: Vec<Vec<PlayerId>>,
}

impl Zone {
    /// Zone `id` under `rules`.
    pub fn new(id: u16, rules: Rules) -> Zone {
        let side = rules.world.zone_size.div_ceil(rules.world.cell_size.max(1)).max(1) as usize;
        Zone {
            id,
            rules,
            players: BTreeMap::new(),
            side,
            cells: vec![Vec::new(); side * side],
        }
    }

    /// The zone's index.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Players here.
    pub fn len(&self) -> usize {
        self.players.len()
    }

    /// `true` when nobody is here.
    pub fn is_empty(&self) -> bool {
        self.players.is_empty()
    }

    /// A player here, by id.
    pub fn get(&self, id: PlayerId) -> Option<&Player> {
        self.players.get(&id)
    }

    /// Every player here, by id.
    pub fn players(&self) -> impl Iterator<Item = &Player> {
        self.players.values()
    }

    /// Adds a player (new, resumed from the database, or handed over).
    /// It hears about its new neighbours at the next step.
    pub fn insert(&mut self, mut p: Player) {
        p.fresh = true;
        self.players.insert(p.id, p);
    }

    /// Takes a player out (logout, grace period over). Its neighbours hear
    /// it leave at the next step.
    pub fn remove(&mut self, id: PlayerId) -> Option<Player> {
        self.players.remove(&id)
    }

    /// Marks a player detached (its connection is gone) or attached again;
    /// a re-attached player is told about everyone around it afresh.
    pub fn set_attached(&mut self, id: PlayerId, attached: bool) -> bool {
        let Some(p) = self.players.get_mut(&id) else {
            return false;
        };
        p.attached = attached;
        if attached {
            p.visible.clear();
            p.fresh = true;
        }
        true
    }

    /// Appends every player here to a spectator snapshot.
    pub fn snapshot_into(&self, out: &mut Vec<SnapEntry>) {
        out.extend(self.players.values().map(|p| SnapEntry {
            id: p.id,
            zone: self.id,
            x: p.x,
            y: p.y,
        }));
    }

    /// Runs one tick at `now_ms` (milliseconds on any steady clock):
    /// applies `cmds` in order (each checked against the rules), hands off
    /// who walked out, kicks who broke the rules, and works out what each
    /// player sees. Input tokens refill by the time passed, not by ticks, so
    /// a late tick does not turn an honest client's inputs into floods.
    pub fn step(&mut self, tick: u32, now_ms: u64, cmds: impl IntoIterator<Item = (PlayerId, Cmd)>) -> ZoneStep {
        let mut out = ZoneStep::default();
        let rules = self.rules;
        let rate = i64::from(rules.world.max_input_rate);
        let cap = rate * 1000;
        let forgive = tick.is_multiple_of(u32::from(rules.world.tick_hz.max(1)));
        for p in self.players.values_mut() {
            p.changed = false;
            let since = p.topped_ms.map_or(0, |t| now_ms.saturating_sub(t)).min(60_000) as i64;
            p.topped_ms = Some(now_ms);
            p.tokens = (p.tokens + since * rate).min(cap);
            if forgive {
                p.cheats = p.cheats.saturating_sub(1);
                p.floods = p.floods.saturating_sub(1);
            }
        }
        for (id, cmd) in cmds {
            let Some(p) = self.players.get_mut(&id) else { continue };
            match cmd {
                Cmd::Move(input) => out.corrections += u64::from(apply_move(p, input, &rules)),
                Cmd::Chat(text) => {
                    p.chats += 1;
                    let msg = ChatMsg {
                        from: id,
                        name: p.name.clone(),
                        text,
                    };
                    let to = self.players.values().filter(|q| q.attached).map(|q| q.id).collect();
                    out.chats.push(ChatOut { to, msg });
                }
            }
        }
        let mut gone = Vec::new();
        for p in self.players.values() {
            if p.cheats > rules.cheat_limit {
                gone.push((p.id, Some(KickReason::CHEATING)));
            } else if p.floods > rules.flood_limit {
                gone.push((p.id, Some(KickReason::RATE_LIMITED)));
            } else if rules.zone_of(p.x, p.y) != self.id {
                gone.push((p.id, None));
            }
        }
        for (id, why) in gone {
            if let Some(p) = self.players.remove(&id) {
                match why {
                    Some(r) => out.kicks.push((p, r)),
                    None => out.handoffs.push(p),
                }
            }
        }
        self.interest(tick, &mut out);
        out
    }

    /// The area of interest: each player sees the players in its own grid
    /// cell and the eight around it (within this zone). Compares that set
    /// with what the player was last told and emits enters, moves, leaves.
    fn interest(&mut self, tick: u32, out: &mut ZoneStep) {
        for c in &mut self.cells {
            c.clear();
        }
        for p in self.players.values() {
            let (cx, cy) = self.cell_of(p.x, p.y);
            self.cells[cy * self.side + cx].push(p.id);
        }
        let mut seen = Vec::new();
        let ids: Vec<PlayerId> = self.players.keys().copied().collect();
        for id in ids {
            let p = &self.players[&id];
            let (cx, cy) = self.cell_of(p.x, p.y);
            seen.clear();
            for y in cy.saturating_sub(1)..=(cy + 1).min(self.side - 1) {
                for x in cx.saturating_sub(1)..=(cx + 1).min(self.side - 1) {
                    seen.extend(self.cells[y * self.side + x].iter().copied().filter(|&o| o != id));
                }
            }
            seen.sort_unstable();
            let mut u = Update {
                tick,
                last_seq: p.last_seq,
                x: p.x,
                y: p.y,
                ..Update::default()
            };
            let (old, new) = (&p.visible, &seen);
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < new.len() {
                let (a, b) = (old.get(i).copied(), new.get(j).copied());
                match (a, b) {
                    (Some(a), Some(b)) if a == b => {
                        let q = &self.players[&b];
                        if q.changed {
                            u.moves.push(EntityMove {
                                id: q.id,
                                x: q.x,
                                y: q.y,
                                last_seq: q.last_seq,
                            });
                        }
                        i += 1;
                        j += 1;
                    }
                    (Some(a), b) if b.is_none_or(|b| a < b) => {
                        u.leaves.push(a);
                        i += 1;
                    }
                    (_, Some(b)) => {
                        let q = &self.players[&b];
                        u.enters.push(Entity {
                            id: q.id,
                            x: q.x,
                            y: q.y,
                            last_seq: q.last_seq,
                            name: q.name.clone(),
                        });
                        j += 1;
                    }
                    (_, None) => unreachable!("the loop runs while either list has entries"),
                }
            }
            let tell = p.attached
                && (p.fresh || p.changed || !u.enters.is_empty() || !u.moves.is_empty() || !u.leaves.is_empty());
            let p = self.players.get_mut(&id).expect("ids were taken from the map");
            if p.attached {
                std::mem::swap(&mut p.visible, &mut seen);
                p.fresh = false;
            }
            if tell {
                out.updates.push((id, u));
            }
        }
    }

    /// The cell of a point of this zone (points outside are clamped).
    fn cell_of(&self, x: i32, y: i32) -> (usize, usize) {
        let w = self.rules.world;
        let zx = i64::from(self.id % w.zones_x.max(1)) * i64::from(w.zone_size);
        let zy = i64::from(self.id / w.zones_x.max(1)) * i64::from(w.zone_size);
        let cs = i64::from(w.cell_size.max(1));
        let last = self.side as i64 - 1;
        let cx = ((i64::from(x) - zx) / cs).clamp(0, last) as usize;
        let cy = ((i64::from(y) - zy) / cs).clamp(0, last) as usize;
        (cx, cy)
    }
}

/// Applies one input to `p` under the rules. Returns whether the server
/// changed what the client asked for (a correction).
fn apply_move(p: &mut Player, input: Input, rules: &Rules) -> bool {
    if input.seq <= p.last_seq {
        return false; // stale or repeated: nothing to apply or acknowledge
    }
    p.last_seq = input.seq;
    p.changed = true;
    if p.tokens < 1000 {
        p.floods += 1;
        return true; // past the rate: acknowledged, not applied
    }
    p.tokens -= 1000;
    let m = i32::from(rules.world.max_step);
    let (dx, dy) = (i32::from(input.dx), i32::from(input.dy));
    let corrected = dx.abs() > m || dy.abs() > m;
    if corrected {
        p.cheats += 1;
    }
    let (nx, ny) = rules.clamp(p.x.saturating_add(dx.clamp(-m, m)), p.y.saturating_add(dy.clamp(-m, m)));
    p.distance += u64::from(nx.abs_diff(p.x)) + u64::from(ny.abs_diff(p.y));
    p.x = nx;
    p.y = ny;
    corrected
}
