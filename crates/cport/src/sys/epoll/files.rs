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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;

use crate::sys::{syscall, Op};

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
                let spare = crate::sys::room(buf);
                // SAFETY: writes at most `spare.len()` bytes into the spare
                // capacity of a Vec this thread owns for the call.
                syscall!(unsafe { libc::pread(*fd, spare.as_mut_ptr().cast(), spare.len(), *offset as libc::off_t) })
                    .map(|n| n as usize)
            }
            Op::WriteAt { fd, buf, offset } => {
                let s = buf.as_slice();
                // SAFETY: reads `s.len()` bytes of a live buffer this thread owns.
                syscall!(unsafe { libc::pwrite(*fd, s.as_ptr().cast(), s.len(), *offset as libc::off_t) })
                    .map(|n| n as usize)
            }
            // SAFETY: an fd argument only; no memory is passed.
            Op::Fsync { fd, data_only: true } => syscall!(unsafe { libc::fdatasync(*fd) }).map(|_| 0),
            // SAFETY: as above.
            Op::Fsync { fd, data_only: false } => syscall!(unsafe { libc::fsync(*fd) }).map(|_| 0),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
