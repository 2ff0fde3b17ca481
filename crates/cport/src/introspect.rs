//! Introspection: what a port is doing now, cheap enough to leave on.
//!
//! Three pieces, each off the hot path but for one clock read per issue
//! and one per reaped batch:
//! - every operation's [`Meta`] carries the time it was issued
//!   ([`Stamp`]); [`Port::snapshot`](crate::Port::snapshot) walks the
//!   driver's in-flight table (under its lock, at read time) for counts and
//!   ages by kind, and [`Port::in_flight_ops`](crate::Port::in_flight_ops)
//!   lists the oldest ops themselves;
//! - latency from issue to completion is recorded per kind into HDR
//!   histograms, one set per thread that reaps completions (an uncontended
//!   lock per batch), merged when read;
//! - a watchdog thread (`cport-watch`) looks at the in-flight table every
//!   quarter of the stuck threshold and reports, once each, operations that
//!   made no progress for longer than it ([`stuck_kind`] says which kinds can
//!   be stuck: a receive or accept waits for a peer, which is not stuck).
//!
//! `PortBuilder::introspect(false)` or `CPORT_INTROSPECT=off` turns all of
//! it off (no clock reads, no watchdog); the `trace!` events per issue and
//! completion stay, and cost one relaxed load each while tracing is off.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::{Condvar, Mutex};

use crate::completion::{Completion, Meta, Stamp};
use crate::handoff::SlotState;
use crate::id::{Handle, OpId};
use crate::key::Key;
use crate::kind::OpKind;

/// The default stuck threshold: an op with no progress for this long is reported.
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(30);

/// Latencies above this (an hour, in microseconds) are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// Per-thread latency recorders kept before finished threads' are merged away.
const MAX_RECORDERS: usize = 64;

/// What a port is doing now, from [`Port::snapshot`](crate::Port::snapshot).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Whether introspection is on (off: no ages, latencies or stuck reports).
    pub enabled: bool,
    /// Operations in flight, by kind (kinds with none left out).
    pub in_flight: Vec<KindInFlight>,
    /// Completions waiting to be dequeued (the ready queue's depth).
    pub queued: usize,
    /// Threads running completions now, and the cap on them.
    pub running: usize,
    /// The port's concurrency (IOCP's NumberOfConcurrentThreads).
    pub concurrency: usize,
    /// Each thread that dequeues from the port, and what it does now.
    pub workers: Vec<WorkerSnapshot>,
    /// Slots handed to a waiting thread because their holder blocked, ever.
    pub handoffs: u64,
    /// Completions dequeued, ever.
    pub completed: u64,
    /// Latency from issue to completion, by kind (one-shot operations).
    pub latency: Vec<KindLatency>,
    /// Operations reported stuck, ever.
    pub stuck: u64,
    /// The stuck threshold.
    pub stuck_after: Duration,
}

impl Snapshot {
    /// Operations of `kind` in flight.
    pub fn in_flight_of(&self, kind: OpKind) -> usize {
        self.in_flight.iter().find(|k| k.kind == kind).map_or(0, |k| k.count)
    }
    /// The oldest operation of `kind` in flight, if any.
    pub fn oldest_of(&self, kind: OpKind) -> Option<Duration> {
        self.in_flight.iter().find(|k| k.kind == kind).and_then(|k| k.oldest)
    }
    /// All operations in flight.
    pub fn in_flight_total(&self) -> usize {
        self.in_flight.iter().map(|k| k.count).sum()
    }
}

/// Operations of one kind in flight.
#[derive(Clone, Debug)]
pub struct KindInFlight {
    /// The kind.
    pub kind: OpKind,
    /// How many are in flight.
    pub count: usize,
    /// The age of the oldest (`None` while introspection is off).
    pub oldest: Option<Duration>,
}

/// One operation in flight, from [`Port::in_flight_ops`](crate::Port::in_flight_ops).
#[derive(Clone, Debug)]
pub struct InFlightOp {
    /// Its id.
    pub op: OpId,
    /// Its kind.
    pub kind: OpKind,
    /// The key of its handle (0 for nops and timeouts).
    pub key: Key,
    /// Its handle, if it has one.
    pub handle: Option<Handle>,
    /// How long ago it was issued (zero while introspection is off).
    pub age: Duration,
    /// It is multishot (its age is how long it has been armed).
    pub multishot: bool,
}

