//! One non-blocking attempt at a socket operation, and the completion it
//! finally makes.
//!
//! Every pointer handed to the kernel here points into memory the op owns
//! (a `Vec`'s spare capacity, a `Buf`, a pool buffer taken for this call, or
//! a local), and each call returns before the attempt does: nothing is left
//! for the kernel to touch afterwards.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::completion::{Completion, Meta};
use socket2::SockRef;

use crate::sys::buf::{Buf, Payload};
use crate::sys::{errno, sockaddr_to_std, syscall, Op};

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

fn is_again(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN))
}

fn is_intr(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Tries `op` once (retrying `EINTR`), updating the readiness `flags`.
pub(super) fn attempt(op: &mut Op, progress: &mut u64, flags: &mut Flags, calls: &Calls) -> Attempt {
    loop {
        calls.one();
        let a = match op {
            Op::Accept { fd, multishot } => accept(*fd, *multishot, flags),
            Op::Connect { fd, addr } => connect(*fd, addr, progress, flags, calls),
            Op::Recv { fd, buf } => {
                let spare = crate::sys::room(buf);
                let want = spare.len();
                // SAFETY: the kernel writes at most `want` bytes into the
                // spare capacity of a Vec this op owns.
                match syscall!(unsafe { libc::recv(*fd, spare.as_mut_ptr().cast(), want, 0) }) {
                    Ok(n) => {
                        flags.after_read(n as usize, want);
                        Attempt::Done(Ok(n as usize), RecvInfo::None)
                    }
                    Err(e) => read_error(e, flags),
                }
            }
            Op::RecvPooled { fd, pool, multishot } => {
                let Some((bid, ptr, size)) = pool.take() else {
                    return pool_empty(*fd, flags, calls);
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
                let iov = [
                    libc::iovec {
                        iov_base: ptr.cast(),
                        iov_len: size,
                    },
                    libc::iovec {
                        iov_base: spill.map_or(std::ptr::null_mut(), |(_, p, _)| p.cast()),
                        iov_len: spill.map_or(0, |(_, _, len)| len),
                    },
                ];
                let want = size + iov[1].iov_len;
                let give_back = |first: bool| {
                    if first {
                        pool.untake(bid);
                    }
                    if let Some((b, _, _)) = spill {
                        pool.untake(b);
                    }
                };
                let r = if spill.is_some() {
                    // SAFETY: buffers `bid` and the spill were just taken from
                    // the free list, so this call is their only user; each
                    // iovec spans exactly one of them.
                    syscall!(unsafe { libc::readv(*fd, iov.as_ptr(), 2) })
                } else {
                    // SAFETY: buffer `bid` was just taken from the free list,
                    // so this call is its only user; it is `size` bytes long.
                    syscall!(unsafe { libc::recv(*fd, ptr.cast(), size, 0) })
                };
                match r {
                    Ok(0) => {
                        give_back(true);
                        flags.after_read(0, want);
                        Attempt::Done(Ok(0), RecvInfo::None)
                    }
                    Ok(n) => {
                        let n = n as usize;
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
            Op::Send { fd, buf } => {
                let s = buf.as_slice();
                // SAFETY: the kernel reads `s.len()` bytes of a buffer this op owns.
                match syscall!(unsafe { libc::send(*fd, s.as_ptr().cast(), s.len(), libc::MSG_NOSIGNAL) }) {
                    Ok(n) => {
                        flags.after_write(n as usize, s.len());
                        Attempt::Done(Ok(n as usize), RecvInfo::None)
                    }
                    Err(e) => write_error(e, flags),
                }
            }
            Op::SendVectored { fd, bufs } => send_vectored(*fd, bufs, flags),
            Op::RecvFrom { fd, buf } => {
                let spare = crate::sys::room(buf);
                let mut iov = libc::iovec {
                    iov_base: spare.as_mut_ptr().cast(),
                    iov_len: spare.len(),
                };
                // SAFETY: all-zero bytes are a valid sockaddr_storage and msghdr.
                let (mut addr, mut hdr): (libc::sockaddr_storage, libc::msghdr) = unsafe { std::mem::zeroed() };
                hdr.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                hdr.msg_iov = &mut iov;
                hdr.msg_iovlen = 1;
                // SAFETY: the header points at a live iovec over the op's spare
                // capacity and at local address storage of the stated size.
                match syscall!(unsafe { libc::recvmsg(*fd, &mut hdr, 0) }) {
                    Ok(n) => Attempt::Done(Ok(n as usize), RecvInfo::Peer(sockaddr_to_std(&addr, hdr.msg_namelen))),
                    Err(e) => read_error(e, flags),
                }
            }
            Op::SendTo { fd, buf, addr } => {
                let s = buf.as_slice();
                let mut iov = libc::iovec {
                    iov_base: s.as_ptr() as *mut libc::c_void,
                    iov_len: s.len(),
                };
                // SAFETY: all-zero bytes are a valid msghdr.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                hdr.msg_namelen = addr.len();
                hdr.msg_iov = &mut iov;
                hdr.msg_iovlen = 1;
                // SAFETY: the header points at a live iovec over the op's
                // buffer (only read) and at the op's own address.
                match syscall!(unsafe { libc::sendmsg(*fd, &hdr, libc::MSG_NOSIGNAL) }) {
                    Ok(n) => Attempt::Done(Ok(n as usize), RecvInfo::None),
                    Err(e) => write_error(e, flags),
                }
            }
            Op::SendFile { fd, file, offset, len } => {
                if *len == 0 {
                    return Attempt::Done(Ok(*progress as usize), RecvInfo::None);
                }
                let mut off = *offset as libc::off_t;
                let chunk = (*len).min(MAX_SENDFILE) as usize;
                // SAFETY: `off` is a live local the call updates; the fds are
                // open (the port holds the socket, the op holds the file).
                match syscall!(unsafe { libc::sendfile(*fd, file.as_raw_fd(), &mut off, chunk) }) {
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
            | Op::Fsync { .. } => Attempt::Done(Err(errno(libc::EINVAL)), RecvInfo::None),
        };
        match a {
            Attempt::Done(Err(ref e), _) if is_intr(e) => continue,
            a => return a,
        }
    }
}

fn read_error(e: io::Error, flags: &mut Flags) -> Attempt {
    if is_again(&e) {
        flags.read_ready = false;
        Attempt::Again
    } else {
        Attempt::Done(Err(e), RecvInfo::None)
    }
}

fn write_error(e: io::Error, flags: &mut Flags) -> Attempt {
    if is_again(&e) {
        flags.write_ready = false;
        Attempt::Again
    } else {
        Attempt::Done(Err(e), RecvInfo::None)
    }
}

fn accept(fd: RawFd, multishot: bool, flags: &mut Flags) -> Attempt {
    // Blocking and close-on-exec, exactly as io_uring's accept hands it out:
    // the stream may be used without the port; `associate` makes it non-blocking.
    // SAFETY: null address pointers: the peer's address is not asked for.
    match syscall!(unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) }) {
        Ok(s) if multishot => {
            // SAFETY: accept4 just created this fd; nothing else owns it.
            let stream = unsafe { TcpStream::from_raw_fd(s) };
            Attempt::Emit(Ok(0), Payload::Accepted(stream))
        }
        Ok(s) => Attempt::Done(Ok(s as usize), RecvInfo::None),
        // The connection went away before we took it: take the next.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            Attempt::Done(Err(errno(libc::EINTR)), RecvInfo::None)
        }
        Err(e) => read_error(e, flags),
    }
}

fn connect(fd: RawFd, addr: &socket2::SockAddr, progress: &mut u64, flags: &mut Flags, calls: &Calls) -> Attempt {
    if *progress == 0 {
        // SAFETY: `addr` is a valid socket address of `addr.len()` bytes,
        // owned by the op; the kernel copies it during the call.
        return match syscall!(unsafe { libc::connect(fd, addr.as_ptr().cast(), addr.len()) }) {
            Ok(_) => Attempt::Done(Ok(0), RecvInfo::None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => {
                *progress = 1;
                flags.write_ready = false;
                Attempt::Again
            }
            Err(e) => Attempt::Done(Err(e), RecvInfo::None),
        };
    }
    // SAFETY: the port holds `fd` open while this op is counted on its handle.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
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
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            flags.write_ready = false;
            Attempt::Again
        }
        Err(e) => Attempt::Done(Err(e), RecvInfo::None),
    }
}

/// The pool has no free buffer: like io_uring, fail with `ENOBUFS` only once
/// data has arrived (or report end of stream); until then, keep waiting.
fn pool_empty(fd: RawFd, flags: &mut Flags, calls: &Calls) -> Attempt {
    let mut byte = 0u8;
    loop {
        // SAFETY: peeks at most one byte into a live local.
        let r = syscall!(unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK) });
        match r {
            Ok(0) => {
                flags.rdhup = true;
                return Attempt::Done(Ok(0), RecvInfo::None);
            }
            Ok(_) => return Attempt::Done(Err(errno(libc::ENOBUFS)), RecvInfo::None),
            Err(e) if is_intr(&e) => calls.one(),
            Err(e) => return read_error(e, flags),
        };
    }
}

fn send_vectored(fd: RawFd, bufs: &[Buf], flags: &mut Flags) -> Attempt {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut stack = [empty; STACK_IOVS];
    let mut heap: Vec<libc::iovec>;
    let iovs: &mut [libc::iovec] = if bufs.len() <= STACK_IOVS {
        &mut stack[..bufs.len()]
    } else {
        heap = vec![empty; bufs.len()];
        &mut heap[..]
    };
    let mut total = 0;
    for (iov, b) in iovs.iter_mut().zip(bufs) {
        let s = b.as_slice();
        *iov = libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        };
        total += s.len();
    }
    // SAFETY: all-zero bytes are a valid msghdr.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = iovs.as_mut_ptr();
    hdr.msg_iovlen = iovs.len();
    // SAFETY: the header points at live iovecs over buffers this op owns,
    // which the kernel only reads.
    match syscall!(unsafe { libc::sendmsg(fd, &hdr, libc::MSG_NOSIGNAL) }) {
        Ok(n) => {
            flags.after_write(n as usize, total);
            Attempt::Done(Ok(n as usize), RecvInfo::None)
        }
        Err(e) => write_error(e, flags),
    }
}

/// `shutdown(2)`, done at once.
pub(super) fn shutdown(fd: RawFd, how: Shutdown, calls: &Calls) -> io::Result<usize> {
    calls.one();
    // SAFETY: integer arguments only; no memory is passed.
    syscall!(unsafe { libc::shutdown(fd, crate::sys::shut_how(how)) }).map(|_| 0)
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
