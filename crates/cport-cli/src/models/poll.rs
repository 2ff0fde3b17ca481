//! Echo with one thread and `poll()` over non-blocking sockets.
//!
//! `poll` lifts `select`'s `FD_SETSIZE` cap (it takes an array of
//! descriptors, not a fixed bit set) but keeps its cost: every turn the whole
//! array is handed to the kernel, checked socket by socket, and scanned again
//! by the server to find what is ready. It shows how far the readiness model
//! goes once the cap is gone, and where the per-turn scan starts to hurt.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::echo::{self, AcceptPause, EchoConn, Step, READ_BUFFER_SIZE};
use super::model::{Model, ModelReport, STOP_CHECK_INTERVAL};

/// Serves echo on `listener` until `stop` is set.
pub(super) fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<ModelReport> {
    listener.set_nonblocking(true)?;
    let timeout = Timespec::try_from(STOP_CHECK_INTERVAL).map_err(io::Error::other)?;
    let mut report = ModelReport::default();
    let mut conns: Vec<EchoConn> = Vec::new();
    let mut scratch = vec![0; READ_BUFFER_SIZE];
    let mut pause = AcceptPause::default();
    // What `poll` reported for each connection, by index.
    let mut revents: Vec<PollFlags> = Vec::new();

    while !stop.load(Ordering::Acquire) {
        // The array is rebuilt every turn, as the kernel copies it every call.
        // Entry 0 is the listener, entry i + 1 is connection i.
        let accepting = !pause.is_paused();
        let listen_for = if accepting { PollFlags::IN } else { PollFlags::empty() };
        let mut fds = Vec::with_capacity(conns.len() + 1);
        fds.push(PollFd::from_borrowed_fd(listener.as_fd(), listen_for));
        for conn in &conns {
            // A connection with bytes still to write back is not read from.
            let interest = if conn.has_unsent() {
                PollFlags::OUT
            } else {
                PollFlags::IN
            };
            fds.push(PollFd::from_borrowed_fd(conn.stream().as_fd(), interest));
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
        let listener_ready = !fds[0].revents().is_empty();
        revents.clear();
        revents.extend(fds[1..].iter().map(PollFd::revents));
        drop(fds);

        // Highest index first, so `swap_remove` only moves connections
        // already handled this turn.
        for index in (0..conns.len()).rev() {
            let step = on_ready(&mut conns[index], revents[index], &mut scratch, &mut report);
            if step == Step::Closed {
                conns.swap_remove(index);
                pause.end();
            }
        }

        if listener_ready {
            echo::accept_ready(&listener, Model::Poll, &mut report, &mut pause, |conn, report| {
                conns.push(conn);
                report.opened(conns.len());
            })?;
        }
    }
    Ok(report)
}

/// Does what `revents` says a connection is ready for.
fn on_ready(conn: &mut EchoConn, revents: PollFlags, scratch: &mut [u8], report: &mut ModelReport) -> Step {
    if revents.contains(PollFlags::NVAL) {
        return Step::Closed;
    }
    // Hang-ups and errors are reported whatever was asked for; the next read
    // or write then sees them and closes the connection.
    let attention = PollFlags::HUP | PollFlags::ERR;
    if conn.has_unsent() {
        if revents.intersects(PollFlags::OUT | attention) {
            return conn.flush(report);
        }
    } else if revents.intersects(PollFlags::IN | attention) {
        return conn.read_and_echo(scratch, report);
    }
    Step::WouldBlock
}
