//! The worker side: every completion of the server's port comes through
//! [`Dispatcher::handle`], which turns it into handler calls and the next
//! operations (re-armed receives, the next gathered send, accepts, ticks).

use std::io;
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use cport::{Buf, Completion, Ctx, OpKind, Payload};
use cport_proto::framing::FrameError;
use parking_lot::Mutex;

use crate::handler::{DisconnectReason, FrameAction, Handler, Message, ReasonKind};
use crate::rx::{Fed, Flow, FrameSink, Reassembly};
use crate::session::Session;
use crate::shared::*;
use crate::stats::{Counters, Shard};
use crate::table::Table;
use crate::wheel::{Entry, Tick};

/// The receive side of a session: touched only by the one worker handling
/// its receive (or its connect and disconnect), so this lock is uncontended.
struct RxSlot<S> {
    session: Option<Session>,
    user: Option<S>,
    reasm: Option<Reassembly>,
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
    shared: Arc<Shared>,
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

/// A failure found while delivering received bytes closes gracefully (what
/// is queued still goes out), unless the handler panicked.
fn graceful(reason: &DisconnectReason) -> bool {
    !matches!(reason, DisconnectReason::HandlerPanicked)
}

/// Hands decoded frames of one session to the handler.
struct Sink<'a, H: Handler> {
    handler: &'a H,
    session: &'a Session,
    user: &'a mut H::State,
    slot: &'a Slot,
    shared: &'a Shared,
    shard: Shard,
    panicked: bool,
}

impl<H: Handler> FrameSink for Sink<'_, H> {
    fn frame(&mut self, frame: Bytes) -> Flow {
        self.shared.counters.traffic(self.shard, |t| &t.messages_in, 1);
        let (h, s, u) = (self.handler, self.session, &mut *self.user);
        if guarded(&self.shared.cfg.name, "on_message", || {
            h.on_message(s, u, Message::Frame(frame))
        })
        .is_none()
        {
            self.panicked = true;
            return Flow::Stop;
        }
        if self.slot.closing.load(Acquire) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
    fn error(&mut self, err: &FrameError) -> FrameAction {
        let (h, s, u) = (self.handler, self.session, &mut *self.user);
        guarded(&self.shared.cfg.name, "on_frame_error", || h.on_frame_error(s, u, err)).unwrap_or_else(|| {
            self.panicked = true;
            FrameAction::Close
        })
    }
}

impl<H: Handler> Dispatcher<H> {
    pub(crate) fn new(shared: Arc<Shared>, handler: H, capacity: usize) -> Self {
        let accept_retry = shared.listeners.iter().map(|_| AtomicBool::new(false)).collect();
        Dispatcher {
            shared,
            handler,
            rx: Table::new(capacity),
            accept_retry,
        }
    }

    /// Runs one completion (a worker's whole job).
    pub(crate) fn handle(&self, c: Completion) {
        self.shared.enter_worker();
        match c.kind() {
            // Both may finish sends (a handler's send can be settled inline),
            // which give pool buffers back: sessions that found the pool
            // empty can receive again.
            OpKind::RecvPooled => {
                self.on_recv(c);
                self.rearm_if_starved();
            }
            OpKind::Send | OpKind::SendVectored | OpKind::SendFile => {
                self.on_send(c);
                self.rearm_if_starved();
            }
            OpKind::Accept => self.on_accept(c),
            OpKind::Timeout if c.ctx() == CTX_TICK => self.on_tick(&c),
            OpKind::Timeout if c.ctx() == CTX_RETRY => {
                self.shared.retry_armed.store(false, Release);
                self.rearm_starved();
            }
            OpKind::Post if c.ctx() == CTX_FINALIZE => {
                let (idx, gen) = split_key(c.key());
                self.finalize(idx, gen);
            }
            OpKind::Post if c.ctx() == CTX_KICK => {
                let (idx, gen) = split_key(c.key());
                self.on_kick(idx, gen);
            }
            OpKind::Post if c.ctx() == CTX_RESUME => {
                // Delivers parked input: its answers may settle sends inline.
                let (idx, gen) = split_key(c.key());
                self.resume(idx, gen);
                self.rearm_if_starved();
            }
            OpKind::Post if c.ctx() == CTX_START => self.on_start(),
            OpKind::Post if c.ctx() == CTX_RELEASE => {
                let (idx, gen) = split_key(c.key());
                self.release(idx, gen);
                self.rearm_if_starved();
            }
            // File operations, timers and posts the handler issued itself.
            OpKind::Post | OpKind::Timeout => self.handler.on_completion(c),
            OpKind::ReadAt | OpKind::WriteAt | OpKind::Fsync => self.handler.on_completion(c),
            _ => {}
        }
    }

