//! Echo with one thread and edge-triggered `epoll`.
//!
//! The Linux counterpart of Windows' WSAEventSelect: each socket is
//! registered once with a kernel object that keeps the interest list, and a
//! wait returns only the sockets whose state changed, so a turn costs what is
//! ready rather than what is open. Edge triggering reports a change once, so
//! the server must carry on with a socket until it says `EAGAIN` (or remember
//! to come back to it); the readiness model at its best, and the baseline the
//! completion port is measured against.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::Timespec;
use rustix::io::Errno;
use slab::Slab;

use super::echo::{self, AcceptPause, EchoConn, Step, READ_BUFFER_SIZE};
use super::model::{Model, ModelReport, STOP_CHECK_INTERVAL};

/// The token the listener is registered under; connections use their index.
const LISTENER: u64 = u64::MAX;

/// Events taken from the kernel per wait.
const EVENTS_PER_WAIT: usize = 256;

/// Reads one connection may do per turn before the others get theirs.
const READS_PER_TURN: usize = 16;

/// Serves echo on `listener` until `stop` is set.
pub(super) fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<ModelReport> {
    listener.set_nonblocking(true)?;
    let ep = epoll::create(CreateFlags::CLOEXEC)?;
    epoll::add(
        &ep,
        &listener,
        EventData::new_u64(LISTENER),
        edge_triggered(EventFlags::IN),
    )?;
    let stop_check = Timespec::try_from(STOP_CHECK_INTERVAL).map_err(io::Error::other)?;
    let no_wait = Timespec { tv_sec: 0, tv_nsec: 0 };

    let mut report = ModelReport::default();
    // The open connections; the token epoll hands back is the slab key.
    let mut conns: Slab<EchoConn> = Slab::new();
    let mut scratch = vec![0; READ_BUFFER_SIZE];
    let mut pause = AcceptPause::default();
    let empty = Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(0),
    };
    let mut events = vec![empty; EVENTS_PER_WAIT];
    // Connections whose turn ended before `EAGAIN`: no new edge will report
    // them, so they are driven again next turn without waiting.
    let mut unfinished: Vec<u64> = Vec::new();
    let mut next_unfinished: Vec<u64> = Vec::new();
    // Connections are waiting that could not be accepted yet; likewise no new
    // edge will report them.
    let mut accept_owed = false;

    while !stop.load(Ordering::Acquire) {
        let timeout = if unfinished.is_empty() { &stop_check } else { &no_wait };
        let ready = match epoll::wait(&ep, &mut events[..], Some(timeout)) {
            Ok(ready) => ready,
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        };

        let tokens = events[..ready].iter().map(|e| e.data.u64());
        for token in tokens.chain(unfinished.drain(..)) {
            if token == LISTENER {
                accept_owed = true;
                continue;
            }
            // A stale token (its connection closed earlier this turn) finds
            // nothing, or a newer connection that then just sees `EAGAIN`.
            let Some(conn) = usize::try_from(token).ok().and_then(|k| conns.get_mut(k)) else {
                continue;
            };
            match drive(conn, &mut scratch, &mut report) {
                Step::Progress => next_unfinished.push(token),
                Step::WouldBlock => {}
                Step::Closed => {
                    // Closing the descriptor also takes it off the epoll
                    // interest list: nothing else holds a duplicate of it.
                    conns.remove(token as usize);
                    pause.end();
                }
            }
        }
        // One reported and also unfinished was queued twice: keep one entry.
        next_unfinished.sort_unstable();
        next_unfinished.dedup();
        std::mem::swap(&mut unfinished, &mut next_unfinished);

        if accept_owed && !pause.is_paused() {
            echo::accept_ready(&listener, Model::Epoll, &mut report, &mut pause, |conn, report| {
                let entry = conns.vacant_entry();
                let token = entry.key() as u64;
                let interest = edge_triggered(EventFlags::IN | EventFlags::OUT);
                match epoll::add(&ep, conn.stream(), EventData::new_u64(token), interest) {
                    Ok(()) => {
                        entry.insert(conn);
                        report.opened(conns.len());
                    }
                    Err(_) => report.refuse(Model::Epoll, "epoll_ctl could not register the socket"),
                }
            })?;
            // Stopped by a pause rather than `EAGAIN`: connections still wait.
            accept_owed = pause.is_paused();
        }
    }
    Ok(report)
}

fn edge_triggered(flags: EventFlags) -> EventFlags {
    flags | EventFlags::ET
}

/// Echoes on a connection until the socket says `EAGAIN`, it closes, or its
/// turn runs out (then [`Step::Progress`]).
///
/// Registered for both input and output, an edge-triggered socket is reported
/// when either changes; whichever it was, this picks up where the connection
/// stood: first the bytes still unsent, then more reading.
fn drive(conn: &mut EchoConn, scratch: &mut [u8], report: &mut ModelReport) -> Step {
    for _ in 0..READS_PER_TURN {
        if conn.has_unsent() {
            match conn.flush(report) {
                Step::Progress => {}
                stopped => return stopped,
            }
        }
        match conn.read_and_echo(scratch, report) {
            Step::Progress => {}
            stopped => return stopped,
        }
    }
    Step::Progress
}
