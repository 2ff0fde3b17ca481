//! The backend boundary: everything that talks to the kernel lives below here.
//!
//! Each backend provides one type implementing [`Driver`], with these duties:
//! - `push` takes an [`Op`] (which owns its fd number and buffers) and keeps it
//!   until the kernel is done with it; the op's final [`Completion`] hands
//!   the buffers back. The memory an op points the kernel at is owned by the
//!   driver's in-flight table until that final completion: this is the one
//!   invariant every `unsafe` block in the backends leans on.
//! - `wait` is called by one thread at a time (the port's leader): it makes
//!   pushed operations visible to the kernel and reaps completions.
//! - `flush` and `wake` let other threads submit early and interrupt a wait;
//!   `submit_mark`/`wait_submitted` tell when what was pushed is in the kernel.
//!   Pushing never enters the kernel.
//! - `cancel` ends one op, every op on an fd, or everything (shutdown).
//!
//! Backends: [`uring`] (io_uring, the default) and [`epoll`] (readiness turned
//! into completions; files on a small thread pool).

use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use crate::backend::Backend;
use crate::completion::{Completion, Issued, Meta};
use crate::error::SubmitErrorKind;
use crate::index::GenIndex;

pub(crate) mod buf;
pub(crate) mod epoll;
pub mod select;
pub(crate) mod uring;

use buf::{Buf, BufPool, Datagram, Payload};

