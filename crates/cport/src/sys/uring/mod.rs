//! The io_uring backend: one shared ring, batched submission, multishot
//! accept and receive, provided-buffer rings, splice for `send_file`.
//!
//! Locking: `Core::state` guards the in-flight table and every touch of the
//! submission and completion queues (the io-uring crate's `*_shared` views
//! must never overlap). The blocking `io_uring_enter` runs without it, so
//! other threads keep pushing while the leader waits in the kernel.

mod bufring;
mod sqe;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use parking_lot::{Condvar, Mutex};
use slab::Slab;

use bufring::BufRing;

use self::sqe::{InFlight, Pipe, SpliceState, SqeData};
use super::buf::{Buf, BufPool, Payload, PoolInner, Provider};
use super::{errno_result, syscall, CancelTarget, Driver, Op, QueueCount};
use crate::backend::Backend;
use crate::completion::{Completion, Issued, Meta};
use crate::error::{BuildError, SubmitErrorKind};
use crate::index::GenIndex;

/// `user_data` of internal entries whose completions are not delivered.
const UD_WAKE: u64 = u64::MAX;
const UD_CANCEL: u64 = u64::MAX - 1;
/// Most CQEs turned into completions per `wait`.
const REAP_MAX: usize = 1024;

pub(crate) struct Core {
    ring: IoUring,
    /// Written to wake the leader; a multishot poll on it lives in the ring.
    /// Threads that do not dequeue never enter the ring themselves: io_uring
    /// runs completion work on (and signals) the submitting thread, which
    /// would interrupt their own blocking calls with EINTR.
    wake_fd: OwnedFd,
    state: Mutex<State>,
    /// Signalled after each submission, for `Port::flush` waiting on the leader's.
    submitted: Condvar,
    /// Threads waiting on `submitted` (so a submission signals only when needed).
    flushers: AtomicUsize,
    /// The port's queue limit, which multishot deliveries count against.
    queue: Arc<QueueCount>,
    kernel_calls: AtomicU64,
    next_bgid: AtomicU16,
    pipes: Mutex<Vec<Pipe>>,
}

/// The io_uring driver's state under its lock: operations in flight, the
/// submission backlog, cancellations, wake-ups.
struct State {
    ops: Slab<InFlight>,
    /// SQEs that found the submission queue full, oldest first. Pushing never
    /// enters the kernel (the pushing thread may be one that never dequeues:
    /// see `Core::wake_fd`); the next submission moves these into the queue.
    /// Bounded by the ops in flight (one SQE each at a time) plus cancels.
    backlog: VecDeque<squeue::Entry>,
    /// SQEs ever pushed (into the queue or the backlog): with what is still
    /// unsubmitted, tells `Port::flush` when everything before it is in.
    pushed: u64,
    next_gen: u32,
    /// Fds the port asked to cancel, with the push sequence number at that
    /// moment: ops pushed before it are cancelled, later ones are not.
    cancelled_fds: HashMap<RawFd, u64>,
    /// Sequence number of the next push.
    next_seq: u64,
    /// A wake-up CQE was reaped: `wait` must return rather than block.
    woken: bool,
    /// Everything was cancelled (shutdown).
    cancelled_all: bool,
    /// The multishot poll on `wake_fd` is in the ring.
    wake_armed: bool,
}

pub(crate) struct Uring {
    core: Arc<Core>,
    id: u64,
}

/// Why io_uring setup failed, in words a user can act on.
fn explain(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    let sysctl = sysctl.as_deref().map(str::trim);
    match (e.raw_os_error(), sysctl) {
        (Some(libc::ENOSYS), _) => "the kernel has no io_uring (ENOSYS)".into(),
        (Some(libc::EPERM), Some("2")) => "io_uring is disabled by sysctl kernel.io_uring_disabled=2 (EPERM)".into(),
        (Some(libc::EPERM), Some("1")) => {
            "io_uring is restricted to a group by sysctl kernel.io_uring_disabled=1 (EPERM)".into()
        }
        (Some(libc::EPERM), _) => "io_uring_setup is blocked by seccomp or a security policy (EPERM)".into(),
        (Some(libc::ENOMEM), _) => "not enough locked memory for the ring (ENOMEM; see RLIMIT_MEMLOCK)".into(),
        (Some(libc::EINVAL), _) => "the kernel rejected the ring parameters (EINVAL)".into(),
        _ => format!("io_uring_setup failed: {e}"),
    }
}

