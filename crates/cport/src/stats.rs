//! Counters a program can read at any time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::completion::OpKind;

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
    /// Completions this thread dequeued.
    pub completions: u64,
    /// Time spent between `get` returning and the next `get` (handling).
    pub busy: Duration,
}

#[derive(Default)]
pub(crate) struct Counters {
    completed: [AtomicU64; OpKind::ALL.len()],
    errors: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, kind: OpKind, ok: bool) {
        self.completed[kind as usize].fetch_add(1, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
    }
    pub(crate) fn fill(&self, s: &mut Stats) {
        s.completed = OpKind::ALL.iter().map(|k| (*k, self.completed[*k as usize].load(Relaxed))).collect();
        s.errors = self.errors.load(Relaxed);
    }
}

#[derive(Default)]
pub(crate) struct ThreadCounters {
    pub name: Option<String>,
    pub completions: AtomicU64,
    pub busy_nanos: AtomicU64,
}

impl ThreadCounters {
    pub(crate) fn snapshot(&self) -> ThreadStats {
        ThreadStats {
            name: self.name.clone(),
            completions: self.completions.load(Relaxed),
            busy: Duration::from_nanos(self.busy_nanos.load(Relaxed)),
        }
    }
}