/// One operation, as the port hands it to a backend: what to do, on which fd,
/// with which owned buffers. Built whole by the port once it holds the
/// handle's fd (under the handle table's lock), never patched afterwards.
#[derive(Debug)]
pub(crate) enum Op {
    Nop,
    Timeout {
        dur: Duration,
    },
    Accept {
        fd: RawFd,
        multishot: bool,
    },
    Connect {
        fd: RawFd,
        addr: Box<SockAddr>,
    },
    /// Reads into the spare capacity of `buf`.
    Recv {
        fd: RawFd,
        buf: Vec<u8>,
    },
    RecvPooled {
        fd: RawFd,
        pool: BufPool,
        multishot: bool,
    },
    Send {
        fd: RawFd,
        buf: Buf,
    },
    SendVectored {
        fd: RawFd,
        bufs: Vec<Buf>,
    },
    RecvFrom {
        fd: RawFd,
        buf: Vec<u8>,
    },
    SendTo {
        fd: RawFd,
        buf: Buf,
        addr: Box<SockAddr>,
    },
    Shutdown {
        fd: RawFd,
        how: Shutdown,
    },
    ReadAt {
        fd: RawFd,
        buf: Vec<u8>,
        offset: u64,
    },
    WriteAt {
        fd: RawFd,
        buf: Buf,
        offset: u64,
    },
    Fsync {
        fd: RawFd,
        data_only: bool,
    },
    SendFile {
        fd: RawFd,
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl Op {
    /// The fd the operation targets (-1 for none).
    pub(crate) fn fd(&self) -> RawFd {
        match self {
            Op::Nop | Op::Timeout { .. } => -1,
            Op::Accept { fd, .. }
            | Op::Connect { fd, .. }
            | Op::Recv { fd, .. }
            | Op::RecvPooled { fd, .. }
            | Op::Send { fd, .. }
            | Op::SendVectored { fd, .. }
            | Op::RecvFrom { fd, .. }
            | Op::SendTo { fd, .. }
            | Op::Shutdown { fd, .. }
            | Op::ReadAt { fd, .. }
            | Op::WriteAt { fd, .. }
            | Op::Fsync { fd, .. }
            | Op::SendFile { fd, .. } => *fd,
        }
    }

    /// Whether one push yields many completions (until it ends).
    pub(crate) fn is_multishot(&self) -> bool {
        matches!(
            self,
            Op::Accept { multishot: true, .. } | Op::RecvPooled { multishot: true, .. }
        )
    }

    /// What a finished op hands back: its buffers, with the `n` bytes the
    /// kernel wrote counted in (receives and reads), the datagram's `peer`,
    /// the pool buffer `bid` a pooled receive filled, or the accepted
    /// connection. Both backends build final completions with this.
    pub(crate) fn finish(self, result: &io::Result<usize>, peer: Option<SocketAddr>, bid: Option<u16>) -> Payload {
        let n = *result.as_ref().unwrap_or(&0);
        match self {
            Op::Recv { mut buf, .. } | Op::ReadAt { mut buf, .. } => {
                grow(&mut buf, n);
                Payload::Buf(Buf::Vec(buf))
            }
            Op::RecvFrom { mut buf, .. } => {
                grow(&mut buf, n);
                match peer.filter(|_| result.is_ok()) {
                    Some(addr) => Payload::Datagram(Box::new(Datagram {
                        buf: Buf::Vec(buf),
                        addr,
                    })),
                    None => Payload::Buf(Buf::Vec(buf)),
                }
            }
            Op::Accept { .. } if result.is_ok() => {
                // SAFETY: a successful accept made fd `n` for this op; nobody
                // else owns it.
                Payload::Accepted(unsafe { std::net::TcpStream::from_raw_fd(n as RawFd) })
            }
            Op::RecvPooled { pool, .. } => match bid {
                Some(bid) => Payload::Buf(Buf::Pooled(pool.claim(bid, n))),
                None => Payload::None,
            },
            other => other.into_payload(),
        }
    }

    /// The buffers the op owns, handed back (an op that never ran, or one
    /// whose result carries no extra data).
    pub(crate) fn into_payload(self) -> Payload {
        match self {
            Op::Recv { buf, .. } | Op::RecvFrom { buf, .. } | Op::ReadAt { buf, .. } => Payload::Buf(Buf::Vec(buf)),
            Op::Send { buf, .. } | Op::WriteAt { buf, .. } => Payload::Buf(buf),
            Op::SendTo { buf, addr, .. } => match addr.as_socket() {
                Some(addr) => Payload::Datagram(Box::new(Datagram { buf, addr })),
                None => Payload::Buf(buf),
            },
            Op::SendVectored { bufs, .. } => Payload::Bufs(bufs),
            Op::SendFile { file, .. } => Payload::File(file),
            Op::Nop
            | Op::Timeout { .. }
            | Op::Accept { .. }
            | Op::Connect { .. }
            | Op::RecvPooled { .. }
            | Op::Shutdown { .. }
            | Op::Fsync { .. } => Payload::None,
        }
    }
}

/// What to cancel.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CancelTarget {
    Op(GenIndex),
    Fd(RawFd),
    All,
}

/// Where a receive or read into `buf` writes: its spare capacity (the data
/// is appended), or, for a buffer with none, the whole of it (`vec![0; n]`
/// offers `n` bytes; the port refuses a buffer with no capacity at all).
/// Both backends take the kernel's pointer from here, and [`grow`] counts
/// the result the same way.
pub(crate) fn room(buf: &mut Vec<u8>) -> &mut [std::mem::MaybeUninit<u8>] {
    if buf.len() < buf.capacity() {
        return buf.spare_capacity_mut();
    }
    let len = buf.len();
    // SAFETY: the first `len` bytes are initialised and owned by `buf`,
    // which this borrow holds; viewing `u8`s as `MaybeUninit<u8>` is sound
    // because the kernel writes only initialised bytes into them.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), len) }
}

/// Counts `n` bytes the kernel wrote into [`room`]`(buf)`: appended to a
/// buffer with spare capacity, or the new length of one received into whole.
fn grow(buf: &mut Vec<u8>, n: usize) {
    if buf.len() == buf.capacity() {
        // Received into whole (`n` is 0 for an op that did not run; then
        // the buffer comes back as it went).
        if n > 0 {
            buf.truncate(n);
        }
        return;
    }
    let n = n.min(buf.capacity() - buf.len());
    // SAFETY: a receive or read just initialised the first `n` bytes of the
    // spare capacity (and `n` is 0 for any op that did not run).
    unsafe { buf.set_len(buf.len() + n) };
}

/// Takes the next op generation from a driver's counter. (Generations have
/// 31 bits, so an op id never looks like a reserved `user_data`/token:
/// those have the top bit set.)
pub(crate) fn next_gen(counter: &mut u32) -> u32 {
    let gen = *counter;
    *counter = GenIndex::next_generation(gen);
    gen
}

/// When a timeout of `dur` from now falls due (far in the future for a
/// duration past what `Instant` holds).
pub(crate) fn deadline(dur: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(dur)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86400))
}

