//! Building one submission-queue entry per operation.
//!
//! Every pointer put into an SQE points into heap memory owned by the
//! operation's `InFlight` entry (a `Vec`'s or `Bytes`' data, a pool buffer, or
//! a `Box` in `Extra`), never into the entry itself, which moves into the slab.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types};

use super::{Extra, InFlight, MsgBox, SpliceState, VecMsg};
use crate::buf::Buf;
use crate::sys::Op;

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
pub(super) fn build(f: &mut InFlight, pipe: impl FnOnce() -> io::Result<super::Pipe>) -> io::Result<squeue::Entry> {
    let entry = match &mut f.op {
        Op::Nop => opcode::Nop::new().build(),
        Op::Timeout { dur } => {
            let ts = Box::new(types::Timespec::from(*dur));
            let e = opcode::Timeout::new(&*ts).build();
            f.extra = Extra::Ts(ts);
            e
        }
        // Multishot accepts are re-armed one at a time by the driver (see `Core::complete`).
        Op::Accept { fd, .. } => opcode::Accept::new(types::Fd(*fd), std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build(),
        Op::Connect { fd, addr } => opcode::Connect::new(types::Fd(*fd), addr.as_ptr().cast(), addr.len()).build(),
        Op::Recv { fd, buf } => {
            let spare = buf.spare_capacity_mut();
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
            f.extra = Extra::VecMsg(m);
            e
        }
        Op::RecvFrom { fd, buf } => {
            let spare = buf.spare_capacity_mut();
            let iov = libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: spare.len(),
            };
            let mut m = MsgBox::new(iov);
            m.link();
            let e = opcode::RecvMsg::new(types::Fd(*fd), &mut m.hdr).build();
            f.extra = Extra::Msg(m);
            e
        }
        Op::SendTo { fd, buf, addr } => {
            let mut m = MsgBox::new(iovec(buf));
            m.set_addr(addr);
            m.link();
            let e = opcode::SendMsg::new(types::Fd(*fd), &m.hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            f.extra = Extra::Msg(m);
            e
        }
        Op::Shutdown { fd, how } => opcode::Shutdown::new(types::Fd(*fd), super::super::shut_how(*how)).build(),
        Op::ReadAt { fd, buf, offset } => {
            let spare = buf.spare_capacity_mut();
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
                f.extra = Extra::Splice(st);
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
