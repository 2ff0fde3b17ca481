//! The completion port: association, issuing, dequeuing, posting, cancelling.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use socket2::SockAddr;

use crate::backend::Backend;
use crate::completion::{Completion, Issued, Meta, SubmitError};
use crate::error::{BuildError, GetError, ShutDownError, SubmitErrorKind};
use crate::handle::{HandleTable, Released};
use crate::id::{Handle, OpId};
use crate::introspect::{self, InFlightOp, Introspect, Snapshot, WorkerSnapshot};
use crate::key::{Ctx, Key, Priority};
use crate::kind::OpKind;
use crate::monitor::{start_monitor, DelayHistogram};
use crate::sched::{Prioritized, Sched, Waiter, WaiterRef};
use crate::stats::{Counters, Stats, ThreadCounters};
use crate::sys::buf::{Buf, BufPool, Datagram, Payload};
use crate::sys::{self, CancelTarget, Driver, Op, QueueCount};

/// What issuing does when the queue limit is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FullPolicy {
    /// Return [`SubmitErrorKind::QueueFull`] at once (the default).
    #[default]
    Fail,
    /// Block the issuing thread until there is room. Do not use this from the
    /// only thread that dequeues: nothing would make room.
    Wait,
}

/// Configures a [`Port`] (IOCP's `CreateIoCompletionPort` with a null handle).
#[derive(Clone, Debug)]
pub struct PortBuilder {
    concurrency: usize,
    queue_limit: usize,
    full_policy: FullPolicy,
    ring_entries: u32,
    backend: Backend,
    use_env: bool,
    batch: bool,
    handoff: bool,
    introspect: bool,
    stuck_after: Duration,
}

impl Default for PortBuilder {
    fn default() -> Self {
        PortBuilder {
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_limit: 1 << 20,
            full_policy: FullPolicy::Fail,
            ring_entries: 4096,
            backend: Backend::Auto,
            use_env: true,
            batch: true,
            handoff: true,
            introspect: true,
            stuck_after: introspect::STUCK_AFTER,
        }
    }
}

impl PortBuilder {
    /// At most this many threads run completions at once (default: available parallelism).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// The cap on operations in flight plus completions queued (default 2^20).
    /// Multishot deliveries count too: one that fills the queue ends its
    /// operation with `ENOBUFS`.
    pub fn queue_limit(mut self, n: usize) -> Self {
        self.queue_limit = n;
        self
    }
    /// Fail or wait when the queue limit is reached.
    pub fn full_policy(mut self, p: FullPolicy) -> Self {
        self.full_policy = p;
        self
    }
    /// Submission ring size (io_uring; a hint for epoll's event batch). Default 4096.
    pub fn ring_entries(mut self, n: u32) -> Self {
        self.ring_entries = n;
        self
    }
    /// Which backend to use. `CPORT_BACKEND` still overrides `Auto` unless
    /// [`ignore_env`](Self::ignore_env) is set.
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// Whether operations issued by a thread that is running a completion
    /// wait for that thread's next `get` to be submitted, in one batch (the
    /// default, and the reason the port needs far fewer than one system call
    /// per operation), or are submitted one by one at once.
    pub fn batch_submissions(mut self, on: bool) -> Self {
        self.batch = on;
        self
    }

    /// Whether a worker that blocks in the kernel while holding a slot
    /// lets a waiting worker run in its place, as IOCP does (default on;
    /// `CPORT_HANDOFF=off` turns it off unless [`ignore_env`](Self::ignore_env)
    /// is set). How the port finds blocked workers, and the rule when they
    /// come back: `docs/ARCHITECTURE.md`, "Blocked workers".
    pub fn handoff(mut self, on: bool) -> Self {
        self.handoff = on;
        self
    }

    /// Whether the port keeps the figures of [`Port::snapshot`]: each
    /// operation's issue time (ages in flight, latency by kind) and a
    /// watchdog that reports stuck operations (default on;
    /// `CPORT_INTROSPECT=off` turns it off unless
    /// [`ignore_env`](Self::ignore_env) is set). Costs one clock read per
    /// issue and one per batch of completions: `docs/ARCHITECTURE.md`,
    /// "Introspection".
    pub fn introspect(mut self, on: bool) -> Self {
        self.introspect = on;
        self
    }

    /// An operation that can only wait on this side (a send, connect, file
    /// operation; not a receive or accept, which wait for a peer) with no
    /// progress for longer than this is logged once, with its key, kind,
    /// handle and age, and counted in [`Snapshot::stuck`]. Default 30 s.
    pub fn stuck_after(mut self, t: Duration) -> Self {
        self.stuck_after = t;
        self
    }

    /// Ignore `CPORT_BACKEND`, `CPORT_HANDOFF` and `CPORT_INTROSPECT`.
    pub fn ignore_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// Builds the port.
    ///
    /// # Errors
    /// [`BuildError::IoUringUnavailable`] when io_uring was required and the
    /// kernel refused it (the message names ENOSYS, EPERM, the sysctl...),
    /// [`BuildError::Epoll`] when epoll setup fails, [`BuildError::Config`]
    /// for out-of-range settings.
    pub fn build(mut self) -> Result<Port, BuildError> {
        if self.concurrency == 0 {
            return Err(BuildError::Config("concurrency must be at least 1"));
        }
        if self.queue_limit == 0 {
            return Err(BuildError::Config("queue_limit must be at least 1"));
        }
        if self.ring_entries == 0 || self.ring_entries > 32768 {
            return Err(BuildError::Config("ring_entries must be in 1..=32768"));
        }
        let mut wanted = self.backend;
        if self.use_env && wanted == Backend::Auto {
            if let Ok(v) = std::env::var("CPORT_BACKEND") {
                wanted = Backend::parse(&v).ok_or(BuildError::Config("CPORT_BACKEND must be auto, uring or epoll"))?;
            }
        }
        if self.use_env {
            match std::env::var("CPORT_HANDOFF").as_deref() {
                Ok("off" | "0" | "false") => self.handoff = false,
                Ok("on" | "1" | "true") | Err(_) => {}
                Ok(_) => return Err(BuildError::Config("CPORT_HANDOFF must be on or off")),
            }
            match std::env::var("CPORT_INTROSPECT").as_deref() {
                Ok("off" | "0" | "false") => self.introspect = false,
                Ok("on" | "1" | "true") | Err(_) => {}
                Ok(_) => return Err(BuildError::Config("CPORT_INTROSPECT must be on or off")),
            }
        }
        let queue = Arc::new(QueueCount::new(self.queue_limit));
        let driver: Box<dyn Driver> = match wanted {
            Backend::IoUring => Box::new(sys::uring::Uring::new(self.ring_entries, queue.clone())?),
            Backend::Epoll => sys::epoll::new_driver(self.ring_entries, queue.clone())?,
            Backend::Auto => match sys::uring::Uring::new(self.ring_entries, queue.clone()) {
                Ok(u) => {
                    tracing::info!(backend = "uring", "completion port on io_uring");
                    Box::new(u)
                }
                Err(e) => {
                    tracing::warn!(backend = "epoll", reason = %e, "io_uring unavailable; completion port falls back to epoll");
                    let ep = sys::epoll::new_driver(self.ring_entries, queue.clone())?;
                    return Ok(Port::from_driver(self, ep, queue, Some(e.to_string())));
                }
            },
        };
        Ok(Port::from_driver(self, driver, queue, None))
    }
}

