//! The session state machine with a fake clock: every timeout, the water
//! marks and the slow-consumer cut, as events in and actions out. A port is
//! built only to mint handle and operation names; nothing is issued on it
//! for the machine.

use std::io;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::Bytes;
use cport::{Backend, Buf, Handle, Key, OpId, Payload, Port};

use super::*;
use crate::error::ReasonKind;
use crate::message::Framing;

/// Names for the machine's actions, to compare lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Did {
    Send(usize),
    ArmRecv,
    CancelRecv,
    CloseHandle,
    Schedule(Tick),
    PostSend,
    PostResume,
    PostRelease,
    Starved,
    FireTimer,
    Finalize,
}

fn drain(out: &mut Actions) -> Vec<Did> {
    let mut v = Vec::new();
    while let Some(a) = out.pop() {
        v.push(match a {
            Action::Send(_, Batch::One(b)) => Did::Send(b.len()),
            Action::Send(_, Batch::Many(bs)) => Did::Send(bs.iter().map(|b| b.len()).sum()),
            Action::Send(_, Batch::File { len, .. }) => Did::Send(len as usize),
            Action::ArmRecv(_) => Did::ArmRecv,
            Action::CancelRecv(_) => Did::CancelRecv,
            Action::CloseHandle(_) => Did::CloseHandle,
            Action::Schedule(t) => Did::Schedule(t),
            Action::PostSend => Did::PostSend,
            Action::PostResume => Did::PostResume,
            Action::PostRelease => Did::PostRelease,
            Action::Starved => Did::Starved,
            Action::FireTimer => Did::FireTimer,
            Action::Finalize => Did::Finalize,
        });
    }
    v
}

fn cfg() -> Config {
    Config {
        name: "test".into(),
        framing: Framing::Lines { max_line: 64 },
        max_queued: 100,
        high_water: 50,
        low_water: 10,
        slow_ticks: 3,
        recv_size: 4096,
        idle_ticks: Some(5),
        frame_ticks: Some(4),
        linger_ticks: 20,
        tick: Duration::from_millis(100),
        multishot: false,
        nodelay: true,
        threads: 1,
    }
}

/// A session as the dispatcher drives it, on a fake clock.
struct Rig {
    _port: Port,
    cfg: Config,
    flags: SlotFlags,
    lc: Lifecycle,
    recv_op: OpId,
    now: Tick,
}

impl Rig {
    /// A session connected at tick 0 with its receive armed.
    fn new(cfg: Config) -> Rig {
        let port = Port::builder().backend(Backend::Epoll).build().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let h: Handle = port.associate(a, Key(1)).unwrap();
        let recv_op = port.timeout(Duration::from_secs(3600), 0u64).unwrap();
        let mut rig = Rig {
            _port: port,
            cfg,
            flags: SlotFlags::default(),
            lc: Lifecycle::opened(0, 0, 1, None, h),
            recv_op,
            now: 0,
        };
        let did = rig.ev(|lc, c, f, now, out| lc.connected(true, false, now, c, f, out));
        assert_eq!(did, vec![Did::ArmRecv, Did::Schedule(5)]);
        rig.recv_armed();
        rig
    }

    /// Runs one event; returns what it asked for.
    fn ev(&mut self, e: impl FnOnce(&mut Lifecycle, &Config, &SlotFlags, Tick, &mut Actions)) -> Vec<Did> {
        let mut out = Actions::default();
        e(&mut self.lc, &self.cfg, &self.flags, self.now, &mut out);
        drain(&mut out)
    }

    fn recv_armed(&mut self) {
        let op = self.recv_op;
        let did = self.ev(|lc, c, f, now, out| lc.recv_armed(Ok(op), now, c, f, out));
        assert!(did.is_empty());
    }

