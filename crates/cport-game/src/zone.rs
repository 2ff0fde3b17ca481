//! One zone of the world as a sans-I/O state machine: it takes the tick's
//! commands and hands back what each player is to be told, who leaves the
//! zone and who is kicked. No socket, no clock, no lock: the engine steps
//! zones in parallel, each under its own lock, and does the I/O after.
//!
//! Call order per tick: [`Zone::apply`] (inputs, kicks, who walked out);
//! then, once every zone has applied and the walkers are inserted in their
//! new zones, [`Zone::rim`] of each zone and [`Zone::view`] with the rims of
//! its neighbours: a player near an edge sees the players in the cells of
//! the zone next door. [`Zone::step`] is both for a zone on its own. Between
//! ticks, [`Zone::insert`], [`Zone::remove`] and [`Zone::set_attached`] as
//! players arrive and go.

use std::collections::BTreeMap;
use std::sync::Arc;

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
    pub name: Arc<str>,
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
            name: name.into(),
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

/// A player as the zones next door see it: what an enter or a move says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its id.
    pub id: PlayerId,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// Its last applied input sequence.
    pub last_seq: u32,
    /// It moved or had an input acknowledged this tick.
    pub changed: bool,
    /// Its name.
    pub name: Arc<str>,
}

impl Seen {
    fn of(p: &Player) -> Seen {
        Seen {
            id: p.id,
            x: p.x,
            y: p.y,
            last_seq: p.last_seq,
            changed: p.changed,
            name: p.name.clone(),
        }
    }
}

/// One zone: its players, and the area-of-interest grid over its area.
///
/// Cells are the world's (`x / cell_size`, `y / cell_size`): the grid kept
/// here covers the zone's cells and a ring of one cell around them, where
/// the neighbours' rim players are placed.
#[derive(Debug)]
pub struct Zone {
    id: u16,
    rules: Rules,
    players: BTreeMap<PlayerId, Player>,
    /// The zone's first and last cell, across and down (world cells).
    cells_x: (i64, i64),
    cells_y: (i64, i64),
    /// Scratch: indexes into the tick's viewable players, per cell of the
    /// grid with its ring; rebuilt each view.
    cells: Vec<Vec<u32>>,
    /// Scratch kept from view to view (no allocation per player-tick).
    scratch: ViewScratch,
}

/// What [`Zone::view_each`] reuses from tick to tick.
#[derive(Debug, Default)]
struct ViewScratch {
    /// The zone's players, then the neighbours' rim players in the ring.
    all: Vec<Seen>,
    /// Each own player's grid cell.
    own_cells: Vec<Option<usize>>,
    /// One player's view: (id, index into `all`), sorted.
    seen: Vec<(PlayerId, u32)>,
    /// The update being made.
    update: Update,
}

