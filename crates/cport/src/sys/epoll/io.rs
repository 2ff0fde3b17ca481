//! One non-blocking attempt at a socket operation, and the completion it
//! finally makes.
//!
//! Every call goes through rustix, on slices the op owns (a `Vec`'s room, a
//! `Buf`, a pool buffer taken for this call, or a local), and returns before
//! the attempt does: nothing is left for the kernel to touch afterwards.
//! What stays `unsafe` is borrowing the op's fd by number, and viewing a
//! pool buffer (raw memory) as a slice.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rustix::io::Errno;
use rustix::net::{self, RecvFlags, SendAncillaryBuffer, SendFlags, SocketFlags};
use socket2::{SockAddr, SockRef};

use crate::completion::{Completion, Meta};
use crate::sys::buf::{Buf, Payload};
use crate::sys::{errno, Op};

/// Counts system calls. Written only under the driver's state lock, so a
/// plain load and store does (no atomic read-modify-write per call); read
/// from anywhere.
#[derive(Default)]
pub(super) struct Calls(AtomicU64);

impl Calls {
    pub(super) fn one(&self) {
        self.0.store(self.0.load(Relaxed) + 1, Relaxed);
    }
    pub(super) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Iovecs gathered on the stack before falling back to the heap.
const STACK_IOVS: usize = 32;
/// Largest count one `sendfile` call takes (what Linux caps transfers at).
const MAX_SENDFILE: u64 = 0x7fff_f000;

/// What the driver believes about an fd's readiness. A `false` is only
/// trusted once an edge is sure to follow (after `EAGAIN`, or a short
/// transfer on a stream socket); until registered, everything counts as ready.
#[derive(Clone, Copy, Debug)]
pub(super) struct Flags {
    pub(super) registered: bool,
    /// A stream socket (learnt at registration): a short transfer means drained.
    pub(super) stream: bool,
    pub(super) read_ready: bool,
    pub(super) write_ready: bool,
    /// The peer shut its side, or the socket failed: reads never block again,
    /// so a short read proves nothing.
    pub(super) rdhup: bool,
    /// The last pooled receive filled its buffer: read the next one into a
    /// second buffer too (see `Op::RecvPooled` in `attempt`).
    pub(super) spill: bool,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            registered: false,
            stream: false,
            read_ready: true,
            write_ready: true,
            rdhup: false,
            spill: false,
        }
    }
}

impl Flags {
    pub(super) fn ready(&self, read: bool) -> bool {
        if read {
            self.read_ready
        } else {
            self.write_ready
        }
    }
    /// After a read of `n` of `want` bytes: a short read on a stream socket
    /// means the receive queue is empty, so the next read would block.
    fn after_read(&mut self, n: usize, want: usize) {
        if n == 0 && want > 0 {
            self.rdhup = true;
        } else if n < want && !self.rdhup && (self.stream || !self.registered) {
            self.read_ready = false;
        }
    }
    /// After a send of `n` of `want` bytes: a short send on a stream socket
    /// means the send buffer is full (and the kernel will signal space).
    fn after_write(&mut self, n: usize, want: usize) {
        if n < want && (self.stream || !self.registered) {
            self.write_ready = false;
        }
    }
}

/// What a receive learned besides its byte count (the sender, or the pool
/// buffer it filled): the final completion's payload is built from it.
pub(super) enum RecvInfo {
    None,
    /// The datagram's sender (`recv_from`).
    Peer(Option<SocketAddr>),
    /// The pool buffer that holds the data (`recv_pooled`).
    Bid(u16),
}

/// The outcome of one attempt.
pub(super) enum Attempt {
    /// Would block: wait for readiness.
    Again,
    /// Made progress and may make more (part of a `send_file`).
    Step,
    /// A multishot delivery; the op stays armed.
    Emit(io::Result<usize>, Payload),
    /// A multishot receive that filled one pool buffer and spilled into a
    /// second: two deliveries, in order (bytes, buffer); the op stays armed.
    EmitTwo((usize, Payload), (usize, Payload)),
    /// The op is finished.
    Done(io::Result<usize>, RecvInfo),
}

