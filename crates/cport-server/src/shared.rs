//! What every session handle and every worker share: the port, the session
//! slots, and the send/close logic that runs under one session's lock.
//!
//! Locking: each session has its own small mutex (`Slot::state`); nothing
//! here takes a lock across sessions on the message path. The receive side
//! has a second per-session mutex in the dispatcher (taken first when both
//! are needed). The wheel, the free list and the starved list are global
//! but are touched only at connect, disconnect, tick and buffer exhaustion.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use cport::{Backend, BufPool, Completion, Ctx, Handle, Issued, Key, OpId, Payload, Port};
use parking_lot::{Condvar, Mutex};

use crate::handler::{DisconnectReason, Framing};
use crate::queue::{Batch, Item, SendQueue};
use crate::session::SendErrorKind;
use crate::stats::{Counters, Shard, Traffic};
use crate::table::{FreeList, Table};
use crate::wheel::{Entry, Tick, Wheel};

/// Per-operation contexts (the completion's `ctx`).
pub(crate) const CTX_RECV: u64 = 1;
pub(crate) const CTX_SEND: u64 = 2;
pub(crate) const CTX_TICK: u64 = 3;
pub(crate) const CTX_RETRY: u64 = 4;
pub(crate) const CTX_FINALIZE: u64 = 5;
/// A send was queued by a thread that is not a worker: a worker issues it.
pub(crate) const CTX_KICK: u64 = 6;
/// Posted once at start: a worker arms the accepts and the timer.
pub(crate) const CTX_START: u64 = 7;
/// A paused session's queue drained to the low-water mark: a worker resumes
/// its receiving.
pub(crate) const CTX_RESUME: u64 = 8;
/// The handler released its hold on a session's input: a worker calls
/// `Handler::on_resume` and resumes its receiving.
pub(crate) const CTX_RELEASE: u64 = 9;
/// Accepts carry `CTX_ACCEPT + listener index`.
pub(crate) const CTX_ACCEPT: u64 = 1 << 32;

thread_local! {
    /// The server whose worker this thread is (its `Shared` address, or 0),
    /// and the worker's counter shard.
    static WORKER_OF: std::cell::Cell<(usize, Shard)> = const { std::cell::Cell::new((0, Shard::SHARED)) };
}

/// "Not scheduled" for wheel and linger deadlines.
pub(crate) const NEVER: Tick = Tick::MAX;

/// A session's completion key: its slot and the slot's generation.
pub(crate) fn session_key(idx: u32, gen: u32) -> Key {
    Key(((gen as u64) << 32) | idx as u64)
}

/// The slot and generation of a session key.
pub(crate) fn split_key(k: Key) -> (u32, u32) {
    (k.0 as u32, (k.0 >> 32) as u32)
}

/// Settings resolved at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub name: String,
    pub framing: Framing,
    pub max_queued: usize,
    /// Output backlog at which a session's receiving pauses.
    pub high_water: usize,
    /// Output backlog at which a paused session's receiving resumes.
    pub low_water: usize,
    /// How long a session's queue may stay past the cap before it is cut.
    pub slow_ticks: Tick,
    /// The size of one pool buffer: parked input is delivered in pieces of it.
    pub recv_size: usize,
    pub idle_ticks: Option<Tick>,
    pub frame_ticks: Option<Tick>,
    pub linger_ticks: Tick,
    pub tick: Duration,
    pub multishot: bool,
    pub nodelay: bool,
    pub threads: usize,
}

/// One session slot. The atomics are read on the receive path without the lock.
#[derive(Default)]
pub(crate) struct Slot {
    /// Set once the session starts closing: stop handing out messages.
    pub closing: AtomicBool,
    /// Tick of the last byte received or sent.
    pub last_active: AtomicU32,
    /// Tick + 1 at which the pending partial frame started, 0 when none.
    pub frame_since: AtomicU32,
    /// The send queue's backlog passed the high-water mark and has not yet
    /// drained to the low one. Written under `state`; read without it on the
    /// receive path, after each delivered chunk.
    pub backed_up: AtomicBool,
    /// The handler holds this session's input back
    /// ([`Session::pause_receiving`](crate::Session::pause_receiving)), for
    /// example while its own file writes are pending.
    pub held: AtomicBool,
    pub state: Mutex<State>,
}

