//! What every session handle and every worker share: the port, the session
//! slots, and the executor that carries out a session's actions.
//!
//! Locking: each session has its own small mutex (`Slot::state`); nothing
//! here takes a lock across sessions on the message path. The receive side
//! has a second per-session mutex in the dispatcher (taken first when both
//! are needed). The wheel, the free list and the starved list are global
//! but are touched only at connect, disconnect, tick and buffer exhaustion.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cport::{Backend, BufPool, Ctx, GenIndex, Handle, Issued, Port};
use parking_lot::{Condvar, Mutex};

use crate::config::{Config, NEVER};
use crate::context::{session_key, Context, Route, MAX_APP_TAG, SERVER_KEY};
use crate::error::DisconnectReason;
use crate::error::SendErrorKind;
use crate::lifecycle::{Action, Actions, Lifecycle, SlotFlags};
use crate::queue::{Batch, Item};
use crate::stats::{ServerCounters, Shard, Traffic};
use crate::table::{FreeList, Table};
use crate::timer::{next_tick_at, TimerPlan};
use crate::wheel::{Entry, Tick, Wheel};

thread_local! {
    /// The worker pool this thread belongs to (its `WorkerIds` address, or
    /// 0), and the worker's number in it (its counter shard).
    static WORKER_OF: std::cell::Cell<(usize, Shard)> = const { std::cell::Cell::new((0, Shard::SHARED)) };
}

/// The worker pool a server's completions run on: its own, or a
/// [`Runtime`](crate::Runtime)'s shared by several servers. Each thread of
/// the pool numbers itself once; the number picks its counter shard in
/// every server on the pool.
#[derive(Debug, Default)]
pub(crate) struct WorkerIds {
    next: AtomicUsize,
}

impl WorkerIds {
    /// Marks the calling thread as one of this pool's workers (numbered on
    /// its first call).
    pub(crate) fn enter(self: &Arc<Self>) {
        let me = Arc::as_ptr(self) as usize;
        WORKER_OF.with(|w| {
            if w.get().0 != me {
                w.set((me, Shard(self.next.fetch_add(1, Relaxed))));
            }
        });
    }

    /// The calling thread's number, if it is one of this pool's workers.
    pub(crate) fn current(self: &Arc<Self>) -> Option<Shard> {
        WORKER_OF.with(|w| {
            let (of, shard) = w.get();
            (of == Arc::as_ptr(self) as usize).then_some(shard)
        })
    }
}

/// How soon a receive that found the pool empty is tried again, if no
/// send completes (which gives buffers back) before.
const STARVED_RETRY: Duration = Duration::from_millis(2);

/// One session slot: the state machine under its lock, and the flags the
/// receive path reads without it.
#[derive(Default)]
pub(crate) struct Slot {
    pub flags: SlotFlags,
    pub state: Mutex<Lifecycle>,
}

/// What a session's actions leave for the caller to do once the session's
/// lock is released (both run handler code).
#[derive(Debug, Default, Clone, Copy)]
#[must_use]
pub(crate) struct Followup {
    /// End the session: a worker runs `Dispatcher::finalize`; any other
    /// caller hands it over with [`ServerCore::defer_finalize`].
    pub finalize: bool,
    /// Run the handler's timer (only the dispatcher's timeout checks ask).
    pub fire_timer: bool,
}

pub(crate) struct ServerCore {
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
    /// Sessions whose receive found the buffer pool empty ("starved" of
    /// buffers; the scheduler's "starved" is of threads).
    pub starved: Mutex<Vec<GenIndex>>,
    /// `starved` is not empty (read without its lock on every completion).
    pub starved_any: AtomicBool,
    /// The server's one port timer: what is in flight.
    pub timer: Mutex<TimerPlan>,
    /// Sessions whose end was decided on a thread that cannot run it (not a
    /// worker, or inside a handler call): a worker finalizes them, woken by
    /// one `Context::Finalize` packet (or, if that cannot be posted, by the
    /// next tick).
    pub to_finalize: Mutex<Vec<GenIndex>>,
    /// A `Context::Finalize` packet is on its way.
    pub finalize_posted: AtomicBool,
    pub counters: ServerCounters,
    /// The pool whose threads are this server's workers.
    pub workers: Arc<WorkerIds>,
    /// This server's byte in its completions' context words (0 with a port
    /// of its own).
    pub route: Route,
    pub next_id: AtomicU64,
    pub local_addrs: Vec<SocketAddr>,
    pub listeners: Vec<Handle>,
}

impl ServerCore {
    pub(crate) fn backend(&self) -> Backend {
        self.port.backend()
    }

    /// Marks the calling thread as one of this server's workers.
    pub(crate) fn enter_worker(&self) {
        self.workers.enter();
    }

