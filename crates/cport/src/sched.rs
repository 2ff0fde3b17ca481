//! The completion queue and IOCP's thread rules: concurrency slots, LIFO
//! release of waiting threads, high-priority packets first.
//!
//! One thread at a time, the *leader*, waits in the backend for kernel
//! completions; the others wait here, on a stack. When the leader brings back
//! a batch, it hands packets straight to the most recent waiters (LIFO, as
//! IOCP does, so the hottest thread runs next) up to the free concurrency
//! slots, and takes one itself only when packets and slots are left over.
//! A thread that calls `get` while packets are ready takes one without
//! sleeping. The hand-off is direct: a woken waiter finds its packet in its
//! own cell, so no packet is taken twice and no waiter wakes for nothing.
//!
//! Fairness: packets are served in the order they reach this queue, and
//! the backend is looked at (without waiting) before more than
//! [`FAIR_RUN`] packets are handed out since it was last looked at, so
//! posted packets (a job that re-posts itself) never starve I/O: a
//! completion waits behind at most `FAIR_RUN` packets plus those queued
//! before it arrived. While another thread waits in the backend, it sees
//! completions as they come and nobody needs to look.
//!
//! The code is generic over the packet so that `loom` can check it alone
//! (`RUSTFLAGS="--cfg cport_loom" cargo test -p cport --lib sched`).

use std::collections::VecDeque;
use std::time::Instant;

use crate::error::GetError;
use crate::handoff::{HandoffState, SlotState};
use shim::{park_until, Arc, AtomicBool, AtomicU64, AtomicU8, Mutex, Ordering, Thread};

/// Packets handed out at most between two looks at the backend while the
/// queue stays non-empty: two `get_many` batches of the worker pool, so a
/// look (one system call at most) costs under 1% of a busy queue's packets.
pub(crate) const FAIR_RUN: usize = 128;

/// A packet that knows whether it goes to the front of the queue.
pub(crate) trait Prioritized {
    fn is_high(&self) -> bool;
    /// A packet meant for one thread alone (a quit): a batch never takes it
    /// after its first packet, nor anything after it.
    fn ends_batch(&self) -> bool {
        false
    }
}

/// What a waiting thread is handed.
enum Grant<T> {
    /// A packet, with a concurrency slot already taken on the thread's behalf.
    Item(T),
    /// Nobody is waiting in the backend: go and lead.
    Lead,
}

/// The leader's turn in the backend: wait until the deadline, append what was reaped.
pub(crate) type LeadFn<'a, T> = dyn FnMut(Option<Instant>, &mut Vec<T>) -> Result<(), GetError> + 'a;

/// A shared reference to a waiter (loom's `Arc` under loom).
pub(crate) type WaiterRef<T> = Arc<Waiter<T>>;

/// A thread parked in `get`. Reused by its thread across calls.
pub(crate) struct Waiter<T> {
    thread: Thread,
    notified: AtomicBool,
    grant: Mutex<Option<Grant<T>>>,
    /// The thread's kernel id (its `/proc/self/task` entry), for the hand-off monitor.
    pub(crate) tid: i32,
    /// Whether the thread holds a slot, and whether that slot was handed off
    /// ([`SlotState`]); written only under the state lock.
    slot: AtomicU8,
    /// Slots this thread has taken: a monitor that sees the same count twice
    /// knows the thread is still on the same packet.
    epoch: AtomicU64,
}

