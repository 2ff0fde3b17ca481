//! The session handle the application holds: send, send a file, close.

use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cport::{Backend, Buf, Port};

use crate::context::Context;
use crate::error::{DisconnectReason, SendError};
use crate::queue::Item;
use crate::server_core::ServerCore;
use crate::stats::ServerStats;

/// One connection of a [`Server`](crate::Server).
///
/// A cheap handle (an `Arc` and a few integers): clone it, keep it in maps,
/// use it from any thread. Once the session has ended every call fails
/// cleanly or does nothing; a handle never reaches a later session that
/// reuses the same slot.
#[derive(Clone)]
pub struct Session {
    shared: Arc<ServerCore>,
    idx: u32,
    gen: u32,
    id: u64,
    peer: Option<SocketAddr>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<ServerCore>, idx: u32, gen: u32, id: u64, peer: Option<SocketAddr>) -> Self {
        Session {
            shared,
            idx,
            gen,
            id,
            peer,
        }
    }

    /// The session's id: unique among all sessions of this server, never reused.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The peer's address, if the kernel reported one at accept.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Queues `msg` to be sent after everything queued before it.
    ///
    /// Never blocks and never copies: the buffer itself is handed to the
    /// kernel (gathered with other queued buffers into one vectored send).
    ///
    /// # Errors
    /// [`SendErrorKind::Closed`](crate::SendErrorKind::Closed) when the session is closing or gone;
    /// [`SendErrorKind::Overflow`](crate::SendErrorKind::Overflow) when the session does not read what it is
    /// sent: its queue stayed past the server's cap for the slow-consumer
    /// timeout, or this message would take it past twice the cap. The
    /// session is then cut off (reason [`DisconnectReason::SlowConsumer`],
    /// logged): what has not started to leave is dropped, a message already
    /// started is finished, so the peer never gets half a message (as long as
    /// it reads within the server's close linger).
    pub fn send(&self, msg: impl Into<Buf>) -> Result<(), SendError<Buf>> {
        match self.shared.enqueue(self.idx, self.gen, Item::Buf(msg.into())) {
            Ok(()) => Ok(()),
            Err((kind, Item::Buf(payload))) => Err(SendError { kind, payload }),
            Err((_, Item::File { .. })) => unreachable!("a buffer was queued"),
        }
    }

    /// Queues `len` bytes of `file` from `offset`, in order with the byte
    /// messages, sent by the kernel without a user-space copy (TransmitFile).
    /// A file range does not count against the queued-bytes cap.
    ///
    /// # Errors
    /// [`SendErrorKind::Closed`](crate::SendErrorKind::Closed) when the session is closing or gone.
    pub fn send_file(&self, file: Arc<File>, offset: u64, len: u64) -> Result<(), SendError<Arc<File>>> {
        match self
            .shared
            .enqueue(self.idx, self.gen, Item::File { file, offset, len })
        {
            Ok(()) => Ok(()),
            Err((kind, Item::File { file, .. })) => Err(SendError { kind, payload: file }),
            Err((_, Item::Buf(_))) => unreachable!("a file was queued"),
        }
    }

    /// Closes gracefully: stops receiving, sends what is queued (within the
    /// server's linger time), then closes. Reason [`DisconnectReason::Closed`].
    pub fn close(&self) {
        self.close_with(DisconnectReason::Closed, true);
    }

    /// Closes at once, dropping what is queued. Reason [`DisconnectReason::Aborted`].
    pub fn abort(&self) {
        self.close_with(DisconnectReason::Aborted, false);
    }

    fn close_with(&self, reason: DisconnectReason, graceful: bool) {
        self.shared.close_session(self.idx, self.gen, reason, graceful);
    }

    /// Sets the session's timer: [`Handler::on_timer`](crate::Handler::on_timer)
    /// runs once `after` has passed (never early, up to two server ticks
    /// late), in order with the session's messages; `None` clears it.
    /// Setting it again replaces the deadline. The timer does not fire while
    /// the session's receiving is paused (its input may wait unread in the
    /// kernel): it fires once receiving resumes and the deadline has passed.
    /// A request timeout (HTTP's 408) is this timer, set while a request is
    /// partly received.
    pub fn set_timer(&self, after: Option<Duration>) {
        self.shared.set_timer(self.idx, self.gen, after);
    }

    /// `true` until the session starts closing.
    pub fn is_open(&self) -> bool {
        self.shared
            .slots
            .get(self.idx)
            .is_some_and(|slot| slot.state.lock().open_for(self.gen))
    }

    /// `true` while the session's receiving is paused because its answers
    /// wait to be read (back-pressure) or the handler holds its input
    /// ([`pause_receiving`](Self::pause_receiving)): input it sent may sit unread in the
    /// kernel, so a timer on the peer's pace should not count this time.
    pub fn is_receiving_paused(&self) -> bool {
        self.shared.slots.get(self.idx).is_some_and(|slot| {
            let st = slot.state.lock();
            st.is(self.gen) && st.rx_paused
        })
    }

    /// Holds this session's input back: once the message being handled
    /// returns (called outside `on_message`: after the next one), receiving
    /// pauses exactly as when answers back up, no receive is re-armed
    /// (input already on its way is parked) until
    /// [`resume_receiving`](Self::resume_receiving). Flow control for work
    /// the handler started on the input, such as file writes: the peer is
    /// slowed by TCP, nothing is buffered without bound. The session's
    /// timer ([`set_timer`](Self::set_timer)) waits while it is paused.
    pub fn pause_receiving(&self) {
        self.shared.hold_input(self.idx, self.gen);
    }

    /// Releases [`pause_receiving`](Self::pause_receiving): a worker calls
    /// the handler's [`on_resume`](crate::Handler::on_resume) for this
    /// session, then receiving resumes (unless answers still back up).
    /// Call it once per pause, from any thread.
    pub fn resume_receiving(&self) {
        self.shared.release_input(self.idx, self.gen);
    }

    /// The completion port the session runs on (as [`ServerHandle::port`]):
    /// operations issued on it with [`app_ctx`](crate::app_ctx)`(tag)`
    /// complete in [`Handler::on_completion`](crate::Handler::on_completion).
    pub fn port(&self) -> &cport::Port {
        &self.shared.port
    }

    /// Bytes queued and in flight, not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.shared.slots.get(self.idx).map_or(0, |slot| {
            let st = slot.state.lock();
            if st.is(self.gen) {
                st.queue.held()
            } else {
                0
            }
        })
    }
}