    /// The wheel reaches the session's check (at its due tick or later).
    fn timeout_at(&mut self, now: Tick) -> Vec<Did> {
        self.now = now;
        let due = self.lc.wheel_due;
        assert!(due <= now, "the wheel holds the check until {due}");
        self.ev(|lc, c, f, now, out| lc.on_timeout(due, now, c, f, out))
    }

    fn send(&mut self, n: usize) -> (Result<(), SendErrorKind>, Vec<Did>) {
        let item = Item::Buf(Buf::Bytes(Bytes::from(vec![b'x'; n])));
        let mut out = Actions::default();
        let r = self
            .lc
            .enqueue(item, true, self.now, &self.cfg, &self.flags, &mut out)
            .map_err(|(k, _)| k);
        (r, drain(&mut out))
    }

    /// The send in flight completes with `n` bytes sent (of a `len`-byte batch).
    fn sent(&mut self, n: usize, len: usize) -> Vec<Did> {
        let payload = Payload::Buf(Buf::Bytes(Bytes::from(vec![b'x'; len])));
        self.ev(|lc, c, f, now, out| {
            lc.on_sent(Ok(n), payload, false, now, c, f, out);
        })
    }

    /// The receive's last completion: cancelled (after a close or a pause).
    fn recv_cancelled(&mut self) -> Vec<Did> {
        self.lc.recv_ended();
        let err = io::Error::from_raw_os_error(rustix::io::Errno::CANCELED.raw_os_error());
        self.ev(|lc, c, f, now, out| lc.on_received(None, Err(err), false, true, now, c, f, out))
    }

    fn reason(&mut self) -> ReasonKind {
        self.lc.finish().expect("finalized").0.kind()
    }
}

#[test]
fn idle_timeout_fires_at_its_deadline_not_before() {
    let mut r = Rig::new(cfg());
    r.flags.last_active.store(3, Relaxed); // a byte at tick 3
    assert_eq!(r.timeout_at(5), vec![Did::Schedule(8)], "put back: idle since 3");
    assert_eq!(r.timeout_at(8), vec![Did::CloseHandle]);
    assert_eq!(r.recv_cancelled(), vec![Did::Finalize]);
    assert_eq!(r.reason(), ReasonKind::IdleTimeout);
}

#[test]
fn a_stale_wheel_check_does_nothing() {
    let mut r = Rig::new(cfg());
    let did = r.ev(|lc, c, f, _, out| lc.on_timeout(4, 9, c, f, out));
    assert!(did.is_empty(), "{did:?}");
    assert!(r.lc.close.is_none());
}

#[test]
fn a_frame_not_completed_in_time_closes_the_session() {
    let mut r = Rig::new(cfg());
    r.now = 1;
    r.flags.frame_since.store(1 + 1, Relaxed);
    assert!(
        r.ev(|lc, c, _, now, out| lc.frame_started(now, c, out)).is_empty(),
        "check at 5 already"
    );
    r.flags.last_active.store(4, Relaxed); // not idle
    assert_eq!(r.timeout_at(5), vec![Did::CloseHandle], "started at 1, due at 1 + 4");
    assert_eq!(r.recv_cancelled(), vec![Did::Finalize]);
    assert_eq!(r.reason(), ReasonKind::FrameTimeout);
}

#[test]
fn graceful_close_lingers_then_aborts() {
    let mut r = Rig::new(cfg());
    let (ok, did) = r.send(30);
    assert_eq!((ok, did), (Ok(()), vec![Did::Send(30)]));
    r.now = 2;
    let did = r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Closed, true, now, c, f, out));
    assert_eq!(did, vec![Did::CancelRecv], "the idle check at 5 comes first");
    assert!(r.recv_cancelled().is_empty(), "the send is in flight");
    assert_eq!(
        r.timeout_at(5),
        vec![Did::Schedule(22)],
        "flushing until the linger's end"
    );
    assert_eq!(r.timeout_at(22), vec![Did::CloseHandle], "linger passed: abortive");
    let did = r.ev(|lc, c, f, now, out| {
        let e = io::Error::from_raw_os_error(rustix::io::Errno::CANCELED.raw_os_error());
        lc.on_sent(Err(e), Payload::None, true, now, c, f, out);
    });
    assert_eq!(did, vec![Did::Finalize], "finalized once nothing is in flight");
    assert_eq!(r.reason(), ReasonKind::Closed);
}

