//! A session's life as one state machine (sans-I/O, in the manner of
//! quinn-proto's `Connection`): the dispatcher feeds it events with the
//! current tick and carries out the [`Action`]s it returns. It never
//! touches the port, the wheel or the clock, so every transition (flow
//! control, closing, timeouts) is tested here with a fake clock.
//!
//! The events: [`connected`](Lifecycle::connected), [`enqueue`](Lifecycle::enqueue),
//! [`transmit`](Lifecycle::transmit), [`on_sent`](Lifecycle::on_sent),
//! [`recv_armed`](Lifecycle::recv_armed), [`on_received`](Lifecycle::on_received),
//! [`close`](Lifecycle::close), [`on_timeout`](Lifecycle::on_timeout),
//! the handler's timer ([`set_timer`](Lifecycle::set_timer)), and its hold
//! on the input ([`hold`](Lifecycle::hold), [`release`](Lifecycle::release),
//! [`on_release`](Lifecycle::on_release), [`released`](Lifecycle::released)). Every way a
//! session ends goes through [`Action::Finalize`], pushed exactly once.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

use cport::{GenIndex, Handle, OpId, Payload};

use crate::config::{Config, Tick, NEVER};
use crate::error::DisconnectReason;
use crate::error::SendErrorKind;
use crate::queue::{Batch, Item, SendQueue};

/// What the dispatcher must do for a session, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Issue this batch on the handle (the one send in flight).
    Send(Handle, Batch),
    /// Arm the session's receive on the handle.
    ArmRecv(Handle),
    /// Cancel the receive in flight.
    CancelRecv(OpId),
    /// Close the handle (cancels whatever is in flight on it).
    CloseHandle(Handle),
    /// Put a timeout check for the session on the wheel at this tick.
    Schedule(Tick),
    /// The caller is not a worker: post the queued send to one.
    PostSend,
    /// Post the paused session's resume to a worker.
    PostResume,
    /// The handler released its hold on the input: post it to a worker,
    /// which runs `Handler::on_resume`, then resumes receiving.
    PostRelease,
    /// The receive found the pool empty: re-arm it when buffers come back.
    Starved,
    /// The handler's timer is due: run `Handler::on_timer`.
    FireTimer,
    /// Nothing is in flight any more: end the session (`on_disconnect`).
    Finalize,
}

/// The actions one event produced, in order. A few fit inline (no
/// allocation on the message path); more spill to the heap.
#[derive(Debug, Default)]
#[must_use]
pub(crate) struct Actions {
    inline: [Option<Action>; 4],
    head: usize,
    len: usize,
    spill: std::collections::VecDeque<Action>,
}

impl Actions {
    /// Adds an action after the others.
    pub(crate) fn push(&mut self, a: Action) {
        if self.spill.is_empty() && self.len < self.inline.len() {
            let i = (self.head + self.len) % self.inline.len();
            self.inline[i] = Some(a);
            self.len += 1;
        } else {
            self.spill.push_back(a);
        }
    }

    /// Takes the first action.
    pub(crate) fn pop(&mut self) -> Option<Action> {
        if self.len > 0 {
            let a = self.inline[self.head].take();
            self.head = (self.head + 1) % self.inline.len();
            self.len -= 1;
            return a;
        }
        self.spill.pop_front()
    }
}

/// What other threads read of a session without its lock: the receive
/// path checks them after each delivered chunk.
#[derive(Default)]
pub(crate) struct SlotFlags {
    /// Set once the session starts closing: stop handing out messages.
    pub closing: AtomicBool,
    /// Tick of the last byte received or sent.
    pub last_active: AtomicU32,
    /// Tick + 1 at which the pending partial frame started, 0 when none.
    pub frame_since: AtomicU32,
    /// The send queue's backlog passed the high-water mark and has not yet
    /// drained to the low one. Written under the session's lock.
    pub backed_up: AtomicBool,
    /// The handler holds the session's input back (`Session::pause_receiving`),
    /// for example while its own file writes are pending. Written under the
    /// session's lock.
    pub held: AtomicBool,
    /// Bytes received, for the registry's top sessions. A session's
    /// receives complete one after another: a plain load and store.
    pub bytes_in: AtomicU64,
    /// Bytes sent (as the kernel completed them). Written under the
    /// session's lock.
    pub bytes_out: AtomicU64,
}

