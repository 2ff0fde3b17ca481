//! The worker side: every completion of the server's port comes through
//! [`Dispatcher::handle`], which turns it into handler calls and the next
//! operations (re-armed receives, the next gathered send, accepts, ticks).

use std::io;
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cport::{Buf, Completion, GenIndex, Payload};
use cport_proto::framing::{FrameError, FrameStream};
use parking_lot::Mutex;
use rustix::io::Errno;

use crate::config::Tick;
use crate::context::{session_key, session_of, Context};
use crate::error::{DisconnectReason, ReasonKind};
use crate::handler::Handler;
use crate::lifecycle::{Actions, Lifecycle, SlotFlags};
use crate::message::{FrameAction, Message};
use crate::server_core::{ServerCore, Slot};
use crate::session::{ServerHandle, Session};
use crate::stats::{ServerCounters, Shard};
use crate::table::Table;
use crate::wheel::Entry;

/// The receive side of a session: touched only by the one worker handling
/// its receive (or its connect and disconnect), so this lock is uncontended.
struct RxSlot<S> {
    session: Option<Session>,
    user: Option<S>,
    /// The session's frame reassembly (`None` for raw framing).
    reasm: Option<FrameStream>,
    /// Receiving is paused (mirrors `State::rx_paused`, readable here
    /// without the session lock): input still arriving is parked.
    paused: bool,
    /// Input that arrived after a pause (a multishot receive's last chunks
    /// before its cancel took effect), copied out of the shared pool; it is
    /// delivered first when receiving resumes.
    parked: Option<BytesMut>,
}

impl<S> Default for RxSlot<S> {
    fn default() -> Self {
        RxSlot {
            session: None,
            user: None,
            reasm: None,
            paused: false,
            parked: None,
        }
    }
}

pub(crate) struct Dispatcher<H: Handler> {
    shared: Arc<ServerCore>,
    /// The server as the handler sees it (for its own completions).
    server: ServerHandle,
    handler: H,
    rx: Table<Mutex<RxSlot<H::State>>>,
    accept_retry: Vec<AtomicBool>,
}

/// Runs handler code, catching a panic so the worker thread survives it.
fn guarded<R>(name: &str, what: &'static str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!(server = %name, handler = what, "handler panicked: ending its session");
            None
        }
    }
}

impl<H: Handler> Dispatcher<H> {
    pub(crate) fn new(shared: Arc<ServerCore>, handler: H, capacity: usize) -> Self {
        let accept_retry = shared.listeners.iter().map(|_| AtomicBool::new(false)).collect();
        Dispatcher {
            server: ServerHandle::new(shared.clone()),
            shared,
            handler,
            rx: Table::new(capacity),
            accept_retry,
        }
    }

    /// Runs one completion (a worker's whole job).
    pub(crate) fn handle(&self, c: Completion) {
        self.shared.enter_worker();
        let Some(to) = Context::decode(c.ctx()) else {
            return; // not this server's (a quit packet)
        };
        // The core's own `issued`/`completed` events carry the same key.
        let _session = match to {
            Context::Recv | Context::Send | Context::SendQueued | Context::Resume | Context::Release => {
                tracing::trace_span!("session", server = %self.shared.cfg.name, key = c.key().0).entered()
            }
            _ => tracing::Span::none().entered(),
        };
        match to {
            // Both may finish sends (a handler's send can be settled inline),
            // which give pool buffers back: sessions that found the pool
            // empty can receive again.
            Context::Recv => {
                self.on_recv(c);
                self.rearm_if_starved();
            }
            Context::Send => {
                self.on_send(c);
                self.rearm_if_starved();
            }
            Context::Accept(li) => self.on_accept(li as usize, c),
            Context::Timer(at) => self.on_timer(Duration::from_micros(at), &c),
            Context::Finalize => self.finalize_deferred(),
            Context::SendQueued => {
                let k = session_of(c.key());
                self.on_send_queued(k.index(), k.generation());
            }
            Context::Resume => {
                // Delivers parked input: its answers may settle sends inline.
                let k = session_of(c.key());
                self.resume(k.index(), k.generation());
                self.rearm_if_starved();
            }
            Context::Release => {
                // `on_resume` may answer: its sends may settle inline.
                let k = session_of(c.key());
                self.release(k.index(), k.generation());
                self.rearm_if_starved();
            }
            Context::Start => self.on_start(),
            Context::App(tag) => {
                let server = &self.server;
                guarded(&self.shared.cfg.name, "on_completion", || {
                    self.handler.on_completion(server, tag, c)
                });
            }
        }
    }