/// The port itself, shared by every clone of [`Port`] (and its handles):
/// its driver, scheduler, handle table, counters and queue limit.
struct Shared {
    /// This port's identity, carried by its handles and op ids.
    id: u32,
    driver: Box<dyn Driver>,
    /// Shared with the hand-off monitor, which must not keep the port alive.
    sched: Arc<Sched<Completion>>,
    /// How long blocked holders kept their slot before hand-off.
    handoff_delays: Arc<DelayHistogram>,
    /// The hand-off monitor's thread, joined when the port goes.
    monitor: Mutex<Option<std::thread::JoinHandle<()>>>,
    handles: Mutex<HandleTable>,
    counters: Counters,
    threads: Mutex<Vec<Arc<ThreadCounters>>>,
    queue_limit: usize,
    full_policy: FullPolicy,
    /// Operations in flight plus completions queued (shared with the driver).
    outstanding: Arc<QueueCount>,
    room: (Mutex<()>, Condvar),
    room_waiters: AtomicUsize,
    batch: bool,
    shut_down: AtomicBool,
    fallback_reason: Option<String>,
    /// Issue stamps, latency recorders, stuck reports (`introspect.rs`).
    introspect: Arc<Introspect>,
    /// The stuck-op watchdog's thread, joined when the port goes.
    watchdog: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Prioritized for Completion {
    fn is_high(&self) -> bool {
        self.priority() == Priority::High
    }
    fn ends_batch(&self) -> bool {
        self.kind() == OpKind::Quit
    }
}

/// A completion port. Cheap to clone: every clone is the same port, and it is
/// `Send + Sync`, so any thread may issue operations and any thread may
/// dequeue any completion.
///
/// Dropping the last clone shuts the port down: it cancels what is in flight
/// and waits until the kernel is done with every buffer before freeing it.
#[derive(Clone)]
pub struct Port {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port").field("backend", &self.backend()).finish()
    }
}

/// Port identities: process-unique until 2^32 ports have been built.
static NEXT_PORT_ID: AtomicU32 = AtomicU32::new(1);

/// Per-thread records kept before finished threads' are dropped.
const MAX_THREAD_RECORDS: usize = 256;

/// This thread's standing with one port.
struct Local {
    port_id: u32,
    port: Weak<Shared>,
    holds_slot: bool,
    waiter: WaiterRef<Completion>,
    counters: Arc<ThreadCounters>,
    batch: Vec<Completion>,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.counters.thread_ended();
        if let Some(p) = self.port.upgrade() {
            // A thread that exits while holding a slot gives it back.
            if self.holds_slot && p.sched.release_by(&self.waiter) {
                p.driver.wake();
            }
            p.sched.unregister(&self.waiter);
        }
    }
}

