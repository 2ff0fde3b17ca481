//! The session handle the application holds: send, send a file, close.

use std::error::Error;
use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cport::Buf;

use crate::handler::DisconnectReason;
use crate::queue::Item;
use crate::shared::Shared;

/// One connection of a [`Server`](crate::Server).
///
/// A cheap handle (an `Arc` and a few integers): clone it, keep it in maps,
/// use it from any thread. Once the session has ended every call fails
/// cleanly or does nothing; a handle never reaches a later session that
/// reuses the same slot.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
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

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// The session has ended or is closing.
    Closed,
    /// The session's queue stayed past its cap for the slow-consumer
    /// timeout, or would have passed twice the cap: the session is being
    /// disconnected as a slow consumer.
    Overflow {
        /// Bytes queued when the send came.
        queued: usize,
        /// The cap.
        cap: usize,
    },
}

/// A refused send; the payload comes back.
#[derive(Debug)]
pub struct SendError<T> {
    /// Why.
    pub kind: SendErrorKind,
    /// What was to be sent, handed back.
    pub payload: T,
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SendErrorKind::Closed => f.write_str("session is closed"),
            SendErrorKind::Overflow { queued, cap } => {
                write!(
                    f,
                    "send queue cap reached ({queued} bytes queued, cap {cap}): session disconnected"
                )
            }
        }
    }
}

impl<T: fmt::Debug> Error for SendError<T> {}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, idx: u32, gen: u32, id: u64, peer: Option<SocketAddr>) -> Self {
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
    /// [`SendErrorKind::Closed`] when the session is closing or gone;
    /// [`SendErrorKind::Overflow`] when the session does not read what it is
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
    /// [`SendErrorKind::Closed`] when the session is closing or gone.
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
        let Some(slot) = self.shared.slots.get(self.idx) else {
            return;
        };
        let mut st = slot.state.lock();
        if !st.is(self.gen) {
            return;
        }
        if self.shared.begin_close(slot, &mut st, reason, graceful) {
            drop(st);
            self.shared.post_finalize(self.idx, self.gen);
        }
    }

    /// `true` until the session starts closing.
    pub fn is_open(&self) -> bool {
        self.shared
            .slots
            .get(self.idx)
            .is_some_and(|slot| slot.state.lock().open_for(self.gen))
    }

    /// `true` while the session's receiving is paused because its answers
    /// wait to be read (back-pressure): input it sent may sit unread in the
    /// kernel, so a timer on the peer's pace should not count this time.
    pub fn is_receiving_paused(&self) -> bool {
        self.shared.slots.get(self.idx).is_some_and(|slot| {
            let st = slot.state.lock();
            st.is(self.gen) && st.rx_paused
        })
    }

    /// Holds this session's input back: once the message being handled
    /// returns, no receive is re-armed (input already on its way is parked)
    /// until [`resume_receiving`](Self::resume_receiving). Flow control for
    /// work the handler started on the input, such as file writes: the peer
    /// is slowed by TCP, nothing is buffered without bound.
    pub fn pause_receiving(&self) {
        if let Some(slot) = self.shared.slots.get(self.idx) {
            if slot.state.lock().is(self.gen) {
                slot.held.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Releases [`pause_receiving`](Self::pause_receiving): a worker calls
    /// the handler's [`on_resume`](crate::Handler::on_resume) for this
    /// session, then receiving resumes (unless answers still back up).
    /// Call it once per pause, from any thread.
    pub fn resume_receiving(&self) {
        let Some(slot) = self.shared.slots.get(self.idx) else {
            return;
        };
        let st = slot.state.lock();
        if !st.is(self.gen) {
            return;
        }
        slot.held.store(false, std::sync::atomic::Ordering::Relaxed);
        if st.close.is_none() {
            let key = crate::shared::session_key(self.idx, self.gen);
            let _ = self.shared.port.post(key, 0, crate::shared::CTX_RELEASE);
        }
    }

    /// The completion port the session runs on: file operations issued here
    /// (with a context of the handler's choosing) complete in
    /// [`Handler::on_completion`](crate::Handler::on_completion).
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
