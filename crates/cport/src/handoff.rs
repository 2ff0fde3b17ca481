//! IOCP's blocked-thread hand-off: when a thread holding a concurrency slot
//! blocks in the kernel while work and a waiting thread are ready, its slot
//! goes to the waiting thread, so `concurrency` threads keep running.
//!
//! Windows sees a blocking thread from inside its scheduler. Linux tells
//! a user program nothing at that moment, so a *monitor* thread looks: only
//! while the port is starved (every slot held, a thread waiting for one, and
//! packets queued or a backend nobody watches) it reads each holder's
//! `/proc/self/task/TID/stat` state every `monitor::SAMPLE_INTERVAL`. A holder
//! seen sleeping (`S` or `D`) at two samples in a row, on the same packet,
//! with its run time (`schedstat`) unchanged between them, is blocked: it
//! has not run for a whole interval. A holder that computes is `R`
//! (running or waiting for a CPU) and is never counted. When the port is not
//! starved the monitor sleeps, woken by the scheduler, so an idle or
//! unsaturated port pays nothing.
//!
//! The rule when the blocked thread comes back (see `Sched::get`): it
//! finishes its packet, but its next `get` takes nothing until the threads
//! running are back under the cap. `Port::blocking` gives the slot back at
//! once, for code that knows it will block.

use std::time::Instant;

/// Where a thread stands with its concurrency slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SlotState {
    /// No slot: waiting in `get`, leading, or outside the port.
    Free = 0,
    /// Holds a slot and counts as running.
    Held = 1,
    /// Holds a slot that was handed to another thread while it blocked: it
    /// does not count as running until it is seen running again.
    Blocked = 2,
}

impl SlotState {
    pub(crate) fn from_u8(v: u8) -> SlotState {
        match v {
            1 => SlotState::Held,
            2 => SlotState::Blocked,
            _ => SlotState::Free,
        }
    }
}

/// The scheduler's hand-off bookkeeping, kept under its lock. `W` is the
/// scheduler's waiter reference.
pub(crate) struct HandoffState<W> {
    /// Automatic hand-off is on (the monitor may hand slots off).
    pub on: bool,
    /// Holders whose slot is handed off now.
    pub blocked: usize,
    /// Threads inside `Port::blocking` scopes that gave a slot back.
    pub scoped: usize,
    /// Slots handed off by the monitor, ever.
    pub handoffs: u64,
    /// `Port::blocking` scopes that gave a slot back, ever.
    pub scopes: u64,
    /// Since when more threads run than the cap, if they do now.
    over_since: Option<Instant>,
    /// Time spent over the cap before `over_since`.
    over_nanos: u64,
    /// The monitor, when it sleeps waiting for something to watch.
    pub monitor: Option<W>,
    /// The monitor is told to exit.
    pub stopped: bool,
    /// Every thread that dequeues from the port: the candidates to watch.
    pub threads: Vec<W>,
}

impl<W> Default for HandoffState<W> {
    fn default() -> Self {
        HandoffState {
            on: false,
            blocked: 0,
            scoped: 0,
            handoffs: 0,
            scopes: 0,
            over_since: None,
            over_nanos: 0,
            monitor: None,
            stopped: false,
            threads: Vec::new(),
        }
    }
}

impl<W> HandoffState<W> {
    /// The running count went up (a blocked thread came back).
    pub(crate) fn running_rose(&mut self, running: usize, cap: usize, now: fn() -> Instant) {
        if running > cap && self.over_since.is_none() {
            self.over_since = Some(now());
        }
    }
    /// The running count went down: the time over the cap may end.
    pub(crate) fn running_fell(&mut self, running: usize, cap: usize, now: fn() -> Instant) {
        if running <= cap {
            if let Some(t) = self.over_since.take() {
                self.over_nanos += now().saturating_duration_since(t).as_nanos() as u64;
            }
        }
    }
    /// Time spent over the cap, including the current stretch.
    pub(crate) fn over_cap_nanos(&self, running: usize, cap: usize, now: fn() -> Instant) -> u64 {
        let current = match self.over_since {
            Some(t) if running > cap => now().saturating_duration_since(t).as_nanos() as u64,
            _ => 0,
        };
        self.over_nanos + current
    }
}

/// This thread's kernel id, from the `/proc/thread-self` link
/// (`PID/task/TID`); 0 where `/proc` is not mounted (no hand-off then).
#[cfg_attr(cport_loom, allow(dead_code))] // loom threads have no /proc entry
pub(crate) fn current_tid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}