    /// `true` on this server's worker threads (those of its pool, which on
    /// a [`Runtime`](crate::Runtime) serve its other servers too).
    ///
    /// Operations are issued only from workers: on io_uring, the kernel runs
    /// an operation's completion work in the thread that submitted it, which
    /// would interrupt an application thread's blocking calls with `EINTR`.
    /// (As `Some(its counter shard)`; past the shards counted, which never
    /// happens with the pool the server was built for, the shared one.)
    pub(crate) fn worker(&self) -> Option<Shard> {
        self.workers.current().map(|s| {
            if s.0 < self.counters.worker_shards() {
                s
            } else {
                Shard::SHARED
            }
        })
    }

    /// `c`'s context for this server's operations and packets.
    pub(crate) fn ctx(&self, c: Context) -> Ctx {
        c.ctx(self.route)
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

    /// Arms the timer for the next tick boundary.
    pub(crate) fn wake_at_next_tick(&self) {
        self.wake_at(next_tick_at(self.start.elapsed(), self.cfg.tick));
    }

    /// Reads the clock and advances the coarse time.
    pub(crate) fn advance_clock(&self) -> Tick {
        let t = (self.start.elapsed().as_nanos() / self.cfg.tick.as_nanos().max(1)) as u64;
        let t = t.min(NEVER as u64 - 1) as Tick;
        self.now.store(t, Relaxed);
        t
    }

    /// Queues `item` on session (`idx`, `gen`) and starts a send if none is
    /// in flight (a worker issues it at once; other threads post it to one).
    pub(crate) fn enqueue(&self, idx: u32, gen: u32, item: Item) -> Result<(), (SendErrorKind, Item)> {
        let Some(slot) = self.slots.get(idx) else {
            return Err((SendErrorKind::Closed, item));
        };
        let mut st = slot.state.lock();
        if !st.open_for(gen) {
            return Err((SendErrorKind::Closed, item));
        }
        let worker = self.worker();
        let mut out = Actions::default();
        let r = st.enqueue(item, worker.is_some(), self.now(), &self.cfg, &slot.flags, &mut out);
        if r.is_ok() {
            self.counters
                .traffic(worker.unwrap_or(Shard::SHARED), |t| &t.messages_out, 1);
        }
        let next = self.apply(&slot.flags, &mut st, &mut out);
        drop(st);
        self.follow_up_elsewhere(idx, gen, next);
        r
    }

    /// Starts closing session (`idx`, `gen`) from outside the dispatcher
    /// (the application, the shutdown).
    pub(crate) fn close_session(&self, idx: u32, gen: u32, reason: DisconnectReason, graceful: bool) {
        let Some(slot) = self.slots.get(idx) else { return };
        let mut st = slot.state.lock();
        if !st.is(gen) || st.finalizing {
            return;
        }
        let mut out = Actions::default();
        st.close(reason, graceful, self.now(), &self.cfg, &slot.flags, &mut out);
        let next = self.apply(&slot.flags, &mut st, &mut out);
        drop(st);
        self.follow_up_elsewhere(idx, gen, next);
    }

    /// Sets or clears the handler's timer of session (`idx`, `gen`).
    pub(crate) fn set_timer(&self, idx: u32, gen: u32, after: Option<Duration>) {
        let Some(slot) = self.slots.get(idx) else { return };
        let mut st = slot.state.lock();
        if !st.is(gen) {
            return;
        }
        let mut out = Actions::default();
        let after = after.map(|d| Config::ticks(self.cfg.tick, d));
        st.set_timer(after, self.now(), &mut out);
        let next = self.apply(&slot.flags, &mut st, &mut out);
        drop(st);
        self.follow_up_elsewhere(idx, gen, next);
    }

    /// The handler holds session (`idx`, `gen`)'s input back.
    pub(crate) fn hold_input(&self, idx: u32, gen: u32) {
        let Some(slot) = self.slots.get(idx) else { return };
        let mut st = slot.state.lock();
        if st.is(gen) {
            st.hold(&slot.flags);
        }
    }

    /// The handler lets go of session (`idx`, `gen`)'s input: a worker runs
    /// its `on_resume` and resumes receiving.
    pub(crate) fn release_input(&self, idx: u32, gen: u32) {
        let Some(slot) = self.slots.get(idx) else { return };
        let mut st = slot.state.lock();
        if !st.is(gen) {
            return;
        }
        let mut out = Actions::default();
        st.release(&slot.flags, &mut out);
        let next = self.apply(&slot.flags, &mut st, &mut out);
        drop(st);
        self.follow_up_elsewhere(idx, gen, next);
    }

    /// What is left after actions run outside the dispatcher: a finalize
    /// goes to a worker.
    fn follow_up_elsewhere(&self, idx: u32, gen: u32, next: Followup) {
        if next.finalize {
            self.defer_finalize(GenIndex::new(idx, gen));
        }
    }

    /// Carries out a session's actions on the port, the wheel and the
    /// starved list, under the session's lock (what an action reports back,
    /// such as a send the socket took at once, feeds the state machine and
    /// may add actions). What must wait for the lock's release is returned.
    pub(crate) fn apply(&self, f: &SlotFlags, st: &mut Lifecycle, out: &mut Actions) -> Followup {
        let mut next = Followup::default();
        let session = GenIndex::new(st.idx, st.gen);
        let key = session_key(session);
        while let Some(a) = out.pop() {
            match a {
                Action::Send(h, batch) => {
                    // Send completions jump the queue: a big batch of received
                    // data must not hold up the completions that drain the
                    // send queues. A send the socket takes at once (epoll)
                    // comes back inline and is settled here, skipping its
                    // trip through the port.
                    let ctx = Context::Send.high(self.route);
                    let r = match batch {
                        Batch::One(b) => self.port.try_send(&h, b, ctx),
                        Batch::Many(v) => self.port.try_send_vectored(&h, v, ctx),
                        Batch::File { file, offset, len } => {
                            self.port.send_file(&h, file, offset, len, ctx).map(Issued::Pending)
                        }
                    };
                    match r {
                        Ok(Issued::Pending(_)) => {}
                        Ok(Issued::Done(c)) => {
                            let cancelled = c.is_cancelled() || c.is_shutdown();
                            let (res, payload) = c.into_parts();
                            let n = st.on_sent(res, payload, cancelled, self.now(), &self.cfg, f, out);
                            self.count(|t| &t.bytes_out, n as u64);
                        }
                        Err(e) => st.send_refused(e.into(), self.now(), &self.cfg, f, out),
                    }
                }
                Action::ArmRecv(h) => {
                    let r = if self.cfg.multishot {
                        self.port.recv_pooled_multi(&h, &self.pool, self.ctx(Context::Recv))
                    } else {
                        self.port.recv_pooled(&h, &self.pool, self.ctx(Context::Recv))
                    };
                    st.recv_armed(r.map_err(Into::into), self.now(), &self.cfg, f, out);
                }
                Action::CancelRecv(op) => {
                    let _ = self.port.cancel_op(op); // its own port's op: never refused
                }
                Action::CloseHandle(h) => {
                    let _ = self.port.close(&h);
                }
                Action::Schedule(due) => {
                    st.wheel_due = self.wheel.lock().schedule(Entry { session, due });
                }
                Action::PostSend => {
                    if self.port.post(key, 0, self.ctx(Context::SendQueued)).is_err() {
                        // The port's queue is full: issue it from here.
                        st.send_posted = false;
                        st.transmit(out);
                    }
                }
                Action::PostResume => {
                    st.resume_posted = self.port.post(key, 0, self.ctx(Context::Resume)).is_ok();
                }
                Action::PostRelease => {
                    st.release_posted = self.port.post(key, 0, self.ctx(Context::Release)).is_ok();
                }
                Action::Starved => {
                    self.starved.lock().push(session);
                    self.starved_any.store(true, Release);
                    self.wake_at(self.start.elapsed() + STARVED_RETRY);
                }
                Action::FireTimer => next.fire_timer = true,
                Action::Finalize => next.finalize = true,
            }
        }
        next
    }

    /// Hands the end of a session to a worker: the one way a thread that
    /// cannot run `on_disconnect` itself gets it run.
    pub(crate) fn defer_finalize(&self, k: GenIndex) {
        self.to_finalize.lock().push(k);
        if !self.finalize_posted.swap(true, AcqRel)
            && self.port.post(SERVER_KEY, 0, self.ctx(Context::Finalize)).is_err()
        {
            // Full or shutting down: the next tick finalizes the list.
            self.finalize_posted.store(false, Release);
        }
    }

    /// The sessions waiting to be finalized (for a worker to finalize).
    pub(crate) fn take_to_finalize(&self) -> Vec<GenIndex> {
        self.finalize_posted.store(false, Release);
        std::mem::take(&mut *self.to_finalize.lock())
    }

    /// Has the server's timer wake a worker at `at` (since the server
    /// started), unless a timeout in flight fires by then.
    pub(crate) fn wake_at(&self, at: Duration) {
        // Whole microseconds: the completion names the deadline exactly.
        let at = Duration::from_micros(at.as_micros().min(MAX_APP_TAG as u128) as u64);
        let now = self.start.elapsed();
        let mut plan = self.timer.lock();
        if let Some(after) = plan.want(at, now) {
            let ctx = self.ctx(Context::Timer(at.as_micros() as u64));
            if self.port.timeout(after, ctx).is_err() {
                plan.failed(at);
            }
        }
    }
}