    /// The handler released its hold on a session's input: it continues
    /// what it held back (`on_resume`), then receiving resumes.
    fn release(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        let (Some(slot), Some(cell)) = (sh.slots.get(idx), self.rx.get(idx)) else {
            return;
        };
        let mut fatal = None;
        {
            let mut rx = cell.lock();
            {
                let mut st = slot.state.lock();
                if !st.is(gen) || st.close.is_some() {
                    return;
                }
                st.recv_busy = true; // handler code runs: nothing may finalize
            }
            let RxSlot { session, user, .. } = &mut *rx;
            if let (Some(s), Some(u)) = (session.as_ref(), user.as_mut()) {
                let h = &self.handler;
                if guarded(&sh.cfg.name, "on_resume", || h.on_resume(s, u)).is_none() {
                    fatal = Some(DisconnectReason::HandlerPanicked);
                }
            }
        }
        let mut st = slot.state.lock();
        st.recv_busy = false;
        let fin = match fatal {
            Some(reason) => sh.begin_close(slot, &mut st, reason, false),
            None => sh.check_finalize(&mut st),
        };
        let resume = !fin && sh.resume_ready(slot, &st);
        drop(st);
        if fin {
            self.finalize(idx, gen);
        } else if resume {
            self.resume(idx, gen);
        }
    }

    /// Arms every accept and the timer (from a worker: see `Shared::on_worker`).
    fn on_start(&self) {
        let sh = &*self.shared;
        for li in 0..sh.listeners.len() {
            if let Err(e) = self.arm_accept(li) {
                tracing::error!(server = %sh.cfg.name, error = %e, "cannot arm accept; retrying at the next tick");
                self.accept_retry[li].store(true, Release);
            }
        }
        if let Err(e) = sh.port.timeout(sh.until_next_tick(), CTX_TICK) {
            tracing::error!(server = %sh.cfg.name, error = %e, "cannot arm the timer: no timeouts will fire");
        }
    }

    /// Runs `f` under the lock of session (`idx`, `gen`), if that session is
    /// still live, and finalizes it when `f` returns `true`.
    fn with_session(&self, idx: u32, gen: u32, f: impl FnOnce(&Slot, &mut State) -> bool) {
        let Some(slot) = self.shared.slots.get(idx) else { return };
        let mut st = slot.state.lock();
        if !st.is(gen) {
            return;
        }
        let fin = f(slot, &mut st);
        drop(st);
        if fin {
            self.finalize(idx, gen);
        }
    }

    /// A send queued by another thread: issue it here.
    fn on_kick(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        self.with_session(idx, gen, |slot, st| {
            st.kick_posted = false;
            sh.kick(slot, st)
        });
    }

    // ----- accepting ------------------------------------------------------

    /// Arms the multishot accept of listener `li`.
    fn arm_accept(&self, li: usize) -> io::Result<()> {
        let sh = &*self.shared;
        sh.port
            .accept_multi(&sh.listeners[li], Ctx::new(CTX_ACCEPT + li as u64))?;
        Ok(())
    }

