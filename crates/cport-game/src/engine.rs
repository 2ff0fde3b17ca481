//! The engine: zones stepped on the game server's own port and workers.
//!
//! The world has no port and no threads of its own: its tick is a timer
//! on the server's port (issued with `app_ctx`, delivered to the game's
//! `Handler::on_completion`), so the sessions' I/O and the world's steps
//! share one pool of workers and the updates a worker queues leave in the
//! same batched submission as everything else it issued (no wake-up per
//! session per tick). The worker that takes the tick posts one packet per
//! zone (with one worker it steps them in place); the workers apply the zones' inputs in
//! parallel, each under that zone's own lock, and queue what the zone
//! produced on the sessions only after the lock is released (no lock is
//! held across I/O). The last zone to finish runs the barrier: players that
//! walked out of a zone are inserted into their new one (exactly once:
//! between the two they sit in the engine's transit list, never in two
//! zones, never lost) and each zone's rim (its edge cells) is taken. Then a
//! second packet per zone: the workers work out what each player sees, its
//! zone's players and those of the rims around, read-only and shared; the
//! last to finish times the tick and arms the next timer on a fixed
//! schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use std::sync::OnceLock;

use cport::{Completion, Key, OpKind, Port};
use cport_http::WsSession;
use cport_proto::game::{encode_to_bytes, encode_update, spectator_snapshot, KickReason, LoginOk, Packet, SnapEntry};
use cport_proto::ws::{encode_frame, Opcode};
use cport_server::{app_ctx, Session};
use parking_lot::Mutex;

use crate::rules::{PlayerId, Rules};
use crate::stats::TickStats;
use crate::store::{Saved, Store};
use crate::zone::{Cmd, Player, Seen, Zone};

/// What one of the world's completions on the server's port is for: the
/// application tag given to `app_ctx` (kind in bits 32..40, zone below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorldTag {
    /// Posted once when the world is attached: a worker arms the first tick.
    Start,
    /// The tick timer.
    Tick,
    /// The first half of a tick for one zone.
    Step(u16),
    /// The second half of a tick for one zone.
    View(u16),
    /// Logins came back from the database.
    Loaded,
}

impl WorldTag {
    /// The tag word (40 bits used; `app_ctx` keeps 48, see `cport_server::MAX_APP_TAG`).
    pub(crate) fn encode(self) -> u64 {
        let (kind, zone) = match self {
            WorldTag::Start => (1, 0),
            WorldTag::Tick => (2, 0),
            WorldTag::Step(z) => (3, z),
            WorldTag::View(z) => (4, z),
            WorldTag::Loaded => (5, 0),
        };
        (kind << 32) | u64::from(zone)
    }

    /// Reads a tag back; `None` for a tag the world never issued.
    pub(crate) fn decode(tag: u64) -> Option<WorldTag> {
        let zone = u16::try_from(tag & 0xffff_ffff).ok()?;
        let bare = |t| (zone == 0).then_some(t);
        match tag >> 32 {
            1 => bare(WorldTag::Start),
            2 => bare(WorldTag::Tick),
            3 => Some(WorldTag::Step(zone)),
            4 => Some(WorldTag::View(zone)),
            5 => bare(WorldTag::Loaded),
            _ => None,
        }
    }

    fn ctx(self) -> cport::Ctx {
        app_ctx(self.encode())
    }
}

/// The key of the world's own packets on the server's port (the context
/// routes them; a key no session takes, as the server core's own).
const WORLD_KEY: Key = Key(u32::MAX as u64 - 1);

/// A player's link between its session (which changes on resume) and its
/// zone (which changes on hand-off).
pub(crate) struct Link {
    pub id: PlayerId,
    pub name: String,
    pub token: u64,
    /// The connection, while attached.
    pub session: Mutex<Option<Session>>,
    /// Commands waiting for the next tick.
    pub inbox: Mutex<Vec<Cmd>>,
    /// Chat lines heard this tick, sent with the player's update in one
    /// buffer (one queued send per player per tick, not one per line).
    pub outbox: Mutex<BytesMut>,
    /// The zone the player is in (or is being handed to).
    pub zone: AtomicU16,
    /// When the connection went away (grace period), if it did.
    pub detached: Mutex<Option<Instant>>,
    /// The player asked to leave: removed and saved at the next tick.
    pub logout: AtomicBool,
}