/// Kernel release as (major, minor), for features no probe reports.
fn kernel_version() -> Option<(u32, u32)> {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = rel.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl Uring {
    /// Sets up a ring with `entries` submission slots, checking that the
    /// kernel has every operation cport uses.
    pub(crate) fn new(entries: u32, queue: Arc<QueueCount>) -> Result<Uring, BuildError> {
        let cq = entries.saturating_mul(4).max(1024);
        // COOP_TASKRUN: completion work runs when the submitting thread next
        // enters the kernel instead of interrupting it (sleeping threads are
        // still woken for it). Measured: 1 KiB HTTP 79k -> 178k req/s.
        let setup = move || {
            IoUring::builder()
                .setup_cqsize(cq)
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_submit_all()
                .build(entries)
                .or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))
        };
        let ring = on_own_thread(setup).map_err(|source| BuildError::IoUringUnavailable {
            cause: explain(&source),
            source,
        })?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|source| BuildError::IoUringUnavailable {
                cause: format!("probe failed: {source}"),
                source,
            })?;
        let needed = [
            ("accept", opcode::Accept::CODE),
            ("connect", opcode::Connect::CODE),
            ("recv", opcode::Recv::CODE),
            ("send", opcode::Send::CODE),
            ("sendmsg", opcode::SendMsg::CODE),
            ("recvmsg", opcode::RecvMsg::CODE),
            ("splice", opcode::Splice::CODE),
            ("shutdown", opcode::Shutdown::CODE),
            ("timeout", opcode::Timeout::CODE),
            ("async_cancel", opcode::AsyncCancel::CODE),
        ];
        for (name, code) in needed {
            if !probe.is_supported(code) {
                let source = io::Error::from(io::ErrorKind::Unsupported);
                return Err(BuildError::IoUringUnavailable {
                    cause: format!("the kernel's io_uring lacks the {name} operation"),
                    source,
                });
            }
        }
        // Multishot receive with provided-buffer rings and cancel-by-fd arrived in 6.0.
        if kernel_version().is_some_and(|v| v < (6, 0)) {
            let source = io::Error::from(io::ErrorKind::Unsupported);
            return Err(BuildError::IoUringUnavailable {
                cause: "kernel older than 6.0: no multishot receive or buffer rings".into(),
                source,
            });
        }
        // SAFETY: integer arguments only; no memory is passed.
        let efd = syscall!(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }).map_err(|source| {
            BuildError::IoUringUnavailable {
                cause: format!("eventfd failed: {source}"),
                source,
            }
        })?;
        // SAFETY: eventfd just returned this fd; nothing else owns it.
        let wake_fd = unsafe { OwnedFd::from_raw_fd(efd) };
        Ok(Uring {
            id: super::next_driver_id(),
            core: Arc::new(Core {
                ring,
                wake_fd,
                state: Mutex::new(State {
                    ops: Slab::with_capacity(1024),
                    backlog: VecDeque::new(),
                    pushed: 0,
                    next_gen: 0,
                    cancelled_fds: HashMap::new(),
                    next_seq: 0,
                    woken: false,
                    cancelled_all: false,
                    wake_armed: false,
                }),
                submitted: Condvar::new(),
                flushers: AtomicUsize::new(0),
                queue,
                kernel_calls: AtomicU64::new(0),
                next_bgid: AtomicU16::new(0),
                pipes: Mutex::new(Vec::new()),
            }),
        })
    }
}