impl Slot {
    /// Input must wait: the answers back up, or the handler holds it.
    pub(crate) fn holds_input(&self) -> bool {
        self.backed_up.load(Relaxed) || self.held.load(Relaxed)
    }
}

/// How a session is closing.
#[derive(Debug)]
pub(crate) struct Closing {
    pub reason: DisconnectReason,
    /// Flush the queue before closing (else drop it and close at once).
    pub graceful: bool,
}

/// A session's state under its lock.
#[derive(Default)]
pub(crate) struct State {
    pub idx: u32,
    pub gen: u32,
    pub live: bool,
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub handle: Option<Handle>,
    pub queue: SendQueue,
    /// The receive operation in flight, if one is.
    pub recv_op: Option<OpId>,
    /// A kick packet is on its way to a worker.
    pub kick_posted: bool,
    /// A worker is running handler code for this session outside the lock
    /// (a final receive completion, or `on_connect`).
    pub recv_busy: bool,
    /// Waiting for pool buffers before re-arming the receive.
    pub starved: bool,
    /// Receiving is paused until the queue drains (back-pressure); no
    /// receive is re-armed while set.
    pub rx_paused: bool,
    /// The peer ended its stream while receiving was paused: once the
    /// input parked before it is delivered, the session closes.
    pub rx_eof: bool,
    /// A resume packet is on its way to a worker.
    pub resume_posted: bool,
    /// Tick since which the queue holds more than the cap (`NEVER`: it does not).
    pub over_cap_since: Tick,
    pub close: Option<Closing>,
    pub handle_closed: bool,
    /// Finalization is decided (exactly one party runs it).
    pub finalizing: bool,
    pub wheel_due: Tick,
    pub linger_due: Tick,
}

impl State {
    /// The state of a slot with no session: the next one gets generation `gen`.
    pub(crate) fn vacant(idx: u32, gen: u32) -> Self {
        State {
            idx,
            gen,
            wheel_due: NEVER,
            linger_due: NEVER,
            over_cap_since: NEVER,
            ..State::default()
        }
    }

    /// Holds the live session of generation `gen`.
    pub(crate) fn is(&self, gen: u32) -> bool {
        self.live && self.gen == gen
    }

    /// Accepts new sends for a handle of generation `gen`.
    pub(crate) fn open_for(&self, gen: u32) -> bool {
        self.is(gen) && self.close.is_none()
    }
}

pub(crate) struct Shared {
    pub port: Port,
    pub pool: BufPool,
    pub cfg: Config,
    pub slots: Table<Slot>,
    pub free: FreeList,
    pub wheel: Mutex<Wheel>,
    pub start: Instant,
    pub now: AtomicU32,
    pub stopping: AtomicBool,
    /// Set once shutdown is done with the port: the tick stops re-arming.
    pub finished: AtomicBool,
    /// Notified when the last session ends during shutdown (`counters.sessions` reaches 0).
    pub all_closed: (Mutex<()>, Condvar),
    pub starved: Mutex<Vec<(u32, u32)>>,
    pub starved_any: AtomicBool,
    pub retry_armed: AtomicBool,
    /// Sessions whose finalize packet could not be posted: the tick runs them.
    pub orphans: Mutex<Vec<(u32, u32)>>,
    pub counters: Counters,
    /// The next worker's counter shard.
    pub next_shard: AtomicUsize,
    pub next_id: AtomicU64,
    pub local_addrs: Vec<SocketAddr>,
    pub listeners: Vec<Handle>,
}

impl Shared {
    pub(crate) fn backend(&self) -> Backend {
        self.port.backend()
    }

    /// Marks the calling thread as one of this server's workers.
    pub(crate) fn enter_worker(&self) {
        let me = self as *const Shared as usize;
        WORKER_OF.with(|w| {
            if w.get().0 != me {
                // Each worker thread numbers itself once; past the expected
                // count (never, with the pool the server starts), the shared shard.
                let i = self.next_shard.fetch_add(1, Relaxed);
                let shard = if i < self.counters.worker_shards() {
                    Shard(i)
                } else {
                    Shard::SHARED
                };
                w.set((me, shard));
            }
        });
    }

    /// `true` on this server's worker threads.
    ///
    /// Operations are issued only from workers: on io_uring, the kernel runs
    /// an operation's completion work in the thread that submitted it, which
    /// would interrupt an application thread's blocking calls with `EINTR`.
    /// (As `Some(its counter shard)`.)
    pub(crate) fn worker(&self) -> Option<Shard> {
        WORKER_OF.with(|w| {
            let (of, shard) = w.get();
            (of == self as *const Shared as usize).then_some(shard)
        })
    }