impl SlotFlags {
    /// Input must wait: the answers back up, or the handler holds it.
    pub(crate) fn holds_input(&self) -> bool {
        self.backed_up.load(Relaxed) || self.held.load(Relaxed)
    }
}

/// How a session is closing.
#[derive(Debug)]
pub(crate) struct Closing {
    pub reason: DisconnectReason,
    /// Flush the queue before closing (else drop it and close at once).
    pub graceful: bool,
}

/// One session's state machine (under the session's lock).
#[derive(Default)]
pub(crate) struct Lifecycle {
    pub idx: u32,
    pub gen: u32,
    pub live: bool,
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub handle: Option<Handle>,
    pub queue: SendQueue,
    /// The receive operation in flight, if one is.
    pub recv_op: Option<OpId>,
    /// A queued send was posted to a worker (the sender was not one).
    pub send_posted: bool,
    /// A worker is running handler code for this session outside the lock
    /// (a final receive completion, `on_connect`, a resume): nothing may
    /// finalize meanwhile.
    pub recv_busy: bool,
    /// Waiting for pool buffers before re-arming the receive.
    pub starved: bool,
    /// Receiving is paused until the queue drains (back-pressure); no
    /// receive is re-armed while set.
    pub rx_paused: bool,
    /// The peer ended its stream while receiving was paused: once the
    /// input parked before it is delivered, the session closes.
    pub rx_eof: bool,
    /// A resume packet is on its way to a worker.
    pub resume_posted: bool,
    /// A release packet (the handler let go of the input) is on its way to
    /// a worker.
    pub release_posted: bool,
    /// Tick since which the queue holds more than the cap (`NEVER`: it does not).
    pub over_cap_since: Tick,
    pub close: Option<Closing>,
    pub handle_closed: bool,
    /// Finalization is decided (exactly one party runs it).
    pub finalizing: bool,
    /// The tick of the session's check on the wheel (`NEVER`: none).
    pub wheel_due: Tick,
    /// When a graceful close gives up flushing.
    pub linger_due: Tick,
    /// When the handler's timer fires (`NEVER`: not set).
    pub timer_due: Tick,
}

impl Lifecycle {
    /// The state of a slot with no session: the next one gets generation `gen`.
    pub(crate) fn vacant(idx: u32, gen: u32) -> Self {
        Lifecycle {
            idx,
            gen,
            wheel_due: NEVER,
            linger_due: NEVER,
            over_cap_since: NEVER,
            timer_due: NEVER,
            ..Lifecycle::default()
        }
    }

    /// A session just accepted on `handle`; `on_connect` is about to run.
    pub(crate) fn opened(idx: u32, gen: u32, id: u64, peer: Option<SocketAddr>, handle: Handle) -> Self {
        Lifecycle {
            live: true,
            id,
            peer,
            handle: Some(handle),
            recv_busy: true, // on_connect runs: nothing may finalize yet
            ..Lifecycle::vacant(idx, gen)
        }
    }

    /// Holds the live session of generation `gen`.
    pub(crate) fn is(&self, gen: u32) -> bool {
        self.live && self.gen == gen
    }

    /// Accepts new sends for a handle of generation `gen`.
    pub(crate) fn open_for(&self, gen: u32) -> bool {
        self.is(gen) && self.close.is_none()
    }