impl AsRef<IoUring> for Core {
    fn as_ref(&self) -> &IoUring {
        &self.ring
    }
}

impl Core {
    /// Queues an SQE: into the submission queue, or behind it in the backlog
    /// when it is full. Never enters the kernel. Caller holds `state`.
    fn push_sqe(&self, st: &mut State, e: &squeue::Entry) {
        st.pushed += 1;
        // SAFETY: `state` is locked by the caller, so this is the only
        // SubmissionQueue view alive; and every pointer in `e` targets
        // memory owned by an in-flight entry until its final completion.
        if !st.backlog.is_empty() || unsafe { self.ring.submission_shared().push(e) }.is_err() {
            st.backlog.push_back(e.clone());
        }
    }

    /// Moves backlogged SQEs into the submission queue while it has room.
    fn fill_sq(&self, st: &mut State) {
        if st.backlog.is_empty() {
            return;
        }
        // SAFETY: as in `push_sqe`; the entries' memory is owned as there.
        let mut sq = unsafe { self.ring.submission_shared() };
        while let Some(e) = st.backlog.front() {
            // SAFETY: as above.
            if unsafe { sq.push(e) }.is_err() {
                break;
            }
            st.backlog.pop_front();
        }
    }

    /// SQEs not yet handed to the kernel: in the queue or the backlog.
    fn unsubmitted(&self, st: &State) -> usize {
        self.sq_len(st) + st.backlog.len()
    }

    fn sq_len(&self, _st: &State) -> usize {
        // SAFETY: `state` is locked by the caller (see `push_sqe`).
        unsafe { self.ring.submission_shared().len() }
    }

    /// Whether the kernel holds completion work for a thread of this ring
    /// (COOP_TASKRUN defers it until that thread enters the kernel).
    fn taskrun(&self, _st: &State) -> bool {
        // SAFETY: `state` is locked by the caller (see `push_sqe`).
        unsafe { self.ring.submission_shared().taskrun() }
    }

    /// Hands every queued and backlogged SQE to the kernel and runs pending
    /// completion work, without waiting. Only dequeuing threads call this.
    fn submit_pending(&self) -> io::Result<()> {
        loop {
            let (queued, backlog, taskrun) = {
                let mut st = self.state.lock();
                self.fill_sq(&mut st);
                (self.sq_len(&st), st.backlog.len(), self.taskrun(&st))
            };
            if queued == 0 && !taskrun {
                return Ok(());
            }
            self.submit(0, None)?;
            let left = self.unsubmitted(&self.state.lock());
            // Done, or the kernel took nothing (it would refuse again: leave
            // it to the next wait rather than spin).
            if backlog == 0 || left >= queued + backlog {
                return Ok(());
            }
        }
    }