thread_local! {
    static LOCALS: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

impl Port {
    /// A builder with the defaults.
    pub fn builder() -> PortBuilder {
        PortBuilder::default()
    }

    /// A port with the defaults (IOCP's `CreateIoCompletionPort(INVALID_HANDLE_VALUE, ...)`).
    ///
    /// # Errors
    /// See [`PortBuilder::build`].
    pub fn new() -> Result<Port, BuildError> {
        Self::builder().build()
    }

    fn from_driver(
        b: PortBuilder,
        driver: Box<dyn Driver>,
        queue: Arc<QueueCount>,
        fallback_reason: Option<String>,
    ) -> Port {
        let id = NEXT_PORT_ID.fetch_add(1, Relaxed);
        let port = Port {
            shared: Arc::new(Shared {
                id,
                driver,
                sched: Arc::new(Sched::new(b.concurrency)),
                handoff_delays: Arc::default(),
                monitor: Mutex::new(None),
                handles: Mutex::new(HandleTable::new(id)),
                counters: Counters::default(),
                threads: Mutex::new(Vec::new()),
                queue_limit: b.queue_limit,
                full_policy: b.full_policy,
                outstanding: queue,
                room: (Mutex::new(()), Condvar::new()),
                room_waiters: AtomicUsize::new(0),
                batch: b.batch,
                shut_down: AtomicBool::new(false),
                fallback_reason,
                introspect: Arc::new(Introspect::new(id, b.introspect, b.stuck_after)),
                watchdog: Mutex::new(None),
            }),
        };
        if b.handoff {
            port.start_handoff();
        }
        if b.introspect {
            port.start_watchdog();
        }
        port
    }

    /// Turns automatic hand-off on: starts the monitor that finds blocked
    /// slot holders (see `handoff`). Without a thread for it, the port runs
    /// without hand-off and says so.
    fn start_handoff(&self) {
        let s = &self.shared;
        let weak = Arc::downgrade(s);
        let wake = move || {
            if let Some(p) = weak.upgrade() {
                p.driver.wake();
            }
        };
        match start_monitor(s.sched.clone(), s.handoff_delays.clone(), wake) {
            Ok(t) => {
                s.sched.set_handoff(true);
                *s.monitor.lock() = Some(t);
            }
            Err(e) => {
                tracing::warn!(error = %e, "no thread for the hand-off monitor: blocked workers keep their slots")
            }
        }
    }

    /// Starts the thread that looks for stuck operations (see `introspect`).
    /// It holds the port weakly, and the port stops and joins it at drop.
    fn start_watchdog(&self) {
        let weak = Arc::downgrade(&self.shared);
        let intro = self.shared.introspect.clone();
        let spawned = std::thread::Builder::new().name("cport-watch".into()).spawn(move || {
            while intro.sleep() {
                let Some(p) = weak.upgrade() else { return };
                intro.look_for_stuck(|f| p.driver.visit_in_flight(f));
            }
        });
        match spawned {
            Ok(t) => *self.shared.watchdog.lock() = Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "no thread for the stuck-operation watchdog: stuck operations go unreported")
            }
        }
    }

    /// The backend in use (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.shared.driver.backend()
    }

    /// Whether `other` is this same port (a clone of it).
    pub fn same_port(&self, other: &Port) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Why `Auto` fell back to epoll, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.shared.fallback_reason.as_deref()
    }

    /// Associates an I/O object with the port under `key` (IOCP's
    /// `CreateIoCompletionPort(handle, port, key)`). The port takes ownership
    /// of the fd and closes it on [`close`](Self::close) or at drop.
    ///
    /// # Errors
    /// When the fd cannot be put in the mode the backend needs.
    pub fn associate(&self, io: impl Into<OwnedFd>, key: Key) -> io::Result<Handle> {
        let fd: OwnedFd = io.into();
        self.shared.driver.prepare_fd(fd.as_fd())?;
        Ok(self.shared.handles.lock().insert(fd, key))
    }

    // ----- issuing -------------------------------------------------------

    fn reserve(&self) -> Result<(), SubmitErrorKind> {
        let s = &self.shared;
        loop {
            if s.shut_down.load(Acquire) {
                return Err(SubmitErrorKind::ShutDown);
            }
            let prev = s.outstanding.n.fetch_add(1, SeqCst);
            if prev < s.queue_limit {
                return Ok(());
            }
            s.outstanding.n.fetch_sub(1, SeqCst);
            if s.full_policy == FullPolicy::Fail {
                return Err(SubmitErrorKind::QueueFull);
            }
            let mut g = s.room.0.lock();
            s.room_waiters.fetch_add(1, SeqCst);
            if s.outstanding.n.load(SeqCst) >= s.queue_limit && !s.shut_down.load(Acquire) {
                s.room.1.wait_for(&mut g, Duration::from_millis(100));
            }
            s.room_waiters.fetch_sub(1, SeqCst);
        }
    }

    fn unreserve(&self, n: usize) {
        let s = &self.shared;
        s.outstanding.n.fetch_sub(n, SeqCst);
        if s.room_waiters.load(SeqCst) > 0 {
            let _g = s.room.0.lock();
            s.room.1.notify_all();
        }
    }

    /// Starts an operation on no handle (nop, timeout). On refusal the op's
    /// buffers come back.
    fn issue_unbound(&self, kind: OpKind, ctx: Ctx, op: Op) -> Result<OpId, SubmitError> {
        if let Err(k) = self.reserve() {
            return Err(SubmitError::new(k, op.into_payload()));
        }
        let mut meta = Meta::new(self.shared.id, Key(0), ctx, kind, None);
        self.shared.introspect.stamp(&mut meta, false);
        let pushed = self.shared.driver.push(meta, op, false);
        if let Ok(Issued::Pending(id)) = &pushed {
            self.shared.introspect.issued(&meta, *id);
        }
        match self.after_issue(pushed.map_err(|(k, op)| (k, op.into_payload())))? {
            Issued::Pending(id) => Ok(id),
            Issued::Done(_) => unreachable!("only an inline issue finishes at once"),
        }
    }

    /// Starts an operation on `h`: `build` makes it, whole, from the
    /// handle's fd and what the caller hands over (`owned`). On refusal
    /// `owned` comes back in the error.
    fn issue<T: Owned>(
        &self,
        h: &Handle,
        kind: OpKind,
        ctx: Ctx,
        owned: T,
        build: impl FnOnce(RawFd, T) -> Op,
    ) -> Result<OpId, SubmitError> {
        match self.issue_as(h, kind, ctx, owned, build, false)? {
            Issued::Pending(id) => Ok(id),
            Issued::Done(_) => unreachable!("only an inline issue finishes at once"),
        }
    }

    /// `issue`; with `inline`, an op that finishes while being pushed comes
    /// back as its completion instead of being queued, settled here as `get`
    /// would settle it.
    ///
    /// The push happens under the handle table's lock, so a concurrent
    /// `close` or `cancel` of `h` is ordered wholly before or after it: an
    /// op can never slip in behind the cancel meant for it.
    fn issue_as<T: Owned>(
        &self,
        h: &Handle,
        kind: OpKind,
        ctx: Ctx,
        owned: T,
        build: impl FnOnce(RawFd, T) -> Op,
        inline: bool,
    ) -> Result<Issued, SubmitError> {
        if let Err(k) = self.reserve() {
            return Err(SubmitError::new(k, owned.into_payload()));
        }
        let mut closed = None;
        let pushed = {
            let mut table = self.shared.handles.lock();
            match table.begin_op(h) {
                Ok(fd) => {
                    let mut meta = Meta::new(self.shared.id, h.key, ctx, kind, Some(h));
                    let op = build(fd, owned);
                    self.shared.introspect.stamp(&mut meta, op.is_multishot());
                    let r = self.shared.driver.push(meta, op, inline);
                    if let Ok(Issued::Pending(id)) = &r {
                        self.shared.introspect.issued(&meta, *id);
                    }
                    if !matches!(r, Ok(Issued::Pending(_))) {
                        // Failed or finished: the op no longer holds the handle.
                        if let Released::Close(fd) = table.end_op(h.slot.index()) {
                            closed = Some(fd);
                        }
                    }
                    r.map_err(|(k, op)| (k, op.into_payload()))
                }
                Err(k) => Err((k, owned.into_payload())),
            }
        };
        if let Some(fd) = closed {
            self.close_fds(vec![fd]);
        }
        self.after_issue(pushed)
    }

    /// What the caller of `issue_*` gets for a push: an id, a completion
    /// finished inline (settled here), or the refusal with its buffers.
    fn after_issue(&self, pushed: Result<Issued, (SubmitErrorKind, Payload)>) -> Result<Issued, SubmitError> {
        match pushed {
            Ok(Issued::Pending(id)) => {
                self.after_push();
                Ok(Issued::Pending(id))
            }
            Ok(Issued::Done(mut c)) => {
                if c.is_cancelled() && self.shared.shut_down.load(Acquire) {
                    c.result = Err(ShutDownError::io()); // as `lead` marks them
                }
                self.unreserve(1);
                self.count_inline(&c);
                self.shared.introspect.completed(std::slice::from_ref(&c));
                Ok(Issued::Done(c))
            }
            Err((k, payload)) => {
                self.unreserve(1);
                Err(SubmitError::new(k, payload))
            }
        }
    }

    /// Counts a completion handed back inline, in the issuing thread's
    /// counters when it has them.
    fn count_inline(&self, c: &Completion) {
        let ok = c.result.is_ok();
        let counted = LOCALS.with(|l| {
            let l = l.borrow();
            let x = l.iter().find(|x| x.port_id == self.shared.id);
            x.inspect(|x| x.counters.record(c.kind(), ok)).is_some()
        });
        if !counted {
            self.shared.counters.record_shared(c.kind(), ok);
        }
    }

    /// A thread running a completion leaves its operations for its own next
    /// `get` (one kernel call per batch). Any other thread wakes the leader,
    /// if one sleeps in the kernel, so that it submits them: only threads
    /// that dequeue ever enter the ring (see `sys::uring`).
    fn after_push(&self) {
        let in_handler = LOCALS.with(|l| l.borrow().iter().any(|x| x.port_id == self.shared.id && x.holds_slot));
        if in_handler {
            if !self.shared.batch {
                self.shared.driver.submit_now();
            }
            return;
        }
        if self.shared.sched.has_leader() {
            self.shared.driver.flush();
        }
    }

    /// Closes fds whose handles finished closing, after the backend forgets them.
    fn close_fds(&self, fds: Vec<OwnedFd>) {
        for fd in fds {
            use std::os::fd::AsRawFd;
            self.shared.driver.forget_fd(fd.as_raw_fd());
            drop(fd);
        }
    }

    /// Submits every operation issued so far now, instead of at the next
    /// `get`: when it returns, everything issued before it (by any thread)
    /// is in the kernel. Useful before a handler does something long or
    /// waits for that I/O itself.
    ///
    /// When a thread waits in the kernel for this port, that thread is woken
    /// to submit and `flush` waits for it. Otherwise (every slot held by a
    /// handler, nobody waiting) the calling thread submits itself: on
    /// io_uring its own later blocking calls may then see `EINTR` when those
    /// operations complete, as for any thread that dequeues.
    pub fn flush(&self) {
        let s = &*self.shared;
        let mark = s.driver.submit_mark();
        let give_up = Instant::now() + Duration::from_secs(5);
        let mut batch = Vec::new();
        while !s.driver.wait_submitted(mark, Duration::ZERO) {
            match s.sched.lead_now(&mut batch, &mut |d, out| self.lead(d, out)) {
                // This thread submitted (or the backend failed: nothing to wait for).
                Some(_) => return,
                None => {
                    s.driver.wake();
                    if s.driver.wait_submitted(mark, Duration::from_millis(1)) || Instant::now() >= give_up {
                        return;
                    }
                }
            }
        }
    }

    /// Does nothing, then completes: a round trip through the backend.
    ///
    /// # Errors
    /// [`SubmitError`] when the port is full or shut down.
    pub fn nop(&self, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.issue_unbound(OpKind::Nop, ctx.into(), Op::Nop)
    }

    /// Completes (with `Ok(0)`) after `dur` (IOCP users reach for timer queues).
    ///
    /// # Errors
    /// As for [`nop`](Self::nop).
    pub fn timeout(&self, dur: Duration, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.issue_unbound(OpKind::Timeout, ctx.into(), Op::Timeout { dur })
    }

    /// Accepts one connection on a listening handle (AcceptEx). The completion
    /// carries the new stream in [`Payload::Accepted`]; associate it to use it.
    ///
    /// # Errors
    /// [`SubmitError`] for a closed handle, a full queue, or shutdown.
    pub fn accept(&self, listener: &Handle, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let accept = |fd, ()| Op::Accept { fd, multishot: false };
        self.issue(listener, OpKind::Accept, ctx.into(), (), accept)
    }

    /// Keeps accepting without re-posting: one completion per connection, each
    /// with [`Completion::more`] set while the accept stays armed.
    ///
    /// A delivery that fills the port's queue to its limit ends the accept:
    /// the final completion (`more` clear) carries `ENOBUFS`; re-arm it when
    /// there is room. Connections not yet accepted wait in the listen backlog.
    ///
    /// # Errors
    /// As for [`accept`](Self::accept).
    pub fn accept_multi(&self, listener: &Handle, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let accept = |fd, ()| Op::Accept { fd, multishot: true };
        self.issue(listener, OpKind::Accept, ctx.into(), (), accept)
    }

    /// Connects a socket handle to `addr` (ConnectEx).
    ///
    /// # Errors
    /// As for [`accept`](Self::accept).
    pub fn connect(&self, h: &Handle, addr: SocketAddr, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let connect = |fd, ()| Op::Connect {
            fd,
            addr: Box::new(SockAddr::from(addr)),
        };
        self.issue(h, OpKind::Connect, ctx.into(), (), connect)
    }

    /// Receives into the spare capacity of `buf` (WSARecv); the completion
    /// hands `buf` back with its length grown by the bytes received.
    /// `Ok(0)` means the peer closed its side.
    ///
    /// A `buf` with no spare capacity but a length, such as `vec![0; n]`, is
    /// received into whole: its bytes are overwritten and it comes back
    /// holding just what arrived (the length it had is the room it offers).
    ///
    /// # Errors
    /// As for [`accept`](Self::accept); `buf` comes back in the error.
    /// [`SubmitErrorKind::NoRoom`] for a `buf` with no capacity at all (its
    /// `Ok(0)` could not be told from the end of the stream).
    pub fn recv(&self, h: &Handle, buf: Vec<u8>, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let buf = with_room(buf)?;
        self.issue(h, OpKind::Recv, ctx.into(), buf, |fd, buf| Op::Recv { fd, buf })
    }

    /// Receives into a buffer the kernel picks from `pool` only when data
    /// arrives, so an idle connection pins no memory. The completion carries
    /// a [`Buf::Pooled`]; an `ENOBUFS` error means the pool was empty.
    ///
    /// # Errors
    /// As for [`accept`](Self::accept); [`SubmitErrorKind::ForeignPort`] for a
    /// pool made by another port.
    pub fn recv_pooled(&self, h: &Handle, pool: &BufPool, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.check_pool(pool)?;
        let recv = |fd, pool| Op::RecvPooled {
            fd,
            pool,
            multishot: false,
        };
        self.issue(h, OpKind::RecvPooled, ctx.into(), pool.clone(), recv)
    }

    /// Like [`recv_pooled`](Self::recv_pooled) but stays armed: one completion
    /// per arrival with [`Completion::more`] set; the last has it clear (end
    /// of stream, error, `ENOBUFS`, or cancel) and must be re-armed by the caller.
    /// `ENOBUFS` means the pool ran dry or the port's queue reached its limit.
    ///
    /// # Errors
    /// As for [`accept`](Self::accept).
    pub fn recv_pooled_multi(&self, h: &Handle, pool: &BufPool, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.check_pool(pool)?;
        let recv = |fd, pool| Op::RecvPooled {
            fd,
            pool,
            multishot: true,
        };
        self.issue(h, OpKind::RecvPooled, ctx.into(), pool.clone(), recv)
    }

    /// A pool belongs to the port (the ring) that made it: another port's
    /// kernel would pick from its own buffers under the same group id.
    fn check_pool(&self, pool: &BufPool) -> Result<(), SubmitError> {
        if pool.owner() == self.shared.driver.id() {
            Ok(())
        } else {
            Err(SubmitError::new(SubmitErrorKind::ForeignPort, Payload::None))
        }
    }

    /// Sends one buffer (WSASend). The result may be a short count.
    ///
    /// # Errors
    /// As for [`accept`](Self::accept); the buffer comes back in the error.
    pub fn send(&self, h: &Handle, buf: impl Into<Buf>, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.issue(h, OpKind::Send, ctx.into(), buf.into(), |fd, buf| Op::Send { fd, buf })
    }

    /// Sends `buf`, and hands the completion straight back when the send
    /// finishes at once, without queueing it: IOCP's
    /// `FILE_SKIP_COMPLETION_PORT_ON_SUCCESS`, which servers use to skip a
    /// trip through the port for the common send that the socket takes
    /// whole.
    ///
    /// On epoll a send with nothing queued ahead of it on the socket is tried
    /// at once, and [`Issued::Done`] carries its result (bytes sent, perhaps
    /// fewer than asked, or the error) and the buffer. On io_uring sends are
    /// batched into the next submission (sending at once would cost a system
    /// call per send), so the answer is always [`Issued::Pending`]. Either
    /// way the operation completes exactly once.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub fn try_send(&self, h: &Handle, buf: impl Into<Buf>, ctx: impl Into<Ctx>) -> Result<Issued, SubmitError> {
        let send = |fd, buf| Op::Send { fd, buf };
        self.issue_as(h, OpKind::Send, ctx.into(), buf.into(), send, true)
    }

    /// [`send_vectored`](Self::send_vectored), finishing inline when it can,
    /// as [`try_send`](Self::try_send) does.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub fn try_send_vectored(&self, h: &Handle, bufs: Vec<Buf>, ctx: impl Into<Ctx>) -> Result<Issued, SubmitError> {
        let send = |fd, bufs| Op::SendVectored { fd, bufs };
        self.issue_as(h, OpKind::SendVectored, ctx.into(), bufs, send, true)
    }

    /// Sends many buffers in one gathering call (WSASend with several WSABUFs).
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub fn send_vectored(&self, h: &Handle, bufs: Vec<Buf>, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let send = |fd, bufs| Op::SendVectored { fd, bufs };
        self.issue(h, OpKind::SendVectored, ctx.into(), bufs, send)
    }

    /// Receives one datagram (WSARecvFrom); the completion carries
    /// [`Payload::Datagram`] with the sender's address.
    ///
    /// # Errors
    /// As for [`recv`](Self::recv).
    pub fn recv_from(&self, h: &Handle, buf: Vec<u8>, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let buf = with_room(buf)?;
        self.issue(h, OpKind::RecvFrom, ctx.into(), buf, |fd, buf| Op::RecvFrom { fd, buf })
    }

    /// Sends one datagram to `addr` (WSASendTo).
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub fn send_to(
        &self,
        h: &Handle,
        buf: impl Into<Buf>,
        addr: SocketAddr,
        ctx: impl Into<Ctx>,
    ) -> Result<OpId, SubmitError> {
        let send = |fd, (buf, addr)| Op::SendTo {
            fd,
            buf,
            addr: Box::new(SockAddr::from(addr)),
        };
        self.issue(h, OpKind::SendTo, ctx.into(), (buf.into(), addr), send)
    }

    /// Shuts down one or both directions of a socket (DisconnectEx's first half).
    ///
    /// # Errors
    /// As for [`accept`](Self::accept).
    pub fn shutdown_socket(&self, h: &Handle, how: Shutdown, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.issue(h, OpKind::Shutdown, ctx.into(), (), |fd, ()| Op::Shutdown { fd, how })
    }

    /// Reads at `offset` into the spare capacity of `buf` (ReadFile with an
    /// OVERLAPPED offset), or into the whole of a `buf` with none, as
    /// [`recv`](Self::recv) does. `Ok(0)` at or past the end of the file.
    ///
    /// # Errors
    /// As for [`recv`](Self::recv).
    pub fn read_at(&self, h: &Handle, buf: Vec<u8>, offset: u64, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        let buf = with_room(buf)?;
        let read = |fd, buf| Op::ReadAt { fd, buf, offset };
        self.issue(h, OpKind::ReadAt, ctx.into(), buf, read)
    }

    /// Writes `buf` at `offset` (WriteFile with an offset).
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    pub fn write_at(
        &self,
        h: &Handle,
        buf: impl Into<Buf>,
        offset: u64,
        ctx: impl Into<Ctx>,
    ) -> Result<OpId, SubmitError> {
        let write = |fd, buf| Op::WriteAt { fd, buf, offset };
        self.issue(h, OpKind::WriteAt, ctx.into(), buf.into(), write)
    }

    /// Flushes a file to storage (`data_only`: fdatasync).
    ///
    /// # Errors
    /// As for [`accept`](Self::accept).
    pub fn fsync(&self, h: &Handle, data_only: bool, ctx: impl Into<Ctx>) -> Result<OpId, SubmitError> {
        self.issue(h, OpKind::Fsync, ctx.into(), (), |fd, ()| Op::Fsync { fd, data_only })
    }

    /// Sends `len` bytes of `file` from `offset` to a socket without copying
    /// through user space (TransmitFile): splice through a pipe on io_uring,
    /// sendfile(2) on epoll. Completes once, with the total sent; a file that
    /// ends early yields a short count. The file comes back in the payload.
    ///
    /// A peer that stops reading holds no thread: on io_uring the socket is
    /// made non-blocking and the transfer waits for room with a poll.
    ///
    /// # Errors
    /// As for [`accept`](Self::accept); the file comes back in the error.
    pub fn send_file(
        &self,
        h: &Handle,
        file: impl Into<Arc<File>>,
        offset: u64,
        len: u64,
        ctx: impl Into<Ctx>,
    ) -> Result<OpId, SubmitError> {
        let send = |fd, file| Op::SendFile { fd, file, offset, len };
        self.issue(h, OpKind::SendFile, ctx.into(), file.into(), send)
    }

    // ----- posting, cancelling, closing ---------------------------------

    /// Queues a completion of the program's own (PostQueuedCompletionStatus):
    /// jobs, wake-ups, shutdown signals. Give it [`Ctx::high`] to jump the queue.
    ///
    /// # Errors
    /// [`SubmitErrorKind::QueueFull`] or [`SubmitErrorKind::ShutDown`].
    pub fn post(&self, key: Key, bytes: usize, ctx: impl Into<Ctx>) -> Result<(), SubmitError> {
        self.post_kind(key, bytes, ctx.into(), OpKind::Post)
    }

    /// Posts `n` [`OpKind::Quit`] packets: each worker of a [`WorkerPool`](crate::WorkerPool)
    /// (or any loop that honours them) that dequeues one exits.
    ///
    /// # Errors
    /// As for [`post`](Self::post).
    pub fn post_quit(&self, n: usize) -> Result<(), SubmitError> {
        for _ in 0..n {
            self.post_kind(Key(0), 0, Ctx::default(), OpKind::Quit)?;
        }
        Ok(())
    }

    /// Queues dequeued completions again (a worker's batch that a panicking
    /// handler left unhandled), so another thread runs them. They count
    /// against the queue limit again, but always fit: they just left it.
    pub(crate) fn requeue(&self, items: impl Iterator<Item = Completion>) {
        for c in items {
            self.shared.outstanding.n.fetch_add(1, AcqRel);
            if self.shared.sched.push(c) {
                self.shared.driver.wake();
            }
        }
    }

    fn post_kind(&self, key: Key, bytes: usize, ctx: Ctx, kind: OpKind) -> Result<(), SubmitError> {
        self.reserve().map_err(|k| SubmitError::new(k, Payload::None))?;
        let meta = Meta::new(self.shared.id, key, ctx, kind, None);
        if self
            .shared
            .sched
            .push(Completion::new(meta, Ok(bytes), Payload::None, false))
        {
            self.shared.driver.wake();
        }
        Ok(())
    }

    /// Cancels every operation in flight on `h` (CancelIoEx with no OVERLAPPED).
    /// Each still completes once, most with a cancellation error.
    ///
    /// # Errors
    /// [`SubmitErrorKind::InvalidHandle`] for a closed handle.
    pub fn cancel(&self, h: &Handle) -> Result<(), SubmitError> {
        // Under the table's lock: the fd cannot be closed and its number
        // reused before the cancel is queued.
        let mut table = self.shared.handles.lock();
        let fd = table.raw_fd(h).map_err(|k| SubmitError::new(k, Payload::None))?;
        self.shared.driver.cancel(CancelTarget::Fd(fd));
        drop(table);
        Ok(())
    }

    /// Cancels one operation (CancelIoEx with its OVERLAPPED). Harmless if it
    /// already completed.
    ///
    /// # Errors
    /// [`SubmitErrorKind::ForeignPort`] for an id another port returned.
    pub fn cancel_op(&self, id: OpId) -> Result<(), SubmitError> {
        if id.port != self.shared.id {
            return Err(SubmitError::new(SubmitErrorKind::ForeignPort, Payload::None));
        }
        self.shared.driver.cancel(CancelTarget::Op(id.op));
        Ok(())
    }

    /// Closes a handle: cancels what is in flight on it and closes the fd once
    /// every operation on it has completed. Later use of `h` fails with
    /// [`SubmitErrorKind::InvalidHandle`], even after the fd number is reused.
    ///
    /// # Errors
    /// [`SubmitErrorKind::InvalidHandle`] or [`SubmitErrorKind::Closing`].
    pub fn close(&self, h: &Handle) -> Result<(), SubmitError> {
        let mut table = self.shared.handles.lock();
        let (raw, rel) = table.close(h).map_err(|k| SubmitError::new(k, Payload::None))?;
        match rel {
            Released::Close(fd) => {
                drop(table);
                self.shared.driver.forget_fd(raw);
                drop(fd);
            }
            // Under the lock, as in `cancel`: queued before the fd can close.
            Released::Nothing => {
                self.shared.driver.cancel(CancelTarget::Fd(raw));
                drop(table);
            }
        }
        Ok(())
    }

    /// A pool of `count` receive buffers of `size` bytes each, for
    /// [`recv_pooled`](Self::recv_pooled).
    ///
    /// # Errors
    /// Invalid sizes (io_uring allows at most 32768 buffers), or the kernel
    /// refusing the buffer ring.
    pub fn buf_pool(&self, count: u16, size: usize) -> io::Result<BufPool> {
        self.buf_pool_sized(count, count, size)
    }

    /// A pool that sizes itself: `min` buffers of `size` bytes in service at
    /// first, doubled (up to `max`) when receives find it empty while most
    /// are held, halved again (not below `min`) after a second of low
    /// demand, ten seconds after it last grew ([`BufPool::trim`]). Address space for `max` buffers is
    /// reserved; only buffers in use take memory.
    ///
    /// # Errors
    /// As [`buf_pool`](Self::buf_pool), and `min > max`.
    pub fn buf_pool_sized(&self, min: u16, max: u16, size: usize) -> io::Result<BufPool> {
        if min == 0 || min > max || max > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pool needs 1..=32768 buffers (min <= max) of 1..4GiB",
            ));
        }
        self.shared.driver.buf_pool(min, max, size)
    }

    /// Starts shutting down: new operations and posts are refused, everything
    /// in flight is cancelled and completes with a shutdown error. Once all
    /// is delivered, [`get`](Self::get) returns [`GetError::ShutDown`].
    pub fn shutdown(&self) {
        if self.shared.shut_down.swap(true, AcqRel) {
            return;
        }
        self.shared.driver.cancel(CancelTarget::All);
        self.shared.driver.wake();
        self.shared.sched.wake_all();
        let s = &self.shared;
        let _g = s.room.0.lock();
        s.room.1.notify_all();
    }

    /// `true` once [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Acquire)
    }

    // ----- dequeuing ------------------------------------------------------

    /// Dequeues one completion, waiting up to `timeout` (`None`: forever)
    /// (GetQueuedCompletionStatus). The calling thread's previous slot is
    /// given back first, and a slot is held until its next `get`.
    ///
    /// Posted packets and I/O completions are served in the order the port
    /// learns of them, and it looks at the kernel at least every 128 packets
    /// it hands out, so a job that keeps re-posting itself never starves I/O.
    ///
    /// # Errors
    /// [`GetError::Timeout`], [`GetError::ShutDown`] once shut down and
    /// drained, or [`GetError::Io`] if the backend fails.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Completion, GetError> {
        self.dequeue(timeout, None)
    }

    /// `get`, and with `more` up to that many further packets on the same
    /// slot. Counts them all once: thread counters, then the queue limit.
    fn dequeue(
        &self,
        timeout: Option<Duration>,
        more: Option<(&mut Vec<Completion>, usize)>,
    ) -> Result<Completion, GetError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let s = &*self.shared;
        let (c, n) = self.with_local(|x| {
            let held = std::mem::replace(&mut x.holds_slot, false);
            let counters = &*x.counters;
            let mut lead = |deadline: Option<Instant>, out: &mut Vec<Completion>| {
                counters.wait_begins();
                let r = self.lead(deadline, out);
                counters.wait_ends();
                r
            };
            let mut flush = || s.driver.flush();
            let mut parked = |start: bool| {
                if start {
                    counters.wait_begins()
                } else {
                    counters.wait_ends()
                }
            };
            let start = more.as_ref().map_or(0, |(v, _)| v.len());
            let mut more = more;
            let extra = more.as_mut().map(|(v, max)| (&mut **v, *max));
            let c = s.sched.get(
                held,
                deadline,
                &x.waiter,
                &mut x.batch,
                &mut lead,
                &mut flush,
                &mut parked,
                extra,
            )?;
            x.holds_slot = true;
            counters.record(c.kind(), c.result.is_ok());
            let mut n = 1;
            if let Some((v, _)) = more {
                for e in &v[start..] {
                    counters.record(e.kind(), e.result.is_ok());
                }
                n += v.len() - start;
            }
            Ok::<_, GetError>((c, n))
        })?;
        self.unreserve(n);
        Ok(c)
    }
    /// Runs `f` on this thread's record for this port, creating it on first use.
    /// Nothing `f` reaches may touch `LOCALS` again.
    fn with_local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        LOCALS.with(|l| {
            let mut l = l.borrow_mut();
            let pos = match l.iter().position(|x| x.port_id == self.shared.id) {
                Some(p) => p,
                None => {
                    l.retain(|x| x.port.strong_count() > 0);
                    let name = std::thread::current().name().map(str::to_owned);
                    let waiter = Waiter::for_current_thread();
                    let counters = Arc::new(ThreadCounters::new(name, waiter.tid));
                    let mut threads = self.shared.threads.lock();
                    // Finished threads keep their figures until the list
                    // grows long (a program that churns threads).
                    if threads.len() >= MAX_THREAD_RECORDS {
                        let counters = &self.shared.counters;
                        threads.retain(|t| {
                            let ended = t.has_ended();
                            if ended {
                                counters.retire(t);
                            }
                            !ended
                        });
                    }
                    threads.push(counters.clone());
                    drop(threads);
                    self.shared.sched.register(&waiter);
                    l.push(Local {
                        port_id: self.shared.id,
                        port: Arc::downgrade(&self.shared),
                        holds_slot: false,
                        waiter,
                        counters,
                        batch: Vec::new(),
                    });
                    l.len() - 1
                }
            };
            f(&mut l[pos])
        })
    }

    /// Dequeues up to `max` ready completions into `out` (GetQueuedCompletionStatusEx),
    /// waiting up to `timeout` for the first. The thread holds one slot for
    /// all, and takes no more than its fair share of what is ready (the
    /// queue divided by the threads holding slots), so a batch never
    /// starves other running threads. A quit packet (see
    /// [`post_quit`](Self::post_quit)) is never taken after the first
    /// completion, nor anything behind it: each goes to one thread. One lock
    /// and one queue-limit update per batch instead of per completion.
    /// Returns how many were added.
    ///
    /// # Errors
    /// As for [`get`](Self::get), only when nothing was dequeued.
    pub fn get_many(
        &self,
        out: &mut Vec<Completion>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, GetError> {
        if max == 0 {
            return Ok(0);
        }
        // The rest ride on the slot the first one takes; they are appended
        // after it.
        let start = out.len();
        let first = self.dequeue(timeout, Some((out, max - 1)))?;
        out.insert(start, first);
        Ok(out.len() - start)
    }

    /// Gives back this thread's concurrency slot before it blocks on
    /// something else, so another thread may run (IOCP does this by itself
    /// when a worker blocks; here the worker says so).
    pub fn release_slot(&self) {
        let had = self.with_local(|x| std::mem::replace(&mut x.holds_slot, false).then(|| x.waiter.clone()));
        if let Some(me) = had {
            self.shared.driver.flush();
            if self.shared.sched.release_by(&me) {
                self.shared.driver.wake();
            }
        }
    }

    /// Runs `f`, code that will block (a database call, synchronous file
    /// work, a lock held long), without this thread's concurrency slot: the
    /// slot goes to a waiting thread on entry, with no detection delay, and
    /// is taken back on exit, even over the cap, as a thread that wakes on
    /// Windows is (its next `get` then waits until the threads running are
    /// back under the cap). Operations issued so far are submitted first.
    /// Nested scopes and panics inside `f` leave the count right; outside
    /// a completion (no slot held) it simply runs `f`.
    ///
    /// # Examples
    /// ```
    /// # let port = cport::Port::new()?;
    /// # port.post(cport::Key(1), 0, 0).unwrap();
    /// let c = port.get(None)?;
    /// let text = port.blocking(|| std::fs::read_to_string("/proc/self/comm"))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        let had = self.with_local(|x| std::mem::replace(&mut x.holds_slot, false).then(|| x.waiter.clone()));
        let Some(me) = had else { return f() };
        self.shared.driver.flush();
        if self.shared.sched.enter_blocking(&me) {
            self.shared.driver.wake();
        }
        /// Takes the slot back when the scope ends, by return or by panic.
        struct Retake<'a>(&'a Port);
        impl Drop for Retake<'_> {
            fn drop(&mut self) {
                let p = self.0;
                // A scope that called `get` already holds a slot again.
                p.with_local(|x| {
                    p.shared.sched.leave_blocking(&x.waiter, !x.holds_slot);
                    x.holds_slot = true;
                });
            }
        }
        let _retake = Retake(self);
        f()
    }

    /// The leader's turn in the backend: wait, then settle what came back,
    /// even when the backend failed after reaping some of it.
    fn lead(&self, deadline: Option<Instant>, out: &mut Vec<Completion>) -> Result<(), GetError> {
        let s = &*self.shared;
        if s.shut_down.load(Acquire) && s.driver.in_flight() == 0 {
            s.sched.wake_all();
            return Err(GetError::ShutDown);
        }
        let waited = s.driver.wait(out, deadline);
        self.settle(out);
        waited.map_err(GetError::Io)
    }

    /// Settles reaped completions: the handle's count of each final one
    /// (closing its fd after the last) and the shutdown error. (The driver
    /// counted multishot deliveries against the queue limit as it made them.)
    fn settle(&self, out: &mut [Completion]) {
        let s = &*self.shared;
        let shut = s.shut_down.load(Acquire);
        let mut to_close = Vec::new();
        {
            let mut handles = s.handles.lock();
            for c in out.iter_mut() {
                if c.meta.more {
                    // A delivery: the op still holds its handle.
                } else if let Some(h) = c.meta.handle() {
                    if let Released::Close(fd) = handles.end_op(h.slot.index()) {
                        to_close.push(fd);
                    }
                }
                if shut && c.is_cancelled() {
                    c.result = Err(ShutDownError::io());
                }
            }
        }
        self.close_fds(to_close);
        s.introspect.completed(out);
    }

    /// The port's counters now.
    pub fn stats(&self) -> Stats {
        let s = &*self.shared;
        let c = s.sched.counts();
        let mut st = Stats {
            in_flight: s.driver.in_flight(),
            queued: c.queued,
            running: c.running,
            max_running: c.max_running,
            waiting: c.waiting,
            backend_calls: s.driver.kernel_calls(),
            handles: s.handles.lock().live(),
            handoffs: c.handoffs,
            blocking_scopes: c.scopes,
            blocked_now: c.blocked + c.scoped,
            over_cap: Duration::from_nanos(c.over_cap_nanos),
            detection_delay_p50: s.handoff_delays.quantile(0.5),
            detection_delay_p99: s.handoff_delays.quantile(0.99),
            ..Stats::default()
        };
        let threads = s.threads.lock();
        st.threads = threads.iter().map(|t| t.snapshot()).collect();
        s.counters.fill(&threads, &mut st);
        st
    }
}