impl<T> Waiter<T> {
    pub(crate) fn for_current_thread() -> Arc<Self> {
        Arc::new(Waiter {
            thread: shim::current(),
            notified: AtomicBool::new(false),
            grant: Mutex::new(None),
            tid: shim::current_tid(),
            slot: AtomicU8::new(SlotState::Free as u8),
            epoch: AtomicU64::new(0),
        })
    }
    fn slot(&self) -> SlotState {
        SlotState::from_u8(self.slot.load(Ordering::Relaxed))
    }
    fn set_slot(&self, s: SlotState) {
        self.slot.store(s as u8, Ordering::Relaxed);
    }
    fn give(&self, grant: Grant<T>) {
        *self.grant.lock() = Some(grant);
        self.notified.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// The scheduler's state under its one lock (the counterpart of the
/// uring and epoll drivers' own `State`s, private to each module): queued
/// packets, parked threads, running slots, hand-off.
struct State<T> {
    high: VecDeque<T>,
    normal: VecDeque<T>,
    running: usize,
    concurrency: usize,
    /// Parked threads; the top of the stack is released first.
    waiters: Vec<Arc<Waiter<T>>>,
    /// A thread is waiting in the backend (or about to).
    leader: bool,
    max_running: usize,
    /// Packets handed out since the backend was last looked at.
    since_poll: usize,
    /// Slots handed off from blocked holders, and the monitor that finds them.
    handoff: HandoffState<Arc<Waiter<T>>>,
}

impl<T: Prioritized> State<T> {
    fn enqueue(&mut self, item: T) {
        if item.is_high() {
            self.high.push_back(item)
        } else {
            self.normal.push_back(item)
        }
    }
    fn pop(&mut self) -> Option<T> {
        self.high.pop_front().or_else(|| self.normal.pop_front())
    }
    fn queued(&self) -> usize {
        self.high.len() + self.normal.len()
    }
    /// Moves up to `max` more packets to `out` for a thread that just took
    /// one with its slot (`get_many`): at most its fair share, the queue
    /// split evenly between the threads holding slots, so one batch does
    /// not starve the other running threads.
    fn take_share(&mut self, out: &mut Vec<T>, max: usize) {
        let mut share = self.queued().div_ceil(self.running.max(1)).min(max);
        if !self.leader {
            // Nobody watches the backend: stop where it is due a look.
            share = share.min(FAIR_RUN.saturating_sub(self.since_poll));
        }
        self.since_poll += share;
        for _ in 0..share {
            match self.high.front().or_else(|| self.normal.front()) {
                Some(p) if !p.ends_batch() => {}
                _ => break,
            }
            out.extend(self.pop());
        }
    }
    fn take_slot(&mut self, w: &Waiter<T>) {
        self.running += 1;
        self.max_running = self.max_running.max(self.running);
        w.set_slot(SlotState::Held);
        w.epoch.store(w.epoch.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    /// Gives back `w`'s slot: a handed-off one no longer counts as running.
    fn give_back(&mut self, w: &Waiter<T>) {
        match w.slot() {
            SlotState::Blocked => self.handoff.blocked -= 1,
            SlotState::Held | SlotState::Free => {
                self.running = self.running.saturating_sub(1);
                self.handoff.running_fell(self.running, self.concurrency, shim::now);
            }
        }
        w.set_slot(SlotState::Free);
    }
    /// Every slot is held while a thread could run and work waits for it:
    /// with a leader in the backend, packets queued (it would take them);
    /// without one, a waiter (it would take a queued packet, or lead and
    /// reap what the backend holds). Only then can a blocked holder's slot
    /// be put to use.
    fn starved(&self) -> bool {
        let could_run = if self.leader {
            self.queued() > 0
        } else {
            !self.waiters.is_empty()
        };
        self.running >= self.concurrency && could_run
    }
    /// Wakes the hand-off monitor if it sleeps and has something to watch.
    fn poke_monitor(&mut self) {
        if self.handoff.monitor.is_some() && (self.starved() || self.handoff.blocked > 0) {
            if let Some(m) = self.handoff.monitor.take() {
                m.give(Grant::Lead);
            }
        }
    }
    /// Hands ready packets to the most recent waiters while slots are free.
    fn dispatch(&mut self) {
        while self.running < self.concurrency && !self.waiters.is_empty() {
            let Some(item) = self.pop() else { break };
            let w = self.waiters.pop().expect("checked non-empty");
            self.take_slot(&w);
            self.since_poll += 1;
            w.give(Grant::Item(item));
        }
    }
    /// A packet waits with a slot free while the leader sleeps in the
    /// backend, which only a wake-up will end.
    fn leader_must_wake(&self) -> bool {
        self.queued() > 0 && self.leader && self.running < self.concurrency
    }
    /// Packets are ready but the backend is due a look first (see [`FAIR_RUN`]).
    fn poll_due(&self) -> bool {
        !self.leader && self.since_poll >= FAIR_RUN && self.queued() > 0
    }
    /// A leader's turn is over: queue what it reaped and hand it out.
    fn end_lead(&mut self, batch: &mut Vec<T>) {
        self.leader = false;
        self.since_poll = 0;
        for item in batch.drain(..) {
            self.enqueue(item);
        }
        self.dispatch();
        self.poke_monitor();
    }
    /// When nobody leads but threads wait with free slots, one of them must.
    fn promote(&mut self) {
        if !self.leader && self.running < self.concurrency && self.queued() == 0 {
            if let Some(w) = self.waiters.pop() {
                w.give(Grant::Lead);
            }
        }
    }
}

/// A thread holding a slot, as the hand-off monitor sees it.
pub(crate) struct Holder<T> {
    pub waiter: Arc<Waiter<T>>,
    pub tid: i32,
    pub epoch: u64,
    /// Its slot is handed off already.
    pub blocked: bool,
}

/// A snapshot of the scheduler's counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SchedCounts {
    pub queued: usize,
    pub running: usize,
    pub max_running: usize,
    pub waiting: usize,
    /// Holders whose slot was handed off, and threads in `Port::blocking` scopes.
    pub blocked: usize,
    pub scoped: usize,
    pub handoffs: u64,
    pub scopes: u64,
    pub over_cap_nanos: u64,
}

pub(crate) struct Sched<T> {
    state: Mutex<State<T>>,
}

impl<T: Prioritized> Sched<T> {
    pub(crate) fn new(concurrency: usize) -> Self {
        Sched {
            state: Mutex::new(State {
                high: VecDeque::new(),
                normal: VecDeque::new(),
                running: 0,
                concurrency: concurrency.max(1),
                waiters: Vec::new(),
                leader: false,
                max_running: 0,
                since_poll: 0,
                handoff: HandoffState::default(),
            }),
        }
    }

    /// Queues a packet from outside the leader (a posted packet). Returns
    /// `true` when the packet is left waiting while the leader sits in the
    /// backend with a free slot: the caller must wake the backend.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut st = self.state.lock();
        st.enqueue(item);
        st.dispatch();
        st.poke_monitor();
        st.leader_must_wake()
    }

    /// Gives back a slot without dequeuing, for a caller that keeps no
    /// [`Waiter`] (tests). Returns `true` when a packet is left queued with a
    /// free slot while the leader sits in the backend: the caller must wake
    /// the backend.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn release(&self) -> bool {
        let mut st = self.state.lock();
        st.running = st.running.saturating_sub(1);
        st.dispatch();
        st.promote();
        st.leader_must_wake()
    }

    /// Releases every waiter so it re-checks the port (used at shutdown).
    pub(crate) fn wake_all(&self) {
        let mut st = self.state.lock();
        for w in st.waiters.drain(..) {
            w.give(Grant::Lead);
        }
        if let Some(m) = st.handoff.monitor.take() {
            m.give(Grant::Lead);
        }
    }

    /// Looks at the backend once without waiting, from a thread that need
    /// not hold a slot (`Port::flush`): `lead` with a deadline of now. What
    /// it reaps is queued and handed out. `None` when another thread leads.
    pub(crate) fn lead_now(&self, batch: &mut Vec<T>, lead: &mut LeadFn<'_, T>) -> Option<Result<(), GetError>> {
        let mut st = self.state.lock();
        if st.leader {
            return None;
        }
        st.leader = true;
        drop(st);
        let guard = Unlead(self);
        let res = lead(Some(shim::now()), batch);
        std::mem::forget(guard);
        let mut st = self.state.lock();
        st.end_lead(batch);
        st.promote();
        Some(res)
    }

    /// Whether a thread is waiting in the backend (or about to).
    pub(crate) fn has_leader(&self) -> bool {
        self.state.lock().leader
    }

    pub(crate) fn counts(&self) -> SchedCounts {
        let st = self.state.lock();
        let h = &st.handoff;
        SchedCounts {
            queued: st.queued(),
            running: st.running,
            max_running: st.max_running,
            waiting: st.waiters.len(),
            blocked: h.blocked,
            scoped: h.scoped,
            handoffs: h.handoffs,
            scopes: h.scopes,
            over_cap_nanos: h.over_cap_nanos(st.running, st.concurrency, shim::now),
        }
    }

    /// Each registered thread's id and slot state, for `Port::snapshot`.
    pub(crate) fn slot_states(&self) -> Vec<(i32, SlotState)> {
        let st = self.state.lock();
        st.handoff.threads.iter().map(|w| (w.tid, w.slot())).collect()
    }

    /// The concurrency cap.
    pub(crate) fn concurrency(&self) -> usize {
        self.state.lock().concurrency
    }

    /// Turns automatic hand-off on or off (on by default in `Port`).
    pub(crate) fn set_handoff(&self, on: bool) {
        self.state.lock().handoff.on = on;
    }

    /// Gives back `me`'s slot without dequeuing (a thread about to block, or
    /// exiting). Returns `true` when a packet is left queued with a free slot
    /// while the leader sits in the backend: the caller must wake the backend.
    #[must_use]
    pub(crate) fn release_by(&self, me: &Waiter<T>) -> bool {
        let mut st = self.state.lock();
        st.give_back(me);
        st.dispatch();
        st.promote();
        st.leader_must_wake()
    }

    /// `me` enters a `Port::blocking` scope holding a slot: the slot goes
    /// to a waiter at once. Returns `true` when the caller must wake the backend.
    #[must_use]
    pub(crate) fn enter_blocking(&self, me: &Waiter<T>) -> bool {
        let mut st = self.state.lock();
        st.handoff.scoped += 1;
        st.handoff.scopes += 1;
        st.give_back(me);
        st.dispatch();
        st.promote();
        st.leader_must_wake()
    }

    /// `me` leaves a `Port::blocking` scope and, with `retake`, takes its
    /// slot back at once, over the cap if need be (as a thread that wakes
    /// does on Windows): it is running again, and its next `get` waits until
    /// the threads running are back under the cap.
    pub(crate) fn leave_blocking(&self, me: &Waiter<T>, retake: bool) {
        let mut st = self.state.lock();
        st.handoff.scoped -= 1;
        if retake {
            st.running += 1;
            me.set_slot(SlotState::Held);
            me.epoch.store(me.epoch.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            let (running, cap) = (st.running, st.concurrency);
            st.handoff.running_rose(running, cap, shim::now);
        }
    }

    /// The monitor's wait: returns at once when there is something to
    /// watch (every slot held with work and a thread waiting, or a holder
    /// marked blocked); otherwise parks `me` until there is, or until
    /// [`stop_monitor`](Self::stop_monitor). `false` once stopped.
    pub(crate) fn monitor_wait(&self, me: &Arc<Waiter<T>>) -> bool {
        let mut st = self.state.lock();
        loop {
            if st.handoff.stopped {
                return false;
            }
            if st.handoff.on && (st.starved() || st.handoff.blocked > 0) {
                return true;
            }
            me.notified.store(false, Ordering::Relaxed);
            st.handoff.monitor = Some(me.clone());
            drop(st);
            park_until(&me.notified, None);
            st = self.state.lock();
        }
    }

    /// Ends the monitor: it returns from [`monitor_wait`](Self::monitor_wait) with `false`.
    pub(crate) fn stop_monitor(&self) {
        let mut st = self.state.lock();
        st.handoff.stopped = true;
        if let Some(m) = st.handoff.monitor.take() {
            m.give(Grant::Lead);
        }
    }

    /// Makes `w` known to the monitor (a thread's first `get` on the port).
    pub(crate) fn register(&self, w: &Arc<Waiter<T>>) {
        self.state.lock().handoff.threads.push(w.clone());
    }

    /// Forgets `w` (its thread is done with the port).
    pub(crate) fn unregister(&self, w: &Arc<Waiter<T>>) {
        self.state.lock().handoff.threads.retain(|x| !Arc::ptr_eq(x, w));
    }

    /// The threads holding a slot now: each with its thread id, its slot
    /// count (see `Waiter::epoch`) and whether its slot is handed off.
    /// Also whether the port is starved (see `State::starved`).
    pub(crate) fn holders(&self, out: &mut Vec<Holder<T>>) -> bool {
        let st = self.state.lock();
        out.clear();
        for w in &st.handoff.threads {
            let blocked = match w.slot() {
                SlotState::Free => continue,
                SlotState::Held => false,
                SlotState::Blocked => true,
            };
            out.push(Holder {
                waiter: w.clone(),
                tid: w.tid,
                epoch: w.epoch.load(Ordering::Relaxed),
                blocked,
            });
        }
        st.starved()
    }

    /// The monitor saw `w` blocked in the kernel on the packet it took as
    /// slot number `epoch`: its slot goes to a waiter, if the port is still
    /// starved and `w` still on that packet. Returns whether it did, and
    /// whether the caller must wake the backend.
    pub(crate) fn hand_off(&self, w: &Waiter<T>, epoch: u64) -> (bool, bool) {
        let mut st = self.state.lock();
        if !st.handoff.on || !st.starved() || w.slot() != SlotState::Held || w.epoch.load(Ordering::Relaxed) != epoch {
            return (false, false);
        }
        w.set_slot(SlotState::Blocked);
        st.running -= 1;
        st.handoff.blocked += 1;
        st.handoff.handoffs += 1;
        st.dispatch();
        st.promote();
        (true, st.leader_must_wake())
    }

    /// The monitor saw a handed-off holder running again: it counts as
    /// running, over the cap if its stand-in still runs.
    pub(crate) fn resumed(&self, w: &Waiter<T>, epoch: u64) {
        let mut st = self.state.lock();
        if w.slot() != SlotState::Blocked || w.epoch.load(Ordering::Relaxed) != epoch {
            return;
        }
        w.set_slot(SlotState::Held);
        st.handoff.blocked -= 1;
        st.running += 1;
        let (running, cap) = (st.running, st.concurrency);
        st.handoff.running_rose(running, cap, shim::now);
    }

    /// Dequeues one packet, IOCP-style. `held` says whether the calling thread
    /// holds a slot from its previous `get` (it is given back first). `lead`
    /// waits in the backend until `deadline` and appends what it reaped to
    /// the vector; `flush` makes operations issued so far visible to a leader
    /// already waiting in the backend. On success the caller holds a slot;
    /// with `more`, packets beyond the first that the thread may run on the
    /// same slot are appended to the vector, up to the given count.
    #[allow(clippy::too_many_arguments)] // each is one hook of the caller's; a struct would only rename them
    pub(crate) fn get(
        &self,
        held: bool,
        deadline: Option<Instant>,
        me: &Arc<Waiter<T>>,
        batch: &mut Vec<T>,
        lead: &mut LeadFn<'_, T>,
        flush: &mut dyn FnMut(),
        parked: &mut dyn FnMut(bool),
        more: Option<(&mut Vec<T>, usize)>,
    ) -> Result<T, GetError> {
        let mut st = self.state.lock();
        if held {
            // The slot goes back, but this thread is first in line for the
            // next packet: it is running and hot, so it takes one without
            // sleeping; what is left goes to waiters below. A thread whose
            // slot was handed off while it blocked takes one only once the
            // threads running are back under the cap (IOCP's rule).
            st.give_back(me);
        }
        loop {
            if st.running < st.concurrency {
                let poll = st.poll_due();
                if !poll {
                    if let Some(item) = st.pop() {
                        st.take_slot(me);
                        st.since_poll += 1;
                        st.dispatch();
                        if let Some((out, max)) = more.filter(|_| !item.ends_batch()) {
                            st.take_share(out, max);
                        }
                        return Ok(item);
                    }
                }
                if !st.leader {
                    st.leader = true;
                    drop(st);
                    // Due a look with packets ready: look, do not wait.
                    let until = if poll { Some(shim::now()) } else { deadline };
                    let guard = Unlead(self);
                    let res = lead(until, batch);
                    std::mem::forget(guard);
                    st = self.state.lock();
                    st.end_lead(batch);
                    let expired = deadline.is_some_and(|d| shim::now() >= d);
                    let can_take = st.running < st.concurrency && st.queued() > 0;
                    // A look taken for fairness fails nothing that is ready
                    // (a shut-down port still delivers its queue).
                    let failed = res.is_err() && !(poll && can_take);
                    if failed || (expired && !can_take) {
                        st.promote();
                        return Err(res.err().unwrap_or(GetError::Timeout));
                    }
                    continue;
                }
            }
            if deadline.is_some_and(|d| shim::now() >= d) {
                return Err(GetError::Timeout);
            }
            me.notified.store(false, Ordering::Relaxed);
            st.waiters.push(me.clone());
            st.poke_monitor();
            drop(st);
            flush();
            parked(true);
            park_until(&me.notified, deadline);
            parked(false);
            st = self.state.lock();
            if me.notified.load(Ordering::Acquire) {
                match me.grant.lock().take() {
                    Some(Grant::Item(item)) => return Ok(item),
                    Some(Grant::Lead) | None => continue,
                }
            }
            // Timed out: leave the stack (no one granted us anything, or
            // `notified` would be set: grants happen under the state lock).
            if let Some(pos) = st.waiters.iter().rposition(|w| Arc::ptr_eq(w, me)) {
                st.waiters.remove(pos);
            }
            return Err(GetError::Timeout);
        }
    }
}

/// Gives up the leader's role if `lead` unwinds, so that the next thread
/// to call `get` leads instead of every later `get` parking forever.
struct Unlead<'a, T: Prioritized>(&'a Sched<T>);

impl<T: Prioritized> Drop for Unlead<'_, T> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.leader = false;
        st.dispatch();
        st.promote();
    }
}