fn is_intr(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Tries `op` once (retrying `EINTR`), updating the readiness `flags`.
pub(super) fn attempt(op: &mut Op, progress: &mut u64, flags: &mut Flags, calls: &Calls) -> Attempt {
    let raw = op.fd();
    if raw < 0 {
        return Attempt::Done(Err(errno(Errno::INVAL)), RecvInfo::None);
    }
    // SAFETY: the port holds the op's fd open while the op is counted on
    // its handle, which outlasts this attempt.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    loop {
        calls.one();
        let a = match op {
            Op::Accept { multishot, .. } => accept(fd, *multishot, flags),
            Op::Connect { addr, .. } => connect(fd, addr, progress, flags, calls),
            Op::Recv { buf, .. } => {
                let room = crate::sys::room(buf);
                let want = room.len();
                match net::recv(fd, room, RecvFlags::empty()) {
                    Ok(((got, _), _)) => {
                        flags.after_read(got.len(), want);
                        Attempt::Done(Ok(got.len()), RecvInfo::None)
                    }
                    Err(e) => read_error(e, flags),
                }
            }
            Op::RecvPooled { pool, multishot, .. } => {
                let Some((bid, ptr, size)) = pool.take() else {
                    return pool_empty(fd, flags, calls);
                };
                // A multishot receive on a stream whose last read filled its
                // buffer reads into a second buffer as well: a message that
                // fills the first one exactly still ends in a short read,
                // which says the socket is drained, instead of one more call
                // that would only return EAGAIN. Small messages never pay for
                // it. (Never on datagrams: that would split one.)
                let spill = if *multishot && flags.stream && flags.spill {
                    pool.take()
                } else {
                    None
                };
                let want = size + spill.map_or(0, |(_, _, len)| len);
                let give_back = |first: bool| {
                    if first {
                        pool.untake(bid);
                    }
                    if let Some((b, _, _)) = spill {
                        pool.untake(b);
                    }
                };
                // SAFETY: buffer `bid` was just taken from the free list, so
                // this call is its only user; it is `size` bytes long, inside
                // the pool's allocation (zeroed when made, so initialised).
                let first = unsafe { std::slice::from_raw_parts_mut(ptr, size) };
                let r = match spill {
                    Some((_, p2, len2)) => {
                        // SAFETY: as for `first`, for the spill buffer.
                        let second = unsafe { std::slice::from_raw_parts_mut(p2, len2) };
                        rustix::io::readv(fd, &mut [IoSliceMut::new(first), IoSliceMut::new(second)])
                    }
                    None => net::recv(fd, first, RecvFlags::empty()).map(|(n, _)| n),
                };
                match r {
                    Ok(0) => {
                        give_back(true);
                        flags.after_read(0, want);
                        Attempt::Done(Ok(0), RecvInfo::None)
                    }
                    Ok(n) => {
                        flags.after_read(n, want);
                        flags.spill = n >= size;
                        match spill {
                            Some((b2, _, _)) if n > size => Attempt::EmitTwo(
                                (size, Payload::Buf(Buf::Pooled(pool.claim(bid, size)))),
                                (n - size, Payload::Buf(Buf::Pooled(pool.claim(b2, n - size)))),
                            ),
                            _ => {
                                give_back(false);
                                if *multishot {
                                    Attempt::Emit(Ok(n), Payload::Buf(Buf::Pooled(pool.claim(bid, n))))
                                } else {
                                    Attempt::Done(Ok(n), RecvInfo::Bid(bid))
                                }
                            }
                        }
                    }
                    Err(e) => {
                        give_back(true);
                        read_error(e, flags)
                    }
                }
            }
            Op::Send { buf, .. } => {
                let s = buf.as_slice();
                match net::send(fd, s, SendFlags::NOSIGNAL) {
                    Ok(n) => {
                        flags.after_write(n, s.len());
                        Attempt::Done(Ok(n), RecvInfo::None)
                    }
                    Err(e) => write_error(e, flags),
                }
            }
            Op::SendVectored { bufs, .. } => send_vectored(fd, bufs, flags),
            Op::RecvFrom { buf, .. } => match net::recvfrom(fd, crate::sys::room(buf), RecvFlags::empty()) {
                Ok(((got, _), _, addr)) => {
                    let peer = addr.and_then(|a| SocketAddr::try_from(a).ok());
                    Attempt::Done(Ok(got.len()), RecvInfo::Peer(peer))
                }
                Err(e) => read_error(e, flags),
            },
            Op::SendTo { buf, addr, .. } => match addr.as_socket() {
                Some(to) => match net::sendto(fd, buf.as_slice(), SendFlags::NOSIGNAL, &to) {
                    Ok(n) => Attempt::Done(Ok(n), RecvInfo::None),
                    Err(e) => write_error(e, flags),
                },
                None => Attempt::Done(Err(errno(Errno::AFNOSUPPORT)), RecvInfo::None),
            },
            Op::SendFile { file, offset, len, .. } => {
                if *len == 0 {
                    return Attempt::Done(Ok(*progress as usize), RecvInfo::None);
                }
                let mut off = *offset;
                let chunk = (*len).min(MAX_SENDFILE) as usize;
                match rustix::fs::sendfile(fd, file.as_fd(), Some(&mut off), chunk) {
                    Ok(0) => Attempt::Done(Ok(*progress as usize), RecvInfo::None), // end of file
                    Ok(n) => {
                        let n = n as u64;
                        *offset += n;
                        *len -= n.min(*len);
                        *progress += n;
                        if *len == 0 {
                            Attempt::Done(Ok(*progress as usize), RecvInfo::None)
                        } else {
                            Attempt::Step
                        }
                    }
                    Err(e) => write_error(e, flags),
                }
            }
            Op::Nop
            | Op::Timeout { .. }
            | Op::Shutdown { .. }
            | Op::ReadAt { .. }
            | Op::WriteAt { .. }
            | Op::Fsync { .. } => Attempt::Done(Err(errno(Errno::INVAL)), RecvInfo::None),
        };
        match a {
            Attempt::Done(Err(ref e), _) if is_intr(e) => continue,
            a => return a,
        }
    }
}