    /// `on_connect` returned (`ok`: without panicking): start receiving, or
    /// close if the handler failed or the server is stopping.
    pub(crate) fn connected(
        &mut self,
        ok: bool,
        stopping: bool,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) {
        self.recv_busy = false;
        if !ok {
            self.close(DisconnectReason::HandlerPanicked, false, now, cfg, f, out);
        }
        if stopping {
            self.close(DisconnectReason::Shutdown, true, now, cfg, f, out);
        }
        if self.close.is_none() {
            self.arm_recv(out);
            if let Some(t) = cfg.idle_ticks {
                self.schedule(now.saturating_add(t), out);
            }
        }
        self.check_finalize(out);
    }

    /// Queues `item` and starts a send if none is in flight (`on_worker`:
    /// the caller may issue it; else it is posted to a worker). The caller
    /// checked [`open_for`](Self::open_for).
    ///
    /// # Errors
    /// [`SendErrorKind::Overflow`] when the queue stayed past the cap for the
    /// slow-consumer timeout or would pass twice the cap: the session is
    /// cut off and `item` handed back.
    pub(crate) fn enqueue(
        &mut self,
        item: Item,
        on_worker: bool,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) -> Result<(), (SendErrorKind, Item)> {
        let len = match &item {
            Item::Buf(b) => b.len(),
            Item::File { .. } => 0,
        };
        let queued = self.queue.held();
        // One message larger than the cap may go out on an empty queue: the
        // cap bounds what piles up, not what the application sends at once.
        // Past the cap a session has the slow-consumer timeout to drain
        // below it again, and may never hold twice the cap.
        let cap = cfg.max_queued;
        if queued > 0 && queued + len > cap {
            if self.over_cap_since == NEVER {
                self.over_cap_since = now;
                self.schedule(now.saturating_add(cfg.slow_ticks), out);
            }
            let stale = now >= self.over_cap_since.saturating_add(cfg.slow_ticks);
            if stale || queued + len > cap.saturating_mul(2) {
                let why = if stale {
                    "its queue stayed past the cap"
                } else {
                    "its queue would pass twice the cap"
                };
                self.cut_slow_consumer(why, now, cfg, f, out);
                return Err((SendErrorKind::Overflow { queued, cap }, item));
            }
        }
        self.queue.push(item);
        if self.queue.backlog() > cfg.high_water && !f.backed_up.load(Relaxed) {
            f.backed_up.store(true, Relaxed);
        }
        if on_worker {
            self.transmit(out);
        } else if !self.send_posted && !self.queue.in_flight() {
            self.send_posted = true;
            out.push(Action::PostSend);
        }
        Ok(())
    }

    /// Hands out the next batch if nothing is in flight, or closes a
    /// graceful close whose queue has flushed.
    pub(crate) fn transmit(&mut self, out: &mut Actions) {
        let h = match self.handle {
            Some(h) if !self.handle_closed => h,
            _ => return self.check_finalize(out),
        };
        match self.queue.next_batch() {
            Some(batch) => out.push(Action::Send(h, batch)),
            None => {
                // A graceful close that waited for the queue to flush
                // closes once it is idle.
                if self.queue.is_idle() && self.close.as_ref().is_some_and(|c| c.graceful) {
                    self.close_handle(out);
                }
                self.check_finalize(out);
            }
        }
    }