    fn submit(&self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        self.kernel_calls.fetch_add(1, Relaxed);
        let res = match timeout {
            None => self.ring.submitter().submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        if self.flushers.load(SeqCst) > 0 {
            let _g = self.state.lock();
            self.submitted.notify_all();
        }
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves up to `REAP_MAX` ready CQEs into `out` as completions, so that
    /// what handlers issue in reply is submitted between batches rather than
    /// after the whole backlog. Caller holds `state`. Returns `true` if more
    /// CQEs are ready.
    fn reap(&self, st: &mut State, out: &mut Vec<Completion>) -> bool {
        // SAFETY: `state` is locked, so this is the only CompletionQueue view.
        let mut cq = unsafe { self.ring.completion_shared() };
        for _ in 0..REAP_MAX {
            let Some(cqe) = cq.next() else { return false };
            self.complete(st, cqe.user_data(), cqe.result(), cqe.flags(), out);
        }
        !cq.is_empty()
    }

    /// Wakes the leader out of `io_uring_enter` without entering the ring.
    fn wake(&self) {
        super::signal_eventfd(std::os::fd::AsFd::as_fd(&self.wake_fd));
    }

    fn complete(&self, st: &mut State, ud: u64, res: i32, flags: u32, out: &mut Vec<Completion>) {
        if ud == UD_WAKE {
            // The wake-up poll fired; it stays armed while `more` says so.
            if !cqueue::more(flags) {
                st.wake_armed = false;
            }
            st.woken = true;
            return;
        }
        if ud == UD_CANCEL {
            return;
        }
        let id = GenIndex::from_u64(ud);
        let (idx, gen) = (id.index() as usize, id.generation());
        let Some(f) = st.ops.get_mut(idx) else { return };
        if f.gen != gen {
            return;
        }
        // io_uring cancels a thread's requests when that thread exits. An
        // ECANCELED nobody asked for is that: nothing was transferred, so the
        // op goes in again (from this, a live thread) and completes once, later.
        // (A connect cannot start over: the socket is already connecting.)
        if res == -libc::ECANCELED
            && f.failed.is_none()
            && !matches!(f.op, Op::Connect { .. })
            && !asked_to_cancel(st.cancelled_all, &st.cancelled_fds, f)
        {
            if let Some(entry) = resubmission(f) {
                tracing::debug!(kind = %f.meta.kind, "op cancelled by its submitting thread's exit; submitted again");
                let entry = entry.user_data(ud);
                self.push_sqe(st, &entry);
                return;
            }
        }
        // A multishot accept is one accept armed at a time, re-armed here
        // while the port's queue has room: the kernel's own multishot accept
        // takes a whole backlog in one go, past any limit.
        if let (Op::Accept { multishot: true, .. }, true) = (&f.op, res >= 0 && f.failed.is_none()) {
            // SAFETY: the kernel created this fd for us; nobody else owns it.
            let s = unsafe { TcpStream::from_raw_fd(res) };
            out.push(Completion::new(f.meta, Ok(0), Payload::Accepted(s), true));
            let room = self.queue.delivered();
            if room && !asked_to_cancel(st.cancelled_all, &st.cancelled_fds, f) {
                if let Ok(entry) = sqe::build(f, || Err(io::ErrorKind::Unsupported.into())) {
                    self.push_sqe(st, &entry.user_data(ud));
                    return;
                }
            }
            let errno = if room { libc::ECANCELED } else { libc::ENOBUFS };
            let f = st.ops.remove(idx);
            self.finish(f, Err(io::Error::from_raw_os_error(errno)), 0, out);
            return;
        }
        let more = cqueue::more(flags);
        // Multishot receives that keep the op armed.
        if more {
            if let Op::RecvPooled { pool, .. } = &f.op {
                let payload = pooled_payload(pool, res, flags);
                out.push(Completion::new(f.meta, errno_result(res), payload, true));
                if !self.queue.delivered() && !f.stopped {
                    // The queue is full: end the receive (its final
                    // completion says ENOBUFS). Deliveries the kernel made
                    // before the cancel lands still come, each holding one
                    // of the pool's buffers.
                    f.cancelled = true;
                    f.stopped = true;
                    self.push_sqe(st, &opcode::AsyncCancel::new(ud).build().user_data(UD_CANCEL));
                }
                return;
            }
        }
        // send_file: advance the splice state machine.
        let asked = matches!(f.op, Op::SendFile { .. }) && asked_to_cancel(st.cancelled_all, &st.cancelled_fds, f);
        if let (Op::SendFile { fd, file, .. }, SqeData::Splice(s)) = (&f.op, &mut f.sqe_data) {
            let (sock, file) = (*fd, file.as_raw_fd());
            let next = if asked {
                Err(libc::ECANCELED)
            } else {
                splice_step(s, res, sock, file)
            };
            match next {
                Ok(Some(entry)) => {
                    let entry = entry.user_data(ud);
                    self.push_sqe(st, &entry);
                    return;
                }
                Ok(None) => {
                    let f = st.ops.remove(idx);
                    let sent = match &f.sqe_data {
                        SqeData::Splice(s) => s.sent,
                        _ => 0,
                    };
                    self.finish(f, Ok(sent as usize), 0, out);
                }
                Err(errno) => {
                    let f = st.ops.remove(idx);
                    self.finish(f, Err(io::Error::from_raw_os_error(errno)), 0, out);
                }
            }
            return;
        }
        let f = st.ops.remove(idx);
        if let (Op::RecvPooled { pool, .. }, true) = (&f.op, res == -libc::ENOBUFS) {
            // The kernel found the ring empty: the pool may grow, so that
            // the caller's retry finds a buffer.
            pool.note_empty();
        }
        let result = match (&f.op, res, f.failed) {
            (_, _, Some(errno)) => Err(io::Error::from_raw_os_error(errno)),
            (_, r, None) if r == -libc::ECANCELED && f.stopped => Err(io::Error::from_raw_os_error(libc::ENOBUFS)),
            (Op::Timeout { .. }, r, None) if r == -libc::ETIME => Ok(0),
            _ => errno_result(res),
        };
        self.finish(f, result, flags, out);
    }

    /// Turns a finished op into its final completion, handing buffers back.
    fn finish(&self, f: InFlight, result: io::Result<usize>, flags: u32, out: &mut Vec<Completion>) {
        let InFlight { meta, op, sqe_data, .. } = f;
        let payload = match op {
            Op::SendFile { .. } => {
                // Only a pipe known to be empty is reused: after an error or
                // a cancel it may hold bytes of this file.
                if let SqeData::Splice(s) = sqe_data {
                    if result.is_ok() && s.in_pipe == 0 {
                        self.pipes.lock().push(s.pipe);
                    }
                }
                op.into_payload()
            }
            other => {
                let peer = match &sqe_data {
                    SqeData::Msg(m) => m.peer(),
                    _ => None,
                };
                other.finish(&result, peer, cqueue::buffer_select(flags))
            }
        };
        out.push(Completion::new(meta, result, payload, false));
    }
}

/// Whether the port asked for `f` to be cancelled (by op, by fd, or all).
fn asked_to_cancel(all: bool, fds: &HashMap<RawFd, u64>, f: &InFlight) -> bool {
    f.cancelled || all || (!fds.is_empty() && fds.get(&f.op.fd()).is_some_and(|&at| f.seq < at))
}

/// The SQE that starts `f` again after the kernel cancelled it on its own.
fn resubmission(f: &mut InFlight) -> Option<squeue::Entry> {
    match (&mut f.op, &mut f.sqe_data) {
        (Op::SendFile { fd, file, .. }, SqeData::Splice(s)) => {
            let (sock, file) = (*fd, file.as_raw_fd());
            Some(if s.polling {
                sqe::poll_writable(sock)
            } else if s.in_pipe > 0 {
                sqe::splice_drain(s, sock)
            } else {
                sqe::splice_fill(s, file)
            })
        }
        (Op::Timeout { dur }, _) => {
            let left = f.due.map_or(*dur, |d| d.saturating_duration_since(Instant::now()));
            *dur = left;
            sqe::build(f, || Err(io::ErrorKind::Unsupported.into())).ok()
        }
        _ => sqe::build(f, || Err(io::ErrorKind::Unsupported.into())).ok(),
    }
}

/// The payload of a provided-buffer receive: the buffer the kernel picked.
fn pooled_payload(pool: &BufPool, res: i32, flags: u32) -> Payload {
    match cqueue::buffer_select(flags) {
        Some(bid) => {
            let b = pool.claim(bid, res.max(0) as usize);
            Payload::Buf(Buf::Pooled(b))
        }
        None => Payload::None,
    }
}

/// One step of the file → pipe → socket loop: the next SQE, `None` when done,
/// or the errno that ends it. A drain that meets a full socket (EAGAIN: the
/// socket is non-blocking) waits for room with a poll, which holds no kernel
/// thread, and drains again.
fn splice_step(s: &mut SpliceState, res: i32, sock: RawFd, file: RawFd) -> Result<Option<squeue::Entry>, i32> {
    if s.polling {
        s.polling = false;
        if res < 0 {
            return Err(-res);
        }
        // Writable, or hung up / in error: the drain says which.
        return Ok(Some(sqe::splice_drain(s, sock)));
    }
    if res == -libc::EAGAIN && s.in_pipe > 0 {
        s.polling = true;
        return Ok(Some(sqe::poll_writable(sock)));
    }
    if res < 0 {
        return Err(-res);
    }
    let n = res as u32;
    if s.in_pipe == 0 {
        // A fill finished.
        if n == 0 {
            return Ok(None); // end of file before `len`: report what was sent
        }
        s.in_pipe = n;
        s.offset += n as u64;
        s.remaining -= (n as u64).min(s.remaining);
        return Ok(Some(sqe::splice_drain(s, sock)));
    }
    // A drain finished.
    if n == 0 {
        return Err(libc::EPIPE);
    }
    s.in_pipe -= n.min(s.in_pipe);
    s.sent += n as u64;
    if s.in_pipe > 0 {
        Ok(Some(sqe::splice_drain(s, sock)))
    } else if s.remaining > 0 {
        Ok(Some(sqe::splice_fill(s, file)))
    } else {
        Ok(None)
    }
}

impl Driver for Uring {
    fn backend(&self) -> Backend {
        Backend::IoUring
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn prepare_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // io_uring arms its own poll for sockets; blocking mode keeps splice
        // and friends from surfacing EAGAIN.
        super::set_nonblocking(fd, false)
    }

    fn push(&self, mut meta: Meta, op: Op, _inline: bool) -> Result<Issued, (SubmitErrorKind, Op)> {
        let core = &self.core;
        let mut st = core.state.lock();
        let gen = super::next_gen(&mut st.next_gen);
        st.next_seq += 1;
        let seq = st.next_seq;
        let cancelled_all = st.cancelled_all;
        let entry = st.ops.vacant_entry();
        let idx = entry.key();
        if idx >= u32::MAX as usize {
            return Err((SubmitErrorKind::QueueFull, op));
        }
        let id = GenIndex::new(idx as u32, gen);
        meta.id = id;
        let op_id = meta.op_id();
        let mut f = InFlight {
            gen,
            meta,
            op,
            sqe_data: SqeData::None,
            cancelled: false,
            failed: None,
            due: None,
            seq,
            stopped: false,
        };
        if let Op::Timeout { dur } = &f.op {
            f.due = Some(super::deadline(*dur));
        }
        if cancelled_all {
            // Shut down: the op completes at once, cancelled, buffers handed back.
            f.failed = Some(libc::ECANCELED);
            entry.insert(f);
            core.push_sqe(&mut st, &opcode::Nop::new().build().user_data(id.to_u64()));
            return Ok(Issued::Pending(op_id));
        }
        if let Op::SendFile { fd, .. } = &f.op {
            // The drain splice must meet a full socket with EAGAIN (then the
            // ring polls for room) instead of parking a kernel worker thread
            // until the peer reads. io_uring still polls a non-blocking
            // socket's receives and sends itself.
            // SAFETY: the port holds this fd open while the op is counted on its handle.
            let sock = unsafe { BorrowedFd::borrow_raw(*fd) };
            if let Err(e) = super::set_nonblocking(sock, true) {
                f.failed = Some(e.raw_os_error().unwrap_or(libc::EIO));
                entry.insert(f);
                core.push_sqe(&mut st, &opcode::Nop::new().build().user_data(id.to_u64()));
                return Ok(Issued::Pending(op_id));
            }
        }
        let pipe = || core.pipes.lock().pop().map_or_else(Pipe::new, Ok);
        let sqe = match sqe::build(&mut f, pipe) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::Unsupported => return Err((SubmitErrorKind::Unsupported, f.op)),
            Err(e) => {
                // Complete through the ring so the error arrives like any other.
                f.failed = Some(e.raw_os_error().unwrap_or(libc::EIO));
                entry.insert(f);
                core.push_sqe(&mut st, &opcode::Nop::new().build().user_data(id.to_u64()));
                return Ok(Issued::Pending(op_id));
            }
        };
        entry.insert(f);
        core.push_sqe(&mut st, &sqe.user_data(id.to_u64()));
        Ok(Issued::Pending(op_id))
    }

    fn flush(&self) {
        // The leader submits: this thread must not enter the ring (see `Core::wake_fd`).
        let core = &self.core;
        let pending = core.unsubmitted(&core.state.lock());
        if pending > 0 {
            core.wake();
        }
    }

    fn submit_now(&self) {
        let _ = self.core.submit_pending();
    }

    fn submit_mark(&self) -> u64 {
        self.core.state.lock().pushed
    }

    fn wait_submitted(&self, mark: u64, limit: Duration) -> bool {
        let core = &self.core;
        let mut st = core.state.lock();
        let done = |st: &State| st.pushed - core.unsubmitted(st) as u64 >= mark;
        if done(&st) || limit.is_zero() {
            return done(&st);
        }
        core.flushers.fetch_add(1, SeqCst);
        if !done(&st) {
            core.submitted.wait_for(&mut st, limit);
        }
        core.flushers.fetch_sub(1, SeqCst);
        done(&st)
    }

    fn wait(&self, out: &mut Vec<Completion>, deadline: Option<Instant>) -> io::Result<()> {
        let core = &self.core;
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let more_ready = {
            let mut st = core.state.lock();
            // Only a wait that may block needs the wake-up armed.
            if !st.wake_armed && timeout != Some(Duration::ZERO) {
                let poll = opcode::PollAdd::new(types::Fd(core.wake_fd.as_raw_fd()), libc::POLLIN as u32).multi(true);
                core.push_sqe(&mut st, &poll.build().user_data(UD_WAKE));
                st.wake_armed = true;
            }
            let more = core.reap(&mut st, out);
            // A wake-up reaped here must end this wait, not be slept through.
            let woken = std::mem::take(&mut st.woken);
            more || woken
        };
        if !out.is_empty() || more_ready || timeout == Some(Duration::ZERO) {
            // Ready already (or no time to wait): hand pending ops over and
            // run deferred completion work, then take what that made ready.
            // An error here must not lose what was reaped: the caller
            // settles `out` whatever this returns.
            let res = core.submit_pending();
            if out.is_empty() {
                core.reap(&mut core.state.lock(), out);
            }
            return res;
        }
        // Everything pending goes in; the last of it with the blocking call.
        let backlog = {
            let mut st = core.state.lock();
            core.fill_sq(&mut st);
            st.backlog.len()
        };
        if backlog > 0 {
            core.submit_pending()?;
        }
        // One blocking call: it returns for a completion, a wake-up, the
        // deadline or a signal. The caller loops; an empty return is fine.
        core.submit(1, timeout)?;
        let mut st = core.state.lock();
        core.reap(&mut st, out);
        st.woken = false;
        Ok(())
    }

    fn wake(&self) {
        self.core.wake();
    }

    fn cancel(&self, target: CancelTarget) {
        let core = &self.core;
        {
            let mut st = core.state.lock();
            let entry = match target {
                CancelTarget::Op(id) => {
                    if let Some(f) = st.ops.get_mut(id.index() as usize) {
                        if f.gen == id.generation() {
                            f.cancelled = true;
                        }
                    }
                    opcode::AsyncCancel::new(id.to_u64()).build()
                }

                CancelTarget::Fd(fd) => {
                    // Every op pushed so far has `seq <= next_seq`.
                    let upto = st.next_seq + 1;
                    st.cancelled_fds.insert(fd, upto);
                    opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all()).build()
                }
                CancelTarget::All => {
                    st.cancelled_all = true;
                    opcode::AsyncCancel2::new(types::CancelBuilder::any()).build()
                }
            };
            core.push_sqe(&mut st, &entry.user_data(UD_CANCEL));
        }
        core.wake();
    }