    /// The calling thread's counter shard.
    pub(crate) fn shard(&self) -> Shard {
        self.worker().unwrap_or(Shard::SHARED)
    }

    /// Adds `n` to one of the calling thread's traffic counters.
    pub(crate) fn count(&self, pick: impl Fn(&Traffic) -> &AtomicU64, n: u64) {
        self.counters.traffic(self.shard(), pick, n);
    }

    /// Sessions open now.
    pub(crate) fn open_sessions(&self) -> usize {
        self.counters.sessions.load(SeqCst) as usize
    }

    /// The current coarse time (as of the last tick).
    pub(crate) fn now(&self) -> Tick {
        self.now.load(Relaxed)
    }

    /// How long until the next tick boundary: the tick timer is armed for
    /// it, so the coarse time never drifts behind the real one.
    pub(crate) fn until_next_tick(&self) -> Duration {
        let tick = self.cfg.tick.as_nanos().max(1);
        let into = self.start.elapsed().as_nanos() % tick;
        // A millisecond past the boundary: a timer that fires a hair early
        // must not read the tick before.
        Duration::from_nanos((tick - into) as u64) + Duration::from_millis(1)
    }

    /// Reads the clock and advances the coarse time.
    pub(crate) fn advance_clock(&self) -> Tick {
        let t = (self.start.elapsed().as_nanos() / self.cfg.tick.as_nanos().max(1)) as u64;
        let t = t.min(NEVER as u64 - 1) as Tick;
        self.now.store(t, Relaxed);
        t
    }

    /// Queues `item` on session (`idx`, `gen`) and starts a send if none is in flight.
    pub(crate) fn enqueue(&self, idx: u32, gen: u32, item: Item) -> Result<(), (SendErrorKind, Item)> {
        let Some(slot) = self.slots.get(idx) else {
            return Err((SendErrorKind::Closed, item));
        };
        let mut st = slot.state.lock();
        if !st.open_for(gen) {
            return Err((SendErrorKind::Closed, item));
        }
        let len = match &item {
            Item::Buf(b) => b.len(),
            Item::File { .. } => 0,
        };
        let queued = st.queue.held();
        // One message larger than the cap may go out on an empty queue: the
        // cap bounds what piles up, not what the application sends at once.
        // Past the cap a session has the slow-consumer timeout to drain
        // below it again, and may never hold twice the cap.
        let cap = self.cfg.max_queued;
        if queued > 0 && queued + len > cap {
            let now = self.now();
            if st.over_cap_since == NEVER {
                st.over_cap_since = now;
                self.schedule(&mut st, now.saturating_add(self.cfg.slow_ticks));
            }
            let stale = now >= st.over_cap_since.saturating_add(self.cfg.slow_ticks);
            if stale || queued + len > cap.saturating_mul(2) {
                let why = if stale {
                    "its queue stayed past the cap"
                } else {
                    "its queue would pass twice the cap"
                };
                let fin = self.cut_slow_consumer(slot, &mut st, why);
                drop(st);
                if fin {
                    self.post_finalize(idx, gen);
                }
                return Err((SendErrorKind::Overflow { queued, cap }, item));
            }
        }
        st.queue.push(item);
        if st.queue.backlog() > self.cfg.high_water && !slot.backed_up.load(Relaxed) {
            slot.backed_up.store(true, Relaxed);
        }
        let worker = self.worker();
        self.counters
            .traffic(worker.unwrap_or(Shard::SHARED), |t| &t.messages_out, 1);
        if worker.is_none() {
            if !st.kick_posted && !st.queue.in_flight() {
                st.kick_posted = true;
                if self.port.post(session_key(idx, gen), 0, CTX_KICK).is_ok() {
                    return Ok(());
                }
                st.kick_posted = false;
            } else {
                return Ok(());
            }
        }
        if self.kick(slot, &mut st) {
            drop(st);
            self.post_finalize(idx, gen);
        }
        Ok(())
    }

