//! The request timer: connections whose request head is half received get
//! a deadline; past it they are answered 408 and closed (slow loris).
//!
//! The server core's frame timer does not run for raw framing, so this is a
//! small thread of its own. Only connections with a partial request are in
//! it: a chunk that holds whole requests (the common case) never touches it.
//!
//! A deadline does not expire while the server has paused reading the
//! connection (back-pressure): the rest of the head may be waiting unread.
//!
//! Exactly one side acts on a deadline: the worker that receives more bytes
//! [`claims`](Watchdog::claim) the entry back before parsing them; the timer
//! thread removes expired entries under the same lock before answering. Who
//! removes the entry owns the connection's next answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cport_server::Session;
use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct Inner {
    pending: HashMap<u64, (Session, Instant)>,
    stop: bool,
}

/// Deadlines of connections with a partial request.
#[derive(Default)]
pub(crate) struct Watchdog {
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("pending", &self.inner.lock().pending.len())
            .finish()
    }
}

impl Watchdog {
    /// Gives `session` until `due` to complete its request.
    pub(crate) fn arm(&self, session: &Session, due: Instant) {
        let mut g = self.inner.lock();
        let was_empty = g.pending.is_empty();
        g.pending.insert(session.id(), (session.clone(), due));
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Takes the session's deadline back. `false` if the timer took it first
    /// (the session was answered 408 and is closing).
    pub(crate) fn claim(&self, id: u64) -> bool {
        self.inner.lock().pending.remove(&id).is_some()
    }

    /// Stops [`run`](Self::run) and drops every pending deadline.
    pub(crate) fn stop(&self) {
        let mut g = self.inner.lock();
        g.stop = true;
        g.pending.clear();
        self.wake.notify_all();
    }

    /// The timer thread's loop: checks deadlines every `tick` while any are
    /// pending, and hands each expired session to `expire`. Returns after
    /// [`stop`](Self::stop), or once `done` says the server is gone
    /// (checked at least once a second).
    pub(crate) fn run(&self, tick: Duration, done: impl Fn() -> bool, mut expire: impl FnMut(Session)) {
        let mut due = Vec::new();
        loop {
            {
                let mut g = self.inner.lock();
                if g.stop {
                    return;
                }
                let wait = if g.pending.is_empty() {
                    Duration::from_secs(1)
                } else {
                    tick
                };
                self.wake.wait_for(&mut g, wait);
                if g.stop || done() {
                    g.pending.clear();
                    return;
                }
                let now = Instant::now();
                g.pending.retain(|_, (s, at)| {
                    // A connection whose reading the server paused (its
                    // answers wait to be read) may have the rest of the head
                    // sitting unread in the kernel: not the client's delay.
                    if *at <= now && !s.is_receiving_paused() {
                        due.push(s.clone());
                        false
                    } else {
                        true
                    }
                });
            }
            for s in due.drain(..) {
                expire(s);
            }
        }
    }
}