    fn forget_fd(&self, fd: RawFd) {
        self.core.state.lock().cancelled_fds.remove(&fd);
    }

    fn in_flight(&self) -> usize {
        self.core.state.lock().ops.len()
    }

    fn visit_in_flight(&self, f: &mut dyn FnMut(&Meta)) {
        self.core.state.lock().ops.iter().for_each(|(_, op)| f(&op.meta));
    }

    fn buf_pool(&self, min: u16, max: u16, size: usize) -> io::Result<BufPool> {
        let bgid = self.core.next_bgid.fetch_add(1, Relaxed);
        // The ring has a slot for every buffer the pool may grow to.
        let ring = BufRing::register(self.core.clone(), max.next_power_of_two(), bgid)?;
        let inner = Arc::new(PoolInner::new(min, max, size, Provider::Ring(Box::new(ring)), self.id)?);
        if let Provider::Ring(r) = &inner.provider {
            for bid in 0..inner.live() {
                r.give_back(bid, inner.addr(bid), size);
            }
        }
        Ok(BufPool { inner })
    }

    fn kernel_calls(&self) -> u64 {
        self.core.kernel_calls.load(Relaxed)
    }

    fn drain(&self) {
        // The dropping thread is often an application thread that never
        // entered the ring: it must not start now (see `on_own_thread`).
        if drained(&self.core.state.lock()) {
            return;
        }
        let this = Uring {
            core: self.core.clone(),
            id: self.id,
        };
        on_own_thread(move || this.drain_here());
    }
}