    /// Issues the next batch if nothing is in flight, or closes a graceful
    /// close whose queue has flushed. Returns `true` when the session must now
    /// be finalized (`check_finalize`, once).
    ///
    /// A send that the socket takes at once (epoll) comes back inline and is
    /// settled here, skipping its trip through the port; then whatever is
    /// queued behind it goes out the same way.
    pub(crate) fn kick(&self, slot: &Slot, st: &mut State) -> bool {
        loop {
            let h = match st.handle {
                Some(h) if !st.handle_closed => h,
                _ => return self.check_finalize(st),
            };
            let Some(batch) = st.queue.next_batch() else {
                // Nothing to send now. A graceful close that waited for the
                // queue to flush closes once it is idle.
                if st.queue.is_idle() && st.close.as_ref().is_some_and(|c| c.graceful) {
                    self.close_handle(st);
                }
                return self.check_finalize(st);
            };
            // Send completions jump the queue: a big batch of received data must not
            // hold up the completions that drain the send queues.
            let ctx = Ctx::high(CTX_SEND);
            let r = match batch {
                Batch::One(b) => self.port.try_send(&h, b, ctx),
                Batch::Many(v) => self.port.try_send_vectored(&h, v, ctx),
                Batch::File { file, offset, len } => {
                    self.port.send_file(&h, file, offset, len, ctx).map(Issued::Pending)
                }
            };
            match r {
                Ok(Issued::Pending(_)) => return self.check_finalize(st),
                Ok(Issued::Done(c)) => {
                    if self.settle_send(slot, st, c) {
                        return true;
                    }
                }
                Err(e) => {
                    st.queue.fail();
                    return self.begin_close(slot, st, DisconnectReason::Io(e.into()), false);
                }
            }
        }
    }

    /// Settles a finished send: counts it and completes the queue's batch,
    /// or fails the queue and starts closing. Returns `true` when the session
    /// must be finalized.
    pub(crate) fn settle_send(&self, slot: &Slot, st: &mut State, c: Completion) -> bool {
        let cancelled = c.is_cancelled() || c.is_shutdown();
        let (res, payload) = c.into_parts();
        match res {
            Ok(n) => {
                self.count(|t| &t.bytes_out, n as u64);
                slot.last_active.store(self.now(), Relaxed);
                let whole = match payload {
                    Payload::Buf(b) => {
                        st.queue.complete_one(n, b);
                        true
                    }
                    Payload::Bufs(v) => {
                        st.queue.complete_many(n, v);
                        true
                    }
                    Payload::File(f) => st.queue.complete_file(n as u64, f),
                    _ => {
                        st.queue.fail();
                        true
                    }
                };
                self.drained(slot, st);
                if whole {
                    false
                } else {
                    self.begin_close(slot, st, DisconnectReason::FileEnded, false)
                }
            }
            Err(e) => {
                st.queue.fail();
                drop(payload);
                if !cancelled {
                    tracing::debug!(server = %self.cfg.name, session = st.id, error = %e, "send failed");
                }
                self.begin_close(slot, st, DisconnectReason::Io(e), false)
            }
        }
    }

    /// After a send made progress: clears the back-up at the low-water mark
    /// (and has a worker resume a paused session's receiving), and stops
    /// the slow-consumer clock once the queue is back under the cap.
    fn drained(&self, slot: &Slot, st: &mut State) {
        if slot.backed_up.load(Relaxed) && st.queue.backlog() <= self.cfg.low_water {
            slot.backed_up.store(false, Relaxed);
            if st.rx_paused && !st.resume_posted && st.close.is_none() {
                st.resume_posted = self.port.post(session_key(st.idx, st.gen), 0, CTX_RESUME).is_ok();
            }
        }
        if st.over_cap_since != NEVER && st.queue.held() <= self.cfg.max_queued {
            st.over_cap_since = NEVER;
        }
    }

    /// Cuts off a session that has not read what it was sent for too long:
    /// what has not started to leave is dropped, a message already started
    /// is finished (never truncated mid-frame), then the session closes.
    /// Returns `true` when the caller must finalize it.
    pub(crate) fn cut_slow_consumer(&self, slot: &Slot, st: &mut State, why: &str) -> bool {
        let (queued, cap) = (st.queue.held(), self.cfg.max_queued);
        tracing::warn!(server = %self.cfg.name, session = st.id, queued, cap, "slow consumer cut off: {why}");
        st.queue.cut();
        let fin = self.begin_close(slot, st, DisconnectReason::SlowConsumer { queued, cap }, true);
        // The message already started gets the slow-consumer timeout to
        // finish, not the server's whole close linger (300 s for HTTP): a
        // peer that stopped reading would otherwise hold its place (and a
        // chat room's "left" notice) for minutes.
        let due = self.now().saturating_add(self.cfg.slow_ticks);
        if st.linger_due != NEVER && due < st.linger_due {
            st.linger_due = due;
            self.schedule(st, due);
        }
        fin
    }

