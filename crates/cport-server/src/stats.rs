//! Server-level counters, readable at any time (for a stats endpoint, logs, tests).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::handler::ReasonKind;

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
}

impl ServerStats {
    /// Sessions ended for one kind of reason.
    pub fn disconnects_of(&self, kind: ReasonKind) -> u64 {
        self.disconnects.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    /// Sessions open now; also what shutdown waits on (so `SeqCst`, like `Shared::stopping`).
    pub sessions: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub disconnects: [AtomicU64; ReasonKind::ALL.len()],
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn disconnected(&self, kind: ReasonKind) {
        let i = ReasonKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.disconnects[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        ServerStats {
            sessions: self.sessions.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            disconnects: ReasonKind::ALL
                .iter()
                .zip(&self.disconnects)
                .map(|(k, n)| (*k, n.load(Relaxed)))
                .collect(),
        }
    }
}