#[test]
fn a_flushed_graceful_close_closes_the_handle() {
    let mut r = Rig::new(cfg());
    r.send(30).0.unwrap();
    let did = r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Closed, true, now, c, f, out));
    assert_eq!(did, vec![Did::CancelRecv]);
    assert_eq!(r.sent(30, 30), vec![Did::CloseHandle]);
    assert_eq!(r.recv_cancelled(), vec![Did::Finalize]);
}

#[test]
fn a_queue_past_the_cap_is_cut_after_the_slow_consumer_timeout() {
    let mut r = Rig::new(cfg());
    assert_eq!(r.send(80).1, vec![Did::Send(80)]);
    let (ok, did) = r.send(50);
    assert_eq!(ok, Ok(()), "past the cap, within the timeout");
    assert_eq!(did, vec![Did::Schedule(3)]);
    let did = r.timeout_at(3);
    assert_eq!(did, vec![Did::CancelRecv, Did::Schedule(23), Did::Schedule(6)]);
    assert_eq!(
        r.lc.close.as_ref().map(|c| c.reason.kind()),
        Some(ReasonKind::SlowConsumer)
    );
    assert!(!r.lc.open_for(0), "no more sends");
}

#[test]
fn a_send_from_another_thread_is_posted_to_a_worker_once() {
    let mut r = Rig::new(cfg());
    let post = |r: &mut Rig| {
        let item = Item::Buf(Buf::Bytes(Bytes::from_static(b"hi")));
        let mut out = Actions::default();
        r.lc.enqueue(item, false, 0, &r.cfg, &r.flags, &mut out).unwrap();
        drain(&mut out)
    };
    assert_eq!(post(&mut r), vec![Did::PostSend]);
    assert!(post(&mut r).is_empty(), "one packet for the queue");
    assert_eq!(
        r.ev(|lc, _, _, _, out| {
            lc.send_posted = false;
            lc.transmit(out);
        }),
        vec![Did::Send(4)],
        "the worker sends both in one batch"
    );
}

#[test]
fn a_queue_that_would_pass_twice_the_cap_is_refused_at_once() {
    let mut r = Rig::new(cfg());
    r.send(80).0.unwrap();
    let (ok, _) = r.send(150);
    assert_eq!(ok, Err(SendErrorKind::Overflow { queued: 80, cap: 100 }));
    assert!(r.lc.close.is_some());
}

#[test]
fn a_client_that_reads_is_never_cut() {
    let mut r = Rig::new(cfg());
    r.send(80).0.unwrap();
    assert_eq!(r.send(50).1, vec![Did::Schedule(3)], "over the cap since 0");
    r.now = 2;
    // The client reads: the first send completes, the rest goes out.
    assert_eq!(r.sent(80, 80), vec![Did::Send(50)]);
    assert_eq!(r.lc.over_cap_since, NEVER, "back under the cap");
    r.flags.last_active.store(2, Relaxed);
    assert_eq!(r.timeout_at(3), vec![Did::Schedule(7)], "not cut; idle check at 7");
    assert!(r.lc.close.is_none());
}

