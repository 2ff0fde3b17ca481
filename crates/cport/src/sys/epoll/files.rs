//! File operations (`read_at`, `write_at`, `fsync`) on a small pool of
//! blocking threads, as libuv does: regular files are always "ready" to
//! epoll, so their I/O must block somewhere other than the event loop.
//!
//! Threads start on first use, at most [`MAX_THREADS`], and stay until the
//! driver drains. A running job's op is moved out of the in-flight table into
//! the thread, so its buffer is owned by whoever touches it. (The threads'
//! loop, which works on the driver's state, is `file_thread` in `mod.rs`.)

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;

use rustix::io::Errno;

use crate::sys::Op;

/// The most file threads one driver runs.
pub(super) const MAX_THREADS: usize = 4;

/// The file threads' bookkeeping (a thread pool, kept under the driver's lock).
#[derive(Default)]
pub(super) struct FileThreads {
    /// In-flight entries waiting for a thread, oldest first.
    pub(super) jobs: VecDeque<u32>,
    pub(super) threads: Vec<JoinHandle<()>>,
    /// Threads waiting for a job.
    pub(super) idle: usize,
    /// The driver drains: threads exit.
    pub(super) stopping: bool,
}

/// Runs one file operation, blocking.
pub(super) fn run(op: &mut Op, calls: &AtomicU64) -> io::Result<usize> {
    loop {
        calls.fetch_add(1, Relaxed);
        let res = match op {
            Op::ReadAt { fd, buf, offset } => {
                // SAFETY: the port holds the op's fd open while the op is
                // counted on its handle.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                rustix::io::pread(fd, crate::sys::room(buf), *offset).map(|(got, _)| got.len())
            }
            Op::WriteAt { fd, buf, offset } => {
                // SAFETY: as above.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                rustix::io::pwrite(fd, buf.as_slice(), *offset)
            }
            Op::Fsync { fd, data_only } => {
                // SAFETY: as above.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                if *data_only {
                    rustix::fs::fdatasync(fd).map(|()| 0)
                } else {
                    rustix::fs::fsync(fd).map(|()| 0)
                }
            }
            _ => Err(Errno::INVAL),
        };
        match res {
            Err(Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}
