//! Game load: bots that log in, random-walk across zones, chat now and
//! then, and reconcile against the server's updates as a real client does.
//!
//! Every bot predicts its own position from its inputs with the world's
//! rules (sent at login) and keeps the inputs the server has not yet
//! acknowledged. When an update acknowledges input `seq`, the position the
//! bot predicted for `seq` must equal the server's: anything else is a
//! desync. Latencies: an input until its own bot sees it applied, and until
//! a neighbour sees the move (all bots share one clock: they live in this
//! process). Tick times and the server's CPU come from the server's own
//! counters, asked for at the start and the end of the measured window.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cport::{Backend, Handle, OpKind, Payload, Port};
use cport_proto::game::{decode, encode, Input, Packet, Stats, WorldInfo, MAX_PACKET};
use serde::Serialize;

use crate::conn;
use crate::report::{thread_cpu_time, LatencyRecorder};

/// What to run.
#[derive(Clone, Debug)]
pub struct GameConfig {
    /// Game server address.
    pub target: SocketAddr,
    /// Bots.
    pub bots: usize,
    /// Inputs per second each bot sends.
    pub input_rate: f64,
    /// Measured time.
    pub duration: Duration,
    /// Time for logging in and settling before measuring.
    pub warmup: Duration,
    /// Client backend.
    pub backend: Backend,
    /// Chance that an input is followed by a chat line.
    pub chat_chance: f64,
    /// Share of the bots that also ask for the whole world each tick
    /// (what a server without area of interest sends everyone): their
    /// bytes are reported apart, so one run shows what the filter saves.
    pub whole_world_share: f64,
}

/// What a game load measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GameReport {
    /// `game`.
    pub kind: String,
    /// The server.
    pub target: String,
    /// Bots started.
    pub bots: usize,
    /// Bots that logged in.
    pub logged_in: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Server tick duration in the window, median (µs).
    pub tick_p50_us: u32,
    /// Server tick duration, 99th percentile (µs).
    pub tick_p99_us: u32,
    /// Longest server tick in the window (µs).
    pub tick_max_us: u32,
    /// Ticks the server ran in the window.
    pub ticks: u64,
    /// Server CPU per player per tick (µs), from its counters.
    pub server_cpu_us_per_player_tick: f64,
    /// Input until its own bot saw it applied, median (µs).
    pub own_p50_us: u64,
    /// Same, 99th percentile.
    pub own_p99_us: u64,
    /// Input until a neighbour saw the move, median (µs).
    pub neighbour_p50_us: u64,
    /// Same, 99th percentile.
    pub neighbour_p99_us: u64,
    /// Bytes per second per bot, server to bot.
    pub down_bytes_per_bot: f64,
    /// Bytes per second per bot, bot to server.
    pub up_bytes_per_bot: f64,
    /// Bots that also received the whole world each tick.
    pub whole_world_bots: usize,
    /// Bytes per second per bot, server to bot, for those bots (the area
    /// of interest's updates plus the whole world).
    pub down_bytes_per_whole_world_bot: f64,
    /// Inputs sent in the window.
    pub inputs: u64,
    /// Acknowledged inputs whose predicted position differed from the server's.
    pub desyncs: u64,
    /// Connections that ended (kicked or cut) during the run.
    pub disconnects: u64,
    /// Kick packets received.
    pub kicks: u64,
    /// Zone changes the bots were told about.
    pub zone_changes: u64,
    /// Chat lines received.
    pub chats_received: u64,
    /// Share of the window the bots' own thread was on a CPU.
    pub client_cpu: f64,
}

