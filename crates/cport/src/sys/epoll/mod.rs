//! The epoll backend: readiness turned into completions.
//!
//! Sockets are registered edge-triggered (in, out, read-hangup) the first time
//! an operation on them has to wait. Each fd keeps a FIFO of waiting
//! read-side operations and one of write-side operations; an operation whose
//! queue is empty is tried at once in `push` (one that can finish at once
//! finishes without a wait), and readiness retries a queue in order until the
//! kernel says `EAGAIN`. Finished operations go to a ready list that the
//! next `wait` hands out first.
//!
//! Files (`read_at`, `write_at`, `fsync`) run on a small pool of blocking
//! threads started on first use ([`files`]); timeouts live in a heap of
//! deadlines ([`timers`]) that bounds the `epoll_wait` timeout.
//!
//! Locking: one mutex guards all driver state, and the non-blocking I/O calls
//! run under it (they never sleep). `epoll_wait` runs without it, so other
//! threads keep issuing while the leader sleeps; a thread that leaves work
//! for the sleeping leader writes the eventfd registered in the epoll set.

mod files;
mod io;
mod timers;

use std::collections::VecDeque;
use std::io as stdio;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{EventfdFlags, Timespec};
use rustix::io::Errno;
use slab::Slab;
use socket2::{SockRef, Type};

use self::files::FileThreads;
use self::io::{Attempt, Calls, Flags, RecvInfo};
use self::timers::Timers;
use super::buf::{BufPool, FreeStack, Payload, PoolInner, Provider};
use super::{errno, CancelTarget, Driver, Op, QueueCount};
use crate::backend::Backend;
use crate::completion::{Completion, Issued, Meta};
use crate::error::{BuildError, SubmitErrorKind};
use crate::index::GenIndex;

/// The epoll token of the wake-up eventfd (fd tokens have a 31-bit generation).
const WAKE_TOKEN: u64 = u64::MAX;
/// Operation attempts per fd and readiness event before other fds get a turn.
const BUDGET: u32 = 64;
/// While completions keep arriving without a wait, still look at readiness this often.
const POLL_EVERY: Duration = Duration::from_micros(200);
/// How long `drain` waits for file operations still running on the pool.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Sets up the epoll backend.
pub(crate) fn new_driver(entries: u32, queue: Arc<QueueCount>) -> Result<Box<dyn Driver>, BuildError> {
    Ok(Box::new(Epoll::new(entries, queue).map_err(BuildError::Epoll)?))
}

/// Which queue of an fd an operation waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

/// Where a pushed operation is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In the read or write queue of an fd.
    Queued(RawFd, Dir),
    /// In the timer heap.
    Timer,
    /// Waiting for a file thread.
    Job,
    /// A file thread is running it (the thread holds the op).
    Running,
}

struct Entry {
    gen: u32,
    meta: Meta,
    op: Op,
    /// Per-op progress: bytes sent so far (send_file), or 1 once a connect started.
    progress: u64,
    place: Place,
}

/// What the driver knows about one fd number.
struct FdState {
    /// Bumped when the fd is forgotten, so stale epoll events are ignored.
    gen: u32,
    flags: Flags,
    reads: VecDeque<u32>,
    writes: VecDeque<u32>,
}

