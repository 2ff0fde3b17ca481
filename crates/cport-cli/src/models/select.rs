//! Echo with one thread and `select()` over non-blocking sockets.
//!
//! The oldest readiness model: every turn, the server builds a
//! bit set of all its sockets and hands it to the kernel, which scans it and
//! hands back the ready ones. The cost of each turn grows with the number of
//! sockets, and `FD_SETSIZE` (1024) caps the descriptor *numbers* a set can
//! hold, so past about a thousand connections the model cannot take more: a
//! connection that would need a larger descriptor is closed and counted as
//! refused.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

// rustix's `select` is `unsafe` (it takes raw descriptor numbers), and
// `unsafe` is kept to cport's `sys/`: cport wraps it with sets that borrow
// each descriptor they watch (docs/ARCHITECTURE.md).
use cport::select::{select, FdSet};

/// Descriptor numbers `select()` can watch: 0 to `FD_SETSIZE - 1`.
pub(super) const FD_SETSIZE: usize = cport::select::FD_SETSIZE;

use super::echo::{self, AcceptPause, EchoConn, Step, READ_BUFFER_SIZE};
use super::model::{Model, ModelReport, STOP_CHECK_INTERVAL};

/// What the report says when `FD_SETSIZE` turns a connection away.
const BEYOND_FD_SETSIZE: &str = "select() cannot watch descriptors at or above FD_SETSIZE (1024): too many connections";

/// Serves echo on `listener` until `stop` is set.
pub(super) fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<ModelReport> {
    if !fits_in_fd_set(&listener) {
        return Err(io::Error::other(BEYOND_FD_SETSIZE));
    }
    listener.set_nonblocking(true)?;
    let mut report = ModelReport::default();
    let mut conns: Vec<EchoConn> = Vec::new();
    let mut scratch = vec![0; READ_BUFFER_SIZE];
    let mut pause = AcceptPause::default();
    // Indices of ready connections, with whether each is readable/writable.
    let mut ready: Vec<(usize, bool, bool)> = Vec::new();

    while !stop.load(Ordering::Acquire) {
        let accepting = !pause.is_paused();
        let mut readable = FdSet::new();
        let mut writable = FdSet::new();
        if accepting {
            readable.insert(listener.as_fd());
        }
        for conn in &conns {
            // A connection with bytes still to write back is not read from.
            if conn.has_unsent() {
                writable.insert(conn.stream().as_fd());
            } else {
                readable.insert(conn.stream().as_fd());
            }
        }
        match select(&mut readable, &mut writable, STOP_CHECK_INTERVAL) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }

        // The kernel rewrote the sets in place: scan every socket to find the
        // ready ones. This scan, and the kernel's, is what grows with load.
        ready.clear();
        for (index, conn) in conns.iter().enumerate() {
            let fd = conn.stream().as_fd();
            let (r, w) = (readable.contains(fd), writable.contains(fd));
            if r || w {
                ready.push((index, r, w));
            }
        }
        let listener_ready = accepting && readable.contains(listener.as_fd());

        // Highest index first, so `swap_remove` only moves connections
        // already handled this turn.
        for &(index, is_readable, is_writable) in ready.iter().rev() {
            let conn = &mut conns[index];
            let step = if is_writable {
                conn.flush(&mut report)
            } else if is_readable {
                conn.read_and_echo(&mut scratch, &mut report)
            } else {
                Step::WouldBlock
            };
            if step == Step::Closed {
                conns.swap_remove(index);
                pause.end();
            }
        }

        if listener_ready {
            echo::accept_ready(&listener, Model::Select, &mut report, &mut pause, |conn, report| {
                if fits_in_fd_set(conn.stream()) {
                    conns.push(conn);
                    report.opened(conns.len());
                } else {
                    // Dropping the connection closes it: the peer sees it end.
                    report.refuse(Model::Select, BEYOND_FD_SETSIZE);
                }
            })?;
        }
    }
    Ok(report)
}

/// Whether `fd` can go into an `FdSet` (`FdSet::insert` refuses it if not).
fn fits_in_fd_set(fd: &impl AsRawFd) -> bool {
    usize::try_from(fd.as_raw_fd()).is_ok_and(|fd| fd < FD_SETSIZE)
}