/// Refuses a receive or read buffer with no capacity: it could only
/// complete `Ok(0)`, which reads as the end of the stream. (A full buffer
/// is received into whole: see `sys::room`.)
fn with_room(buf: Vec<u8>) -> Result<Vec<u8>, SubmitError> {
    if buf.capacity() == 0 {
        return Err(SubmitError::new(SubmitErrorKind::NoRoom, buf.into_payload()));
    }
    Ok(buf)
}

impl Port {
    /// What the port is doing now (tokio-console's view of a runtime, for
    /// a completion port): operations in flight by kind with the age of the
    /// oldest, the ready queue's depth, each worker's state, hand-offs,
    /// latency from issue to completion by kind, and stuck operations
    /// reported. Walks the in-flight table once (O(ops in flight)); meant
    /// for a console or an endpoint polled every second or so.
    pub fn snapshot(&self) -> Snapshot {
        let s = &*self.shared;
        let intro = &s.introspect;
        let c = s.sched.counts();
        let concurrency = s.sched.concurrency();
        let slots = s.sched.slot_states();
        let over_cap = c.running > concurrency;
        let stats = self.stats();
        let threads = s.threads.lock();
        let workers = threads
            .iter()
            .filter(|t| !t.has_ended())
            .map(|t| {
                let slot = slots.iter().find(|(tid, _)| *tid == t.tid).map(|(_, s)| *s);
                let figures = t.snapshot();
                WorkerSnapshot {
                    name: t.name.clone(),
                    tid: t.tid,
                    state: introspect::worker_state(slot, t.is_waiting(), over_cap),
                    completions: figures.completions,
                    busy: figures.busy,
                }
            })
            .collect();
        drop(threads);
        Snapshot {
            enabled: intro.is_on(),
            in_flight: intro.in_flight(|f| s.driver.visit_in_flight(f)),
            queued: c.queued,
            running: c.running,
            concurrency,
            workers,
            handoffs: c.handoffs,
            completed: stats.total_completed(),
            latency: intro.latency(),
            stuck: intro.stuck_count(),
            stuck_after: intro.stuck_after(),
        }
    }