impl FdState {
    fn new(gen: u32) -> Self {
        FdState {
            gen,
            flags: Flags::default(),
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }
    fn queue(&mut self, dir: Dir) -> &mut VecDeque<u32> {
        match dir {
            Dir::Read => &mut self.reads,
            Dir::Write => &mut self.writes,
        }
    }
    /// The epoll token of `fd`: its number and this state's generation.
    fn token(&self, fd: RawFd) -> u64 {
        GenIndex::new(fd as u32, self.gen).to_u64()
    }
}

/// The epoll driver's state under its lock: operations in flight, per-fd
/// queues, completions ready, timers, file threads.
struct State {
    ops: Slab<Entry>,
    next_gen: u32,
    fds: Vec<FdState>,
    /// Completions waiting for the next `wait`.
    ready: Vec<Completion>,
    timers: Timers,
    /// Fds whose queues ran out of budget while still ready: no edge will
    /// come for them, so `wait` retries them itself.
    retry: Vec<(RawFd, u32)>,
    /// The threads that run file operations (`files`).
    file_threads: FileThreads,
    /// The leader sleeps in `epoll_wait` (with a non-zero timeout).
    blocked: bool,
    /// The eventfd was written since the leader went to sleep.
    signalled: bool,
    /// `wake` was called: the next `wait` returns even with nothing.
    woken: bool,
    /// When the sleeping leader will wake by itself (`None`: never).
    wake_at: Option<Instant>,
    last_poll: Instant,
    /// Everything was cancelled (shutdown): later pushes complete at once, cancelled.
    cancelled_all: bool,
}

struct Inner {
    epfd: OwnedFd,
    wakefd: OwnedFd,
    state: Mutex<State>,
    /// File threads wait here for jobs.
    jobs_cv: Condvar,
    events: Mutex<Events>,
    /// System calls made under `state`.
    kernel_calls: Calls,
    /// System calls made by file threads (outside `state`).
    file_calls: AtomicU64,
    /// The port's queue limit, which multishot deliveries count against.
    queue: Arc<QueueCount>,
}

pub(crate) struct Epoll {
    inner: Arc<Inner>,
    id: u64,
}

impl Epoll {
    fn new(entries: u32, queue: Arc<QueueCount>) -> stdio::Result<Epoll> {
        let epfd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wakefd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        // Edge-triggered: every write is an edge, so the counter is never read.
        let wake = EventData::new_u64(WAKE_TOKEN);
        epoll::add(&epfd, &wakefd, wake, EventFlags::IN | EventFlags::ET)?;
        let batch = entries.clamp(64, 1024) as usize;
        Ok(Epoll {
            id: crate::sys::next_driver_id(),
            inner: Arc::new(Inner {
                epfd,
                wakefd,
                state: Mutex::new(State {
                    ops: Slab::with_capacity(1024),
                    next_gen: 0,
                    fds: Vec::new(),
                    ready: Vec::new(),
                    timers: Timers::default(),
                    retry: Vec::new(),
                    file_threads: FileThreads::default(),
                    blocked: false,
                    signalled: false,
                    woken: false,
                    wake_at: None,
                    last_poll: Instant::now(),
                    cancelled_all: false,
                }),
                jobs_cv: Condvar::new(),
                events: Mutex::new(Events(Vec::with_capacity(batch))),
                kernel_calls: Calls::default(),
                file_calls: AtomicU64::new(0),
                queue,
            }),
        })
    }
}

/// Whether timer heap entry `id` still belongs to a pending timeout.
fn timer_live(ops: &Slab<Entry>, id: GenIndex) -> bool {
    ops.get(id.index() as usize)
        .is_some_and(|e| e.gen == id.generation() && e.place == Place::Timer)
}

fn dir_of(op: &Op) -> Option<Dir> {
    match op {
        Op::Accept { .. } | Op::Recv { .. } | Op::RecvPooled { .. } | Op::RecvFrom { .. } => Some(Dir::Read),
        Op::Connect { .. } | Op::Send { .. } | Op::SendVectored { .. } | Op::SendTo { .. } | Op::SendFile { .. } => {
            Some(Dir::Write)
        }
        _ => None,
    }
}

impl Inner {
    /// Counts one system call. Caller holds `state`.
    fn count(&self) {
        self.kernel_calls.one();
    }

    /// Makes a leader asleep in `epoll_wait` return. Caller holds `state`.
    fn notify(&self, st: &mut State) {
        if !st.blocked || st.signalled {
            return;
        }
        st.signalled = true;
        self.count();
        super::signal_eventfd(std::os::fd::AsFd::as_fd(&self.wakefd));
    }

    /// The state of `fd`, created on first use.
    fn fd_state(st: &mut State, fd: RawFd) -> &mut FdState {
        let i = fd as usize;
        if i >= st.fds.len() {
            st.fds.resize_with(i + 1, || FdState::new(0));
        }
        &mut st.fds[i]
    }