    /// Arms every accept and the timer (from a worker: see `ServerCore::worker`).
    fn on_start(&self) {
        let sh = &*self.shared;
        for li in 0..sh.listeners.len() {
            if let Err(e) = self.arm_accept(li) {
                tracing::error!(server = %sh.cfg.name, error = %e, "cannot arm accept; retrying at the next tick");
                self.accept_retry[li].store(true, Release);
            }
        }
        sh.wake_at_next_tick();
    }

    /// Feeds one event to session (`idx`, `gen`)'s state machine, if that
    /// session is still live, carries out its actions, and then, outside
    /// the lock, what they left: the handler's timer, the session's end.
    fn with_session(&self, idx: u32, gen: u32, event: impl FnOnce(&SlotFlags, &mut Lifecycle, &mut Actions)) {
        let Some(slot) = self.shared.slots.get(idx) else { return };
        let mut st = slot.state.lock();
        if !st.is(gen) {
            return;
        }
        let mut out = Actions::default();
        event(&slot.flags, &mut st, &mut out);
        let next = self.shared.apply(&slot.flags, &mut st, &mut out);
        drop(st);
        if next.fire_timer {
            self.fire_timer(idx, gen);
        }
        if next.finalize {
            self.finalize(idx, gen);
        }
    }

    /// A send queued by another thread: issue it here.
    fn on_send_queued(&self, idx: u32, gen: u32) {
        self.with_session(idx, gen, |_, st, out| {
            st.send_posted = false;
            st.transmit(out);
        });
    }

    // ----- accepting ------------------------------------------------------

    /// Arms the multishot accept of listener `li`.
    fn arm_accept(&self, li: usize) -> io::Result<()> {
        let sh = &*self.shared;
        sh.port
            .accept_multi(&sh.listeners[li], sh.ctx(Context::Accept(li as u32)))?;
        Ok(())
    }

    fn on_accept(&self, li: usize, mut c: Completion) {
        let sh = &*self.shared;
        let more = c.more();
        let mut later = false;
        match c.result() {
            Ok(_) => {
                if let Some(s) = c.take_accepted() {
                    self.open_session(s);
                }
            }
            Err(_) if c.is_cancelled() || c.is_shutdown() => {}
            Err(e) => {
                // Out of fds or memory: the connection waits in the backlog;
                // retrying at once would spin, so retry at the next tick.
                later = matches!(
                    Errno::from_io_error(e),
                    Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
                );
                tracing::warn!(server = %sh.cfg.name, error = %e, "accept failed");
            }
        }
        if !more
            && !sh.stopping.load(Acquire)
            && li < self.accept_retry.len()
            && (later || self.arm_accept(li).is_err())
        {
            self.accept_retry[li].store(true, Release);
        }
    }

