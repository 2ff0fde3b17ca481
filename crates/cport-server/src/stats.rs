//! Server-level counters, readable at any time (for a stats endpoint, logs, tests).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::ReasonKind;

/// A snapshot of a server's counters, from [`Server::stats`](crate::Server::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Sessions open now.
    pub sessions: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections refused at accept (session limit reached, association failed).
    pub rejected: u64,
    /// Messages handed to `on_message`.
    pub messages_in: u64,
    /// Messages (and file ranges) accepted by `Session::send`/`send_file`.
    pub messages_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent (as completed by the kernel).
    pub bytes_out: u64,
    /// Sessions ended, by reason.
    pub disconnects: Vec<(ReasonKind, u64)>,
    /// Times a session's receiving paused because its queued answers passed
    /// the high-water mark (back-pressure).
    pub receive_pauses: u64,
    /// Times a paused session's receiving resumed (its queue drained to the
    /// low-water mark).
    pub receive_resumes: u64,
}

impl ServerStats {
    /// Sessions ended for one kind of reason.
    pub fn disconnects_of(&self, kind: ReasonKind) -> u64 {
        self.disconnects.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }
}

/// The per-message counters of one thread.
#[derive(Default)]
#[repr(align(128))] // a cache line pair of its own: workers never share one
pub(crate) struct Traffic {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Which [`Traffic`] shard the calling thread writes: its own as a worker,
/// or the shared one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard(pub usize);

impl Shard {
    /// The shard of threads that are not (numbered) workers.
    pub(crate) const SHARED: Shard = Shard(usize::MAX);
}

pub(crate) struct ServerCounters {
    /// Sessions open now; also what shutdown waits on (so `SeqCst`, like `ServerCore::stopping`).
    pub sessions: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub disconnects: [AtomicU64; ReasonKind::ALL.len()],
    pub pauses: AtomicU64,
    pub resumes: AtomicU64,
    /// One shard per worker, written only by that worker (a plain load and
    /// store: no atomic read-modify-write on a shared cache line for every
    /// message), then the shared shard, for every other thread.
    traffic: Box<[Traffic]>,
}

impl ServerCounters {
    /// ServerCounters for a server with `workers` worker threads.
    pub(crate) fn new(workers: usize) -> Self {
        ServerCounters {
            sessions: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            disconnects: Default::default(),
            pauses: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            traffic: (0..=workers).map(|_| Traffic::default()).collect(),
        }
    }

    /// How many worker shards there are.
    pub(crate) fn worker_shards(&self) -> usize {
        self.traffic.len() - 1
    }

    /// Adds `n` to one traffic counter of `shard`.
    pub(crate) fn traffic(&self, shard: Shard, pick: impl Fn(&Traffic) -> &AtomicU64, n: u64) {
        if shard.0 < self.worker_shards() {
            // Only the worker that owns the shard writes it.
            let c = pick(&self.traffic[shard.0]);
            c.store(c.load(Relaxed) + n, Relaxed);
        } else {
            pick(&self.traffic[self.worker_shards()]).fetch_add(n, Relaxed);
        }
    }

    fn traffic_sum(&self, pick: impl Fn(&Traffic) -> &AtomicU64) -> u64 {
        self.traffic.iter().map(|t| pick(t).load(Relaxed)).sum()
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn disconnected(&self, kind: ReasonKind) {
        debug_assert_eq!(ReasonKind::ALL[kind as usize], kind, "ALL is in declaration order");
        self.disconnects[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        ServerStats {
            sessions: self.sessions.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            messages_in: self.traffic_sum(|t| &t.messages_in),
            messages_out: self.traffic_sum(|t| &t.messages_out),
            bytes_in: self.traffic_sum(|t| &t.bytes_in),
            bytes_out: self.traffic_sum(|t| &t.bytes_out),
            disconnects: ReasonKind::ALL
                .iter()
                .zip(&self.disconnects)
                .map(|(k, n)| (*k, n.load(Relaxed)))
                .collect(),
            receive_pauses: self.pauses.load(Relaxed),
            receive_resumes: self.resumes.load(Relaxed),
        }
    }
}