fn read_error(e: Errno, flags: &mut Flags) -> Attempt {
    if e == Errno::AGAIN {
        flags.read_ready = false;
        Attempt::Again
    } else {
        Attempt::Done(Err(e.into()), RecvInfo::None)
    }
}

fn write_error(e: Errno, flags: &mut Flags) -> Attempt {
    if e == Errno::AGAIN {
        flags.write_ready = false;
        Attempt::Again
    } else {
        Attempt::Done(Err(e.into()), RecvInfo::None)
    }
}

fn accept(fd: BorrowedFd<'_>, multishot: bool, flags: &mut Flags) -> Attempt {
    // Blocking and close-on-exec, exactly as io_uring's accept hands it out:
    // the stream may be used without the port; `associate` makes it non-blocking.
    match net::accept_with(fd, SocketFlags::CLOEXEC) {
        Ok(s) if multishot => Attempt::Emit(Ok(0), Payload::Accepted(TcpStream::from(s))),
        // The final completion turns the number back into a stream (`Op::finish`).
        Ok(s) => Attempt::Done(Ok(s.into_raw_fd() as usize), RecvInfo::None),
        // The connection went away before we took it: take the next.
        Err(Errno::CONNABORTED) => Attempt::Done(Err(errno(Errno::INTR)), RecvInfo::None),
        Err(e) => read_error(e, flags),
    }
}