impl Zone {
    /// Zone `id` under `rules`.
    pub fn new(id: u16, rules: Rules) -> Zone {
        let w = rules.world;
        let (zs, cs) = (i64::from(w.zone_size.max(1)), i64::from(w.cell_size.max(1)));
        let x0 = i64::from(id % w.zones_x.max(1)) * zs;
        let y0 = i64::from(id / w.zones_x.max(1)) * zs;
        let cells_x = (x0 / cs, (x0 + zs - 1) / cs);
        let cells_y = (y0 / cs, (y0 + zs - 1) / cs);
        let n = (cells_x.1 - cells_x.0 + 3) * (cells_y.1 - cells_y.0 + 3);
        Zone {
            id,
            rules,
            players: BTreeMap::new(),
            cells_x,
            cells_y,
            cells: vec![Vec::new(); n as usize],
            scratch: ViewScratch::default(),
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

    /// One tick of a zone on its own (no neighbours): [`apply`](Self::apply)
    /// then [`view`](Self::view).
    pub fn step(&mut self, tick: u32, now_ms: u64, cmds: impl IntoIterator<Item = (PlayerId, Cmd)>) -> ZoneStep {
        let mut out = self.apply(tick, now_ms, cmds);
        out.updates = self.view(tick, &[]);
        out
    }

    /// The first half of a tick at `now_ms` (milliseconds on any steady
    /// clock): applies `cmds` in order (each checked against the rules),
    /// takes out who walked out of the zone (hand-offs) and who broke the
    /// rules (kicks). `updates` is left empty: [`view`](Self::view) makes
    /// them once every zone has applied. Input tokens refill by the time
    /// passed, not by ticks, so a late tick does not turn an honest client's
    /// inputs into floods.
    pub fn apply(&mut self, tick: u32, now_ms: u64, cmds: impl IntoIterator<Item = (PlayerId, Cmd)>) -> ZoneStep {
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
                        name: p.name.to_string(),
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
        out
    }

    /// The players in the zone's edge cells: what the zones next door need
    /// for the players near their side of the edge.
    pub fn rim(&self) -> Vec<Seen> {
        self.players
            .values()
            .filter(|p| {
                let (cx, cy) = self.world_cell(p.x, p.y);
                cx == self.cells_x.0 || cx == self.cells_x.1 || cy == self.cells_y.0 || cy == self.cells_y.1
            })
            .map(Seen::of)
            .collect()
    }

    /// The second half of a tick, the area of interest: each player sees
    /// the players in its own grid cell and the eight around it, its zone's
    /// and, near an edge, those of `neighbours` (the [`rim`](Self::rim)s of
    /// the zones around, taken after every hand-off of the tick). Compares
    /// that set with what the player was last told and returns an update
    /// (enters, moves, leaves) for each attached player with news.
    pub fn view(&mut self, tick: u32, neighbours: &[&[Seen]]) -> Vec<(PlayerId, Update)> {
        let mut out = Vec::new();
        self.view_each(tick, neighbours, |id, u| out.push((id, u.clone())));
        out
    }

    /// [`view`](Self::view), handing each update to `tell` as it is made
    /// instead of collecting them: the engine encodes it straight into the
    /// player's send buffer, and nothing is allocated per player.
    pub fn view_each(&mut self, tick: u32, neighbours: &[&[Seen]], mut tell: impl FnMut(PlayerId, &Update)) {
        for c in &mut self.cells {
            c.clear();
        }
        let mut sc = std::mem::take(&mut self.scratch);
        sc.all.clear();
        sc.all.extend(self.players.values().map(Seen::of));
        let own = sc.all.len();
        for rim in neighbours {
            sc.all
                .extend(rim.iter().filter(|q| self.grid_index(q.x, q.y).is_some()).cloned());
        }
        for (i, q) in sc.all.iter().enumerate() {
            if let Some(c) = self.grid_index(q.x, q.y) {
                self.cells[c].push(i as u32);
            }
        }
        let gw = (self.cells_x.1 - self.cells_x.0 + 3) as usize;
        // A player's 3 x 3 block lies in the grid when its cell is the zone's
        // (always, once hand-offs are done; anything else sees nobody).
        let inner = |c: usize| {
            let (gx, gy) = (c % gw, c / gw);
            (1..gw - 1).contains(&gx) && (1..self.cells.len() / gw - 1).contains(&gy)
        };
        sc.own_cells.clear();
        sc.own_cells.extend(
            sc.all[..own]
                .iter()
                .map(|q| self.grid_index(q.x, q.y).filter(|&c| inner(c))),
        );
        let ViewScratch {
            all,
            own_cells,
            seen,
            update: u,
        } = &mut sc;
        for ((me, p), c) in all[..own].iter().zip(self.players.values_mut()).zip(own_cells.iter()) {
            debug_assert_eq!(me.id, p.id);
            seen.clear();
            if let Some(c) = *c {
                for row in [c - gw, c, c + gw] {
                    for cell in &self.cells[row - 1..=row + 1] {
                        seen.extend(
                            cell.iter()
                                .map(|&i| (all[i as usize].id, i))
                                .filter(|&(id, _)| id != me.id),
                        );
                    }
                }
            }
            seen.sort_unstable();
            u.tick = tick;
            u.last_seq = p.last_seq;
            u.x = p.x;
            u.y = p.y;
            u.enters.clear();
            u.moves.clear();
            u.leaves.clear();
            let old = &p.visible;
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < seen.len() {
                let a = old.get(i).copied();
                let b = seen.get(j).map(|&(id, k)| (id, &all[k as usize]));
                match (a, b) {
                    (Some(a), Some((b, q))) if a == b => {
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
                    (Some(a), b) if b.is_none_or(|(b, _)| a < b) => {
                        u.leaves.push(a);
                        i += 1;
                    }
                    (_, Some((_, q))) => {
                        u.enters.push(Entity {
                            id: q.id,
                            x: q.x,
                            y: q.y,
                            last_seq: q.last_seq,
                            name: q.name.to_string(),
                        });
                        j += 1;
                    }
                    (_, None) => unreachable!("the loop runs while either list has entries"),
                }
            }
            let news = !u.enters.is_empty() || !u.moves.is_empty() || !u.leaves.is_empty();
            let told = p.attached && (p.fresh || p.changed || news);
            if p.attached {
                p.visible.clear();
                p.visible.extend(seen.iter().map(|&(id, _)| id));
                p.fresh = false;
            }
            if told {
                tell(p.id, u);
            }
        }
        self.scratch = sc;
    }

    /// The world cell of a point.
    fn world_cell(&self, x: i32, y: i32) -> (i64, i64) {
        let cs = i64::from(self.rules.world.cell_size.max(1));
        (i64::from(x) / cs, i64::from(y) / cs)
    }

    /// Where a point's cell is in the grid (the zone's cells and the ring
    /// around them); `None` beyond the ring.
    fn grid_index(&self, x: i32, y: i32) -> Option<usize> {
        let (cx, cy) = self.world_cell(x, y);
        let gx = cx - self.cells_x.0 + 1;
        let gy = cy - self.cells_y.0 + 1;
        let gw = self.cells_x.1 - self.cells_x.0 + 3;
        let gh = self.cells_y.1 - self.cells_y.0 + 3;
        ((0..gw).contains(&gx) && (0..gh).contains(&gy)).then(|| (gy * gw + gx) as usize)
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