    /// Starts closing a session (or makes a graceful close abortive). Returns
    /// `true` when the caller must finalize it (nothing is in flight any more).
    pub(crate) fn begin_close(&self, slot: &Slot, st: &mut State, reason: DisconnectReason, graceful: bool) -> bool {
        match &mut st.close {
            None => {
                st.close = Some(Closing { reason, graceful });
                slot.closing.store(true, Release);
            }
            Some(c) if c.graceful && !graceful => c.graceful = false,
            Some(_) => return self.check_finalize(st),
        }
        if graceful {
            if let Some(op) = st.recv_op {
                let _ = self.port.cancel_op(op); // its own port's op: never refused
            }
            if st.queue.is_idle() {
                self.close_handle(st);
            } else {
                st.linger_due = self.now().saturating_add(self.cfg.linger_ticks);
                self.schedule(st, st.linger_due);
            }
        } else {
            st.queue.clear_queued();
            self.close_handle(st);
        }
        self.check_finalize(st)
    }

    /// Closes the session's handle once: cancels what is in flight on it.
    pub(crate) fn close_handle(&self, st: &mut State) {
        if !st.handle_closed {
            if let Some(h) = st.handle {
                let _ = self.port.close(&h);
            }
            st.handle_closed = true;
        }
    }

    /// `true` (once) when a closing session has nothing left in flight.
    pub(crate) fn check_finalize(&self, st: &mut State) -> bool {
        let ready = st.live
            && st.close.is_some()
            && st.handle_closed
            && st.recv_op.is_none()
            && !st.recv_busy
            && !st.queue.in_flight()
            && !st.finalizing;
        if ready {
            st.finalizing = true;
        }
        ready
    }

    /// Asks a worker to finalize a session (from threads that are not workers).
    pub(crate) fn post_finalize(&self, idx: u32, gen: u32) {
        if self.port.post(session_key(idx, gen), 0, CTX_FINALIZE).is_err() {
            self.orphans.lock().push((idx, gen));
        }
    }

    /// Puts a timeout check for the session on the wheel at `due`, unless an
    /// earlier one is already there.
    pub(crate) fn schedule(&self, st: &mut State, due: Tick) {
        if due >= st.wheel_due {
            // (`NEVER` is the largest tick, so it never schedules.)
            return;
        }
        let due = self.wheel.lock().schedule(Entry {
            idx: st.idx,
            gen: st.gen,
            due,
        });
        st.wheel_due = due;
    }

    /// Notes that a session's receive found the pool empty; it is re-armed
    /// when buffers come back (a send completes) or after a short delay.
    pub(crate) fn starve(&self, st: &mut State) {
        st.starved = true;
        self.starved.lock().push((st.idx, st.gen));
        self.starved_any.store(true, Release);
        if !self.retry_armed.swap(true, AcqRel) && self.port.timeout(Duration::from_millis(2), CTX_RETRY).is_err() {
            self.retry_armed.store(false, Release);
        }
    }

    /// A paused session may resume now: its queue drained, nothing of its
    /// receive is in flight or being handled, and it is not closing.
    pub(crate) fn resume_ready(&self, slot: &Slot, st: &State) -> bool {
        st.rx_paused && st.close.is_none() && st.recv_op.is_none() && !st.recv_busy && !slot.holds_input()
    }

    /// Arms the session's receive. Returns `true` if that failed and the
    /// session must be finalized.
    pub(crate) fn arm_recv(&self, slot: &Slot, st: &mut State) -> bool {
        let Some(h) = st.handle else { return false };
        let r = if self.cfg.multishot {
            self.port.recv_pooled_multi(&h, &self.pool, CTX_RECV)
        } else {
            self.port.recv_pooled(&h, &self.pool, CTX_RECV)
        };
        match r {
            Ok(op) => {
                st.recv_op = Some(op);
                false
            }
            Err(e) => self.begin_close(slot, st, DisconnectReason::Io(e.into()), false),
        }
    }
}