#[test]
fn receiving_pauses_past_the_high_water_mark_and_resumes_at_the_low() {
    let mut r = Rig::new(cfg());
    r.send(60).0.unwrap();
    assert!(r.flags.backed_up.load(Relaxed), "60 > high water 50");
    let did = r.ev(|lc, _, f, _, out| {
        assert!(lc.pause(f, out));
    });
    assert_eq!(did, vec![Did::CancelRecv]);
    assert!(r.recv_cancelled().is_empty(), "paused: no re-arm");
    assert!(!r.lc.resume_ready(&r.flags), "still backed up");
    assert_eq!(r.sent(60, 60), vec![Did::PostResume]);
    assert!(r.lc.resume(&r.flags), "drained to the low-water mark");
    let did = r.ev(|lc, c, f, now, out| lc.resumed(None, now, c, f, out));
    assert_eq!(did, vec![Did::ArmRecv]);
}

#[test]
fn a_peer_end_seen_while_paused_closes_after_the_parked_input() {
    let mut r = Rig::new(cfg());
    r.send(60).0.unwrap();
    let _ = r.ev(|lc, _, f, _, out| {
        lc.pause(f, out);
    });
    r.lc.recv_ended();
    let did = r.ev(|lc, c, f, now, out| lc.on_received(None, Ok(0), false, false, now, c, f, out));
    assert!(did.is_empty(), "the end waits behind the parked input");
    r.sent(60, 60);
    assert!(r.lc.resume(&r.flags));
    let did = r.ev(|lc, c, f, now, out| lc.resumed(None, now, c, f, out));
    assert_eq!(did, vec![Did::CloseHandle, Did::Finalize]);
    assert_eq!(r.reason(), ReasonKind::PeerClosed);
}

#[test]
fn the_handlers_timer_fires_once_and_waits_while_paused() {
    let mut c = cfg();
    c.idle_ticks = None;
    c.frame_ticks = None;
    let port = Port::builder().backend(Backend::Epoll).build().unwrap();
    let (a, _b) = UnixStream::pair().unwrap();
    let h = port.associate(a, Key(1)).unwrap();
    let mut r = Rig {
        _port: port,
        cfg: c,
        flags: SlotFlags::default(),
        lc: Lifecycle::opened(0, 0, 1, None, h),
        recv_op: r_op(),
        now: 0,
    };
    assert_eq!(
        r.ev(|lc, c, f, now, out| lc.connected(true, false, now, c, f, out)),
        vec![Did::ArmRecv]
    );
    assert_eq!(
        r.ev(|lc, _, _, now, out| lc.set_timer(Some(4), now, out)),
        vec![Did::Schedule(4)]
    );
    r.lc.rx_paused = true;
    assert_eq!(
        r.timeout_at(4),
        vec![Did::Schedule(5)],
        "paused: looked at again next tick"
    );
    r.lc.rx_paused = false;
    assert_eq!(r.timeout_at(5), vec![Did::FireTimer]);
    assert_eq!(r.lc.timer_due, NEVER, "fires once");
    // Cleared before its time: the check finds nothing to do.
    assert_eq!(
        r.ev(|lc, _, _, now, out| lc.set_timer(Some(2), now, out)),
        vec![Did::Schedule(7)]
    );
    assert!(r.ev(|lc, _, _, now, out| lc.set_timer(None, now, out)).is_empty());
    assert!(r.timeout_at(7).is_empty());
}

impl Rig {
    /// The release packet reaches a worker, `on_resume` runs and returns
    /// (`fatal`: a reason to close it produced): what that asked for.
    fn release_delivered(&mut self, fatal: Option<DisconnectReason>) -> Vec<Did> {
        assert!(self.lc.on_release(), "on_resume runs");
        assert!(self.lc.recv_busy, "nothing may finalize while it runs");
        self.ev(|lc, c, f, now, out| lc.released(fatal, now, c, f, out))
    }
}

