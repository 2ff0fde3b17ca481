//! The server's tick counters: what `cport bench game` reads back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cport_proto::game::Stats;
use parking_lot::Mutex;

/// Tick durations kept for the percentiles (about 100 s at 20 Hz).
const WINDOW: usize = 2048;

/// Counters written by the tick, read by a stats request.
#[derive(Debug, Default)]
pub struct TickStats {
    recent: Mutex<VecDeque<u32>>,
    /// How long queueing each tick's updates on the sessions took (µs).
    flushes: Mutex<VecDeque<u32>>,
    ticks: AtomicU64,
    player_ticks: AtomicU64,
    handoffs: AtomicU64,
    corrections: AtomicU64,
    players: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl TickStats {
    /// One tick ended: it took `took` with `players` in the world.
    pub fn tick(&self, took: Duration, players: usize) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
        let mut r = self.recent.lock();
        if r.len() == WINDOW {
            r.pop_front();
        }
        r.push_back(us);
        drop(r);
        self.ticks.fetch_add(1, Relaxed);
        self.player_ticks.fetch_add(players as u64, Relaxed);
        self.players.store(players as u64, Relaxed);
    }

    /// The tick's updates were queued on the sessions in `took`.
    pub fn flush(&self, took: Duration) {
        let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
        let mut r = self.flushes.lock();
        if r.len() == WINDOW {
            r.pop_front();
        }
        r.push_back(us);
    }

    /// The 99th percentile of the kept flush times (µs).
    pub fn flush_p99_us(&self) -> u32 {
        let mut v: Vec<u32> = self.flushes.lock().iter().copied().collect();
        v.sort_unstable();
        v.get((v.len().saturating_sub(1) as f64 * 0.99).round() as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Hand-offs done.
    pub fn handoffs(&self, n: u64) {
        self.handoffs.fetch_add(n, Relaxed);
    }

    /// Inputs corrected or dropped.
    pub fn corrections(&self, n: u64) {
        self.corrections.fetch_add(n, Relaxed);
    }

    /// Bytes received from game clients.
    pub fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// Bytes queued to game clients (updates, chat, snapshots, kicks).
    pub fn sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// Bytes (received, sent) so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.bytes_in.load(Relaxed), self.bytes_out.load(Relaxed))
    }

    /// Ticks run.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Relaxed)
    }

    /// The counters now, with the process's CPU time; the tick figures
    /// cover the `last` latest ticks (0 or more than kept: all kept).
    pub fn snapshot(&self, last: usize) -> Stats {
        let mut recent: Vec<u32> = {
            let r = self.recent.lock();
            let skip = if last == 0 { 0 } else { r.len().saturating_sub(last) };
            r.iter().skip(skip).copied().collect()
        };
        recent.sort_unstable();
        let q = |f: f64| -> u32 {
            if recent.is_empty() {
                0
            } else {
                recent[((recent.len() - 1) as f64 * f).round() as usize]
            }
        };
        Stats {
            ticks: self.ticks.load(Relaxed),
            tick_p50_us: q(0.5),
            tick_p99_us: q(0.99),
            tick_max_us: recent.last().copied().unwrap_or(0),
            players: self.players.load(Relaxed).min(u64::from(u32::MAX)) as u32,
            player_ticks: self.player_ticks.load(Relaxed),
            cpu_us: process_cpu_us(),
            handoffs: self.handoffs.load(Relaxed),
            corrections: self.corrections.load(Relaxed),
        }
    }
}

/// The process's user + system CPU time, µs.
fn process_cpu_us() -> u64 {
    use rustix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

/// The counters a page shows (sent once a second).
pub(crate) fn stats_json(s: &Stats, flush_p99_us: u32, viewers: usize, bytes_in: u64, bytes_out: u64) -> String {
    format!(
        r#"{{"stats":{{"ticks":{},"tick_p50_us":{},"tick_p99_us":{},"tick_max_us":{},"flush_p99_us":{},"players":{},"handoffs":{},"corrections":{},"viewers":{},"bytes_in":{},"bytes_out":{}}}}}"#,
        s.ticks,
        s.tick_p50_us,
        s.tick_p99_us,
        s.tick_max_us,
        flush_p99_us,
        s.players,
        s.handoffs,
        s.corrections,
        viewers,
        bytes_in,
        bytes_out
    )
}