    fn on_accept(&self, mut c: Completion) {
        let sh = &*self.shared;
        let li = (c.ctx() - CTX_ACCEPT) as usize;
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
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
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
            Counters::add(&sh.counters.rejected, 1);
            tracing::warn!(server = %sh.cfg.name, ?peer, "connection refused: session limit reached");
            return;
        };
        let slot = sh.slots.ensure(idx);
        let cell = self.rx.ensure(idx);
        let gen = slot.state.lock().gen;
        let handle = match sh.port.associate(stream, session_key(idx, gen)) {
            Ok(h) => h,
            Err(e) => {
                sh.free.release(idx);
                Counters::add(&sh.counters.rejected, 1);
                tracing::warn!(server = %sh.cfg.name, error = %e, "connection refused: association failed");
                return;
            }
        };
        let id = sh.next_id.fetch_add(1, Relaxed);
        let now = sh.now();
        slot.closing.store(false, Release);
        slot.backed_up.store(false, Relaxed);
        slot.held.store(false, Relaxed);
        slot.last_active.store(now, Relaxed);
        slot.frame_since.store(0, Relaxed);
        {
            let mut st = slot.state.lock();
            *st = State {
                live: true,
                id,
                peer,
                handle: Some(handle),
                recv_busy: true, // on_connect runs: nothing may finalize yet
                ..State::vacant(idx, gen)
            };
        }
        sh.counters.sessions.fetch_add(1, SeqCst);
        Counters::add(&sh.counters.accepted, 1);
        let session = Session::new(self.shared.clone(), idx, gen, id, peer);
        tracing::trace!(server = %sh.cfg.name, session = id, ?peer, "session opened");
        let connected;
        {
            let mut rx = cell.lock();
            rx.reasm = Reassembly::new(&sh.cfg.framing);
            rx.paused = false;
            rx.parked = None;
            rx.user = guarded(&sh.cfg.name, "on_connect", || self.handler.on_connect(&session));
            connected = rx.user.is_some();
            rx.session = Some(session);
        }
        let mut st = slot.state.lock();
        st.recv_busy = false;
        let mut fin = false;
        if !connected {
            fin = sh.begin_close(slot, &mut st, DisconnectReason::HandlerPanicked, false);
        }
        if sh.stopping.load(SeqCst) {
            fin = sh.begin_close(slot, &mut st, DisconnectReason::Shutdown, true);
        }
        if st.close.is_none() {
            fin = sh.arm_recv(slot, &mut st);
            if let Some(t) = sh.cfg.idle_ticks {
                sh.schedule(&mut st, now.saturating_add(t));
            }
        }
        fin = fin || sh.check_finalize(&mut st);
        drop(st);
        if fin {
            self.finalize(idx, gen);
        }
    }

    // ----- receiving ------------------------------------------------------

    fn on_recv(&self, c: Completion) {
        let sh = &*self.shared;
        let (idx, gen) = split_key(c.key());
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
                self.with_session(idx, gen, |slot, st| {
                    let graceful = graceful(&reason);
                    sh.begin_close(slot, st, reason, graceful)
                });
            }
            return;
        }
        {
            let mut st = slot.state.lock();
            if !st.is(gen) {
                return;
            }
            st.recv_op = None;
            st.recv_busy = true;
        }
        let got_data = buf.is_some();
        let fatal = buf.and_then(|b| self.deliver(idx, slot, b));
        let mut st = slot.state.lock();
        st.recv_busy = false;
        let fin = match (fatal, res) {
            (Some(reason), _) => {
                let graceful = graceful(&reason);
                sh.begin_close(slot, &mut st, reason, graceful)
            }
            (None, Ok(0)) if !got_data && st.rx_paused && st.close.is_none() => {
                // Input parked before the end is delivered first (`resume`).
                st.rx_eof = true;
                false
            }
            (None, Ok(0)) if !got_data => sh.begin_close(slot, &mut st, DisconnectReason::PeerClosed, true),
            (None, Ok(_)) if st.close.is_none() => !st.rx_paused && sh.arm_recv(slot, &mut st),
            (None, Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) && st.close.is_none() => {
                if !st.rx_paused {
                    sh.starve(&mut st);
                }
                false
            }
            (None, Err(e)) if !cancelled && st.close.is_none() => {
                tracing::debug!(server = %sh.cfg.name, session = st.id, error = %e, "receive failed");
                sh.begin_close(slot, &mut st, DisconnectReason::Io(e), false)
            }
            _ => sh.check_finalize(&mut st),
        };
        let resume = !fin && sh.resume_ready(slot, &st);
        drop(st);
        if fin {
            self.finalize(idx, gen);
        } else if resume {
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
        slot.last_active.store(sh.now(), Relaxed);
        if slot.closing.load(Acquire) {
            return None;
        }
        let cell = self.rx.get(idx)?;
        let mut rx = cell.lock();
        if rx.paused {
            rx.parked.get_or_insert_with(BytesMut::new).extend_from_slice(&buf);
            return None;
        }
        let fatal = self.handle_input(slot, &mut rx, buf, shard);
        if fatal.is_none() && slot.holds_input() {
            self.pause(slot, &mut rx);
        }
        fatal
    }

    /// Pauses a session's receiving (back-pressure): its answers wait to be
    /// read. A multishot receive is cancelled; what it still delivers is
    /// parked. Nothing is re-armed until `resume`.
    fn pause(&self, slot: &Slot, rx: &mut RxSlot<H::State>) {
        let mut st = slot.state.lock();
        // Drained meanwhile (another worker settled a send): nothing to do.
        if !st.live || st.close.is_some() || st.rx_paused || !slot.holds_input() {
            return;
        }
        st.rx_paused = true;
        rx.paused = true;
        Counters::add(&self.shared.counters.pauses, 1);
        if let Some(op) = st.recv_op {
            // The op is this port's own: cancel_op refuses only foreign ids.
            let _ = self.shared.port.cancel_op(op);
        }
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
                if !st.is(gen) {
                    return;
                }
                st.resume_posted = false;
                if !sh.resume_ready(slot, &st) {
                    return;
                }
                st.rx_paused = false;
                st.recv_busy = true; // handler code runs: nothing may finalize
            }
            Counters::add(&sh.counters.resumes, 1);
            rx.paused = false;
            if slot.frame_since.load(Relaxed) != 0 {
                // The frame clock stood still while the server was not reading.
                slot.frame_since.store(sh.now() + 1, Relaxed);
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
                if fatal.is_none() && slot.holds_input() {
                    self.pause(slot, &mut rx);
                }
            }
            drop(rx);
            let mut st = slot.state.lock();
            st.recv_busy = false;
            let fin = if let Some(reason) = fatal {
                let graceful = graceful(&reason);
                sh.begin_close(slot, &mut st, reason, graceful)
            } else if st.close.is_some() || st.rx_paused {
                sh.check_finalize(&mut st)
            } else if std::mem::take(&mut st.rx_eof) {
                sh.begin_close(slot, &mut st, DisconnectReason::PeerClosed, true)
            } else {
                sh.arm_recv(slot, &mut st)
            };
            // Paused again and drained at once by another worker, whose
            // resume found this one busy: go round again.
            let again = !fin && sh.resume_ready(slot, &st);
            drop(st);
            if fin {
                self.finalize(idx, gen);
            }
            if !again {
                return;
            }
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
        let mut sink = Sink {
            handler: &self.handler,
            session,
            user,
            slot,
            shared: sh,
            shard,
            panicked: false,
        };
        let fed = r.feed(&buf, &mut sink);
        drop(buf);
        if sink.panicked {
            return Some(DisconnectReason::HandlerPanicked);
        }
        let has = r.has_partial();
        if has != had {
            self.frame_timer(slot, has, now);
        }
        match fed {
            Fed::Fatal(e) => {
                tracing::info!(server = %sh.cfg.name, error = %e, "bad frame: closing session");
                Some(DisconnectReason::Frame(e))
            }
            Fed::Ok | Fed::Stopped => None,
        }
    }

    /// A partial frame started (or the last one completed): arm (or stop)
    /// the frame-completion timer.
    fn frame_timer(&self, slot: &Slot, started: bool, now: Tick) {
        if !started {
            slot.frame_since.store(0, Relaxed);
            return;
        }
        slot.frame_since.store(now + 1, Relaxed);
        if let Some(t) = self.shared.cfg.frame_ticks {
            let mut st = slot.state.lock();
            if st.live {
                self.shared.schedule(&mut st, now.saturating_add(t));
            }
        }
    }

    /// Re-arms receives that found the pool empty.
    fn rearm_starved(&self) {
        let sh = &*self.shared;
        if !sh.starved_any.swap(false, AcqRel) {
            return;
        }
        let list = std::mem::take(&mut *sh.starved.lock());
        for (idx, gen) in list {
            self.with_session(idx, gen, |slot, st| {
                if !st.starved {
                    return false;
                }
                st.starved = false;
                if st.close.is_none() {
                    !st.rx_paused && sh.arm_recv(slot, st)
                } else {
                    sh.check_finalize(st)
                }
            });
        }
    }

    // ----- sending --------------------------------------------------------

    fn rearm_if_starved(&self) {
        if self.shared.starved_any.load(Acquire) {
            self.rearm_starved();
        }
    }

    fn on_send(&self, c: Completion) {
        let (idx, gen) = split_key(c.key());
        self.with_session(idx, gen, |slot, st| self.send_done(slot, st, c));
    }

    /// Settles a finished send and issues the next one (or closes a flushed
    /// graceful close). Returns `true` when the session must be finalized.
    fn send_done(&self, slot: &Slot, st: &mut State, c: Completion) -> bool {
        let sh = &*self.shared;
        sh.settle_send(slot, st, c) || sh.kick(slot, st)
    }

    // ----- time -------------------------------------------------------------

    fn on_tick(&self, c: &Completion) {
        let sh = &*self.shared;
        if sh.finished.load(Acquire) || c.is_shutdown() {
            return;
        }
        let now = sh.advance_clock();
        let mut due = Vec::new();
        sh.wheel.lock().expire(now, &mut due);
        for e in due {
            self.check_timeouts(e, now);
        }
        let orphans = std::mem::take(&mut *sh.orphans.lock());
        for (idx, gen) in orphans {
            self.finalize(idx, gen);
        }
        self.rearm_starved();
        if !sh.stopping.load(Acquire) {
            for (li, flag) in self.accept_retry.iter().enumerate() {
                if flag.swap(false, AcqRel) && self.arm_accept(li).is_err() {
                    flag.store(true, Release);
                }
            }
        }
        if !sh.finished.load(Acquire) {
            let _ = sh.port.timeout(sh.until_next_tick(), CTX_TICK);
        }
    }

    /// A session's wheel check came due: close it or put it back.
    fn check_timeouts(&self, e: Entry, now: Tick) {
        self.with_session(e.idx, e.gen, |slot, st| self.timeouts_due(slot, st, e.due, now));
    }

    /// Closes a session whose timeout passed, or puts its check back on the
    /// wheel. Returns `true` when the session must be finalized.
    fn timeouts_due(&self, slot: &Slot, st: &mut State, due: Tick, now: Tick) -> bool {
        let sh = &*self.shared;
        if st.wheel_due != due {
            return false; // a stale duplicate of a rescheduled check
        }
        st.wheel_due = NEVER;
        match &st.close {
            Some(c) if c.graceful && st.linger_due <= now => {
                tracing::info!(server = %sh.cfg.name, session = st.id, "linger time passed with data unsent: aborting");
                sh.begin_close(slot, st, DisconnectReason::Aborted, false)
            }
            Some(c) => {
                if c.graceful {
                    let due = st.linger_due;
                    sh.schedule(st, due);
                }
                false
            }
            None => {
                let idle = sh
                    .cfg
                    .idle_ticks
                    .map(|t| slot.last_active.load(Relaxed).saturating_add(t));
                let since = slot.frame_since.load(Relaxed);
                // A paused session is not read by the server: no frame clock.
                let frame = sh
                    .cfg
                    .frame_ticks
                    .filter(|_| since != 0 && !st.rx_paused)
                    .map(|t| (since - 1).saturating_add(t));
                let over_cap =
                    (st.over_cap_since != NEVER).then(|| st.over_cap_since.saturating_add(sh.cfg.slow_ticks));
                if over_cap.is_some_and(|d| d <= now) {
                    sh.cut_slow_consumer(slot, st, "its queue stayed past the cap")
                } else if idle.is_some_and(|d| d <= now) {
                    tracing::info!(server = %sh.cfg.name, session = st.id, "idle timeout");
                    sh.begin_close(slot, st, DisconnectReason::IdleTimeout, false)
                } else if frame.is_some_and(|d| d <= now) {
                    tracing::info!(server = %sh.cfg.name, session = st.id, "frame not completed in time");
                    sh.begin_close(slot, st, DisconnectReason::FrameTimeout, false)
                } else {
                    let next = idle
                        .unwrap_or(NEVER)
                        .min(frame.unwrap_or(NEVER))
                        .min(over_cap.unwrap_or(NEVER));
                    sh.schedule(st, next);
                    false
                }
            }
        }
    }

    // ----- the end of a session ------------------------------------------------

    /// Ends a session whose finalization was decided: the handler's
    /// `on_disconnect`, counters, and the slot back to the free list.
    fn finalize(&self, idx: u32, gen: u32) {
        let sh = &*self.shared;
        let Some(slot) = sh.slots.get(idx) else { return };
        let (reason, id) = {
            let mut st = slot.state.lock();
            if !st.is(gen) || !st.finalizing {
                return;
            }
            let reason = st.close.take().map_or(DisconnectReason::Closed, |c| c.reason);
            sh.close_handle(&mut st);
            let id = st.id;
            *st = State::vacant(idx, gen.wrapping_add(1));
            (reason, id)
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