    fn open_session(&self, stream: TcpStream) {
        let sh = &*self.shared;
        if sh.stopping.load(SeqCst) {
            return; // dropping the stream closes it
        }
        let peer = stream.peer_addr().ok();
        if sh.cfg.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let Some(idx) = sh.free.alloc() else {
            ServerCounters::add(&sh.counters.rejected, 1);
            tracing::warn!(server = %sh.cfg.name, ?peer, "connection refused: session limit reached");
            return;
        };
        let slot = sh.slots.ensure(idx);
        let cell = self.rx.ensure(idx);
        let gen = slot.state.lock().gen;
        let handle = match sh.port.associate(stream, session_key(GenIndex::new(idx, gen))) {
            Ok(h) => h,
            Err(e) => {
                sh.free.release(idx);
                ServerCounters::add(&sh.counters.rejected, 1);
                tracing::warn!(server = %sh.cfg.name, error = %e, "connection refused: association failed");
                return;
            }
        };
        let id = sh.next_id.fetch_add(1, Relaxed);
        let now = sh.now();
        let f = &slot.flags;
        f.closing.store(false, Release);
        f.backed_up.store(false, Relaxed);
        f.held.store(false, Relaxed);
        f.last_active.store(now, Relaxed);
        f.frame_since.store(0, Relaxed);
        f.bytes_in.store(0, Relaxed);
        f.bytes_out.store(0, Relaxed);
        *slot.state.lock() = Lifecycle::opened(idx, gen, id, peer, handle);
        sh.counters.sessions.fetch_add(1, SeqCst);
        ServerCounters::add(&sh.counters.accepted, 1);
        let session = Session::new(self.shared.clone(), idx, gen, id, peer);
        let key = session_key(GenIndex::new(idx, gen)).0;
        tracing::trace!(server = %sh.cfg.name, session = id, key, ?peer, "session opened");
        let connected;
        {
            let mut rx = cell.lock();
            rx.reasm = sh.cfg.framing.stream();
            rx.paused = false;
            rx.parked = None;
            rx.user = guarded(&sh.cfg.name, "on_connect", || self.handler.on_connect(&session));
            connected = rx.user.is_some();
            rx.session = Some(session);
        }
        let stopping = sh.stopping.load(SeqCst);
        self.with_session(idx, gen, |f, st, out| {
            st.connected(connected, stopping, now, &sh.cfg, f, out)
        });
    }

    // ----- receiving ------------------------------------------------------

    fn on_recv(&self, c: Completion) {
        let sh = &*self.shared;
        let k = session_of(c.key());
        let (idx, gen) = (k.index(), k.generation());
        let Some(slot) = sh.slots.get(idx) else { return };
        let more = c.more();
        let cancelled = c.is_cancelled() || c.is_shutdown();
        let (res, payload) = c.into_parts();
        let buf = match payload {
            Payload::Buf(b) if !b.is_empty() => Some(b),
            _ => None,
        };
        if more {
            // The hot path: the receive stays armed, nothing to re-arm.
            if let Some(reason) = buf.and_then(|b| self.deliver(idx, slot, b)) {
                self.with_session(idx, gen, |f, st, out| {
                    let graceful = !matches!(reason, DisconnectReason::HandlerPanicked);
                    st.close(reason, graceful, sh.now(), &sh.cfg, f, out)
                });
            }
            return;
        }
        {
            let mut st = slot.state.lock();
            if !st.is(gen) {
                return;
            }
            st.recv_ended();
        }
        let got_data = buf.is_some();
        let fatal = buf.and_then(|b| self.deliver(idx, slot, b));
        let mut resume = false;
        self.with_session(idx, gen, |f, st, out| {
            st.on_received(fatal, res, got_data, cancelled, sh.now(), &sh.cfg, f, out);
            resume = st.resume_ready(f);
        });
        if resume {
            self.resume(idx, gen);
        }
    }

    /// Hands received bytes to the handler (as they are, or as frames), or
    /// parks them while receiving is paused; pauses receiving when the
    /// handler's answers backed the send queue up past the high-water mark.
    /// Returns a reason when the bytes broke the framing or the handler panicked.
    fn deliver(&self, idx: u32, slot: &Slot, buf: Buf) -> Option<DisconnectReason> {
        let sh = &*self.shared;
        let shard = sh.shard();
        sh.counters.traffic(shard, |t| &t.bytes_in, buf.len() as u64);
        let f = &slot.flags;
        f.bytes_in.store(f.bytes_in.load(Relaxed) + buf.len() as u64, Relaxed);
        f.last_active.store(sh.now(), Relaxed);
        if slot.flags.closing.load(Acquire) {
            return None;
        }
        let cell = self.rx.get(idx)?;
        let mut rx = cell.lock();
        if rx.paused {
            rx.parked.get_or_insert_with(BytesMut::new).extend_from_slice(&buf);
            return None;
        }
        let fatal = self.handle_input(slot, &mut rx, buf, shard);
        if fatal.is_none() && slot.flags.holds_input() {
            self.pause(slot, &mut rx);
        }
        fatal
    }