    /// Adds `fd` to the epoll set and learns whether it is a stream socket.
    fn register(&self, f: &mut FdState, fd: RawFd) -> rustix::io::Result<()> {
        let data = EventData::new_u64(f.token(fd));
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        // SAFETY: the port holds `fd` open while an op on it is pushed.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        self.count();
        match epoll::add(&self.epfd, borrowed, data, flags) {
            Err(Errno::EXIST) => {
                self.count();
                epoll::modify(&self.epfd, borrowed, data, flags)?;
            }
            r => r?,
        }
        f.flags.registered = true;
        self.count();
        f.flags.stream = SockRef::from(&borrowed).r#type().is_ok_and(|t| t == Type::STREAM);
        Ok(())
    }

    /// Tries the queued operations of `fd` in one direction, in order, while
    /// the fd is ready; registers the fd if some must wait.
    fn run_queue(&self, st: &mut State, fd: RawFd, dir: Dir) {
        let State {
            ops, fds, ready, retry, ..
        } = st;
        let Some(f) = fds.get_mut(fd as usize) else { return };
        let mut budget = BUDGET;
        while let Some(&idx) = f.queue(dir).front() {
            if !f.flags.ready(dir == Dir::Read) {
                break;
            }
            if budget == 0 {
                retry.push((fd, f.gen));
                break;
            }
            budget -= 1;
            let e = &mut ops[idx as usize];
            match io::attempt(&mut e.op, &mut e.progress, &mut f.flags, &self.kernel_calls) {
                Attempt::Again => break,
                Attempt::Step => {}
                Attempt::Emit(res, payload) => {
                    ready.push(Completion::new(e.meta, res, payload, true));
                    if !self.queue.delivered() {
                        self.stop_front(f, ops, ready, dir);
                    }
                }
                Attempt::EmitTwo((n1, p1), (n2, p2)) => {
                    ready.push(Completion::new(e.meta, Ok(n1), p1, true));
                    ready.push(Completion::new(e.meta, Ok(n2), p2, true));
                    let (first, second) = (self.queue.delivered(), self.queue.delivered());
                    if !(first && second) {
                        self.stop_front(f, ops, ready, dir);
                    }
                }
                Attempt::Done(res, aux) => {
                    f.queue(dir).pop_front();
                    let e = ops.remove(idx as usize);
                    ready.push(io::finish(e.meta, e.op, res, aux));
                }
            }
        }
        if !f.queue(dir).is_empty() && !f.flags.registered {
            if let Err(e) = self.register(f, fd) {
                self.fail_fd(st, fd, e);
            }
        }
    }

    /// Ends the multishot op at the front of `f`'s queue: its deliveries
    /// filled the port's queue to the limit. Its final completion carries
    /// ENOBUFS (re-arm when there is room), as a pooled receive's does when
    /// the pool runs dry.
    fn stop_front(&self, f: &mut FdState, ops: &mut Slab<Entry>, ready: &mut Vec<Completion>, dir: Dir) {
        if let Some(idx) = f.queue(dir).pop_front() {
            let e = ops.remove(idx as usize);
            ready.push(io::finish(e.meta, e.op, Err(errno(Errno::NOBUFS)), RecvInfo::None));
        }
    }

    /// Completes every op queued on `fd` with `code`.
    fn fail_fd(&self, st: &mut State, fd: RawFd, code: Errno) {
        let Some(f) = st.fds.get_mut(fd as usize) else { return };
        let reads = std::mem::take(&mut f.reads);
        let writes = std::mem::take(&mut f.writes);
        for idx in reads.into_iter().chain(writes) {
            let e = st.ops.remove(idx as usize);
            st.ready
                .push(io::finish(e.meta, e.op, Err(errno(code)), RecvInfo::None));
        }
    }