impl Link {
    fn session(&self) -> Option<Session> {
        self.session.lock().clone()
    }
}

/// A connection's game state: the player it plays, once logged in.
#[derive(Default)]
pub(crate) struct Conn {
    pub link: Mutex<Option<Arc<Link>>>,
}

/// A login waiting for the database.
pub(crate) struct PendingLogin {
    name: String,
    session: Session,
    conn: Arc<Conn>,
}

struct ZoneCell {
    zone: Zone,
    links: HashMap<PlayerId, Arc<Link>>,
    /// Where the zone's updates are encoded, each player's cut off in turn.
    out: BytesMut,
}

/// Players in the world by name, and names being loaded.
#[derive(Default)]
struct Lobby {
    players: HashMap<String, Arc<Link>>,
    loading: HashMap<String, ()>,
    next_id: PlayerId,
}

/// Engine options beyond the rules.
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions {
    pub interest: bool,
    pub save_every: Duration,
}

pub(crate) struct Engine {
    /// The game server's port, once the world is attached to it.
    port: OnceLock<Port>,
    /// Zones are stepped by posting one packet each (more than one worker)
    /// rather than in place on the tick's worker.
    parallel: AtomicBool,
    pub rules: Rules,
    opts: EngineOptions,
    zones: Vec<Mutex<ZoneCell>>,
    lobby: Mutex<Lobby>,
    transit: Mutex<Vec<(Player, Arc<Link>)>>,
    /// Each zone's updates of this tick, queued on the sessions at its end.
    outgoing: Mutex<Vec<Vec<(Session, Bytes)>>>,
    /// Each zone's rim this tick (taken after the hand-offs).
    rims: Mutex<Vec<Arc<Vec<Seen>>>>,
    /// The zones around each zone.
    neighbours: Vec<Vec<u16>>,
    remaining: AtomicUsize,
    tick: AtomicU32,
    /// The zones' clock starts here.
    epoch: Instant,
    tick_start: Mutex<Instant>,
    next_tick: Mutex<Instant>,
    stopping: AtomicBool,
    pub stats: TickStats,
    pub store: Mutex<Option<Store<PendingLogin>>>,
    /// Sessions that asked for the whole world each tick (spectators, and
    /// players comparing it with their area of interest), by session id.
    watchers: Mutex<HashMap<u64, Session>>,
    /// Browser viewers (WebSocket sessions of the HTTP server), by id.
    viewers: Mutex<HashMap<u64, WsSession>>,
    loaded: Mutex<Vec<(PendingLogin, Option<Saved>)>>,
}

