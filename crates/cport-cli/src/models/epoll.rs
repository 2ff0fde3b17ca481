//! Echo with one thread and edge-triggered `epoll`.
//!
//! The Linux counterpart of the seeds' WSAEventSelect: each socket is
//! registered once with a kernel object that keeps the interest list, and a
//! wait returns only the sockets whose state changed, so a turn costs what is
//! ready rather than what is open. Edge triggering reports a change once, so
//! the server must carry on with a socket until it says `EAGAIN` (or remember
//! to come back to it); the readiness model at its best, and the baseline the
//! completion port is measured against.

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::echo::{self, AcceptPause, EchoConn, Step, READ_BUFFER_SIZE};
use super::{Model, ModelReport, STOP_CHECK_INTERVAL};

/// The token the listener is registered under; connections use their index.
const LISTENER: u64 = u64::MAX;

/// Events taken from the kernel per wait.
const EVENTS_PER_WAIT: usize = 256;

/// Reads one connection may do per turn before the others get theirs.
const READS_PER_TURN: usize = 16;

/// Serves echo on `listener` until `stop` is set.
pub(super) fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<ModelReport> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        &listener,
        EpollEvent::new(edge_triggered(EpollFlags::EPOLLIN), LISTENER),
    )?;
    let stop_check = EpollTimeout::try_from(STOP_CHECK_INTERVAL).map_err(io::Error::other)?;

    let mut report = ModelReport::default();
    let mut conns = Conns::default();
    let mut scratch = vec![0; READ_BUFFER_SIZE];
    let mut pause = AcceptPause::default();
    let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
    // Connections whose turn ended before `EAGAIN`: no new edge will report
    // them, so they are driven again next turn without waiting.
    let mut unfinished: Vec<u64> = Vec::new();
    let mut next_unfinished: Vec<u64> = Vec::new();
    // Connections are waiting that could not be accepted yet; likewise no new
    // edge will report them.
    let mut accept_owed = false;

    while !stop.load(Ordering::Acquire) {
        let timeout = if unfinished.is_empty() {
            stop_check
        } else {
            EpollTimeout::ZERO
        };
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        };

        let tokens = events[..ready].iter().map(EpollEvent::data);
        for token in tokens.chain(unfinished.drain(..)) {
            if token == LISTENER {
                accept_owed = true;
                continue;
            }
            // A stale token (its connection closed earlier this turn) finds
            // nothing, or a newer connection that then just sees `EAGAIN`.
            let Some(conn) = conns.get_mut(token) else {
                continue;
            };
            match drive(conn, &mut scratch, &mut report) {
                Step::Progress => next_unfinished.push(token),
                Step::WouldBlock => {}
                Step::Closed => {
                    conns.remove(token);
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
                let token = conns.next_token();
                let interest = edge_triggered(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT);
                match epoll.add(conn.stream(), EpollEvent::new(interest, token)) {
                    Ok(()) => {
                        conns.insert(conn);
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

fn edge_triggered(flags: EpollFlags) -> EpollFlags {
    flags | EpollFlags::EPOLLET
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

/// The open connections, by token: the token epoll hands back is the index.
#[derive(Debug, Default)]
struct Conns {
    slots: Vec<Option<EchoConn>>,
    vacant: Vec<usize>,
    open: usize,
}

impl Conns {
    /// The token the next [`Conns::insert`] will use.
    fn next_token(&self) -> u64 {
        self.vacant.last().copied().unwrap_or(self.slots.len()) as u64
    }

    fn insert(&mut self, conn: EchoConn) {
        self.open += 1;
        match self.vacant.pop() {
            Some(index) => self.slots[index] = Some(conn),
            None => self.slots.push(Some(conn)),
        }
    }

    fn get_mut(&mut self, token: u64) -> Option<&mut EchoConn> {
        self.slots.get_mut(usize::try_from(token).ok()?)?.as_mut()
    }

    /// Closes a connection. Closing its descriptor also takes it off the
    /// epoll interest list, since nothing else holds a duplicate of it.
    fn remove(&mut self, token: u64) {
        let Ok(index) = usize::try_from(token) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.take().is_some() {
                self.open -= 1;
                self.vacant.push(index);
            }
        }
    }

    fn len(&self) -> usize {
        self.open
    }
}