fn connect(fd: BorrowedFd<'_>, addr: &SockAddr, progress: &mut u64, flags: &mut Flags, calls: &Calls) -> Attempt {
    if *progress == 0 {
        let Some(to) = addr.as_socket() else {
            return Attempt::Done(Err(errno(Errno::AFNOSUPPORT)), RecvInfo::None);
        };
        return match net::connect(fd, &to) {
            Ok(()) => Attempt::Done(Ok(0), RecvInfo::None),
            Err(Errno::INPROGRESS | Errno::INTR) => {
                *progress = 1;
                flags.write_ready = false;
                Attempt::Again
            }
            Err(e) => Attempt::Done(Err(e.into()), RecvInfo::None),
        };
    }
    let sock = SockRef::from(&fd);
    // Writable (or failed): the socket's pending error says how it went.
    match sock.take_error() {
        Ok(None) => {}
        Ok(Some(e)) | Err(e) => return Attempt::Done(Err(e), RecvInfo::None),
    }
    // No error yet: connected, or still in progress (a stale readiness).
    calls.one();
    match sock.peer_addr() {
        Ok(_) => Attempt::Done(Ok(0), RecvInfo::None),
        Err(e) if e.raw_os_error() == Some(Errno::NOTCONN.raw_os_error()) => {
            flags.write_ready = false;
            Attempt::Again
        }
        Err(e) => Attempt::Done(Err(e), RecvInfo::None),
    }
}

/// The pool has no free buffer: like io_uring, fail with `ENOBUFS` only once
/// data has arrived (or report end of stream); until then, keep waiting.
fn pool_empty(fd: BorrowedFd<'_>, flags: &mut Flags, calls: &Calls) -> Attempt {
    let mut byte = [0u8; 1];
    loop {
        match net::recv(fd, &mut byte[..], RecvFlags::PEEK).map(|(n, _)| n) {
            Ok(0) => {
                flags.rdhup = true;
                return Attempt::Done(Ok(0), RecvInfo::None);
            }
            Ok(_) => return Attempt::Done(Err(errno(Errno::NOBUFS)), RecvInfo::None),
            Err(Errno::INTR) => calls.one(),
            Err(e) => return read_error(e, flags),
        };
    }
}

fn send_vectored(fd: BorrowedFd<'_>, bufs: &[Buf], flags: &mut Flags) -> Attempt {
    let mut stack = [IoSlice::new(&[]); STACK_IOVS];
    let heap: Vec<IoSlice<'_>>;
    let iovs: &[IoSlice<'_>] = if bufs.len() <= STACK_IOVS {
        for (iov, b) in stack.iter_mut().zip(bufs) {
            *iov = IoSlice::new(b.as_slice());
        }
        &stack[..bufs.len()]
    } else {
        heap = bufs.iter().map(|b| IoSlice::new(b.as_slice())).collect();
        &heap
    };
    let total = bufs.iter().map(|b| b.as_slice().len()).sum();
    match net::sendmsg(fd, iovs, &mut SendAncillaryBuffer::default(), SendFlags::NOSIGNAL) {
        Ok(n) => {
            flags.after_write(n, total);
            Attempt::Done(Ok(n), RecvInfo::None)
        }
        Err(e) => write_error(e, flags),
    }
}

/// `shutdown(2)`, done at once.
pub(super) fn shutdown(fd: RawFd, how: Shutdown, calls: &Calls) -> io::Result<usize> {
    calls.one();
    // SAFETY: the port holds `fd` open while the op is counted on its handle.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let how = match how {
        Shutdown::Read => net::Shutdown::Read,
        Shutdown::Write => net::Shutdown::Write,
        Shutdown::Both => net::Shutdown::Both,
    };
    net::shutdown(fd, how)?;
    Ok(0)
}

/// The final completion of an op, handing its buffers back exactly as the
/// io_uring backend does.
pub(super) fn finish(meta: Meta, op: Op, result: io::Result<usize>, aux: RecvInfo) -> Completion {
    let (peer, bid) = match aux {
        RecvInfo::None => (None, None),
        RecvInfo::Peer(p) => (p, None),
        RecvInfo::Bid(b) => (None, Some(b)),
    };
    let payload = op.finish(&result, peer, bid);
    Completion::new(meta, result, payload, false)
}