    /// Handles one readiness event.
    fn on_event(&self, st: &mut State, token: u64, ev: EventFlags) {
        let token = GenIndex::from_u64(token);
        let (fd, gen) = (token.index() as RawFd, token.generation());
        let Some(f) = st.fds.get_mut(fd as usize) else { return };
        if f.gen != gen || !f.flags.registered {
            return;
        }
        let closed = ev.intersects(EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR);
        let rd = closed || ev.contains(EventFlags::IN);
        let wr = ev.intersects(EventFlags::OUT | EventFlags::HUP | EventFlags::ERR);
        if closed {
            f.flags.rdhup = true;
        }
        if rd {
            f.flags.read_ready = true;
        }
        if wr {
            f.flags.write_ready = true;
        }
        let (has_r, has_w) = (!f.reads.is_empty(), !f.writes.is_empty());
        if rd && has_r {
            self.run_queue(st, fd, Dir::Read);
        }
        if wr && has_w {
            self.run_queue(st, fd, Dir::Write);
        }
    }

    /// Runs the queues that ran out of budget last time.
    fn run_retries(&self, st: &mut State) {
        if st.retry.is_empty() {
            return;
        }
        let list = std::mem::take(&mut st.retry);
        for (fd, gen) in list {
            if st.fds.get(fd as usize).is_some_and(|f| f.gen == gen) {
                self.run_queue(st, fd, Dir::Read);
                self.run_queue(st, fd, Dir::Write);
            }
        }
    }

    /// Completes the timeouts whose deadline has passed.
    fn expire_timers(&self, st: &mut State, now: Instant) {
        while let Some(id) = st.timers.pop_due(now) {
            if timer_live(&st.ops, id) {
                let e = st.ops.remove(id.index() as usize);
                st.ready.push(Completion::new(e.meta, Ok(0), Payload::None, false));
            } else {
                st.timers.forget_stale();
            }
        }
    }

    /// Cancels one op (not one that a file thread is running).
    fn cancel_idx(&self, st: &mut State, idx: usize) {
        let code = Errno::CANCELED;
        let place = st.ops[idx].place;
        match place {
            Place::Running => return,
            Place::Queued(fd, dir) => {
                let Some(f) = st.fds.get_mut(fd as usize) else { return };
                let q = f.queue(dir);
                let was_head = q.front() == Some(&(idx as u32));
                q.retain(|&i| i as usize != idx);
                let e = st.ops.remove(idx);
                st.ready
                    .push(io::finish(e.meta, e.op, Err(errno(code)), RecvInfo::None));
                if was_head {
                    // The next op in line may be able to run now.
                    self.run_queue(st, fd, dir);
                }
                return;
            }
            Place::Timer => st.timers.forget_one(),
            Place::Job => st.file_threads.jobs.retain(|&i| i as usize != idx),
        }
        let e = st.ops.remove(idx);
        st.ready
            .push(io::finish(e.meta, e.op, Err(errno(code)), RecvInfo::None));
        if place == Place::Timer {
            let ops = &st.ops;
            st.timers.compact(|id| timer_live(ops, id));
        }
    }

    fn cancel_fd(&self, st: &mut State, fd: RawFd) {
        self.fail_fd(st, fd, Errno::CANCELED);
        let jobs: Vec<u32> = st
            .file_threads
            .jobs
            .iter()
            .copied()
            .filter(|&i| st.ops[i as usize].op.fd() == fd)
            .collect();
        for idx in jobs {
            self.cancel_idx(st, idx as usize);
        }
    }

    fn cancel_all(&self, st: &mut State) {
        st.cancelled_all = true;
        let mut fds: Vec<RawFd> = st
            .ops
            .iter()
            .filter_map(|(_, e)| match e.place {
                Place::Queued(fd, _) => Some(fd),
                _ => None,
            })
            .collect();
        fds.sort_unstable();
        fds.dedup();
        for fd in fds {
            self.fail_fd(st, fd, Errno::CANCELED);
        }
        st.timers.clear();
        st.file_threads.jobs.clear();
        let rest: Vec<usize> = st
            .ops
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Timer | Place::Job))
            .map(|(i, _)| i)
            .collect();
        for idx in rest {
            let e = st.ops.remove(idx);
            st.ready
                .push(io::finish(e.meta, e.op, Err(errno(Errno::CANCELED)), RecvInfo::None));
        }
    }

    /// One `epoll_wait`; handles what it reports. Called without `state` held.
    /// (`timeout_ms` -1: no timeout.)
    fn poll(&self, events: &mut Vec<epoll::Event>, timeout_ms: i32) -> stdio::Result<MutexGuardState<'_>> {
        let timeout = u32::try_from(timeout_ms).ok().map(|ms| Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        });
        events.clear();
        let r = epoll::wait(&self.epfd, rustix::buffer::spare_capacity(events), timeout.as_ref());
        let mut st = self.state.lock();
        st.blocked = false;
        st.signalled = false;
        st.last_poll = Instant::now();
        match r {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let (token, flags) = (ev.data.u64(), ev.flags);
            if token != WAKE_TOKEN {
                self.on_event(&mut st, token, flags);
            }
        }
        Ok(st)
    }
}