    /// A send finished (through the port, or at once; `cancelled`: by a
    /// cancel or the port's shutdown): completes the queue's batch and hands
    /// out the next, or starts closing. Returns the bytes sent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_sent(
        &mut self,
        res: io::Result<usize>,
        payload: Payload,
        cancelled: bool,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) -> usize {
        let sent = match res {
            Ok(n) => {
                f.last_active.store(now, Relaxed);
                f.bytes_out.store(f.bytes_out.load(Relaxed) + n as u64, Relaxed);
                let whole = match payload {
                    Payload::Buf(b) => {
                        self.queue.complete_one(n, b);
                        true
                    }
                    Payload::Bufs(v) => {
                        self.queue.complete_many(n, v);
                        true
                    }
                    Payload::File(file) => self.queue.complete_file(n as u64, file),
                    _ => {
                        self.queue.fail();
                        true
                    }
                };
                self.drained(cfg, f, out);
                if !whole {
                    self.close(DisconnectReason::FileEnded, false, now, cfg, f, out);
                }
                n
            }
            Err(e) => {
                self.queue.fail();
                drop(payload);
                if !cancelled {
                    tracing::debug!(server = %cfg.name, session = self.id, error = %e, "send failed");
                }
                self.close(DisconnectReason::Io(e), false, now, cfg, f, out);
                0
            }
        };
        self.transmit(out);
        sent
    }

    /// Issuing a batch failed: what was in flight is dropped and the session closes.
    pub(crate) fn send_refused(&mut self, e: io::Error, now: Tick, cfg: &Config, f: &SlotFlags, out: &mut Actions) {
        self.queue.fail();
        self.close(DisconnectReason::Io(e), false, now, cfg, f, out);
    }

    /// After a send made progress: clears the back-up at the low-water mark
    /// (and has a worker resume a paused session's receiving), and stops
    /// the slow-consumer clock once the queue is back under the cap.
    fn drained(&mut self, cfg: &Config, f: &SlotFlags, out: &mut Actions) {
        if f.backed_up.load(Relaxed) && self.queue.backlog() <= cfg.low_water {
            f.backed_up.store(false, Relaxed);
            if self.rx_paused && !self.resume_posted && self.close.is_none() && !f.held.load(Relaxed) {
                self.resume_posted = true;
                out.push(Action::PostResume);
            }
        }
        if self.over_cap_since != NEVER && self.queue.held() <= cfg.max_queued {
            self.over_cap_since = NEVER;
        }
    }

    /// Cuts off a session that has not read what it was sent for too long:
    /// what has not started to leave is dropped, a message already started
    /// is finished (never truncated mid-frame), then the session closes.
    fn cut_slow_consumer(&mut self, why: &str, now: Tick, cfg: &Config, f: &SlotFlags, out: &mut Actions) {
        let (queued, cap) = (self.queue.held(), cfg.max_queued);
        tracing::warn!(server = %cfg.name, session = self.id, queued, cap, "slow consumer cut off: {why}");
        self.queue.cut();
        self.close(DisconnectReason::SlowConsumer { queued, cap }, true, now, cfg, f, out);
        // The message already started gets the slow-consumer timeout to
        // finish, not the server's whole close linger (300 s for HTTP): a
        // peer that stopped reading would otherwise hold its place (and a
        // chat room's "left" notice) for minutes.
        let due = now.saturating_add(cfg.slow_ticks);
        if self.linger_due != NEVER && due < self.linger_due {
            self.linger_due = due;
            self.schedule(due, out);
        }
    }

    /// Starts closing (or makes a graceful close abortive): graceful stops
    /// receiving and flushes within the linger time; abortive drops what is
    /// queued and closes the handle at once.
    pub(crate) fn close(
        &mut self,
        reason: DisconnectReason,
        graceful: bool,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) {
        match &mut self.close {
            None => {
                self.close = Some(Closing { reason, graceful });
                f.closing.store(true, Release);
            }
            Some(c) if c.graceful && !graceful => c.graceful = false,
            Some(_) => return self.check_finalize(out),
        }
        if graceful {
            if let Some(op) = self.recv_op {
                out.push(Action::CancelRecv(op));
            }
            if self.queue.is_idle() {
                self.close_handle(out);
            } else {
                self.linger_due = now.saturating_add(cfg.linger_ticks);
                self.schedule(self.linger_due, out);
            }
        } else {
            self.queue.clear_queued();
            self.close_handle(out);
        }
        self.check_finalize(out);
    }

    /// Closes the session's handle once: cancels what is in flight on it.
    fn close_handle(&mut self, out: &mut Actions) {
        if !self.handle_closed {
            if let Some(h) = self.handle {
                out.push(Action::CloseHandle(h));
            }
            self.handle_closed = true;
        }
    }

    /// Pushes [`Action::Finalize`] (once) when a closing session has nothing
    /// left in flight.
    pub(crate) fn check_finalize(&mut self, out: &mut Actions) {
        let ready = self.live
            && self.close.is_some()
            && self.handle_closed
            && self.recv_op.is_none()
            && !self.recv_busy
            && !self.queue.in_flight()
            && !self.finalizing;
        if ready {
            self.finalizing = true;
            out.push(Action::Finalize);
        }
    }

    /// Takes the ending of a session whose finalization was decided: its
    /// reason and id; the slot becomes vacant for the next generation.
    pub(crate) fn finish(&mut self) -> Option<(DisconnectReason, u64)> {
        if !self.live || !self.finalizing {
            return None;
        }
        let reason = self.close.take().map_or(DisconnectReason::Closed, |c| c.reason);
        let id = self.id;
        *self = Lifecycle::vacant(self.idx, GenIndex::next_generation(self.gen));
        Some((reason, id))
    }

    /// Puts a timeout check on the wheel at `due`, unless an earlier one is there.
    fn schedule(&mut self, due: Tick, out: &mut Actions) {
        if due >= self.wheel_due {
            // (`NEVER` is the largest tick, so it never schedules.)
            return;
        }
        self.wheel_due = due;
        out.push(Action::Schedule(due));
    }

    /// The receive found the pool empty: wait for buffers.
    fn wait_for_buffers(&mut self, out: &mut Actions) {
        self.starved = true;
        out.push(Action::Starved);
    }

    /// Buffers came back: re-arm a starved receive (or finish closing).
    pub(crate) fn buffers_back(&mut self, out: &mut Actions) {
        if !self.starved {
            return;
        }
        self.starved = false;
        if self.close.is_none() {
            if !self.rx_paused {
                self.arm_recv(out);
            }
        } else {
            self.check_finalize(out);
        }
    }

    /// Arms the receive (the dispatcher reports back with [`recv_armed`](Self::recv_armed)).
    pub(crate) fn arm_recv(&mut self, out: &mut Actions) {
        if let Some(h) = self.handle {
            out.push(Action::ArmRecv(h));
        }
    }

    /// Arming the receive went through (`Ok(op)`) or was refused.
    pub(crate) fn recv_armed(
        &mut self,
        r: io::Result<OpId>,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) {
        match r {
            Ok(op) => self.recv_op = Some(op),
            Err(e) => self.close(DisconnectReason::Io(e), false, now, cfg, f, out),
        }
    }

    /// The receive's last completion arrived: handler code is about to run
    /// on its data outside the lock.
    pub(crate) fn recv_ended(&mut self) {
        self.recv_op = None;
        self.recv_busy = true;
    }

    /// The last completion of a receive was handled: `res` its result,
    /// `got_data` whether it carried bytes, `fatal` a reason to close that
    /// delivering them produced. Re-arms, waits for buffers, or closes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_received(
        &mut self,
        fatal: Option<DisconnectReason>,
        res: io::Result<usize>,
        got_data: bool,
        cancelled: bool,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) {
        self.recv_busy = false;
        match (fatal, res) {
            (Some(reason), _) => {
                let graceful = graceful(&reason);
                self.close(reason, graceful, now, cfg, f, out)
            }
            (None, Ok(0)) if !got_data && self.rx_paused && self.close.is_none() => {
                // Input parked before the end is delivered first (resume).
                self.rx_eof = true;
            }
            (None, Ok(0)) if !got_data => self.close(DisconnectReason::PeerClosed, true, now, cfg, f, out),
            (None, Ok(_)) if self.close.is_none() => {
                if !self.rx_paused {
                    self.arm_recv(out);
                }
            }
            (None, Err(e))
                if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) && self.close.is_none() =>
            {
                if !self.rx_paused {
                    self.wait_for_buffers(out);
                }
            }
            (None, Err(e)) if !cancelled && self.close.is_none() => {
                tracing::debug!(server = %cfg.name, session = self.id, error = %e, "receive failed");
                self.close(DisconnectReason::Io(e), false, now, cfg, f, out)
            }
            _ => self.check_finalize(out),
        }
    }

    /// Pauses receiving (back-pressure) if the queue is still backed up and
    /// the session open. Returns `true` if it paused.
    pub(crate) fn pause(&mut self, f: &SlotFlags, out: &mut Actions) -> bool {
        // Drained meanwhile (another worker settled a send): nothing to do.
        if !self.live || self.close.is_some() || self.rx_paused || !f.holds_input() {
            return false;
        }
        self.rx_paused = true;
        if let Some(op) = self.recv_op {
            out.push(Action::CancelRecv(op));
        }
        true
    }

    /// A paused session may resume now: its queue drained, the handler does
    /// not hold its input (and its `on_resume` ran), nothing of its receive is in flight or being
    /// handled, and it is not closing.
    pub(crate) fn resume_ready(&self, f: &SlotFlags) -> bool {
        self.rx_paused
            && self.close.is_none()
            && self.recv_op.is_none()
            && !self.recv_busy
            && !f.holds_input()
            && !self.release_posted
    }

    /// Resumes receiving if ready: parked input is delivered next, outside
    /// the lock. Returns `false` when not ready.
    pub(crate) fn resume(&mut self, f: &SlotFlags) -> bool {
        self.resume_posted = false;
        if !self.resume_ready(f) {
            return false;
        }
        self.rx_paused = false;
        self.recv_busy = true; // handler code runs: nothing may finalize
        true
    }

    /// The parked input was delivered (`fatal`: a reason to close it
    /// produced): re-arm the receive, or close a peer that had ended its stream.
    pub(crate) fn resumed(
        &mut self,
        fatal: Option<DisconnectReason>,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) {
        self.recv_busy = false;
        if let Some(reason) = fatal {
            let graceful = graceful(&reason);
            self.close(reason, graceful, now, cfg, f, out);
        } else if self.close.is_some() || self.rx_paused {
            self.check_finalize(out);
        } else if std::mem::take(&mut self.rx_eof) {
            self.close(DisconnectReason::PeerClosed, true, now, cfg, f, out);
        } else {
            self.arm_recv(out);
        }
    }

    /// The handler holds the session's input back: once the delivery in
    /// progress returns, receiving pauses (as when answers back up) and
    /// stays paused until [`release`](Self::release).
    pub(crate) fn hold(&mut self, f: &SlotFlags) {
        if self.live && self.close.is_none() {
            f.held.store(true, Relaxed);
        }
    }

    /// The handler let go of the input: a worker is to run its `on_resume`
    /// (posted once; a release without a hold does nothing).
    pub(crate) fn release(&mut self, f: &SlotFlags, out: &mut Actions) {
        if !f.held.swap(false, Relaxed) {
            return;
        }
        if self.live && self.close.is_none() && !self.release_posted {
            self.release_posted = true;
            out.push(Action::PostRelease);
        }
    }

    /// The release packet reached a worker: `true` if the handler's
    /// `on_resume` is to run now (outside the lock; nothing may finalize
    /// meanwhile), `false` if the session is closing.
    pub(crate) fn on_release(&mut self) -> bool {
        self.release_posted = false;
        if !self.live || self.close.is_some() {
            return false;
        }
        self.recv_busy = true;
        true
    }

    /// `on_resume` returned (`fatal`: a reason to close it produced). The
    /// caller resumes receiving if [`resume_ready`](Self::resume_ready).
    pub(crate) fn released(
        &mut self,
        fatal: Option<DisconnectReason>,
        now: Tick,
        cfg: &Config,
        f: &SlotFlags,
        out: &mut Actions,
    ) {
        self.recv_busy = false;
        match fatal {
            Some(reason) => {
                let graceful = graceful(&reason);
                self.close(reason, graceful, now, cfg, f, out);
            }
            None => self.check_finalize(out),
        }
    }

    /// A partial frame started at `now` (the frame-completion timer runs).
    pub(crate) fn frame_started(&mut self, now: Tick, cfg: &Config, out: &mut Actions) {
        if let (true, Some(t)) = (self.live, cfg.frame_ticks) {
            self.schedule(now.saturating_add(t), out);
        }
    }

    /// Sets the handler's timer to fire `after` ticks from `now` (`None`:
    /// clears it). It does not fire while receiving is paused.
    pub(crate) fn set_timer(&mut self, after: Option<Tick>, now: Tick, out: &mut Actions) {
        match after {
            Some(t) if self.close.is_none() => {
                self.timer_due = now.saturating_add(t);
                self.schedule(self.timer_due, out);
            }
            _ => self.timer_due = NEVER,
        }
    }

    /// The session's check on the wheel came due at `now` (it was scheduled
    /// for `due`): closes a session whose timeout passed, fires the
    /// handler's timer, or puts the check back at the next deadline.
    pub(crate) fn on_timeout(&mut self, due: Tick, now: Tick, cfg: &Config, f: &SlotFlags, out: &mut Actions) {
        if self.wheel_due != due {
            return; // a stale duplicate of a rescheduled check
        }
        self.wheel_due = NEVER;
        if let Some(c) = &self.close {
            if c.graceful && self.linger_due <= now {
                tracing::info!(server = %cfg.name, session = self.id, "linger time passed with data unsent: aborting");
                self.close(DisconnectReason::Aborted, false, now, cfg, f, out);
            } else if c.graceful {
                self.schedule(self.linger_due, out);
            }
            return;
        }
        let idle = cfg.idle_ticks.map(|t| f.last_active.load(Relaxed).saturating_add(t));
        let since = f.frame_since.load(Relaxed);
        // A paused session is not read by the server: no frame clock, and
        // the handler's timer waits (its input may sit unread in the kernel).
        let frame = cfg
            .frame_ticks
            .filter(|_| since != 0 && !self.rx_paused)
            .map(|t| (since - 1).saturating_add(t));
        let over_cap = (self.over_cap_since != NEVER).then(|| self.over_cap_since.saturating_add(cfg.slow_ticks));
        let timer = (self.timer_due != NEVER).then_some(self.timer_due);
        if over_cap.is_some_and(|d| d <= now) {
            self.cut_slow_consumer("its queue stayed past the cap", now, cfg, f, out);
        } else if idle.is_some_and(|d| d <= now) {
            tracing::info!(server = %cfg.name, session = self.id, "idle timeout");
            self.close(DisconnectReason::IdleTimeout, false, now, cfg, f, out);
        } else if frame.is_some_and(|d| d <= now) {
            tracing::info!(server = %cfg.name, session = self.id, "frame not completed in time");
            self.close(DisconnectReason::FrameTimeout, false, now, cfg, f, out);
        } else {
            let mut next = idle
                .unwrap_or(NEVER)
                .min(frame.unwrap_or(NEVER))
                .min(over_cap.unwrap_or(NEVER));
            match timer {
                Some(d) if d <= now && !self.rx_paused => {
                    self.timer_due = NEVER;
                    out.push(Action::FireTimer);
                }
                // Paused: look again at the next tick.
                Some(d) => next = next.min(d.max(now.saturating_add(1))),
                None => {}
            }
            self.schedule(next, out);
        }
    }
}

/// A failure found while delivering received bytes closes gracefully (what
/// is queued still goes out), unless the handler panicked.
fn graceful(reason: &DisconnectReason) -> bool {
    !matches!(reason, DisconnectReason::HandlerPanicked)
}

#[cfg(test)]
mod tests;
