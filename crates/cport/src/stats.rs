//! Counters a program can read at any time.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::kind::OpKind;

/// A snapshot of a port's counters, from [`Port::stats`](crate::Port::stats).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Operations accepted and not yet completed.
    pub in_flight: usize,
    /// Completions waiting to be dequeued.
    pub queued: usize,
    /// Threads holding a concurrency slot now.
    pub running: usize,
    /// The most threads that ever held a slot at once (never above `concurrency`).
    pub max_running: usize,
    /// Threads parked in `get`, not counting the one waiting in the backend.
    pub waiting: usize,
    /// Completions dequeued, by kind.
    pub completed: Vec<(OpKind, u64)>,
    /// Completions dequeued with an error result.
    pub errors: u64,
    /// Times the backend entered the kernel to submit or wait.
    pub backend_calls: u64,
    /// Associated handles not yet closed.
    pub handles: usize,
    /// Per-thread figures for every thread that has called `get`.
    pub threads: Vec<ThreadStats>,
    /// Slots handed to a waiting thread because their holder was found
    /// blocked in the kernel (automatic hand-off).
    pub handoffs: u64,
    /// Slots given back by [`Port::blocking`](crate::Port::blocking) scopes.
    pub blocking_scopes: u64,
    /// Threads whose slot is handed off now: found blocked, or inside
    /// `Port::blocking`.
    pub blocked_now: usize,
    /// Time during which more threads ran than `concurrency` (a blocked
    /// thread came back while the one that took its slot still ran).
    pub over_cap: Duration,
    /// How long a blocked holder kept its slot before the hand-off:
    /// median and 99th percentile (`None` before the first hand-off).
    pub detection_delay_p50: Option<Duration>,
    /// See [`detection_delay_p50`](Self::detection_delay_p50).
    pub detection_delay_p99: Option<Duration>,
}

impl Stats {
    /// Completions dequeued in total.
    pub fn total_completed(&self) -> u64 {
        self.completed.iter().map(|(_, n)| n).sum()
    }
    /// Completions of one kind.
    pub fn completed_of(&self, kind: OpKind) -> u64 {
        self.completed.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }
}

/// One thread's share of the work.
#[derive(Clone, Debug, Default)]
pub struct ThreadStats {
    /// The thread's name, if it has one.
    pub name: Option<String>,
    /// Completions this thread dequeued, plus those handed back to it inline
    /// by [`Port::try_send`](crate::Port::try_send).
    pub completions: u64,
    /// Time since the thread's first `get` not spent blocked waiting for a
    /// completion (handling them, and the port's own bookkeeping).
    pub busy: Duration,
}

/// Completions by kind, with their errors. A thread counts its own
/// dequeues in its [`ThreadCounters`] (no shared cache line, no atomic
/// read-modify-write per completion); these totals keep what threads whose
/// records were dropped had counted.
#[derive(Default)]
pub(crate) struct Counters {
    completed: [AtomicU64; OpKind::ALL.len()],
    errors: AtomicU64,
}

impl Counters {
    /// Counts a completion for a thread that keeps no record of its own.
    pub(crate) fn record_shared(&self, kind: OpKind, ok: bool) {
        self.completed[kind as usize].fetch_add(1, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
    }

    /// Folds in the figures of a thread whose record is dropped.
    pub(crate) fn retire(&self, t: &ThreadCounters) {
        for (total, n) in self.completed.iter().zip(&t.completed) {
            total.fetch_add(n.load(Relaxed), Relaxed);
        }
        self.errors.fetch_add(t.errors.load(Relaxed), Relaxed);
    }
    /// Fills the totals from the retired figures plus every live record.
    pub(crate) fn fill(&self, threads: &[Arc<ThreadCounters>], s: &mut Stats) {
        s.completed = OpKind::ALL
            .iter()
            .map(|k| {
                let i = *k as usize;
                let live: u64 = threads.iter().map(|t| t.completed[i].load(Relaxed)).sum();
                (*k, self.completed[i].load(Relaxed) + live)
            })
            .collect();
        s.errors = self.errors.load(Relaxed) + threads.iter().map(|t| t.errors.load(Relaxed)).sum::<u64>();
    }
}

/// One thread's counters. Written only by that thread (plain loads and
/// stores, no read-modify-write), read by `Port::stats` from anywhere.
pub(crate) struct ThreadCounters {
    pub name: Option<String>,
    /// The thread's kernel id (for `Port::snapshot`'s worker states).
    pub tid: i32,
    started: Instant,
    completed: [AtomicU64; OpKind::ALL.len()],
    errors: AtomicU64,
    /// Nanoseconds (since `started`) spent blocked waiting for completions.
    idle_nanos: AtomicU64,
    /// When the current wait began (nanos since `started`), or 0.
    waiting_since: AtomicU64,
    /// When the thread stopped using the port (nanos since `started`), or 0.
    ended_at: AtomicU64,
}

impl ThreadCounters {
    pub(crate) fn new(name: Option<String>, tid: i32) -> Self {
        ThreadCounters {
            name,
            tid,
            started: Instant::now(),
            completed: Default::default(),
            errors: AtomicU64::new(0),
            idle_nanos: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
            ended_at: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        (self.started.elapsed().as_nanos() as u64).max(1)
    }

    /// One more completion dequeued by the owning thread.
    pub(crate) fn record(&self, kind: OpKind, ok: bool) {
        bump(&self.completed[kind as usize]);
        if !ok {
            bump(&self.errors);
        }
    }

    /// The owning thread starts blocking for completions.
    pub(crate) fn wait_begins(&self) {
        self.waiting_since.store(self.now(), Relaxed);
    }

    /// The owning thread stops blocking.
    pub(crate) fn wait_ends(&self) {
        // Only this thread writes it: a load and a store, no swap.
        let since = self.waiting_since.load(Relaxed);
        if since > 0 {
            self.waiting_since.store(0, Relaxed);
            self.idle_nanos.store(
                self.idle_nanos.load(Relaxed) + self.now().saturating_sub(since),
                Relaxed,
            );
        }
    }

    /// The owning thread is blocked waiting for completions now.
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting_since.load(Relaxed) > 0
    }

    /// Acquire: pairs with `thread_ended`, so a reader that sees the end
    /// also sees the thread's last counts.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended_at.load(Acquire) > 0
    }

    pub(crate) fn thread_ended(&self) {
        self.wait_ends();
        self.ended_at.store(self.now(), Release);
    }

    pub(crate) fn snapshot(&self) -> ThreadStats {
        let ended = self.ended_at.load(Relaxed);
        let now = if ended > 0 { ended } else { self.now() };
        let since = self.waiting_since.load(Relaxed);
        let waiting_now = if since > 0 { now.saturating_sub(since) } else { 0 };
        let idle = self.idle_nanos.load(Relaxed) + waiting_now;
        ThreadStats {
            name: self.name.clone(),
            completions: self.completed.iter().map(|n| n.load(Relaxed)).sum(),
            busy: Duration::from_nanos(now.saturating_sub(idle)),
        }
    }
}

/// Adds one to a counter that only the calling thread writes.
fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed) + 1, Relaxed);
}