    /// The `limit` oldest operations in flight, oldest first (with
    /// introspection off their ages are zero and the order is arbitrary).
    pub fn in_flight_ops(&self, limit: usize) -> Vec<InFlightOp> {
        let d = &self.shared.driver;
        self.shared
            .introspect
            .oldest_ops(limit, |_| true, |f| d.visit_in_flight(f))
    }

    /// The operations in flight on `h`, oldest first.
    pub fn in_flight_on(&self, h: &Handle) -> Vec<InFlightOp> {
        let d = &self.shared.driver;
        let keep = |m: &Meta| m.handle().is_some_and(|x| x == *h);
        self.shared
            .introspect
            .oldest_ops(usize::MAX, keep, |f| d.visit_in_flight(f))
    }

    /// Looks for stuck operations now, as the watchdog does every quarter
    /// of the threshold; returns how many were reported for the first time.
    pub fn report_stuck(&self) -> usize {
        let d = &self.shared.driver;
        self.shared.introspect.look_for_stuck(|f| d.visit_in_flight(f))
    }
}

/// What an operation owns (buffers, a file, a pool) before it is built:
/// handed back, as the error's payload, when the port refuses it.
trait Owned {
    fn into_payload(self) -> Payload;
}

impl Owned for () {
    fn into_payload(self) -> Payload {
        Payload::None
    }
}
impl Owned for Vec<u8> {
    fn into_payload(self) -> Payload {
        Payload::Buf(Buf::Vec(self))
    }
}
impl Owned for Buf {
    fn into_payload(self) -> Payload {
        Payload::Buf(self)
    }
}
impl Owned for Vec<Buf> {
    fn into_payload(self) -> Payload {
        Payload::Bufs(self)
    }
}
impl Owned for Arc<File> {
    fn into_payload(self) -> Payload {
        Payload::File(self)
    }
}
impl Owned for BufPool {
    fn into_payload(self) -> Payload {
        Payload::None
    }
}
/// A datagram to send and where.
impl Owned for (Buf, SocketAddr) {
    fn into_payload(self) -> Payload {
        Payload::Datagram(Box::new(Datagram {
            buf: self.0,
            addr: self.1,
        }))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shut_down.store(true, Release);
        // Every op still in flight completes here, with nobody to deliver it
        // to: the driver waits until the kernel is done with its buffers.
        self.driver.drain();
        self.introspect.stop();
        if let Some(t) = self.watchdog.get_mut().take() {
            // As for the monitor below: the watchdog may hold the last reference.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        self.sched.stop_monitor();
        if let Some(t) = self.monitor.get_mut().take() {
            // The monitor may hold the last reference for a moment (waking
            // the backend): then it is on its way out and cannot join itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
