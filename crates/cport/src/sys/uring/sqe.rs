//! An operation's in-flight entry, and the submission-queue entries built
//! from it.
//!
//! Every pointer put into an SQE points into heap memory owned by the
//! operation's `InFlight` entry (a `Vec`'s or `Bytes`' data, a pool buffer, or
//! a `Box` in `SqeData`), never into the entry itself, which moves into the slab.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use io_uring::{opcode, squeue, types};
use socket2::SockAddr;

use crate::completion::Meta;
use crate::sys::buf::Buf;
use crate::sys::{syscall, Op};

pub(super) struct InFlight {
    pub(super) gen: u32,
    pub(super) meta: Meta,
    pub(super) op: Op,
    pub(super) sqe_data: SqeData,
    pub(super) cancelled: bool,
    /// Set when the op could not start: its completion carries this errno.
    pub(super) failed: Option<i32>,
    /// When a timeout op is due (so a re-submission waits only what is left).
    pub(super) due: Option<Instant>,
    /// Push order, for cancels by fd.
    pub(super) seq: u64,
    /// The queue limit stopped this multishot op: its cancel ends it with ENOBUFS.
    pub(super) stopped: bool,
}

// SAFETY: the raw pointers in `SqeData` point into heap memory owned by this
// same entry (boxes and the op's buffers); nothing else aliases them, so the
// entry may move between threads with its owner, the locked slab.
unsafe impl Send for InFlight {}

/// Memory an in-flight entry keeps beside its op because its SQE points at
/// it (a timeout's timespec, a msghdr, the splice loop's state), boxed so
/// it stays put while the entry moves.
pub(super) enum SqeData {
    None,
    Ts(#[allow(dead_code)] Box<types::Timespec>),
    Msg(Box<MsgBox>),
    VecMsg(#[allow(dead_code)] Box<VecMsg>),
    Splice(Box<SpliceState>),
}

/// A `msghdr` with one iovec and an address, boxed so the kernel's pointers
/// into it stay put.
pub(super) struct MsgBox {
    pub(super) hdr: libc::msghdr,
    pub(super) iov: libc::iovec,
    pub(super) addr: libc::sockaddr_storage,
}

impl MsgBox {
    pub(super) fn new(iov: libc::iovec) -> Box<Self> {
        // SAFETY: msghdr and sockaddr_storage are plain C structs for which
        // all-zero bytes are a valid value.
        let (hdr, addr) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        Box::new(MsgBox { hdr, iov, addr })
    }
    pub(super) fn set_addr(&mut self, a: &SockAddr) {
        let len = (a.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: copies `len` bytes of a valid sockaddr into storage of at
        // least that size; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                a.as_ptr().cast::<u8>(),
                (&mut self.addr as *mut libc::sockaddr_storage).cast(),
                len,
            )
        };
        self.hdr.msg_namelen = len as u32;
    }
    /// Points the header at this box's own iovec and address.
    pub(super) fn link(&mut self) {
        self.hdr.msg_iov = &mut self.iov;
        self.hdr.msg_iovlen = 1;
        self.hdr.msg_name = (&mut self.addr as *mut libc::sockaddr_storage).cast();
        if self.hdr.msg_namelen == 0 {
            self.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
    }
    pub(super) fn peer(&self) -> Option<std::net::SocketAddr> {
        crate::sys::sockaddr_to_std(&self.addr, self.hdr.msg_namelen)
    }
}

/// A `msghdr` over many iovecs (gathering send).
pub(super) struct VecMsg {
    pub(super) hdr: libc::msghdr,
    pub(super) iovs: Vec<libc::iovec>,
}

impl VecMsg {
    pub(super) fn new(iovs: Vec<libc::iovec>) -> Self {
        // SAFETY: all-zero is a valid msghdr.
        let hdr = unsafe { std::mem::zeroed() };
        VecMsg { hdr, iovs }
    }
    pub(super) fn link(&mut self) {
        self.hdr.msg_iov = self.iovs.as_mut_ptr();
        self.hdr.msg_iovlen = self.iovs.len();
    }
}

/// A pipe used to splice file data to a socket without a user-space copy.
pub(super) struct Pipe {
    pub(super) r: OwnedFd,
    pub(super) w: OwnedFd,
    pub(super) capacity: u32,
}

impl Pipe {
    pub(super) fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: the kernel writes two fds into `fds`, a live [c_int; 2].
        syscall!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: pipe2 just returned two fresh fds that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe means fewer splice round trips for large files.
        // SAFETY: integer arguments only; no memory is passed.
        let capacity = syscall!(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) })
            // SAFETY: as above.
            .or_else(|_| syscall!(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) }))
            .unwrap_or(65536) as u32;
        Ok(Pipe { r, w, capacity })
    }
}

pub(super) struct SpliceState {
    pub(super) pipe: Pipe,
    pub(super) offset: u64,
    pub(super) remaining: u64,
    pub(super) sent: u64,
    pub(super) in_pipe: u32,
    /// Waiting for the socket to take more (a drain met a full socket).
    pub(super) polling: bool,
}

fn buf_ptr(b: &Buf) -> (*const u8, u32) {
    let s = b.as_slice();
    (s.as_ptr(), s.len().min(u32::MAX as usize) as u32)
}

fn iovec(b: &Buf) -> libc::iovec {
    let s = b.as_slice();
    libc::iovec {
        iov_base: s.as_ptr() as *mut libc::c_void,
        iov_len: s.len(),
    }
}