type MutexGuardState<'a> = parking_lot::MutexGuard<'a, State>;

/// `epoll_wait`'s output buffer, kept for reuse by whichever thread leads.
struct Events(Vec<epoll::Event>);

// SAFETY: rustix's `EventData` can hold a pointer, which makes `Event` not
// `Send`; these events hold only the u64 tokens this driver registers
// (never a pointer), so moving them between threads is sound.
unsafe impl Send for Events {}

/// `epoll_wait`'s timeout for `d`, rounded up so a timer never fires early.
fn timeout_ms(d: Duration) -> i32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

/// Queues in-flight entry `idx` for a file thread, starting one if none is idle.
/// (Never after `drain`: `push` refuses everything once all was cancelled.)
fn queue_file_job(inner: &Arc<Inner>, st: &mut State, idx: u32) {
    st.file_threads.jobs.push_back(idx);
    if st.file_threads.idle > 0 {
        inner.jobs_cv.notify_one();
        return;
    }
    if st.file_threads.threads.len() >= files::MAX_THREADS {
        return; // a busy thread takes it next
    }
    let me = inner.clone();
    let spawned = std::thread::Builder::new()
        .name("cport-file".into())
        .spawn(move || file_thread(me));
    match spawned {
        Ok(t) => st.file_threads.threads.push(t),
        Err(e) if st.file_threads.threads.is_empty() => {
            // Nobody would ever run it: fail it now.
            st.file_threads.jobs.retain(|&i| i != idx);
            let entry = st.ops.remove(idx as usize);
            st.ready.push(io::finish(entry.meta, entry.op, Err(e), RecvInfo::None));
        }
        Err(_) => {}
    }
}

/// A file thread: runs queued file jobs until the driver drains.
fn file_thread(inner: Arc<Inner>) {
    let mut st = inner.state.lock();
    loop {
        if st.file_threads.stopping {
            return;
        }
        let Some(idx) = st.file_threads.jobs.pop_front() else {
            st.file_threads.idle += 1;
            inner.jobs_cv.wait(&mut st);
            st.file_threads.idle -= 1;
            continue;
        };
        let e = &mut st.ops[idx as usize];
        e.place = Place::Running;
        let mut op = std::mem::replace(&mut e.op, Op::Nop);
        drop(st);
        let res = files::run(&mut op, &inner.file_calls);
        st = inner.state.lock();
        let e = st.ops.remove(idx as usize);
        st.ready.push(io::finish(e.meta, op, res, RecvInfo::None));
        inner.notify(&mut st);
    }
}

impl Driver for Epoll {
    fn id(&self) -> u64 {
        self.id
    }

    fn backend(&self) -> Backend {
        Backend::Epoll
    }

    fn prepare_fd(&self, fd: BorrowedFd<'_>) -> stdio::Result<()> {
        super::set_nonblocking(fd, true)
    }