#[test]
fn a_hold_on_input_pauses_receiving_until_released_and_on_resume_ran() {
    let mut r = Rig::new(cfg());
    r.lc.hold(&r.flags);
    assert!(r.flags.holds_input(), "held");
    let did = r.ev(|lc, _, f, _, out| {
        assert!(lc.pause(f, out), "held: the delivery pauses, as when answers back up");
    });
    assert_eq!(did, vec![Did::CancelRecv]);
    assert!(r.recv_cancelled().is_empty(), "paused: no re-arm");
    assert!(!r.lc.resume_ready(&r.flags), "held");
    assert_eq!(r.ev(|lc, _, f, _, out| lc.release(f, out)), vec![Did::PostRelease]);
    assert!(
        r.ev(|lc, _, f, _, out| lc.release(f, out)).is_empty(),
        "one release per hold: a second one does nothing"
    );
    assert!(!r.lc.resume_ready(&r.flags), "on_resume has not run yet");
    assert!(r.release_delivered(None).is_empty());
    assert!(r.lc.resume_ready(&r.flags), "released and on_resume ran: resume");
    assert!(r.lc.resume(&r.flags));
    let did = r.ev(|lc, c, f, now, out| lc.resumed(None, now, c, f, out));
    assert_eq!(did, vec![Did::ArmRecv], "the receive re-armed once");
}

#[test]
fn receiving_resumes_only_when_neither_the_queue_nor_the_handler_holds_it() {
    // The queue drains first, the handler lets go after.
    let mut r = Rig::new(cfg());
    r.send(60).0.unwrap();
    r.lc.hold(&r.flags);
    let _ = r.ev(|lc, _, f, _, out| {
        assert!(lc.pause(f, out));
    });
    assert!(r.recv_cancelled().is_empty());
    assert!(r.sent(60, 60).is_empty(), "drained, but held: no resume posted");
    assert!(!r.lc.resume_ready(&r.flags));
    assert!(!r.lc.resume(&r.flags), "a stray resume finds it held");
    assert_eq!(r.ev(|lc, _, f, _, out| lc.release(f, out)), vec![Did::PostRelease]);
    assert!(r.release_delivered(None).is_empty());
    assert!(r.lc.resume(&r.flags));
    assert_eq!(
        r.ev(|lc, c, f, now, out| lc.resumed(None, now, c, f, out)),
        vec![Did::ArmRecv]
    );

    // The handler lets go first, the queue drains after.
    let mut r = Rig::new(cfg());
    r.send(60).0.unwrap();
    r.lc.hold(&r.flags);
    let _ = r.ev(|lc, _, f, _, out| {
        assert!(lc.pause(f, out));
    });
    assert!(r.recv_cancelled().is_empty());
    assert_eq!(r.ev(|lc, _, f, _, out| lc.release(f, out)), vec![Did::PostRelease]);
    assert!(r.release_delivered(None).is_empty());
    assert!(!r.lc.resume_ready(&r.flags), "still backed up");
    assert_eq!(r.sent(60, 60), vec![Did::PostResume], "drained: now it resumes");
    assert!(r.lc.resume(&r.flags));
    assert_eq!(
        r.ev(|lc, c, f, now, out| lc.resumed(None, now, c, f, out)),
        vec![Did::ArmRecv]
    );
}

#[test]
fn a_held_sessions_timer_waits_and_its_release_after_a_close_posts_nothing() {
    let mut r = Rig::new(cfg());
    r.lc.hold(&r.flags);
    let _ = r.ev(|lc, _, f, _, out| {
        assert!(lc.pause(f, out));
    });
    assert!(r.recv_cancelled().is_empty());
    r.flags.last_active.store(4, Relaxed);
    assert_eq!(
        r.ev(|lc, _, _, now, out| lc.set_timer(Some(4), now, out)),
        vec![Did::Schedule(4)]
    );
    assert_eq!(
        r.timeout_at(4),
        vec![Did::Schedule(5)],
        "held: the timer waits (idle at 9)"
    );
    assert_eq!(r.timeout_at(5), vec![Did::Schedule(6)], "still held: no FireTimer");
    let did = r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Closed, true, now, c, f, out));
    assert_eq!(did, vec![Did::CloseHandle, Did::Finalize], "nothing in flight");
    assert!(
        r.ev(|lc, _, f, _, out| lc.release(f, out)).is_empty(),
        "closing: no on_resume"
    );
    assert_eq!(r.reason(), ReasonKind::Closed);
}