#[cfg(not(cport_loom))]
mod shim {
    pub(crate) use crate::handoff::current_tid;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
    pub(crate) use std::sync::Arc;
    pub(crate) use std::thread::{current, Thread};
    use std::time::Instant;

    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);
    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Self {
            Mutex(parking_lot::Mutex::new(t))
        }
        pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
            self.0.lock()
        }
    }
    pub(crate) fn now() -> Instant {
        Instant::now()
    }
    /// Parks until `flag` is set or the deadline passes (spurious wake-ups are absorbed).
    pub(crate) fn park_until(flag: &AtomicBool, deadline: Option<Instant>) {
        while !flag.load(Ordering::Acquire) {
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return;
                    }
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }
}

#[cfg(cport_loom)]
mod shim {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::thread::{current, Thread};

    /// Loom threads have no `/proc` entry.
    pub(crate) fn current_tid() -> i32 {
        0
    }
    use std::time::Instant;

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Self {
            Mutex(loom::sync::Mutex::new(t))
        }
        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap()
        }
    }
    pub(crate) fn now() -> Instant {
        Instant::now()
    }
    /// Loom models no time: deadlines are not used under loom.
    pub(crate) fn park_until(flag: &AtomicBool, _deadline: Option<Instant>) {
        while !flag.load(Ordering::Acquire) {
            loom::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct P(u32, bool);
    impl Prioritized for P {
        fn is_high(&self) -> bool {
            self.1
        }
        fn ends_batch(&self) -> bool {
            self.0 >= 100
        }
    }

    fn no_lead(_: Option<Instant>, _: &mut Vec<P>) -> Result<(), GetError> {
        Err(GetError::Timeout)
    }

    /// `get` with no deadline and no backend to lead.
    fn take(s: &Sched<P>, held: bool, me: &Arc<Waiter<P>>, more: Option<(&mut Vec<P>, usize)>) -> Result<P, GetError> {
        s.get(held, None, me, &mut vec![], &mut no_lead, &mut || {}, &mut |_| {}, more)
    }

    #[cfg(not(cport_loom))]
    #[test]
    fn high_priority_packets_are_dequeued_first() {
        let s = Sched::new(1);
        s.push(P(1, false));
        s.push(P(2, true));
        s.push(P(3, false));
        s.push(P(4, true));
        let me = Waiter::for_current_thread();
        let mut got = vec![];
        let mut held = false;
        for _ in 0..4 {
            let p = take(&s, held, &me, None).unwrap();
            held = true;
            got.push(p.0);
        }
        assert_eq!(got, vec![2, 4, 1, 3]);
    }

    #[cfg(not(cport_loom))]
    #[test]
    fn a_thread_holding_the_only_slot_blocks_others() {
        let s = Sched::new(1);
        s.push(P(1, false));
        s.push(P(2, false));
        let me = Waiter::for_current_thread();
        take(&s, false, &me, None).unwrap();
        // Slot held: a second dequeue (as another thread would) must time out.
        let other = Waiter::for_current_thread();
        let d = Some(Instant::now() + std::time::Duration::from_millis(20));
        assert!(matches!(
            s.get(
                false,
                d,
                &other,
                &mut vec![],
                &mut no_lead,
                &mut || {},
                &mut |_| {},
                None
            ),
            Err(GetError::Timeout)
        ));
        assert_eq!(s.counts().queued, 1);
        assert_eq!(s.counts().max_running, 1);
    }

    #[cfg(not(cport_loom))]
    #[test]
    fn a_batch_takes_only_its_share_of_the_queue() {
        let s = Sched::new(2);
        for i in 0..10 {
            s.push(P(i, false));
        }
        let (a, b) = (Waiter::for_current_thread(), Waiter::for_current_thread());
        // One thread runs a packet; a second takes a batch on its own slot.
        take(&s, false, &a, None).unwrap();
        let mut more = vec![];
        let first = take(&s, false, &b, Some((&mut more, 64))).unwrap();
        // 8 left after the two firsts, split between 2 running threads.
        assert_eq!(first.0, 1);
        assert_eq!(more.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        assert_eq!(s.counts().queued, 4);
        // Alone, a thread takes up to its cap.
        let _ = s.release();
        let mut more = vec![];
        take(&s, true, &b, Some((&mut more, 2))).unwrap();
        assert_eq!((more.len(), s.counts().queued), (2, 1));
    }

    #[cfg(not(cport_loom))]
    #[test]
    fn a_batch_stops_before_a_packet_meant_for_one_thread() {
        let s = Sched::new(1);
        for i in [1, 2, 100, 3, 101, 102] {
            s.push(P(i, false));
        }
        let me = Waiter::for_current_thread();
        let mut batches = vec![];
        let mut held = false;
        while s.counts().queued > 0 {
            let mut more = vec![];
            let first = take(&s, held, &me, Some((&mut more, 64))).unwrap();
            held = true;
            batches.push(
                std::iter::once(first.0)
                    .chain(more.iter().map(|p| p.0))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(batches, vec![vec![1, 2], vec![100], vec![3], vec![101], vec![102]]);
    }

    #[cfg(not(cport_loom))]
    #[test]
    fn a_leader_that_panics_gives_up_the_role() {
        let s = Sched::new(1);
        let me = Waiter::for_current_thread();
        let mut boom = |_: Option<Instant>, _: &mut Vec<P>| -> Result<(), GetError> { panic!("backend failed") };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.get(false, None, &me, &mut vec![], &mut boom, &mut || {}, &mut |_| {}, None)
        }));
        assert!(r.is_err());
        assert!(!s.has_leader(), "the leader flag outlived the panic");
        // The next thread leads (instead of parking forever) and gets what it reaps.
        let mut reap = |_: Option<Instant>, out: &mut Vec<P>| {
            out.push(P(7, false));
            Ok(())
        };
        let d = Some(Instant::now() + std::time::Duration::from_secs(5));
        let got = s.get(false, d, &me, &mut vec![], &mut reap, &mut || {}, &mut |_| {}, None);
        assert_eq!(got.unwrap(), P(7, false));
    }

    #[cfg(not(cport_loom))]
    #[test]
    fn ready_packets_make_way_for_a_look_at_the_backend() {
        let s = Sched::new(1);
        for i in 0..1000 {
            s.push(P(i, false));
        }
        let me = Waiter::for_current_thread();
        let looks = std::cell::Cell::new(Vec::new());
        let mut handed = 0usize;
        let mut held = false;
        let mut more = vec![];
        while handed < 600 {
            more.clear();
            let mut look = |d: Option<Instant>, out: &mut Vec<P>| {
                // A look for fairness never waits.
                assert!(d.is_some_and(|d| d <= Instant::now()));
                let mut l = looks.take();
                l.push(handed);
                looks.set(l);
                out.push(P(5000 + handed as u32, false));
                Ok(())
            };
            let first = s
                .get(
                    held,
                    None,
                    &me,
                    &mut vec![],
                    &mut look,
                    &mut || {},
                    &mut |_| {},
                    Some((&mut more, 63)),
                )
                .unwrap();
            held = true;
            handed += 1 + more.len();
            let _ = first;
        }
        let looks = looks.take();
        assert!(!looks.is_empty());
        let mut last = 0;
        for at in looks {
            assert!(at - last <= FAIR_RUN, "a run of {} packets without a look", at - last);
            last = at;
        }
    }

    /// With no leader, a slot given back makes the *most recent* waiter lead
    /// (LIFO, as IOCP releases threads); the older one leads only after it.
    #[cfg(not(cport_loom))]
    #[test]
    fn a_freed_slot_makes_the_most_recent_waiter_lead() {
        let s = Arc::new(Sched::new(1));
        s.push(P(1, false));
        let me = Waiter::for_current_thread();
        take(&s, false, &me, None).unwrap();
        let led = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for t in 1..=2u32 {
            let (s2, led) = (s.clone(), led.clone());
            threads.push(std::thread::spawn(move || {
                let me = Waiter::for_current_thread();
                let mut lead = |_: Option<Instant>, _: &mut Vec<P>| {
                    led.lock().unwrap().push(t);
                    Err(GetError::Timeout)
                };
                let deadline = Some(Instant::now() + std::time::Duration::from_secs(10));
                s2.get(
                    false,
                    deadline,
                    &me,
                    &mut vec![],
                    &mut lead,
                    &mut || {},
                    &mut |_| {},
                    None,
                )
            }));
            let start = Instant::now();
            while s.counts().waiting < t as usize {
                assert!(start.elapsed().as_secs() < 10, "thread {t} never waited");
                std::thread::yield_now();
            }
        }
        // The only slot comes back with nothing queued: someone must lead.
        let _ = s.release();
        for t in threads {
            assert!(matches!(t.join().unwrap(), Err(GetError::Timeout)));
        }
        assert_eq!(*led.lock().unwrap(), vec![2, 1], "the most recent waiter leads first");
        assert_eq!(s.counts().waiting, 0);
    }

    /// Packets go to the most recent waiters first, one per freed slot.
    #[cfg(not(cport_loom))]
    #[test]
    fn packets_go_to_the_most_recent_waiters_first() {
        let s = Arc::new(Sched::new(2));
        s.push(P(1, false));
        s.push(P(2, false));
        let me = Waiter::for_current_thread();
        take(&s, false, &me, None).unwrap();
        take(&s, false, &me, None).unwrap();
        // Both slots are taken: the threads below wait on the stack.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        for t in 1..=3u32 {
            let (s2, tx) = (s.clone(), tx.clone());
            threads.push(std::thread::spawn(move || {
                let me = Waiter::for_current_thread();
                let deadline = Some(Instant::now() + std::time::Duration::from_secs(10));
                let got = s2.get(
                    false,
                    deadline,
                    &me,
                    &mut vec![],
                    &mut no_lead,
                    &mut || {},
                    &mut |_| {},
                    None,
                );
                tx.send((t, got.ok().map(|p| p.0))).unwrap();
            }));
            let start = Instant::now();
            while s.counts().waiting < t as usize {
                assert!(start.elapsed().as_secs() < 10, "thread {t} never waited");
                std::thread::yield_now();
            }
        }
        s.push(P(7, false));
        s.push(P(8, false));
        assert_eq!(s.counts().queued, 2, "no slot free: both packets wait");
        let _ = s.release();
        assert_eq!(rx.recv().unwrap(), (3, Some(7)), "the most recent waiter first");
        let _ = s.release();
        assert_eq!(rx.recv().unwrap(), (2, Some(8)), "then the next most recent");
        assert_eq!((s.counts().running, s.counts().waiting), (2, 1));
        // A slot freed with nothing queued: the last waiter goes to lead.
        let _ = s.release();
        assert_eq!(rx.recv().unwrap(), (1, None));
        for t in threads {
            t.join().unwrap();
        }
    }

    /// A leader that gives up while every slot is taken must not wake a
    /// waiter to lead: it could not run anyway (a wake-up for nothing).
    #[cfg(not(cport_loom))]
    #[test]
    fn no_waiter_is_woken_to_lead_without_a_free_slot() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::mpsc;
        let s = Arc::new(Sched::new(1));
        // A leads; its turn in the "kernel" ends when told, with nothing.
        let (end_tx, end_rx) = mpsc::channel::<()>();
        let s2 = s.clone();
        let a = std::thread::spawn(move || {
            let me = Waiter::for_current_thread();
            let mut lead = |_: Option<Instant>, _: &mut Vec<P>| {
                let _ = end_rx.recv();
                Err(GetError::Timeout)
            };
            s2.get(false, None, &me, &mut vec![], &mut lead, &mut || {}, &mut |_| {}, None)
        });
        let start = Instant::now();
        while !s.has_leader() {
            assert!(start.elapsed().as_secs() < 10, "A never led");
            std::thread::yield_now();
        }
        // This thread takes the only slot with a posted packet.
        s.push(P(1, false));
        let me = Waiter::for_current_thread();
        take(&s, false, &me, None).unwrap();
        // W waits on the stack, counting how often it parks.
        let parks = Arc::new(AtomicUsize::new(0));
        let (s3, parks2) = (s.clone(), parks.clone());
        let w = std::thread::spawn(move || {
            let me = Waiter::for_current_thread();
            let mut parked = |start: bool| {
                if start {
                    parks2.fetch_add(1, Ordering::SeqCst);
                }
            };
            s3.get(
                false,
                None,
                &me,
                &mut vec![],
                &mut no_lead,
                &mut || {},
                &mut parked,
                None,
            )
        });
        while s.counts().waiting < 1 {
            assert!(start.elapsed().as_secs() < 10, "W never waited");
            std::thread::yield_now();
        }
        end_tx.send(()).unwrap();
        assert!(matches!(a.join().unwrap(), Err(GetError::Timeout)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(parks.load(Ordering::SeqCst), 1, "W was woken with no slot to run in");
        // The slot comes back: now W leads (and, with no backend, times out).
        let _ = s.release();
        assert!(matches!(w.join().unwrap(), Err(GetError::Timeout)));
        assert_eq!(parks.load(Ordering::SeqCst), 1);
    }

    /// A stand-in for the kernel: completions appear in `ready`; the leader
    /// blocks on `notify` until one does or it is woken (as by a NOP).
    #[cfg(cport_loom)]
    struct Kernel {
        ready: loom::sync::Mutex<Vec<P>>,
        notify: loom::sync::Notify,
    }

    #[cfg(cport_loom)]
    #[test]
    fn loom_each_packet_goes_to_exactly_one_thread() {
        loom::model(|| {
            let s = Arc::new(Sched::new(2));
            let k = Arc::new(Kernel {
                ready: loom::sync::Mutex::new(Vec::new()),
                notify: loom::sync::Notify::new(),
            });
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, k) = (s.clone(), k.clone());
                    loom::thread::spawn(move || {
                        let me = Waiter::for_current_thread();
                        let mut lead = |_: Option<Instant>, out: &mut Vec<P>| {
                            let got: Vec<P> = std::mem::take(&mut *k.ready.lock().unwrap());
                            if got.is_empty() {
                                k.notify.wait();
                                out.extend(std::mem::take(&mut *k.ready.lock().unwrap()));
                            } else {
                                out.extend(got);
                            }
                            Ok(())
                        };
                        let p = s
                            .get(false, None, &me, &mut vec![], &mut lead, &mut || {}, &mut |_| {}, None)
                            .unwrap();
                        let _ = s.release();
                        // Let a leader still in the "kernel" out: nothing more will arrive.
                        k.notify.notify();
                        p.0
                    })
                })
                .collect();
            // One completion from the "kernel", one posted packet.
            k.ready.lock().unwrap().push(P(1, false));
            k.notify.notify();
            if s.push(P(2, true)) {
                k.notify.notify();
            }
            let mut got: Vec<u32> = consumers.into_iter().map(|h| h.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, vec![1, 2]);
            assert!(s.counts().max_running <= 2);
        });
    }

    /// `Port::flush` from a thread that never dequeues, racing a consumer
    /// that leads: whoever ends up looking at the "kernel", the completion
    /// reaches the consumer exactly once and nobody is left leading.
    #[cfg(cport_loom)]
    #[test]
    fn loom_flush_and_a_leader_share_the_backend() {
        loom::model(|| {
            let s = Arc::new(Sched::new(1));
            let k = Arc::new(Kernel {
                ready: loom::sync::Mutex::new(Vec::new()),
                notify: loom::sync::Notify::new(),
            });
            let lead_with = |k: Arc<Kernel>| {
                move |deadline: Option<Instant>, out: &mut Vec<P>| {
                    let got: Vec<P> = std::mem::take(&mut *k.ready.lock().unwrap());
                    if got.is_empty() && deadline.is_none() {
                        k.notify.wait();
                        out.extend(std::mem::take(&mut *k.ready.lock().unwrap()));
                    } else {
                        out.extend(got);
                    }
                    Ok(())
                }
            };
            let consumer = {
                let (s, k) = (s.clone(), k.clone());
                loom::thread::spawn(move || {
                    let me = Waiter::for_current_thread();
                    let mut lead = lead_with(k);
                    loop {
                        let p = s.get(false, None, &me, &mut vec![], &mut lead, &mut || {}, &mut |_| {}, None);
                        if let Ok(p) = p {
                            let _ = s.release();
                            return p.0;
                        }
                    }
                })
            };
            // The flusher: an op completes in the "kernel", then flush.
            k.ready.lock().unwrap().push(P(1, false));
            let mut lead = lead_with(k.clone());
            let mut batch = vec![];
            loop {
                match s.lead_now(&mut batch, &mut lead) {
                    Some(r) => {
                        r.unwrap();
                        break;
                    }
                    None => {
                        // A leader is in the "kernel": wake it; it takes the packet.
                        k.notify.notify();
                        if k.ready.lock().unwrap().is_empty() {
                            break;
                        }
                        loom::thread::yield_now();
                    }
                }
            }
            assert_eq!(consumer.join().unwrap(), 1);
            assert!(!s.has_leader());
            assert_eq!(s.counts().queued, 0);
        });
    }

    /// A hand-off racing shutdown: H holds the only slot and blocks with a
    /// packet queued; W waits for a slot; the monitor hands H's slot off
    /// while shutdown wakes every waiter and then stops the monitor. W gets
    /// the packet (no lost wake-up), the monitor exits, and the counts end
    /// right when H comes back.
    #[cfg(cport_loom)]
    #[test]
    fn loom_handoff_racing_shutdown_loses_no_wakeup() {
        loom::model(|| {
            let s = Arc::new(Sched::new(1));
            s.set_handoff(true);
            let h = Waiter::for_current_thread();
            s.register(&h);
            s.push(P(1, false));
            take(&s, false, &h, None).unwrap();
            let epoch = h.epoch.load(Ordering::Relaxed);
            s.push(P(2, false));
            let w = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let me = Waiter::for_current_thread();
                    let p = take(&s, false, &me, None).unwrap();
                    let _ = s.release_by(&me);
                    p.0
                })
            };
            let monitor = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    let me = Waiter::for_current_thread();
                    let mut handed = false;
                    let mut holders = Vec::new();
                    while s.monitor_wait(&me) {
                        // As the real monitor: look at the holders; H "sleeps".
                        let starved = s.holders(&mut holders);
                        for x in holders.drain(..) {
                            if starved && !x.blocked {
                                assert_eq!(x.epoch, epoch);
                                handed |= s.hand_off(&x.waiter, x.epoch).0;
                            }
                        }
                        loom::thread::yield_now();
                    }
                    handed
                })
            };
            let shutdown = {
                let s = s.clone();
                loom::thread::spawn(move || s.wake_all())
            };
            shutdown.join().unwrap();
            assert_eq!(w.join().unwrap(), 2);
            let c = s.counts();
            assert_eq!((c.running, c.blocked, c.handoffs), (0, 1, 1));
            // H comes back (its handed-off slot is simply gone): the monitor
            // has nothing left to watch and parks, racing the stop below,
            // which must still wake it.
            let _ = s.release_by(&h);
            let c = s.counts();
            assert_eq!((c.running, c.blocked), (0, 0));
            s.stop_monitor();
            assert!(monitor.join().unwrap(), "W ran only through the hand-off");
        });
    }

    #[cfg(cport_loom)]
    #[test]
    fn loom_concurrency_one_never_runs_two() {
        loom::model(|| {
            let s = Arc::new(Sched::new(1));
            s.push(P(1, false));
            s.push(P(2, false));
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || {
                        let me = Waiter::for_current_thread();
                        loop {
                            if let Ok(p) = take(&s, false, &me, None) {
                                let _ = s.release();
                                return p.0;
                            }
                            loom::thread::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(s.counts().max_running, 1);
        });
    }
}