/// Latency from issue to completion of one kind: in the port's lifetime,
/// and over the last one to two minutes (`recent_*`).
#[derive(Clone, Debug)]
pub struct KindLatency {
    /// The kind.
    pub kind: OpKind,
    /// Completions recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The longest.
    pub max: Duration,
    /// Completions recorded in the last one to two minutes.
    pub recent_count: u64,
    /// 99th percentile of the last one to two minutes (`None`: none then).
    pub recent_p99: Option<Duration>,
}

/// What a thread that dequeues from the port is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Running a completion's handler (holds a concurrency slot).
    Running,
    /// Waiting in `get` for a completion (or in the kernel, as the leader).
    Waiting,
    /// Found blocked in its handler: its slot went to another thread.
    Blocked,
    /// Running while more threads run than the cap (a blocked thread came
    /// back while the one that took its slot still runs).
    OverCap,
    /// Neither running a completion nor waiting: inside `Port::blocking`,
    /// or busy outside the port between `get`s.
    Outside,
}

impl WorkerState {
    /// A short lowercase name, for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Waiting => "waiting",
            WorkerState::Blocked => "blocked",
            WorkerState::OverCap => "over_cap",
            WorkerState::Outside => "outside",
        }
    }
}

/// One thread that dequeues from the port.
#[derive(Clone, Debug)]
pub struct WorkerSnapshot {
    /// The thread's name, if it has one.
    pub name: Option<String>,
    /// Its kernel thread id (0 where `/proc` is not mounted).
    pub tid: i32,
    /// What it does now.
    pub state: WorkerState,
    /// Completions it dequeued.
    pub completions: u64,
    /// Time not spent waiting for completions.
    pub busy: Duration,
}

/// The kinds whose operation waits on this side: one in flight past the
/// threshold made no progress. Receives and accepts wait for a peer (an
/// idle connection is not stuck), timeouts for their time, and posts and
/// quits are never in flight.
pub(crate) fn stuck_kind(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Connect
            | OpKind::Send
            | OpKind::SendVectored
            | OpKind::SendTo
            | OpKind::Shutdown
            | OpKind::ReadAt
            | OpKind::WriteAt
            | OpKind::Fsync
            | OpKind::SendFile
            | OpKind::Nop
    )
}

/// Nanoseconds since the process's introspection epoch (set on first use).
pub(crate) fn clock() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The age of a stamped op at `now` (zero when not stamped).
fn age(stamp: Stamp, now: u64) -> Duration {
    if stamp.is_set() {
        Duration::from_nanos(now.saturating_sub(stamp.nanos()))
    } else {
        Duration::ZERO
    }
}

/// The length of one window of recent latencies (a minute, in nanoseconds).
const WINDOW_NANOS: u64 = 60_000_000_000;

/// One histogram per kind, each made on first use.
type ByKind = [Option<Histogram<u64>>; OpKind::ALL.len()];

/// Adds every histogram of `from` into `to`.
fn add_all(from: &ByKind, to: &mut ByKind) {
    for (i, h) in from.iter().enumerate() {
        if let Some(h) = h {
            // Same bounds on both sides: adding cannot fail.
            let _ = to[i].get_or_insert_with(new_histogram).add(h);
        }
    }
}

/// One thread's latency histograms: since the start, and for the current
/// and the previous minute (so "recent" covers the last one to two minutes).
#[derive(Default)]
struct Latency {
    by_kind: ByKind,
    /// The minute (since the epoch) that `this_minute` covers.
    minute: u64,
    this_minute: ByKind,
    last_minute: ByKind,
}