/// The backend boundary. See the module docs for each duty.
pub(crate) trait Driver: Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// This driver's identity: buffer pools belong to the driver that made them.
    fn id(&self) -> u64;
    /// Puts an fd into the mode this backend needs (blocking for io_uring,
    /// non-blocking for epoll).
    fn prepare_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()>;
    /// Starts an operation; `meta.id` is assigned here. On refusal the op
    /// comes back. With `inline`, an operation that finishes while being
    /// pushed comes back as its completion (`Issued::Done`), never queued; a
    /// backend that never finishes operations at once (io_uring batches
    /// them) always answers `Issued::Pending`.
    fn push(&self, meta: Meta, op: Op, inline: bool) -> Result<Issued, (SubmitErrorKind, Op)>;
    /// Makes pushed operations reach the kernel soon: wakes the leader so it
    /// submits them (the calling thread itself must not enter the ring).
    fn flush(&self);
    /// Submits pushed operations from the calling thread, which dequeues
    /// from this port and so may enter the ring.
    fn submit_now(&self);
    /// A mark for everything pushed so far, for [`wait_submitted`](Self::wait_submitted).
    fn submit_mark(&self) -> u64;
    /// Whether everything pushed before `mark` is in the kernel, waiting up
    /// to `limit` for a submission by another thread (the leader's).
    fn wait_submitted(&self, mark: u64, limit: Duration) -> bool;
    /// Waits until at least one completion is ready or the deadline passes, and
    /// appends every ready completion to `out`. One caller at a time.
    fn wait(&self, out: &mut Vec<Completion>, deadline: Option<Instant>) -> io::Result<()>;
    /// Makes a thread blocked in `wait` return soon.
    fn wake(&self);
    /// Asks the kernel to end operations early; each still completes once.
    fn cancel(&self, target: CancelTarget);
    /// The port is about to close `fd`: drop any per-fd state.
    fn forget_fd(&self, fd: RawFd);
    /// Operations pushed and not yet completed.
    fn in_flight(&self) -> usize;
    /// Calls `f` with the bookkeeping of each operation in flight (for
    /// `Port::snapshot`: read-only, under the driver's lock, so `f` is short).
    fn visit_in_flight(&self, f: &mut dyn FnMut(&Meta));
    /// A pool of `min..=max` buffers of `size` bytes for provided-buffer
    /// receives, `min` in service at first (it sizes itself between them).
    fn buf_pool(&self, min: u16, max: u16, size: usize) -> io::Result<BufPool>;
    /// Times the backend entered the kernel (submit or wait).
    fn kernel_calls(&self) -> u64;
    /// At port drop: cancels everything and waits (bounded) until the kernel
    /// is done with every op's memory, dropping their completions.
    fn drain(&self);
}

/// The port's queue limit: operations in flight plus completions queued.
/// Shared with the backend, which counts the deliveries of multishot
/// operations where it makes them (nobody issued those, so nothing
/// reserved room for them).
#[derive(Debug)]
pub(crate) struct QueueCount {
    pub(crate) n: std::sync::atomic::AtomicUsize,
    pub(crate) limit: usize,
}

impl QueueCount {
    pub(crate) fn new(limit: usize) -> Self {
        QueueCount {
            n: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }
    /// Counts one multishot delivery. `false` when it filled the queue: the
    /// op must stop (its final completion, already counted, says ENOBUFS).
    pub(crate) fn delivered(&self) -> bool {
        self.n.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1 < self.limit
    }
}

/// A process-unique id for a new driver.
pub(crate) fn next_driver_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The error of an errno value.
pub(crate) fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

/// `shutdown(2)`'s `how` for `how` (for io_uring's shutdown SQE).
pub(crate) fn shut_how(how: Shutdown) -> i32 {
    use rustix::net::Shutdown as How;
    match how {
        Shutdown::Read => How::Read as i32,
        Shutdown::Write => How::Write as i32,
        Shutdown::Both => How::Both as i32,
    }
}

/// Adds one to an eventfd's counter, waking whoever polls it. (The
/// counter never fills: it would take 2^64 writes.)
pub(crate) fn signal_eventfd(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

/// Turns a `-errno` style result (an io_uring CQE's) into an `io::Result`.
pub(crate) fn errno_result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// Turns a libc call's -1 into the `io::Error` of `errno`:
/// `syscall!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })`.
/// The `unsafe` block stays at the call, so each call carries its own
/// `// SAFETY:` line naming what makes its arguments valid. Only the
/// io_uring backend's splice pipes still call libc this way; everything
/// else goes through rustix.
macro_rules! syscall {
    ($call:expr) => {{
        let res = $call;
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// The IPv4 or IPv6 address the kernel wrote into `storage` (`len` bytes),
/// read by socket2 (`None` for another family).
pub(crate) fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let mut copy = socket2::SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_storage` is one of this platform's sockaddr types.
    unsafe { *copy.view_as::<libc::sockaddr_storage>() = *storage };
    let len = len.min(copy.size_of());
    // SAFETY: the kernel initialised the first `len` bytes of `storage`
    // with a socket address (the rest is zeroed or stale, and not read).
    unsafe { SockAddr::new(copy, len) }.as_socket()
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(fd)?;
    let new = if on {
        flags | OFlags::NONBLOCK
    } else {
        flags - OFlags::NONBLOCK
    };
    if new != flags {
        fcntl_setfl(fd, new)?;
    }
    Ok(())
}