impl std::fmt::Display for GameReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "game {}  bots={} (logged in {})  {:.1}s",
            self.target, self.bots, self.logged_in, self.seconds
        )?;
        writeln!(
            f,
            "  server tick µs: p50={} p99={} max={}  ({} ticks; {:.2} µs CPU per player-tick)",
            self.tick_p50_us, self.tick_p99_us, self.tick_max_us, self.ticks, self.server_cpu_us_per_player_tick
        )?;
        writeln!(
            f,
            "  input to update µs: own p50={} p99={}  neighbour p50={} p99={}",
            self.own_p50_us, self.own_p99_us, self.neighbour_p50_us, self.neighbour_p99_us
        )?;
        writeln!(
            f,
            "  per bot: {:.0} B/s down, {:.0} B/s up  ({} inputs, {} zone changes, {} chat lines heard)",
            self.down_bytes_per_bot, self.up_bytes_per_bot, self.inputs, self.zone_changes, self.chats_received
        )?;
        if self.whole_world_bots > 0 {
            writeln!(
                f,
                "  {} bots also took the whole world each tick: {:.0} B/s down each (area of interest alone: {:.0})",
                self.whole_world_bots, self.down_bytes_per_whole_world_bot, self.down_bytes_per_bot
            )?;
        }
        write!(
            f,
            "  desyncs={} disconnects={} kicks={}  client CPU {:.0}%",
            self.desyncs,
            self.disconnects,
            self.kicks,
            self.client_cpu * 100.0
        )
    }
}

/// One input not yet acknowledged.
struct Pending {
    seq: u32,
    dx: i8,
    dy: i8,
    sent: Instant,
}

struct Bot {
    h: Handle,
    id: u32,
    live: bool,
    world: Option<WorldInfo>,
    rx: Vec<u8>,
    /// The last acknowledged (authoritative) position and sequence.
    base: (i32, i32),
    /// Predicted position: `base` plus the pending inputs.
    pos: (i32, i32),
    seq: u32,
    pending: VecDeque<Pending>,
    dir: (i8, i8),
    rng: u64,
    /// Asks for the whole world each tick.
    whole: bool,
}