    /// Pauses a session's receiving (back-pressure): its answers wait to be
    /// read. A multishot receive is cancelled; what it still delivers is
    /// parked. Nothing is re-armed until `resume`.
    fn pause(&self, slot: &Slot, rx: &mut RxSlot<H::State>) {
        let mut st = slot.state.lock();
        let mut out = Actions::default();
        if st.pause(&slot.flags, &mut out) {
            rx.paused = true;
            ServerCounters::add(&self.shared.counters.pauses, 1);
        }
        // (Pausing only cancels the receive: nothing to finalize.)
        let _ = self.shared.apply(&slot.flags, &mut st, &mut out);
    }

    /// Resumes a paused session whose queue drained to the low-water mark:
    /// delivers the parked input (pausing again if its answers back the
    /// queue up once more), then re-arms the receive exactly once, or ends
    /// the session if the peer had closed its side.
    fn resume(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        let (Some(slot), Some(cell)) = (sh.slots.get(idx), self.rx.get(idx)) else {
            return;
        };
        loop {
            let mut rx = cell.lock();
            {
                let mut st = slot.state.lock();
                if !st.is(gen) || !st.resume(&slot.flags) {
                    return;
                }
            }
            ServerCounters::add(&sh.counters.resumes, 1);
            rx.paused = false;
            if slot.flags.frame_since.load(Relaxed) != 0 {
                // The frame clock stood still while the server was not reading.
                slot.flags.frame_since.store(sh.now() + 1, Relaxed);
            }
            let shard = sh.shard();
            let mut fatal = None;
            while fatal.is_none() && !rx.paused {
                let Some(parked) = rx.parked.as_mut() else { break };
                let piece = parked.split_to(parked.len().min(sh.cfg.recv_size)).freeze();
                if parked.is_empty() {
                    rx.parked = None;
                }
                fatal = self.handle_input(slot, &mut rx, Buf::Bytes(piece), shard);
                if fatal.is_none() && slot.flags.holds_input() {
                    self.pause(slot, &mut rx);
                }
            }
            drop(rx);
            // Paused again and drained at once by another worker, whose
            // resume found this one busy: go round again.
            let mut again = false;
            self.with_session(idx, gen, |f, st, out| {
                st.resumed(fatal, sh.now(), &sh.cfg, f, out);
                again = !st.finalizing && st.resume_ready(f);
            });
            if !again {
                return;
            }
        }
    }

    /// The handler let go of a session's input: runs its `on_resume` (in
    /// order with `on_message`, under the receive side's lock), then
    /// resumes receiving if nothing holds it any more.
    fn release(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        let (Some(slot), Some(cell)) = (sh.slots.get(idx), self.rx.get(idx)) else {
            return;
        };
        let mut rx = cell.lock();
        {
            let mut st = slot.state.lock();
            if !st.is(gen) || !st.on_release() {
                return;
            }
        }
        let mut fatal = None;
        let RxSlot { session, user, .. } = &mut *rx;
        if let (Some(s), Some(u)) = (session.as_ref(), user.as_mut()) {
            let h = &self.handler;
            if guarded(&sh.cfg.name, "on_resume", || h.on_resume(s, u)).is_none() {
                fatal = Some(DisconnectReason::HandlerPanicked);
            }
        }
        // It held the input again, or its answers backed up: stay paused.
        if fatal.is_none() && slot.flags.holds_input() {
            self.pause(slot, &mut rx);
        }
        drop(rx);
        let mut resume = false;
        self.with_session(idx, gen, |f, st, out| {
            st.released(fatal, sh.now(), &sh.cfg, f, out);
            resume = !st.finalizing && st.resume_ready(f);
        });
        if resume {
            self.resume(idx, gen);
        }
    }