impl Latency {
    fn record(&mut self, kind: OpKind, micros: u64, now: u64) {
        let minute = now / WINDOW_NANOS;
        if minute != self.minute {
            let this = std::mem::take(&mut self.this_minute);
            self.last_minute = if minute == self.minute + 1 {
                this
            } else {
                ByKind::default()
            };
            self.minute = minute;
        }
        let v = micros.clamp(1, LATENCY_MAX_US);
        self.by_kind[kind as usize]
            .get_or_insert_with(new_histogram)
            .saturating_record(v);
        self.this_minute[kind as usize]
            .get_or_insert_with(new_histogram)
            .saturating_record(v);
    }
    /// Adds this thread's figures to `out`: all of them, and those of the
    /// last one to two minutes before `now` to `out.this_minute`.
    fn merge_into(&self, out: &mut Latency, now: u64) {
        add_all(&self.by_kind, &mut out.by_kind);
        let minute = now / WINDOW_NANOS;
        if self.minute == minute {
            add_all(&self.this_minute, &mut out.this_minute);
            add_all(&self.last_minute, &mut out.this_minute);
        } else if self.minute + 1 == minute {
            add_all(&self.this_minute, &mut out.this_minute);
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 2).expect("valid histogram bounds")
}

thread_local! {
    /// This thread's latency recorder for each port it reaps for.
    static RECORDERS: RefCell<Vec<(u32, Arc<Mutex<Latency>>)>> = const { RefCell::new(Vec::new()) };
}

/// A port's introspection state.
pub(crate) struct Introspect {
    /// The port's identity (the key of this thread's recorder).
    port: u32,
    on: bool,
    stuck_after: Duration,
    /// Every thread's recorder; the first is the merged figures of threads
    /// that are gone.
    recorders: Mutex<Vec<Arc<Mutex<Latency>>>>,
    stuck: AtomicU64,
    /// Ops already reported stuck (reported once each), pruned each look.
    reported: Mutex<HashSet<OpId>>,
    /// Set (under its lock) to end the watchdog.
    stop: (Mutex<bool>, Condvar),
}

impl Introspect {
    pub(crate) fn new(port: u32, on: bool, stuck_after: Duration) -> Self {
        Introspect {
            port,
            on,
            stuck_after,
            recorders: Mutex::new(vec![Arc::default()]),
            stuck: AtomicU64::new(0),
            reported: Mutex::default(),
            stop: (Mutex::new(false), Condvar::new()),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// The hook where an op is issued: stamps it (when on).
    pub(crate) fn stamp(&self, meta: &mut Meta, multishot: bool) {
        if self.on {
            meta.issued = Stamp::new(clock(), multishot);
        }
    }

    /// The hook after an op is accepted: its trace event.
    pub(crate) fn issued(&self, meta: &Meta, op: OpId) {
        tracing::trace!(op = ?op.op, kind = %meta.kind, key = meta.key.0, "issued");
    }

    /// The hook where completions are reaped (or one finished inline):
    /// their trace events and the latency of each final one-shot completion.
    pub(crate) fn completed(&self, batch: &[Completion]) {
        if tracing::enabled!(tracing::Level::TRACE) {
            for c in batch {
                let m = &c.meta;
                tracing::trace!(op = ?m.id, kind = %m.kind, key = m.key.0, result = ?c.result, more = m.more, "completed");
            }
        }
        if !self.on || batch.is_empty() {
            return;
        }
        let now = clock();
        self.with_recorder(|rec| {
            for c in batch {
                let s = c.meta.issued;
                if !c.meta.more && s.is_set() && !s.multishot() {
                    rec.record(c.meta.kind, now.saturating_sub(s.nanos()) / 1000, now);
                }
            }
        });
    }

    /// Runs `f` on this thread's recorder for this port, made on first use
    /// (not at all while the thread's locals are being destroyed).
    fn with_recorder(&self, f: impl FnOnce(&mut Latency)) {
        let _ = RECORDERS.try_with(|r| {
            let mut r = r.borrow_mut();
            // Borrowed in place: no reference-count traffic per batch.
            let i = match r.iter().position(|(p, _)| *p == self.port) {
                Some(i) => i,
                None => {
                    // Recorders of ports that are gone are held only here.
                    r.retain(|(_, rec)| Arc::strong_count(rec) > 1);
                    let rec: Arc<Mutex<Latency>> = Arc::default();
                    self.adopt(rec.clone());
                    r.push((self.port, rec));
                    r.len() - 1
                }
            };
            f(&mut r[i].1.lock());
        });
    }

    /// Lists a new thread's recorder; folds those of finished threads into
    /// the first one when the list grows long.
    fn adopt(&self, rec: Arc<Mutex<Latency>>) {
        let mut all = self.recorders.lock();
        if all.len() > MAX_RECORDERS {
            let (retired, live) = all.split_at_mut(1);
            let mut retired = retired[0].lock();
            for r in live.iter().filter(|r| Arc::strong_count(r) == 1) {
                // Their recent figures age out; the totals stay.
                add_all(&r.lock().by_kind, &mut retired.by_kind);
            }
            drop(retired);
            let mut first = true;
            all.retain(|r| std::mem::take(&mut first) || Arc::strong_count(r) > 1);
        }
        all.push(rec);
    }

    /// Every thread's latencies merged, by kind.
    pub(crate) fn latency(&self) -> Vec<KindLatency> {
        let now = clock();
        let mut sum = Latency::default();
        for r in self.recorders.lock().iter() {
            r.lock().merge_into(&mut sum, now);
        }
        let us = Duration::from_micros;
        OpKind::ALL
            .iter()
            .filter_map(|&kind| {
                let h = sum.by_kind[kind as usize].as_ref()?;
                let recent = sum.this_minute[kind as usize].as_ref();
                Some(KindLatency {
                    kind,
                    count: h.len(),
                    p50: us(h.value_at_quantile(0.5)),
                    p99: us(h.value_at_quantile(0.99)),
                    max: us(h.max()),
                    recent_count: recent.map_or(0, |r| r.len()),
                    recent_p99: recent.map(|r| us(r.value_at_quantile(0.99))),
                })
            })
            .collect()
    }

    /// Counts and oldest ages by kind from a walk over the in-flight table.
    pub(crate) fn in_flight(&self, visit: impl FnOnce(&mut dyn FnMut(&Meta))) -> Vec<KindInFlight> {
        let now = clock();
        let mut count = [0usize; OpKind::ALL.len()];
        let mut oldest = [Duration::ZERO; OpKind::ALL.len()];
        visit(&mut |m: &Meta| {
            let i = m.kind as usize;
            count[i] += 1;
            oldest[i] = oldest[i].max(age(m.issued, now));
        });
        OpKind::ALL
            .iter()
            .filter(|k| count[**k as usize] > 0)
            .map(|&kind| KindInFlight {
                kind,
                count: count[kind as usize],
                oldest: self.on.then_some(oldest[kind as usize]),
            })
            .collect()
    }

    /// The `limit` oldest ops that `keep` accepts, oldest first.
    pub(crate) fn oldest_ops(
        &self,
        limit: usize,
        keep: impl Fn(&Meta) -> bool,
        visit: impl FnOnce(&mut dyn FnMut(&Meta)),
    ) -> Vec<InFlightOp> {
        let now = clock();
        let mut ops = Vec::new();
        visit(&mut |m: &Meta| {
            if keep(m) {
                ops.push(InFlightOp {
                    op: m.op_id(),
                    kind: m.kind,
                    key: m.key,
                    handle: m.handle(),
                    age: age(m.issued, now),
                    multishot: m.issued.multishot(),
                });
            }
        });
        ops.sort_by_key(|o| std::cmp::Reverse(o.age));
        ops.truncate(limit);
        ops
    }

    pub(crate) fn stuck_count(&self) -> u64 {
        self.stuck.load(Relaxed)
    }

    pub(crate) fn stuck_after(&self) -> Duration {
        self.stuck_after
    }

    /// One look for stuck ops: each op of a [`stuck_kind`] older than the
    /// threshold is logged (once) and counted. Returns how many were new.
    pub(crate) fn look_for_stuck(&self, visit: impl FnOnce(&mut dyn FnMut(&Meta))) -> usize {
        if !self.on {
            return 0;
        }
        let now = clock();
        let mut stuck = Vec::new();
        let mut live = HashSet::new();
        visit(&mut |m: &Meta| {
            if stuck_kind(m.kind) && m.issued.is_set() {
                let a = age(m.issued, now);
                if a >= self.stuck_after {
                    live.insert(m.op_id());
                    stuck.push((*m, a));
                }
            }
        });
        let mut reported = self.reported.lock();
        reported.retain(|op| live.contains(op));
        let mut new = 0;
        for (m, a) in stuck {
            if reported.insert(m.op_id()) {
                new += 1;
                self.stuck.fetch_add(1, Relaxed);
                let handle = m.handle().map(|h| h.slot);
                tracing::warn!(key = m.key.0, kind = %m.kind, handle = ?handle, op = ?m.id, age = ?a, "operation stuck: no progress past the threshold");
            }
        }
        new
    }

    /// How often the watchdog looks: a quarter of the threshold, within
    /// 10 ms and 5 s.
    pub(crate) fn look_every(&self) -> Duration {
        (self.stuck_after / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
    }

    /// The watchdog's sleep between looks; `false` once told to stop.
    pub(crate) fn sleep(&self) -> bool {
        let mut stopped = self.stop.0.lock();
        if !*stopped {
            self.stop.1.wait_for(&mut stopped, self.look_every());
        }
        !*stopped
    }

    /// Ends the watchdog's loop.
    pub(crate) fn stop(&self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
    }
}

/// A worker's state from its slot, whether it waits, and whether the port
/// runs over its cap.
pub(crate) fn worker_state(slot: Option<SlotState>, waiting: bool, over_cap: bool) -> WorkerState {
    match slot {
        Some(SlotState::Held) if over_cap => WorkerState::OverCap,
        Some(SlotState::Held) => WorkerState::Running,
        Some(SlotState::Blocked) => WorkerState::Blocked,
        _ if waiting => WorkerState::Waiting,
        _ => WorkerState::Outside,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_keeps_its_time_and_its_multishot_flag() {
        let s = Stamp::new(12_345, true);
        assert!(s.is_set() && s.multishot());
        assert_eq!(s.nanos(), 12_345);
        let t = Stamp::new(0, false);
        assert!(t.is_set(), "an op issued at the epoch is still stamped");
        assert!(!t.multishot());
        assert!(!Stamp::default().is_set());
    }

    #[test]
    fn worker_states_follow_slot_wait_and_cap() {
        use WorkerState::*;
        assert_eq!(worker_state(Some(SlotState::Held), false, false), Running);
        assert_eq!(worker_state(Some(SlotState::Held), false, true), OverCap);
        assert_eq!(worker_state(Some(SlotState::Blocked), false, false), Blocked);
        assert_eq!(worker_state(Some(SlotState::Free), true, false), Waiting);
        assert_eq!(worker_state(None, false, false), Outside);
    }

    #[test]
    fn latencies_of_every_thread_are_merged_and_multishot_ones_left_out() {
        let intro = Arc::new(Introspect::new(u32::MAX, true, STUCK_AFTER));
        // Stamps 9 ms in the past need an epoch at least that old.
        clock();
        std::thread::sleep(Duration::from_millis(20));
        let done = |kind, micros_ago: u64, multishot| {
            let mut m = Meta::new(u32::MAX, Key(1), crate::key::Ctx::default(), kind, None);
            m.issued = Stamp::new(clock().saturating_sub(micros_ago * 1000), multishot);
            Completion::new(m, Ok(0), crate::sys::buf::Payload::None, false)
        };
        intro.completed(&[done(OpKind::Send, 1_000, false), done(OpKind::Recv, 5_000, true)]);
        let other = intro.clone();
        std::thread::spawn(move || other.completed(&[done(OpKind::Send, 9_000, false)]))
            .join()
            .unwrap();
        let lat = intro.latency();
        assert_eq!(lat.len(), 1, "only the sends: {lat:?}");
        assert_eq!((lat[0].kind, lat[0].count), (OpKind::Send, 2));
        assert!(lat[0].max >= Duration::from_millis(9), "{lat:?}");
        assert!(lat[0].p50 < Duration::from_millis(9), "{lat:?}");
        assert_eq!(lat[0].recent_count, 2, "both in the recent window");
    }

    #[test]
    fn recent_latencies_cover_this_minute_and_the_last_then_age_out() {
        let m = WINDOW_NANOS;
        let mut rec = Latency::default();
        rec.record(OpKind::Send, 100, 0);
        rec.record(OpKind::Send, 5_000, m + 1);
        let recent = |rec: &Latency, now| {
            let mut sum = Latency::default();
            rec.merge_into(&mut sum, now);
            let total = sum.by_kind[OpKind::Send as usize].as_ref().map_or(0, |h| h.len());
            let recent = sum.this_minute[OpKind::Send as usize].as_ref().map_or(0, |h| h.len());
            (total, recent)
        };
        assert_eq!(recent(&rec, m + 2), (2, 2), "this minute and the last");
        assert_eq!(recent(&rec, 2 * m + 1), (2, 1), "a minute later: only the newer");
        assert_eq!(recent(&rec, 3 * m + 1), (2, 0), "two minutes later: none");
        rec.record(OpKind::Send, 100, 5 * m);
        assert_eq!(recent(&rec, 5 * m), (3, 1), "a gap of minutes leaves no stale window");
    }
}
