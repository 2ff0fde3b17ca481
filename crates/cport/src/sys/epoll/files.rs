//! File operations (`read_at`, `write_at`, `fsync`) on a small pool of
//! blocking threads, as libuv does: regular files are always "ready" to
//! epoll, so their I/O must block somewhere other than the event loop.
//!
//! Threads start on first use, at most [`MAX_THREADS`], and stay until the
//! driver drains. A running job's op is moved out of the in-flight table into
//! the thread, so its buffer is owned by whoever touches it.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::{Inner, Place, State};
use crate::sys::{syscall, Op};

/// The most file-pool threads one driver runs.
pub(super) const MAX_THREADS: usize = 4;

/// Queues in-flight entry `idx` for a pool thread, starting one if none is idle.
/// (Never after `drain`: `push` refuses everything once all was cancelled.)
pub(super) fn queue_job(inner: &Arc<Inner>, st: &mut State, idx: u32) {
    st.pool.jobs.push_back(idx);
    if st.pool.idle > 0 {
        inner.jobs_cv.notify_one();
        return;
    }
    if st.pool.threads.len() >= MAX_THREADS {
        return; // a busy thread takes it next
    }
    let me = inner.clone();
    let spawned = std::thread::Builder::new()
        .name("cport-file".into())
        .spawn(move || worker(me));
    match spawned {
        Ok(t) => st.pool.threads.push(t),
        Err(e) if st.pool.threads.is_empty() => {
            // Nobody would ever run it: fail it now.
            st.pool.jobs.retain(|&i| i != idx);
            let entry = st.ops.remove(idx as usize);
            st.ready
                .push(super::io::finish(entry.meta, entry.op, Err(e), super::Aux::None));
        }
        Err(_) => {}
    }
}

fn worker(inner: Arc<Inner>) {
    let mut st = inner.state.lock();
    loop {
        if st.pool.stopping {
            return;
        }
        let Some(idx) = st.pool.jobs.pop_front() else {
            st.pool.idle += 1;
            inner.jobs_cv.wait(&mut st);
            st.pool.idle -= 1;
            continue;
        };
        let e = &mut st.ops[idx as usize];
        e.place = Place::Running;
        let mut op = std::mem::replace(&mut e.op, Op::Nop);
        drop(st);
        let res = run(&mut op, &inner.file_calls);
        st = inner.state.lock();
        let e = st.ops.remove(idx as usize);
        st.ready.push(super::io::finish(e.meta, op, res, super::Aux::None));
        inner.notify(&mut st);
    }
}

/// Runs one file operation, blocking.
fn run(op: &mut Op, calls: &AtomicU64) -> io::Result<usize> {
    loop {
        calls.fetch_add(1, Relaxed);
        let res = match op {
            Op::ReadAt { fd, buf, offset } => {
                let spare = buf.spare_capacity_mut();
                // SAFETY: writes at most `spare.len()` bytes into the spare
                // capacity of a Vec this thread owns for the call.
                syscall!(pread(
                    *fd,
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    *offset as libc::off_t
                ))
                .map(|n| n as usize)
            }
            Op::WriteAt { fd, buf, offset } => {
                let s = buf.as_slice();
                // SAFETY: reads `s.len()` bytes of a live buffer this thread owns.
                syscall!(pwrite(*fd, s.as_ptr().cast(), s.len(), *offset as libc::off_t)).map(|n| n as usize)
            }
            Op::Fsync { fd, data_only: true } => syscall!(fdatasync(*fd)).map(|_| 0),
            Op::Fsync { fd, data_only: false } => syscall!(fsync(*fd)).map(|_| 0),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