/// Runs `f` on a short-lived thread of its own (or here, if no thread can
/// be had). The kernel remembers every thread that set up or submitted to a
/// ring, and sends each one task work (TWA_SIGNAL) when the ring closes,
/// which wakes it from whatever it blocks in: a socket read with a timeout
/// fails with EINTR. Setting up and draining the ring on a thread that has
/// exited by then keeps the application's threads out of that list.
fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let f = Arc::new(Mutex::new(Some(f)));
    let theirs = f.clone();
    let spawned = std::thread::Builder::new()
        .name("cport-ring".into())
        .spawn(move || theirs.lock().take().map(|f| f()));
    let done = match spawned {
        Ok(t) => t.join().ok().flatten(),
        Err(e) => {
            tracing::warn!(error = %e, "no thread for io_uring setup or drain; using the calling thread");
            None
        }
    };
    // Not spawned (or it panicked before taking `f`): run it here.
    done.unwrap_or_else(|| match f.lock().take() {
        Some(f) => f(),
        None => panic!("io_uring setup or drain panicked on its own thread"),
    })
}

/// No op is left in the ring.
fn drained(st: &State) -> bool {
    st.ops.is_empty()
}

impl Uring {
    /// [`Driver::drain`]'s work, on the calling thread: cancels everything
    /// and waits (bounded) until the kernel is done with every op.
    fn drain_here(&self) {
        let core = &self.core;
        self.cancel(CancelTarget::All);
        let _ = core.submit_pending();
        let start = Instant::now();
        let mut sink = Vec::new();
        while start.elapsed() < Duration::from_secs(10) {
            {
                let mut st = core.state.lock();
                core.reap(&mut st, &mut sink);
                if drained(&st) {
                    return;
                }
                core.fill_sq(&mut st);
            }
            sink.clear();
            let _ = core.submit(1, Some(Duration::from_millis(50)));
        }
        // The kernel still holds some ops' memory: leak it rather than free
        // what it may write.
        let mut st = core.state.lock();
        tracing::error!(
            left = st.ops.len(),
            "io_uring ops did not finish at shutdown; leaking their buffers"
        );
        for f in st.ops.drain() {
            std::mem::forget(f);
        }
    }
}