/// Builds the first SQE of `f`'s operation, allocating what it must point at.
pub(super) fn build(f: &mut InFlight, pipe: impl FnOnce() -> io::Result<Pipe>) -> io::Result<squeue::Entry> {
    let entry = match &mut f.op {
        Op::Nop => opcode::Nop::new().build(),
        Op::Timeout { dur } => {
            let ts = Box::new(types::Timespec::from(*dur));
            let e = opcode::Timeout::new(&*ts).build();
            f.sqe_data = SqeData::Ts(ts);
            e
        }
        // Multishot accepts are re-armed one at a time by the driver (see `Core::complete`).
        Op::Accept { fd, .. } => opcode::Accept::new(types::Fd(*fd), std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build(),
        Op::Connect { fd, addr } => opcode::Connect::new(types::Fd(*fd), addr.as_ptr().cast(), addr.len()).build(),
        Op::Recv { fd, buf } => {
            let spare = crate::sys::room(buf);
            let len = spare.len().min(u32::MAX as usize) as u32;
            opcode::Recv::new(types::Fd(*fd), spare.as_mut_ptr().cast(), len).build()
        }
        Op::RecvPooled { fd, pool, multishot } => {
            let bgid = pool.bgid().ok_or(io::ErrorKind::Unsupported)?;
            if *multishot {
                opcode::RecvMulti::new(types::Fd(*fd), bgid).build()
            } else {
                opcode::Recv::new(types::Fd(*fd), std::ptr::null_mut(), pool.buf_size() as u32)
                    .buf_group(bgid)
                    .build()
                    .flags(squeue::Flags::BUFFER_SELECT)
            }
        }
        Op::Send { fd, buf } => {
            let (p, len) = buf_ptr(buf);
            opcode::Send::new(types::Fd(*fd), p, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        }
        Op::SendVectored { fd, bufs } => {
            let mut m = Box::new(VecMsg::new(bufs.iter().map(iovec).collect()));
            m.link();
            let e = opcode::SendMsg::new(types::Fd(*fd), &m.hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            f.sqe_data = SqeData::VecMsg(m);
            e
        }
        Op::RecvFrom { fd, buf } => {
            let spare = crate::sys::room(buf);
            let iov = libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: spare.len(),
            };
            let mut m = MsgBox::new(iov);
            m.link();
            let e = opcode::RecvMsg::new(types::Fd(*fd), &mut m.hdr).build();
            f.sqe_data = SqeData::Msg(m);
            e
        }
        Op::SendTo { fd, buf, addr } => {
            let mut m = MsgBox::new(iovec(buf));
            m.set_addr(addr);
            m.link();
            let e = opcode::SendMsg::new(types::Fd(*fd), &m.hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            f.sqe_data = SqeData::Msg(m);
            e
        }
        Op::Shutdown { fd, how } => opcode::Shutdown::new(types::Fd(*fd), super::super::shut_how(*how)).build(),
        Op::ReadAt { fd, buf, offset } => {
            let spare = crate::sys::room(buf);
            let len = spare.len().min(u32::MAX as usize) as u32;
            opcode::Read::new(types::Fd(*fd), spare.as_mut_ptr().cast(), len)
                .offset(*offset)
                .build()
        }
        Op::WriteAt { fd, buf, offset } => {
            let (p, len) = buf_ptr(buf);
            opcode::Write::new(types::Fd(*fd), p, len).offset(*offset).build()
        }
        Op::Fsync { fd, data_only } => {
            let flags = if *data_only {
                types::FsyncFlags::DATASYNC
            } else {
                types::FsyncFlags::empty()
            };
            opcode::Fsync::new(types::Fd(*fd)).flags(flags).build()
        }
        Op::SendFile { file, offset, len, .. } => {
            if *len == 0 {
                opcode::Nop::new().build()
            } else {
                let mut st = Box::new(SpliceState {
                    pipe: pipe()?,
                    offset: *offset,
                    remaining: *len,
                    sent: 0,
                    in_pipe: 0,
                    polling: false,
                });
                let e = splice_fill(&mut st, file.as_raw_fd());
                f.sqe_data = SqeData::Splice(st);
                e
            }
        }
    };
    Ok(entry)
}

/// Moves the next chunk of the file into the pipe.
pub(super) fn splice_fill(st: &mut SpliceState, file: i32) -> squeue::Entry {
    let chunk = st.remaining.min(st.pipe.capacity as u64) as u32;
    opcode::Splice::new(
        types::Fd(file),
        st.offset as i64,
        types::Fd(st.pipe.w.as_raw_fd()),
        -1,
        chunk,
    )
    .flags(libc::SPLICE_F_MOVE)
    .build()
}

/// Moves what the pipe holds to the socket (non-blocking: a full socket
/// answers EAGAIN instead of holding the kernel worker that runs the splice).
pub(super) fn splice_drain(st: &mut SpliceState, sock: i32) -> squeue::Entry {
    opcode::Splice::new(types::Fd(st.pipe.r.as_raw_fd()), -1, types::Fd(sock), -1, st.in_pipe)
        .flags(libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK)
        .build()
}

/// Waits until the socket has room (a one-shot poll: no kernel thread waits).
pub(super) fn poll_writable(sock: i32) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(sock), libc::POLLOUT as u32).build()
}