impl Engine {
    pub fn new(rules: Rules, opts: EngineOptions) -> Engine {
        let zones = (0..rules.zones())
            .map(|z| {
                Mutex::new(ZoneCell {
                    zone: Zone::new(z as u16, rules),
                    links: HashMap::new(),
                    out: BytesMut::new(),
                })
            })
            .collect();
        let now = Instant::now();
        Engine {
            port: OnceLock::new(),
            parallel: AtomicBool::new(false),
            rules,
            opts,
            zones,
            lobby: Mutex::new(Lobby {
                next_id: 1,
                ..Lobby::default()
            }),
            transit: Mutex::new(Vec::new()),
            rims: Mutex::new(Vec::new()),
            outgoing: Mutex::new(Vec::new()),
            neighbours: (0..rules.zones()).map(|z| rules.neighbours(z as u16)).collect(),
            remaining: AtomicUsize::new(0),
            tick: AtomicU32::new(0),
            epoch: now,
            tick_start: Mutex::new(now),
            next_tick: Mutex::new(now),
            stopping: AtomicBool::new(false),
            stats: TickStats::default(),
            store: Mutex::new(None),
            watchers: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// The store thread's answer to a load: queued, and a packet posted so
    /// that a worker finishes the login.
    pub fn on_store_answer(&self, p: PendingLogin, saved: Option<Saved>) {
        self.loaded.lock().push((p, saved));
        let posted = self
            .port
            .get()
            .is_some_and(|port| port.post(WORLD_KEY, 0, WorldTag::Loaded.ctx()).is_ok());
        if !posted {
            tracing::warn!("game server port refused a login completion");
        }
    }

    /// Runs the world on `port` (the game server's) with `workers` worker
    /// threads: a packet is posted so that a worker arms the first tick
    /// (on io_uring an operation belongs to the thread that submits it).
    pub fn attach(&self, port: &Port, workers: usize) -> std::io::Result<()> {
        if self.port.set(port.clone()).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the game world runs on a port already",
            ));
        }
        self.parallel.store(workers > 1, SeqCst);
        port.post(WORLD_KEY, 0, WorldTag::Start.ctx())?;
        Ok(())
    }

    /// Arms the tick timer to fire after `wait`.
    fn arm_tick(&self, wait: Duration) {
        let Some(port) = self.port.get() else { return };
        if let Err(e) = port.timeout(wait, WorldTag::Tick.ctx()) {
            if !self.stopping.load(SeqCst) {
                tracing::error!(error = %e, "cannot arm the game tick");
            }
        }
    }

    /// Stops ticking (the tick in progress finishes).
    pub fn stop_ticking(&self) {
        self.stopping.store(true, SeqCst);
    }

    /// Runs one of the world's completions on the server's port (tag from
    /// `app_ctx`). A timer ended by a cancel or the shutdown (an error)
    /// starts no tick.
    pub fn handle(&self, tag: u64, c: Completion) {
        let Some(t) = WorldTag::decode(tag) else {
            tracing::warn!(tag, "a completion the game world did not issue");
            return;
        };
        match (c.kind(), t) {
            (OpKind::Post, WorldTag::Start) => {
                *self.next_tick.lock() = Instant::now() + self.rules.period();
                self.arm_tick(self.rules.period());
            }
            (OpKind::Timeout, WorldTag::Tick) if c.result().is_ok() => self.begin_tick(),
            (OpKind::Post, WorldTag::Step(z)) => self.apply_zone(usize::from(z)),
            (OpKind::Post, WorldTag::View(z)) => self.view_zone(usize::from(z)),
            (OpKind::Post, WorldTag::Loaded) => self.finish_logins(),
            _ => {}
        }
    }

    /// Runs `run(z)` for every zone: one packet per zone for the workers
    /// when there are several, in place on this worker when it is alone
    /// (or the port is full).
    fn each_zone(&self, tag: fn(u16) -> WorldTag, run: impl Fn(usize)) {
        let n = self.zones.len();
        let port = self.port.get().filter(|_| self.parallel.load(Relaxed));
        for z in 0..n {
            let posted = port.is_some_and(|p| p.post(WORLD_KEY, 0, tag(z as u16).ctx()).is_ok());
            if !posted {
                run(z);
            }
        }
    }

    fn begin_tick(&self) {
        if self.stopping.load(SeqCst) {
            return;
        }
        self.tick.fetch_add(1, SeqCst);
        *self.tick_start.lock() = Instant::now();
        self.remaining.store(self.zones.len(), SeqCst);
        self.each_zone(WorldTag::Step, |z| self.apply_zone(z));
    }

    /// The first half of a tick for zone `z`: its inputs applied, its
    /// leavers, kicks and walkers taken out; chat and kicks delivered
    /// after its lock is released. The last zone to finish runs the
    /// hand-offs and starts the second half.
    fn apply_zone(&self, z: usize) {
        let Some(cell) = self.zones.get(z) else { return };
        let tick = self.tick.load(SeqCst);
        let now = Instant::now();
        let grace = self.rules.grace;
        let mut kicks: Vec<(Option<Session>, KickReason)> = Vec::new();
        let mut departed: Vec<(Arc<Link>, Saved)> = Vec::new();
        let corrections;
        {
            let mut g = cell.lock();
            let ZoneCell { zone, links, .. } = &mut *g;
            let leaving: Vec<PlayerId> = links
                .values()
                .filter(|l| l.logout.load(Acquire) || l.detached.lock().is_some_and(|t| now.duration_since(t) >= grace))
                .map(|l| l.id)
                .collect();
            for id in leaving {
                let link = links.remove(&id);
                if let (Some(p), Some(link)) = (zone.remove(id), link) {
                    departed.push((link, saved(&p)));
                }
            }
            let mut cmds = Vec::new();
            for (id, link) in links.iter() {
                cmds.extend(link.inbox.lock().drain(..).map(|c| (*id, c)));
            }
            let step = zone.apply(tick, self.epoch.elapsed().as_millis() as u64, cmds);
            corrections = step.corrections;
            for c in step.chats {
                let b = encode_to_bytes(&Packet::ChatMsg(c.msg));
                for l in c.to.iter().filter_map(|id| links.get(id)) {
                    l.outbox.lock().extend_from_slice(&b);
                }
            }
            for (p, why) in step.kicks {
                if let Some(link) = links.remove(&p.id) {
                    kicks.push((link.session(), why));
                    departed.push((link, saved(&p)));
                }
            }
            if !step.handoffs.is_empty() {
                let mut t = self.transit.lock();
                for p in step.handoffs {
                    if let Some(link) = links.remove(&p.id) {
                        t.push((p, link));
                    }
                }
            }
        }
        // I/O and the lobby only after the zone's lock is released.
        self.stats.corrections(corrections);
        for (s, why) in kicks {
            if let Some(s) = s {
                tracing::info!(session = s.id(), reason = why.name(), "player kicked");
                kick(&s, why);
            }
        }
        self.depart(departed);
        if self.remaining.fetch_sub(1, AcqRel) == 1 {
            self.hand_over();
        }
    }

    /// The barrier between the halves: players that walked out of a zone
    /// go into their new one (exactly once: between the two they sit in the
    /// transit list, never in two zones, never lost), every zone's rim is
    /// taken, and the zones are posted for their views.
    fn hand_over(&self) {
        let moved: Vec<(Player, Arc<Link>)> = std::mem::take(&mut *self.transit.lock());
        self.stats.handoffs(moved.len() as u64);
        for (p, link) in moved {
            let z = self.rules.zone_of(p.x, p.y);
            link.zone.store(z, Release);
            let (x, y) = (p.x, p.y);
            {
                let mut g = self.zones[usize::from(z)].lock();
                g.links.insert(p.id, link.clone());
                g.zone.insert(p);
            }
            if let Some(s) = link.session() {
                let b = encode_to_bytes(&Packet::ZoneChange { zone: z, x, y });
                self.stats.sent(b.len());
                let _ = s.send(b);
            }
        }
        let rims: Vec<Arc<Vec<Seen>>> = self.zones.iter().map(|z| Arc::new(z.lock().zone.rim())).collect();
        *self.rims.lock() = rims;
        self.remaining.store(self.zones.len(), SeqCst);
        self.each_zone(WorldTag::View, |z| self.view_zone(z));
    }

    /// The second half for zone `z`: what each of its players sees (its
    /// zone and the rims of the zones around), sent after its lock is
    /// released. The last zone to finish ends the tick.
    fn view_zone(&self, z: usize) {
        let Some(cell) = self.zones.get(z) else { return };
        let tick = self.tick.load(SeqCst);
        let rims: Vec<Arc<Vec<Seen>>> = {
            let all = self.rims.lock();
            self.neighbours[z]
                .iter()
                .filter_map(|&n| all.get(usize::from(n)).cloned())
                .collect()
        };
        let near: Vec<&[Seen]> = rims.iter().map(|r| r.as_slice()).collect();
        // Per player: the chat it heard and its update, one buffer cut
        // from the zone's (one allocation per zone, not per player).
        let mut sends: Vec<(Session, Bytes)> = Vec::new();
        {
            let mut g = cell.lock();
            let ZoneCell { zone, links, out } = &mut *g;
            out.reserve(64 * zone.len());
            zone.view_each(tick, &near, |id, u| {
                let Some(l) = links.get(&id) else { return };
                let mut heard = l.outbox.lock();
                if let Some(s) = l.session() {
                    out.extend_from_slice(&heard);
                    encode_update(u, out);
                    sends.push((s, out.split().freeze()));
                }
                heard.clear();
            });
            // Those with chat heard and no update.
            for l in links.values() {
                let mut heard = l.outbox.lock();
                if heard.is_empty() {
                    continue;
                }
                if let Some(s) = l.session() {
                    sends.push((s, Bytes::copy_from_slice(&heard)));
                }
                heard.clear();
            }
        }
        self.outgoing.lock().push(sends);
        if self.remaining.fetch_sub(1, AcqRel) == 1 {
            self.end_tick(tick);
        }
    }

    /// Players out of the world: forgotten by name and saved.
    fn depart(&self, departed: Vec<(Arc<Link>, Saved)>) {
        if departed.is_empty() {
            return;
        }
        let mut saves = Vec::with_capacity(departed.len());
        {
            let mut lobby = self.lobby.lock();
            for (link, s) in departed {
                if lobby.players.get(&link.name).is_some_and(|l| Arc::ptr_eq(l, &link)) {
                    lobby.players.remove(&link.name);
                }
                if link.logout.load(Acquire) {
                    let s = link.session.lock().take();
                    if let Some(s) = s {
                        s.close();
                    }
                }
                saves.push(s);
            }
        }
        if let Some(store) = &*self.store.lock() {
            store.save(saves);
        }
    }

    /// The end of the tick, once every zone has sent its views: counters,
    /// the whole world to spectators (and to everyone without the
    /// area-of-interest filter), periodic saves, the next timer.
    fn end_tick(&self, tick: u32) {
        let players = self.players();
        let took = self.tick_start.lock().elapsed();
        self.stats.tick(took, players);
        // The updates go out in one burst once the world has stepped: the
        // session threads' sends do not cut into the step (on a busy core
        // they would preempt it once per zone), and it is timed apart.
        let flush_from = Instant::now();
        let mut bytes = 0;
        for sends in std::mem::take(&mut *self.outgoing.lock()) {
            for (s, b) in sends {
                bytes += b.len();
                let _ = s.send(b);
            }
        }
        self.stats.sent(bytes);
        self.stats.flush(flush_from.elapsed());
        let watchers: Vec<Session> = self.watchers.lock().values().cloned().collect();
        let viewers: Vec<WsSession> = self.viewers.lock().values().cloned().collect();
        if !self.opts.interest || !watchers.is_empty() || !viewers.is_empty() {
            let (entries, mut sessions) = self.everyone(!self.opts.interest);
            if self.opts.interest {
                sessions = watchers;
            } else {
                // Everyone gets it already; watchers without a player too.
                let ids: std::collections::HashSet<u64> = sessions.iter().map(|s| s.id()).collect();
                sessions.extend(watchers.into_iter().filter(|w| !ids.contains(&w.id())));
            }
            let b = spectator_snapshot(tick, &entries);
            self.stats.sent(b.len() * sessions.len());
            cport_server::broadcast(&sessions, &b);
            if !viewers.is_empty() {
                let frame = encode_frame(Opcode::Binary, &b);
                for v in &viewers {
                    v.send_frame(frame.clone());
                }
                if tick.is_multiple_of(u32::from(self.rules.world.tick_hz.max(1))) {
                    let (bin, bout) = self.stats.bytes();
                    let text = crate::stats::stats_json(
                        &self.stats.snapshot(0),
                        self.stats.flush_p99_us(),
                        viewers.len(),
                        bin,
                        bout,
                    );
                    for v in &viewers {
                        v.send_text(&text);
                    }
                }
            }
        }
        let save_ticks = (self.opts.save_every.as_millis() / self.rules.period().as_millis().max(1)).max(1) as u32;
        if tick.is_multiple_of(save_ticks) {
            let batch = self.saved_all();
            if let Some(store) = &*self.store.lock() {
                store.save(batch);
            }
        }
        if self.stopping.load(SeqCst) {
            return;
        }
        let now = Instant::now();
        let mut next = self.next_tick.lock();
        *next += self.rules.period();
        if *next < now {
            *next = now; // behind: run the next tick at once rather than a burst
        }
        let wait = next.saturating_duration_since(now);
        drop(next);
        self.arm_tick(wait);
    }

    /// Players in the world (in zones and in transit).
    pub fn players(&self) -> usize {
        self.zones.iter().map(|z| z.lock().zone.len()).sum::<usize>() + self.transit.lock().len()
    }

    /// Every player (as a spectator sees it) and, if asked for, every
    /// attached session.
    fn everyone(&self, with_sessions: bool) -> (Vec<SnapEntry>, Vec<Session>) {
        let mut entries = Vec::new();
        let mut sessions = Vec::new();
        for z in &self.zones {
            let g = z.lock();
            g.zone.snapshot_into(&mut entries);
            if with_sessions {
                sessions.extend(g.links.values().filter_map(|l| l.session()));
            }
        }
        (entries, sessions)
    }

    /// The spectator snapshot of the world now.
    pub fn spectator(&self) -> Bytes {
        let (entries, _) = self.everyone(false);
        spectator_snapshot(self.tick.load(SeqCst), &entries)
    }

    /// Where every player is: per zone the ids in it, and the ids in transit.
    pub fn census(&self) -> (Vec<Vec<PlayerId>>, Vec<PlayerId>) {
        let zones = self
            .zones
            .iter()
            .map(|z| z.lock().zone.players().map(|p| p.id).collect())
            .collect();
        let transit = self.transit.lock().iter().map(|(p, _)| p.id).collect();
        (zones, transit)
    }

    /// The saved form of every player in the world.
    pub fn saved_all(&self) -> Vec<Saved> {
        let mut out: Vec<Saved> = Vec::new();
        for z in &self.zones {
            out.extend(z.lock().zone.players().map(saved));
        }
        out.extend(self.transit.lock().iter().map(|(p, _)| saved(p)));
        out
    }

    /// Every attached session.
    pub fn sessions(&self) -> Vec<Session> {
        self.everyone(true).1
    }

    // ----- logins ----------------------------------------------------------

    /// A login: refused at once, or sent to the database for the player's
    /// saved state.
    pub fn login(&self, session: &Session, conn: &Arc<Conn>, name: String) {
        {
            let mut lobby = self.lobby.lock();
            if lobby.players.contains_key(&name) || lobby.loading.contains_key(&name) {
                drop(lobby);
                return kick(session, KickReason::NAME_IN_USE);
            }
            if lobby.players.len() + lobby.loading.len() >= self.rules.max_players {
                drop(lobby);
                return kick(session, KickReason::SERVER_FULL);
            }
            lobby.loading.insert(name.clone(), ());
        }
        let p = PendingLogin {
            name,
            session: session.clone(),
            conn: conn.clone(),
        };
        let refused = match &*self.store.lock() {
            Some(store) => store.load(p.name.clone(), p).err(),
            None => Some(p),
        };
        if let Some(p) = refused {
            self.lobby.lock().loading.remove(&p.name);
            kick(&p.session, KickReason::SERVER_FULL);
        }
    }

    /// Logins whose saved state came back: the player enters the world.
    fn finish_logins(&self) {
        let done: Vec<_> = std::mem::take(&mut *self.loaded.lock());
        for (p, saved) in done {
            let id = {
                let mut lobby = self.lobby.lock();
                lobby.loading.remove(&p.name);
                if !p.session.is_open() {
                    continue;
                }
                let id = lobby.next_id;
                lobby.next_id = lobby.next_id.wrapping_add(1).max(1);
                id
            };
            let (x, y) = saved
                .as_ref()
                .map_or_else(|| self.rules.spawn(id), |s| self.rules.clamp(s.x, s.y));
            let mut player = Player::new(id, p.name.clone(), x, y, &self.rules);
            if let Some(s) = &saved {
                player.distance = s.distance;
                player.chats = s.chats;
                player.logins = s.logins;
            }
            player.logins += 1;
            let zone = self.rules.zone_of(x, y);
            let link = Arc::new(Link {
                id,
                name: p.name.clone(),
                token: new_token(id),
                session: Mutex::new(Some(p.session.clone())),
                inbox: Mutex::new(Vec::new()),
                outbox: Mutex::new(BytesMut::new()),
                zone: AtomicU16::new(zone),
                detached: Mutex::new(None),
                logout: AtomicBool::new(false),
            });
            self.lobby.lock().players.insert(p.name.clone(), link.clone());
            *p.conn.link.lock() = Some(link.clone());
            let ok = self.login_ok(&link, &player, false);
            {
                let mut g = self.zones[usize::from(zone)].lock();
                g.links.insert(id, link.clone());
                g.zone.insert(player);
            }
            let _ = p.session.send(ok);
            tracing::debug!(player = id, name = %p.name, restored = saved.is_some(), "player entered");
        }
    }

    fn login_ok(&self, link: &Link, p: &Player, resumed: bool) -> Bytes {
        encode_to_bytes(&Packet::LoginOk(LoginOk {
            player: link.id,
            token: link.token,
            resumed,
            zone: self.rules.zone_of(p.x, p.y),
            x: p.x,
            y: p.y,
            last_seq: p.last_seq,
            world: self.rules.world,
        }))
    }

    /// A resume: the player still in the world (within its grace period)
    /// is attached to this session, and told about its surroundings afresh.
    pub fn resume(&self, session: &Session, conn: &Arc<Conn>, name: &str, token: u64) {
        let link = self.lobby.lock().players.get(name).cloned();
        let Some(link) = link.filter(|l| l.token == token && !l.logout.load(Acquire)) else {
            return kick(session, KickReason::BAD_TOKEN);
        };
        // The zone may change under us only at the barrier; retry once.
        for _ in 0..2 {
            let z = link.zone.load(Acquire);
            let mut g = self.zones[usize::from(z)].lock();
            if !g.links.contains_key(&link.id) {
                drop(g);
                std::thread::yield_now();
                continue;
            }
            let old = link.session.lock().replace(session.clone());
            *link.detached.lock() = None;
            g.zone.set_attached(link.id, true);
            let ok = g.zone.get(link.id).map(|p| self.login_ok(&link, p, true));
            drop(g);
            *conn.link.lock() = Some(link.clone());
            if let Some(old) = old.filter(|o| o.id() != session.id()) {
                kick(&old, KickReason::REPLACED);
            }
            if let Some(ok) = ok {
                let _ = session.send(ok);
            }
            return;
        }
        kick(session, KickReason::BAD_TOKEN);
    }

    /// The connection of `link` went away: the player waits out the grace period.
    pub fn detach(&self, link: &Arc<Link>, session: &Session) {
        {
            let mut s = link.session.lock();
            if s.as_ref().is_none_or(|s| s.id() != session.id()) {
                return; // replaced by a resume already
            }
            *s = None;
        }
        *link.detached.lock() = Some(Instant::now());
        let z = link.zone.load(Acquire);
        self.zones[usize::from(z)].lock().zone.set_attached(link.id, false);
    }

    /// Starts or stops sending `session` the whole world each tick.
    pub fn watch(&self, session: &Session, on: bool) {
        let mut w = self.watchers.lock();
        if on {
            w.insert(session.id(), session.clone());
        } else {
            w.remove(&session.id());
        }
    }

    /// A browser viewer opened its socket: it gets the world each tick.
    pub fn add_viewer(&self, ws: WsSession) {
        self.viewers.lock().insert(ws.id(), ws);
    }

    /// A browser viewer went away.
    pub fn remove_viewer(&self, id: u64) {
        self.viewers.lock().remove(&id);
    }

    /// Sends every attached player the shutdown kick.
    pub fn kick_all(&self, why: KickReason) {
        for s in self.sessions() {
            kick(&s, why);
        }
    }
}

/// Tells the peer why, then closes (the kick packet is flushed first).
pub(crate) fn kick(s: &Session, why: KickReason) {
    let _ = s.send(encode_to_bytes(&Packet::Kick { reason: why }));
    s.close();
}

fn saved(p: &Player) -> Saved {
    Saved {
        name: p.name.to_string(),
        x: p.x,
        y: p.y,
        distance: p.distance,
        chats: p.chats,
        logins: p.logins,
    }
}

/// A resume token nobody can guess from the id or the time: SipHash under
/// the process's random keys.
fn new_token(id: PlayerId) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(id);
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish().max(1)
}