    /// A socket op with nothing queued ahead of it on a ready fd is tried
    /// before any bookkeeping; when it finishes, it never touches the op
    /// table or the fd's queues. Every op that finishes in `push` (that one,
    /// or one refused at once: shutdown, a bad fd) goes to the ready list,
    /// or with `inline` back to the caller.
    fn push(&self, mut meta: Meta, mut op: Op, inline: bool) -> Result<Issued, (SubmitErrorKind, Op)> {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        let st = &mut *st;
        let idx = st.ops.vacant_key();
        if idx >= u32::MAX as usize {
            return Err((SubmitErrorKind::QueueFull, op));
        }
        let gen = super::next_gen(&mut st.next_gen);
        let id = GenIndex::new(idx as u32, gen);
        meta.id = id;
        let op_id = meta.op_id();
        let done = |st: &mut State, c: Completion| {
            if inline {
                Ok(Issued::Done(c))
            } else {
                st.ready.push(c);
                Ok(Issued::Pending(op_id))
            }
        };
        if st.cancelled_all {
            // Shut down: the op completes at once, cancelled, buffers handed back.
            return done(st, io::finish(meta, op, Err(errno(Errno::CANCELED)), RecvInfo::None));
        }
        let place = match &op {
            Op::Nop => return done(st, Completion::new(meta, Ok(0), Payload::None, false)),
            Op::Shutdown { fd, how } => {
                let res = io::shutdown(*fd, *how, &inner.kernel_calls);
                return done(st, Completion::new(meta, res, Payload::None, false));
            }
            Op::Timeout { dur } => {
                let at = super::deadline(*dur);
                st.ops.insert(Entry {
                    gen,
                    meta,
                    op,
                    progress: 0,
                    place: Place::Timer,
                });
                st.timers.push(at, id);
                if !matches!(st.wake_at, Some(w) if w <= at) {
                    inner.notify(st);
                }
                return Ok(Issued::Pending(op_id));
            }
            Op::ReadAt { .. } | Op::WriteAt { .. } | Op::Fsync { .. } => Place::Job,
            other => {
                let fd = other.fd();
                let dir = dir_of(other).expect("every other op is a socket op");
                if fd < 0 {
                    return done(st, io::finish(meta, op, Err(errno(Errno::BADF)), RecvInfo::None));
                }
                Place::Queued(fd, dir)
            }
        };
        let mut progress = 0;
        if let Place::Queued(fd, dir) = place {
            let f = Inner::fd_state(st, fd);
            if !op.is_multishot() && f.queue(dir).is_empty() && f.flags.ready(dir == Dir::Read) {
                match io::attempt(&mut op, &mut progress, &mut f.flags, &inner.kernel_calls) {
                    Attempt::Done(res, aux) => return done(st, io::finish(meta, op, res, aux)),
                    // Partway (send_file, connect), or must wait: queue it.
                    Attempt::Step | Attempt::Again => {}
                    Attempt::Emit(..) | Attempt::EmitTwo(..) => unreachable!("only multishot ops emit"),
                }
            }
        }
        st.ops.insert(Entry {
            gen,
            meta,
            op,
            progress,
            place,
        });
        match place {
            Place::Queued(fd, dir) => {
                let f = Inner::fd_state(st, fd);
                let q = f.queue(dir);
                q.push_back(idx as u32);
                if q.len() == 1 {
                    inner.run_queue(st, fd, dir);
                }
            }
            _ => queue_file_job(&self.inner, st, idx as u32),
        }
        Ok(Issued::Pending(op_id))
    }

    fn submit_now(&self) {
        // Operations are attempted as they are pushed: nothing waits to be submitted.
    }

    fn submit_mark(&self) -> u64 {
        0
    }

    fn wait_submitted(&self, _mark: u64, _limit: Duration) -> bool {
        true // registered with epoll (or done) as they are pushed
    }