/// How a broadcast went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Broadcast {
    /// Sessions the message was queued on.
    pub queued: usize,
    /// Sessions that refused it (closed, or cut off at the cap).
    pub refused: usize,
}

/// Queues one message on many sessions. Every session gets a reference to
/// the same buffer (a reference-count increment each), never a copy.
pub fn broadcast<'a>(sessions: impl IntoIterator<Item = &'a Session>, msg: &Bytes) -> Broadcast {
    let mut b = Broadcast::default();
    for s in sessions {
        match s.send(msg.clone()) {
            Ok(()) => b.queued += 1,
            Err(_) => b.refused += 1,
        }
    }
    b
}

/// A cheap, cloneable view of a running server, for handlers and other
/// threads: counters, the open sessions, broadcast, and the server's port
/// for the application's own operations.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<ServerCore>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("name", &self.shared.cfg.name)
            .finish()
    }
}

impl ServerHandle {
    pub(crate) fn new(shared: Arc<ServerCore>) -> Self {
        ServerHandle { shared }
    }

    /// The server's completion port, for the application's own operations:
    /// associate a socket of its own (any [`Key`](cport::Key)), arm a
    /// timeout, post a job, each with a context from [`app_ctx`](crate::app_ctx),
    /// and its completion runs on the server's workers in
    /// [`Handler::on_completion`](crate::Handler::on_completion). One port per
    /// process: a world loop, a Redis link or another server's sockets need
    /// no port and no threads of their own. Do not dequeue from it: the
    /// workers own that.
    ///
    /// Issue operations from a handler where you can: on io_uring the
    /// kernel runs an operation's completion work in the thread that
    /// submitted it, which interrupts that thread's blocking calls with
    /// `EINTR` (posting a job and issuing from its completion avoids that).
    pub fn port(&self) -> &Port {
        &self.shared.port
    }

    /// The context for an operation the application issues for this
    /// server, from any thread: as [`app_ctx`](crate::app_ctx), but naming
    /// this server even where no handler of it runs (on a
    /// [`Runtime`](crate::Runtime) the context says which server the
    /// completion goes to).
    pub fn app_ctx(&self, tag: u64) -> cport::Ctx {
        self.shared.ctx(Context::App(tag))
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }
    /// Handles of every open session (a snapshot; O(sessions)).
    pub fn sessions(&self) -> Vec<Session> {
        sessions_of(&self.shared)
    }
    /// Where the server listens.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.local_addrs
    }
    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.shared.backend()
    }
    /// Queues `msg` on every session given: one shared buffer, no copy.
    pub fn broadcast<'a>(&self, sessions: impl IntoIterator<Item = &'a Session>, msg: &Bytes) -> Broadcast {
        broadcast(sessions, msg)
    }
}

/// Handles of every open session of the server `sh`.
pub(crate) fn sessions_of(sh: &Arc<ServerCore>) -> Vec<Session> {
    let mut out = Vec::new();
    for idx in 0..sh.free.high_water() {
        if let Some(slot) = sh.slots.get(idx) {
            let st = slot.state.lock();
            if st.live && st.close.is_none() {
                out.push(Session::new(sh.clone(), idx, st.gen, st.id, st.peer));
            }
        }
    }
    out
}