    /// Runs one received chunk through the framing and the handler.
    fn handle_input(&self, slot: &Slot, rx: &mut RxSlot<H::State>, buf: Buf, shard: Shard) -> Option<DisconnectReason> {
        let sh = &*self.shared;
        let now = sh.now();
        let RxSlot {
            session, user, reasm, ..
        } = rx;
        let (Some(session), Some(user)) = (session.as_ref(), user.as_mut()) else {
            return None;
        };
        let Some(r) = reasm else {
            sh.counters.traffic(shard, |t| &t.messages_in, 1);
            let h = &self.handler;
            return match guarded(&sh.cfg.name, "on_message", || {
                h.on_message(session, user, Message::Chunk(buf))
            }) {
                Some(()) => None,
                None => Some(DisconnectReason::HandlerPanicked),
            };
        };
        let had = r.has_partial();
        r.push(&buf);
        drop(buf);
        let h = &self.handler;
        let name = &sh.cfg.name;
        let fatal = loop {
            match r.next_frame() {
                Ok(Some(frame)) => {
                    sh.counters.traffic(shard, |t| &t.messages_in, 1);
                    if guarded(name, "on_message", || {
                        h.on_message(session, user, Message::Frame(frame))
                    })
                    .is_none()
                    {
                        r.clear();
                        break Some(DisconnectReason::HandlerPanicked);
                    }
                    if slot.flags.closing.load(Acquire) {
                        // The session is closing: the rest is dropped.
                        r.clear();
                        break None;
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    // Only an oversized frame may be skipped, if the handler says so.
                    let action = match e {
                        FrameError::TooLarge { .. } => {
                            guarded(name, "on_frame_error", || h.on_frame_error(session, user, &e))
                        }
                        _ => Some(FrameAction::Close), // Malformed, and any later kind.
                    };
                    match action {
                        Some(FrameAction::Skip) if r.skip_frame(&e) => continue,
                        Some(_) => {
                            r.clear();
                            tracing::info!(server = %name, error = %e, "bad frame: closing session");
                            break Some(DisconnectReason::Frame(e));
                        }
                        None => {
                            r.clear();
                            break Some(DisconnectReason::HandlerPanicked);
                        }
                    }
                }
            }
        };
        if matches!(fatal, Some(DisconnectReason::HandlerPanicked)) {
            return fatal;
        }
        let has = r.has_partial();
        if has != had {
            self.frame_timer(slot, has, now);
        }
        fatal
    }

    /// A partial frame started (or the last one completed): arm (or stop)
    /// the frame-completion timer.
    fn frame_timer(&self, slot: &Slot, started: bool, now: Tick) {
        if !started {
            slot.flags.frame_since.store(0, Relaxed);
            return;
        }
        slot.flags.frame_since.store(now + 1, Relaxed);
        if self.shared.cfg.frame_ticks.is_some() {
            let mut st = slot.state.lock();
            let mut out = Actions::default();
            st.frame_started(now, &self.shared.cfg, &mut out);
            // (Scheduling a check finalizes nothing.)
            let _ = self.shared.apply(&slot.flags, &mut st, &mut out);
        }
    }

    /// Re-arms receives that found the pool empty.
    fn rearm_starved(&self) {
        let sh = &*self.shared;
        if !sh.starved_any.swap(false, AcqRel) {
            return;
        }
        let list = std::mem::take(&mut *sh.starved.lock());
        for k in list {
            self.with_session(k.index(), k.generation(), |_, st, out| st.buffers_back(out));
        }
    }

    // ----- sending --------------------------------------------------------

    fn rearm_if_starved(&self) {
        if self.shared.starved_any.load(Acquire) {
            self.rearm_starved();
        }
    }

    fn on_send(&self, c: Completion) {
        let sh = &*self.shared;
        let k = session_of(c.key());
        let (idx, gen) = (k.index(), k.generation());
        self.with_session(idx, gen, |f, st, out| {
            let cancelled = c.is_cancelled() || c.is_shutdown();
            let (res, payload) = c.into_parts();
            let n = st.on_sent(res, payload, cancelled, sh.now(), &sh.cfg, f, out);
            sh.count(|t| &t.bytes_out, n as u64);
        });
    }

    // ----- time -------------------------------------------------------------

    /// The server's timer fired: advances the coarse clock, expires what
    /// came due on the wheel, retries starved receives and failed accepts,
    /// and plans the next wake-up.
    fn on_timer(&self, armed_for: Duration, c: &Completion) {
        let sh = &*self.shared;
        sh.timer.lock().fired(armed_for);
        if sh.finished.load(Acquire) || c.is_shutdown() {
            return;
        }
        let before = sh.now();
        let now = sh.advance_clock();
        let mut due = Vec::new();
        sh.wheel.lock().expire(now, &mut due);
        for e in due {
            self.check_timeouts(e, now);
        }
        self.finalize_deferred();
        // Receive buffers unused for a while go back to the system.
        sh.pool.trim(Instant::now());
        self.rearm_starved();
        if now != before && !sh.stopping.load(Acquire) {
            for (li, flag) in self.accept_retry.iter().enumerate() {
                if flag.swap(false, AcqRel) && self.arm_accept(li).is_err() {
                    flag.store(true, Release);
                }
            }
        }
        if !sh.finished.load(Acquire) {
            sh.wake_at_next_tick();
        }
    }

    /// A session's wheel check came due: its state machine decides.
    fn check_timeouts(&self, e: Entry, now: Tick) {
        let sh = &*self.shared;
        self.with_session(e.session.index(), e.session.generation(), |f, st, out| {
            st.on_timeout(e.due, now, &sh.cfg, f, out)
        });
    }

    /// Runs the handler's timer of session (`idx`, `gen`), in order with
    /// its messages (under its receive side's lock).
    fn fire_timer(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        let (Some(slot), Some(cell)) = (sh.slots.get(idx), self.rx.get(idx)) else {
            return;
        };
        let mut rx = cell.lock();
        if !slot.state.lock().open_for(gen) {
            return;
        }
        let RxSlot { session, user, .. } = &mut *rx;
        let (Some(session), Some(user)) = (session.as_ref(), user.as_mut()) else {
            return;
        };
        if guarded(&sh.cfg.name, "on_timer", || self.handler.on_timer(session, user)).is_none() {
            drop(rx);
            self.with_session(idx, gen, |f, st, out| {
                st.close(DisconnectReason::HandlerPanicked, false, sh.now(), &sh.cfg, f, out)
            });
        }
    }

    // ----- the end of a session ------------------------------------------------

    /// Finalizes the sessions handed over by other threads.
    fn finalize_deferred(&self) {
        for k in self.shared.take_to_finalize() {
            self.finalize(k.index(), k.generation());
        }
    }

    /// Ends a session whose finalization was decided: the handler's
    /// `on_disconnect`, counters, and the slot back to the free list.
    fn finalize(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        let Some(slot) = sh.slots.get(idx) else { return };
        let (reason, id) = {
            let mut st = slot.state.lock();
            if !st.is(gen) {
                return;
            }
            match st.finish() {
                Some(end) => end,
                None => return,
            }
        };
        let (session, user) = match self.rx.get(idx) {
            Some(cell) => {
                let mut rx = cell.lock();
                rx.reasm = None;
                rx.paused = false;
                rx.parked = None;
                (rx.session.take(), rx.user.take())
            }
            None => (None, None),
        };
        if let (Some(s), Some(u)) = (session.as_ref(), user) {
            guarded(&sh.cfg.name, "on_disconnect", || {
                self.handler.on_disconnect(s, u, &reason)
            });
        }
        match reason.kind() {
            ReasonKind::PeerClosed | ReasonKind::Closed | ReasonKind::Shutdown => {
                tracing::debug!(server = %sh.cfg.name, session = id, reason = %reason, "session closed")
            }
            _ => tracing::info!(server = %sh.cfg.name, session = id, reason = %reason, "session closed"),
        }
        sh.counters.disconnected(reason.kind());
        let last = sh.counters.sessions.fetch_sub(1, SeqCst) == 1;
        drop(session);
        sh.free.release(idx);
        if last && sh.stopping.load(SeqCst) {
            let _g = sh.all_closed.0.lock();
            sh.all_closed.1.notify_all();
        }
    }
}