#[test]
fn a_session_closed_while_on_resume_runs_is_finalized_once_after_it() {
    let mut r = Rig::new(cfg());
    r.lc.hold(&r.flags);
    let _ = r.ev(|lc, _, f, _, out| {
        assert!(lc.pause(f, out));
    });
    assert!(r.recv_cancelled().is_empty());
    assert_eq!(r.ev(|lc, _, f, _, out| lc.release(f, out)), vec![Did::PostRelease]);
    assert!(r.lc.on_release());
    // Another thread closes it while on_resume runs: not finalized yet.
    let did = r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Aborted, false, now, c, f, out));
    assert_eq!(did, vec![Did::CloseHandle]);
    let mut all = r.ev(|lc, c, f, now, out| lc.released(None, now, c, f, out));
    all.extend(r.ev(|lc, _, _, _, out| lc.check_finalize(out)));
    assert_eq!(all, vec![Did::Finalize], "once, after on_resume returned");
    assert_eq!(r.reason(), ReasonKind::Aborted);

    // A panic in on_resume closes the session (abortively).
    let mut r = Rig::new(cfg());
    r.lc.hold(&r.flags);
    assert_eq!(r.ev(|lc, _, f, _, out| lc.release(f, out)), vec![Did::PostRelease]);
    let did = r.release_delivered(Some(DisconnectReason::HandlerPanicked));
    assert_eq!(did, vec![Did::CloseHandle]);
    assert_eq!(r.recv_cancelled(), vec![Did::Finalize]);
    assert_eq!(r.reason(), ReasonKind::HandlerPanicked);
    // A release packet for a session already gone does nothing.
    assert!(!r.lc.on_release());
}

/// An operation id for a rig built by hand.
fn r_op() -> OpId {
    let port = Port::builder().backend(Backend::Epoll).build().unwrap();
    port.timeout(Duration::from_secs(3600), 0u64).unwrap()
}

#[test]
fn finalize_is_asked_for_exactly_once() {
    let mut r = Rig::new(cfg());
    let mut all = Vec::new();
    all.extend(r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Aborted, false, now, c, f, out)));
    all.extend(r.recv_cancelled());
    all.extend(r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Closed, false, now, c, f, out)));
    all.extend(r.ev(|lc, _, _, _, out| lc.transmit(out)));
    assert_eq!(all.iter().filter(|d| **d == Did::Finalize).count(), 1, "{all:?}");
    assert_eq!(r.reason(), ReasonKind::Aborted);
    assert!(r.lc.finish().is_none(), "the slot is vacant");
}

#[test]
fn actions_come_out_in_order_past_the_inline_room() {
    let mut out = Actions::default();
    for t in 0..10 {
        out.push(Action::Schedule(t));
        if t % 3 == 0 {
            let _ = out.pop();
        }
    }
    let left: Vec<Did> = drain(&mut out);
    let want: Vec<Did> = (4..10).map(Did::Schedule).collect();
    assert_eq!(left, want);
}

#[test]
fn a_slot_past_its_last_generation_wraps_to_one_its_key_still_names() {
    use crate::context::{session_key, session_of};
    let mut r = Rig::new(cfg());
    r.lc.gen = GenIndex::MAX_GENERATION;
    r.ev(|lc, c, f, now, out| lc.close(DisconnectReason::Aborted, false, now, c, f, out));
    r.recv_cancelled();
    assert_eq!(r.reason(), ReasonKind::Aborted);
    assert_eq!(r.lc.gen, 0, "generations wrap as GenIndex's do");
    let key = session_key(GenIndex::new(r.lc.idx, r.lc.gen));
    assert_eq!(
        session_of(key).generation(),
        r.lc.gen,
        "the next session's completions find it"
    );
}