    fn flush(&self) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        if !st.ready.is_empty() {
            inner.notify(&mut st);
        }
    }

    fn wait(&self, out: &mut Vec<Completion>, deadline: Option<Instant>) -> stdio::Result<()> {
        let inner = &*self.inner;
        let mut events = inner.events.lock();
        let mut st = inner.state.lock();
        let mut polled = false;
        loop {
            let now = Instant::now();
            inner.expire_timers(&mut st, now);
            inner.run_retries(&mut st);
            let has = !st.ready.is_empty() || st.woken;
            let expired = deadline.is_some_and(|d| now >= d);
            // Hand out what is ready, but do not starve readiness: look at it
            // now and then even while completions keep coming without a wait.
            if (has && (polled || now.duration_since(st.last_poll) < POLL_EVERY)) || (expired && polled) {
                st.woken = false;
                out.append(&mut st.ready);
                return Ok(());
            }
            let until = match (deadline, st.timers.next()) {
                (Some(d), Some(t)) => Some(d.min(t)),
                (d, t) => d.or(t),
            };
            let ms = if has || expired || !st.retry.is_empty() {
                0
            } else {
                match until {
                    None => -1,
                    Some(u) => timeout_ms(u.saturating_duration_since(now)),
                }
            };
            st.blocked = ms != 0;
            st.wake_at = until;
            inner.count(); // the epoll_wait below, counted while `state` is held
            drop(st);
            st = inner.poll(&mut events.0, ms)?;
            polled = true;
        }
    }

    fn wake(&self) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        st.woken = true;
        inner.notify(&mut st);
    }

    fn cancel(&self, target: CancelTarget) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        let st = &mut *st;
        match target {
            CancelTarget::Op(id) => {
                if st
                    .ops
                    .get(id.index() as usize)
                    .is_some_and(|e| e.gen == id.generation())
                {
                    inner.cancel_idx(st, id.index() as usize);
                }
            }
            CancelTarget::Fd(fd) => inner.cancel_fd(st, fd),
            CancelTarget::All => inner.cancel_all(st),
        }
        if !st.ready.is_empty() {
            inner.notify(st);
        }
    }

    fn forget_fd(&self, fd: RawFd) {
        let inner = &*self.inner;
        let mut st = inner.state.lock();
        let st = &mut *st;
        if fd < 0 || fd as usize >= st.fds.len() {
            return;
        }
        // The port closes an fd only once nothing is in flight on it; this is
        // a safety net.
        inner.cancel_fd(st, fd);
        let f = &mut st.fds[fd as usize];
        if f.flags.registered {
            inner.count();
            // SAFETY: the port is about to close `fd`, so it is still open.
            let _ = epoll::delete(&inner.epfd, unsafe { BorrowedFd::borrow_raw(fd) });
        }
        *f = FdState::new(GenIndex::next_generation(f.gen));
    }

    fn in_flight(&self) -> usize {
        let st = self.inner.state.lock();
        // A ready completion that is not `more` ends an op still counted in flight.
        st.ops.len() + st.ready.iter().filter(|c| !c.meta.more).count()
    }

    fn visit_in_flight(&self, f: &mut dyn FnMut(&Meta)) {
        let st = self.inner.state.lock();
        st.ops.iter().for_each(|(_, e)| f(&e.meta));
        st.ready.iter().filter(|c| !c.meta.more).for_each(|c| f(&c.meta));
    }

    fn buf_pool(&self, min: u16, max: u16, size: usize) -> stdio::Result<BufPool> {
        // Buffer 0 first, and recently used ones again soon.
        let provider = Provider::List(FreeStack::with_capacity(max, min.max(1)));
        Ok(BufPool {
            inner: Arc::new(PoolInner::new(min, max, size, provider, self.id)?),
        })
    }

    fn kernel_calls(&self) -> u64 {
        self.inner.kernel_calls.get() + self.inner.file_calls.load(Relaxed)
    }

    fn drain(&self) {
        let inner = &*self.inner;
        let threads = {
            let mut st = inner.state.lock();
            inner.cancel_all(&mut st);
            st.file_threads.stopping = true;
            inner.jobs_cv.notify_all();
            std::mem::take(&mut st.file_threads.threads)
        };
        let start = Instant::now();
        while threads.iter().any(|t| !t.is_finished()) && start.elapsed() < DRAIN_LIMIT {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut left = 0;
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            } else {
                left += 1; // detached: it owns its op and finishes it on its own
            }
        }
        if left > 0 {
            tracing::error!(
                left,
                "epoll file threads still busy at shutdown; leaving them to finish"
            );
        }
        let dropped = {
            let mut st = inner.state.lock();
            st.retry.clear();
            std::mem::take(&mut st.ready)
        };
        // Dropped outside the lock: closes accepted streams, returns pool buffers.
        drop(dropped);
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        self.drain();
    }
}