impl Bot {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*: cheap, and each bot has its own stream.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What the bot predicts one input does (the server's rule for a valid input).
fn predict(w: &WorldInfo, (x, y): (i32, i32), dx: i8, dy: i8) -> (i32, i32) {
    let width = (u32::from(w.zones_x) * w.zone_size) as i32;
    let height = (u32::from(w.zones_y) * w.zone_size) as i32;
    (
        x.saturating_add(i32::from(dx)).clamp(0, width - 1),
        y.saturating_add(i32::from(dy)).clamp(0, height - 1),
    )
}

const TICK: u64 = u64::MAX;
/// How long after the window the bots wait for the server's counters.
const STATS_WAIT: Duration = Duration::from_secs(15);
/// Inputs each bot remembers for neighbour latency.
const SENT_KEPT: usize = 64;

/// Everything the bots share (one thread: plain maps).
struct Shared {
    /// Per player id: recent (seq, send time).
    sent: HashMap<u32, VecDeque<(u32, Instant)>>,
    own: LatencyRecorder,
    neighbour: LatencyRecorder,
    rep: GameReport,
    down: u64,
    down_whole: u64,
    up: u64,
    measuring: bool,
    stats: Vec<Stats>,
}

/// Runs the load.
///
/// # Errors
/// When the client's port cannot be built.
pub fn run(cfg: &GameConfig) -> io::Result<GameReport> {
    let port = Port::builder().concurrency(1).backend(cfg.backend).build()?;
    // Receive buffers are shared by all bots (the kernel picks one when
    // data arrives), not one per bot: 5,000 bots with 64 KiB each kept
    // 320 MB of buffers and their cache misses on the bots' core.
    let pool = port.buf_pool(pool_size(cfg.bots), RECV_BUF)?;
    let mut bots = Vec::with_capacity(cfg.bots);
    for i in 0..cfg.bots {
        let h = conn::open(&port, cfg.target, None, i as u64, 0)?;
        bots.push(Bot {
            h,
            id: 0,
            live: false,
            world: None,
            rx: Vec::new(),
            base: (0, 0),
            pos: (0, 0),
            seq: 0,
            pending: VecDeque::new(),
            dir: (0, 0),
            rng: (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            whole: ((i as f64 + 0.5) / cfg.bots as f64) < cfg.whole_world_share,
        });
    }
    let mut sh = Shared {
        sent: HashMap::new(),
        own: LatencyRecorder::default(),
        neighbour: LatencyRecorder::default(),
        rep: GameReport {
            kind: "game".into(),
            target: cfg.target.to_string(),
            bots: cfg.bots,
            ..GameReport::default()
        },
        down: 0,
        down_whole: 0,
        up: 0,
        measuring: false,
        stats: Vec::new(),
    };
    // Names unique to this run: a previous run's players may still be in
    // their grace period.
    let run_tag = (std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()))
        & 0xf_ffff;
    let t0 = Instant::now();
    let from = t0 + cfg.warmup;
    let end = from + cfg.duration;
    let step = Duration::from_secs_f64(1.0 / (cfg.input_rate * cfg.bots as f64).max(1e-3));
    let mut next = t0 + Duration::from_millis(200);
    let mut rr = 0usize;
    let mut cpu_from = None;
    let mut asked_end = false;
    port.timeout(Duration::from_millis(1), TICK)?;
    loop {
        let now = Instant::now();
        if now >= from && !sh.measuring && !asked_end {
            sh.measuring = true;
            cpu_from = Some(thread_cpu_time());
            ask_stats(&port, &mut bots, 1);
        }
        if now >= end && !asked_end {
            asked_end = true;
            sh.measuring = false;
            sh.rep.seconds = now.duration_since(from).as_secs_f64();
            sh.rep.client_cpu = thread_cpu_time()
                .saturating_sub(cpu_from.unwrap_or_default())
                .as_secs_f64()
                / sh.rep.seconds.max(1e-9);
            // The tick figures over the window's ticks only.
            let hz = bots.iter().find_map(|b| b.world).map_or(20, |w| w.tick_hz);
            let window_ticks = (sh.rep.seconds * f64::from(hz)).round().max(1.0) as u32;
            ask_stats(&port, &mut bots, window_ticks);
        }
        // A server that fell behind answers late: the bots stop sending at
        // the end, so it catches up and its counters still arrive.
        if asked_end && (sh.stats.len() >= 2 || now >= end + STATS_WAIT) {
            break;
        }
        let c = match port.get(Some(Duration::from_millis(100))) {
            Ok(c) => c,
            Err(cport::GetError::Timeout) => continue,
            Err(e) => return Err(e.into()),
        };
        if c.ctx() == TICK {
            let now = Instant::now();
            while next <= now && !bots.is_empty() && !asked_end {
                let k = rr % bots.len();
                rr += 1;
                send_input(&port, &mut bots[k], &mut sh, cfg, now);
                next += step;
            }
            if next < now {
                next = now; // behind: do not burst to catch up
            }
            port.timeout(Duration::from_millis(1), TICK)?;
            continue;
        }
        let i = c.key().0 as usize;
        if i >= bots.len() {
            continue;
        }
        match c.kind() {
            OpKind::Connect if c.result().is_ok() => {
                let b = &mut bots[i];
                b.live = true;
                let login = Packet::Login {
                    name: format!("b{run_tag:05x}_{i}"),
                };
                send(&port, b, &login, &mut sh);
                port.recv_pooled_multi(&b.h, &pool, 0)?;
            }
            OpKind::Connect => sh.rep.disconnects += 1,
            OpKind::RecvPooled => {
                let more = c.more();
                match c.into_parts() {
                    (Ok(n), Payload::Buf(buf)) if n > 0 => {
                        let b = &mut bots[i];
                        if sh.measuring {
                            *(if b.whole { &mut sh.down_whole } else { &mut sh.down }) += n as u64;
                        }
                        let was_out = b.world.is_none();
                        on_bytes(b, &buf[..n], &mut sh, Instant::now());
                        drop(buf); // back to the pool before anything else is received
                        if was_out && b.whole && b.world.is_some() {
                            send(&port, b, &Packet::WholeWorld { on: true }, &mut sh);
                        }
                        if !more && b.live {
                            port.recv_pooled_multi(&b.h, &pool, 0)?;
                        }
                    }
                    (Err(e), _) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                        // The shared pool ran dry for a moment: ask again.
                        if bots[i].live {
                            port.recv_pooled_multi(&bots[i].h, &pool, 0)?;
                        }
                    }
                    _ => {
                        if bots[i].live {
                            bots[i].live = false;
                            sh.rep.disconnects += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let rep = &mut sh.rep;
    rep.logged_in = bots.iter().filter(|b| b.world.is_some()).count();
    let secs = rep.seconds.max(1e-9);
    rep.whole_world_bots = bots.iter().filter(|b| b.whole).count();
    let aoi_bots = cfg.bots - rep.whole_world_bots;
    rep.down_bytes_per_bot = sh.down as f64 / secs / aoi_bots.max(1) as f64;
    rep.down_bytes_per_whole_world_bot = sh.down_whole as f64 / secs / rep.whole_world_bots.max(1) as f64;
    rep.up_bytes_per_bot = sh.up as f64 / secs / cfg.bots.max(1) as f64;
    rep.own_p50_us = sh.own.quantile_us(0.5);
    rep.own_p99_us = sh.own.quantile_us(0.99);
    rep.neighbour_p50_us = sh.neighbour.quantile_us(0.5);
    rep.neighbour_p99_us = sh.neighbour.quantile_us(0.99);
    if let [a, b, ..] = sh.stats[..] {
        rep.tick_p50_us = b.tick_p50_us;
        rep.tick_p99_us = b.tick_p99_us;
        rep.tick_max_us = b.tick_max_us;
        rep.ticks = b.ticks.saturating_sub(a.ticks);
        let pt = b.player_ticks.saturating_sub(a.player_ticks);
        if pt > 0 {
            rep.server_cpu_us_per_player_tick = b.cpu_us.saturating_sub(a.cpu_us) as f64 / pt as f64;
        }
    }
    for b in &bots {
        let _ = port.close(&b.h);
    }
    Ok(sh.rep)
}

/// The first live bot asks the server for its counters, the tick figures
/// over the last `last_ticks` ticks.
fn ask_stats(port: &Port, bots: &mut [Bot], last_ticks: u32) {
    if let Some(b) = bots.iter_mut().find(|b| b.live) {
        let mut out = BytesMut::new();
        encode(&Packet::StatsRequest { last_ticks }, &mut out);
        let _ = port.send(&b.h, out.freeze(), 0);
    }
}

fn send(port: &Port, b: &mut Bot, p: &Packet, sh: &mut Shared) {
    let mut out = BytesMut::with_capacity(16);
    encode(p, &mut out);
    if sh.measuring {
        sh.up += out.len() as u64;
    }
    let out: Bytes = out.freeze();
    if port.send(&b.h, out, 0).is_err() {
        sh.rep.disconnects += 1;
        b.live = false;
    }
}

/// One step of a bot's random walk (and now and then a chat line).
fn send_input(port: &Port, b: &mut Bot, sh: &mut Shared, cfg: &GameConfig, now: Instant) {
    let Some(w) = b.world.filter(|_| b.live) else { return };
    let r = b.next_rand();
    // Keep a heading for a while so that bots cross zones, then turn.
    if r.is_multiple_of(32) || b.dir == (0, 0) {
        let m = i64::from(w.max_step.max(1));
        let pick = |v: u64| ((v % (2 * m as u64 + 1)) as i64 - m) as i8;
        b.dir = (pick(r >> 8), pick(r >> 24));
    }
    let (dx, dy) = b.dir;
    b.seq += 1;
    let seq = b.seq;
    b.pos = predict(&w, b.pos, dx, dy);
    b.pending.push_back(Pending { seq, dx, dy, sent: now });
    let ring = sh.sent.entry(b.id).or_default();
    if ring.len() == SENT_KEPT {
        ring.pop_front();
    }
    ring.push_back((seq, now));
    send(port, b, &Packet::Input(Input { seq, dx, dy }), sh);
    if sh.measuring {
        sh.rep.inputs += 1;
    }
    if ((r >> 40) as f64 / (1u64 << 24) as f64) < cfg.chat_chance {
        send(
            port,
            b,
            &Packet::Chat {
                text: format!("hello from bot {}", b.id),
            },
            sh,
        );
    }
}

/// Receive buffers in the shared pool.
fn pool_size(bots: usize) -> u16 {
    (bots / 2).clamp(256, 8192).next_power_of_two() as u16
}

/// One receive buffer: a tick's update for a bot and its chat fit.
const RECV_BUF: usize = 4096;

/// Decodes what a bot received and reacts to each packet. Whole packets
/// are decoded straight from the receive buffer; only a packet cut at its
/// end is kept (in the bot's own `rx`) until the rest comes.
fn on_bytes(b: &mut Bot, data: &[u8], sh: &mut Shared, now: Instant) {
    let mut rx = std::mem::take(&mut b.rx);
    if rx.is_empty() {
        if let Some(used) = decode_all(b, data, sh, now) {
            rx.extend_from_slice(&data[used..]);
        }
    } else {
        rx.extend_from_slice(data);
        match decode_all(b, &rx, sh, now) {
            Some(used) => {
                rx.drain(..used);
            }
            None => rx.clear(),
        }
    }
    b.rx = rx;
}

/// Decodes every whole packet in `input`; how many bytes they took, or
/// `None` when the stream cannot be read (counted as a desync).
fn decode_all(b: &mut Bot, input: &[u8], sh: &mut Shared, now: Instant) -> Option<usize> {
    let mut used_total = 0;
    loop {
        match decode(&input[used_total..], MAX_PACKET) {
            Ok(Some((p, used))) => {
                used_total += used;
                on_packet(b, sh, p, now);
            }
            Ok(None) => return Some(used_total),
            Err(_) => {
                sh.rep.desyncs += 1; // a stream we cannot read is out of sync
                return None;
            }
        }
    }
}

fn on_packet(b: &mut Bot, sh: &mut Shared, p: Packet, now: Instant) {
    match p {
        Packet::LoginOk(ok) => {
            b.id = ok.player;
            b.world = Some(ok.world);
            b.base = (ok.x, ok.y);
            b.pos = b.base;
            b.seq = ok.last_seq;
        }
        Packet::Update(u) => {
            let Some(w) = b.world else { return };
            // Reconcile: drop what the server applied, check the prediction
            // for the last of it, replay the rest from the server's position.
            let mut predicted = b.base;
            let mut acked = false;
            while b.pending.front().is_some_and(|p| p.seq <= u.last_seq) {
                let p = b.pending.pop_front().expect("checked front");
                predicted = predict(&w, predicted, p.dx, p.dy);
                acked = true;
                if sh.measuring {
                    sh.own.record(now.duration_since(p.sent));
                }
            }
            if acked && predicted != (u.x, u.y) {
                sh.rep.desyncs += 1;
            }
            b.base = (u.x, u.y);
            b.pos = b.pending.iter().fold(b.base, |pos, p| predict(&w, pos, p.dx, p.dy));
            if sh.measuring {
                if let Some(m) = u.moves.first() {
                    let sent = sh
                        .sent
                        .get(&m.id)
                        .and_then(|r| r.iter().find(|(s, _)| *s == m.last_seq));
                    if let Some((_, t)) = sent {
                        sh.neighbour.record(now.duration_since(*t));
                    }
                }
            }
        }
        Packet::ZoneChange { .. } => sh.rep.zone_changes += 1,
        Packet::ChatMsg(_) => sh.rep.chats_received += 1,
        Packet::Kick { .. } => {
            sh.rep.kicks += 1;
            b.world = None;
        }
        Packet::Stats(s) => sh.stats.push(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_stops_at_the_world_edge() {
        let w = WorldInfo {
            tick_hz: 20,
            zones_x: 2,
            zones_y: 1,
            zone_size: 100,
            cell_size: 10,
            max_step: 10,
            max_input_rate: 30,
        };
        assert_eq!(predict(&w, (195, 5), 10, -10), (199, 0));
        assert_eq!(predict(&w, (50, 50), -3, 4), (47, 54));
    }
}
