//! The hand-off's monitor thread (see `handoff`): it sleeps until the
//! scheduler says the port is starved, then samples the slot holders'
//! `/proc` state. Kept apart from `handoff`'s state types so that imports
//! point one way: `sched` uses those types, this module uses `sched`.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sched::{Holder, Prioritized, Sched, Waiter};

/// How often a starved port's holders are looked at. A blocked holder
/// is found one to two intervals after it blocks; each look costs one
/// `pread` of a `/proc` file per holder (a few microseconds), so at
/// this interval the monitor of a port starved all the time uses about
/// 1-2% of a CPU per holder (measured: docs/BENCHMARKS.md).
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_micros(250);

/// How soon a holder first seen asleep is looked at again: asleep at both
/// looks with no run time between them, it has not run for this long and
/// is taken as blocked. Shorter than [`SAMPLE_INTERVAL`], so a blocked
/// holder is found 50 to 300 µs after it blocks instead of 250 to 500 µs
/// (with a 2 ms block, that delay was the slot's main loss); the extra look
/// is paid only while a holder of a starved port sleeps.
const CONFIRM_INTERVAL: Duration = Duration::from_micros(50);

/// The longest gap between looks while the monitor only waits for
/// handed-off holders to come back (nothing starved).
const IDLE_INTERVAL: Duration = Duration::from_millis(8);

/// Starts the monitor of `sched`; `wake` wakes the port's backend (a
/// hand-off may leave a packet for a leader asleep in the kernel). The
/// thread exits after `Sched::stop_monitor`.
pub(crate) fn start_monitor<T, F>(
    sched: Arc<Sched<T>>,
    delays: Arc<DelayHistogram>,
    wake: F,
) -> io::Result<JoinHandle<()>>
where
    T: Prioritized + Send + 'static,
    F: Fn() + Send + 'static,
{
    std::thread::Builder::new()
        .name("cport-handoff".into())
        .spawn(move || run(&sched, &delays, &wake))
}

/// What the monitor knows of one holder.
struct Watch {
    stat: File,
    schedstat: File,
    /// The slot (see `Waiter::epoch`) the figures below are about.
    epoch: u64,
    /// Run time at the last look that found the thread asleep, if that
    /// look was the last one.
    asleep_runtime: Option<u64>,
    /// When the thread was last seen making progress on this slot (or
    /// first seen on it): the start of the detection delay.
    progress_at: Instant,
    /// Last time it was a holder (entries of threads gone are dropped).
    seen_at: Instant,
}

impl Watch {
    fn open(tid: i32, epoch: u64, now: Instant) -> Option<Watch> {
        let dir = format!("/proc/self/task/{tid}");
        Some(Watch {
            stat: File::open(format!("{dir}/stat")).ok()?,
            schedstat: File::open(format!("{dir}/schedstat")).ok()?,
            epoch,
            asleep_runtime: None,
            progress_at: now,
            seen_at: now,
        })
    }
}

fn run<T: Prioritized, F: Fn()>(sched: &Sched<T>, delays: &DelayHistogram, wake: &F) {
    let me = Waiter::for_current_thread();
    let mut holders: Vec<Holder<T>> = Vec::new();
    let mut watches: HashMap<i32, Watch> = HashMap::new();
    let mut buf = [0u8; 512];
    let mut idle_gap = SAMPLE_INTERVAL;
    while sched.monitor_wait(&me) {
        let starved = sched.holders(&mut holders);
        let now = Instant::now();
        let mut changed = false;
        let mut confirm = false;
        for h in &holders {
            if h.tid == 0 {
                continue;
            }
            let w = match watches.entry(h.tid) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => match Watch::open(h.tid, h.epoch, now) {
                    Some(w) => e.insert(w),
                    None => continue,
                },
            };
            w.seen_at = now;
            if w.epoch != h.epoch {
                w.epoch = h.epoch;
                w.asleep_runtime = None;
                w.progress_at = now;
            }
            let Some(asleep) = sleeping(&w.stat, &mut buf) else {
                continue;
            };
            let runtime = if asleep { runtime(&w.schedstat, &mut buf) } else { None };
            if h.blocked {
                // Handed off: back to running when it runs, or ran since.
                if !asleep || runtime != w.asleep_runtime {
                    sched.resumed(&h.waiter, h.epoch);
                    w.asleep_runtime = None;
                    w.progress_at = now;
                    changed = true;
                }
                continue;
            }
            match (asleep, runtime) {
                (true, Some(rt)) if w.asleep_runtime == Some(rt) => {
                    if starved {
                        let (done, must_wake) = sched.hand_off(&h.waiter, h.epoch);
                        if done {
                            delays.record(now.saturating_duration_since(w.progress_at));
                            changed = true;
                        }
                        if must_wake {
                            wake();
                        }
                    }
                }
                (true, Some(rt)) => {
                    w.asleep_runtime = Some(rt);
                    confirm |= starved;
                }
                _ => {
                    w.asleep_runtime = None;
                    w.progress_at = now;
                }
            }
        }
        if watches.len() > holders.len() + 16 {
            watches.retain(|_, w| now.saturating_duration_since(w.seen_at) < Duration::from_secs(1));
        }
        // Starved: look again soon. Only waiting for handed-off
        // holders to come back: look less and less often.
        idle_gap = if starved || changed {
            SAMPLE_INTERVAL
        } else {
            (idle_gap * 2).min(IDLE_INTERVAL)
        };
        std::thread::sleep(if confirm { CONFIRM_INTERVAL } else { idle_gap });
    }
}

/// Whether the thread of `stat` sleeps (`S`, or `D`: uninterruptible,
/// as in a disk wait). `None` when the thread is gone.
fn sleeping(stat: &File, buf: &mut [u8]) -> Option<bool> {
    let n = stat.read_at(buf, 0).ok()?;
    let line = &buf[..n];
    // "tid (comm) S ...": the name may hold spaces and parentheses.
    let close = line.iter().rposition(|&b| b == b')')?;
    let state = *line.get(close + 2)?;
    Some(matches!(state, b'S' | b'D'))
}

/// The thread's run time in nanoseconds (first field of `schedstat`).
fn runtime(schedstat: &File, buf: &mut [u8]) -> Option<u64> {
    let n = schedstat.read_at(buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Detection delays: eight buckets per power of two of microseconds
/// (12.5% resolution), counts only, so memory stays fixed.
pub(crate) struct DelayHistogram {
    buckets: [AtomicU64; BUCKETS],
}

const BUCKETS: usize = 16 + 8 * 40;

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl DelayHistogram {
    fn index(us: u64) -> usize {
        if us < 16 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize; // >= 4
        let sub = ((us >> (e - 3)) & 7) as usize;
        (16 + (e - 4) * 8 + sub).min(BUCKETS - 1)
    }
    fn lower_bound_us(i: usize) -> u64 {
        if i < 16 {
            return i as u64;
        }
        let (e, sub) = ((i - 16) / 8 + 4, (i - 16) % 8);
        (8 + sub as u64) << (e - 3)
    }
    pub(crate) fn record(&self, d: Duration) {
        self.buckets[Self::index(d.as_micros() as u64)].fetch_add(1, Relaxed);
    }
    /// The `q` quantile (0..=1), to the bucket's lower bound; `None` before any hand-off.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(Self::lower_bound_us(i)));
            }
        }
        None
    }
}

#[cfg(all(test, not(cport_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_state_is_read_from_proc() {
        let tid = crate::handoff::current_tid();
        assert!(tid > 0);
        let w = Watch::open(tid, 0, Instant::now()).expect("own /proc entry");
        let mut buf = [0u8; 512];
        // This thread is running while it reads its own state.
        assert_eq!(sleeping(&w.stat, &mut buf), Some(false));
        let a = runtime(&w.schedstat, &mut buf).unwrap();
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(0);
        }
        let b = runtime(&w.schedstat, &mut buf).unwrap();
        assert!(b > a, "run time did not advance while spinning: {a} -> {b}");
    }

    #[test]
    fn a_sleeping_thread_reads_as_asleep() {
        let (tx, rx) = std::sync::mpsc::channel::<i32>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(crate::handoff::current_tid()).unwrap();
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        });
        let tid = rx.recv().unwrap();
        let w = Watch::open(tid, 0, Instant::now()).unwrap();
        let mut buf = [0u8; 512];
        let start = Instant::now();
        while sleeping(&w.stat, &mut buf) != Some(true) {
            assert!(start.elapsed() < Duration::from_secs(5), "never seen asleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn delay_quantiles_come_from_the_buckets() {
        let h = DelayHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us * 10));
        }
        let p50 = h.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = h.quantile(0.99).unwrap().as_micros() as f64;
        assert!((440.0..=500.0).contains(&p50), "p50 {p50}");
        assert!((870.0..=990.0).contains(&p99), "p99 {p99}");
        for i in 0..BUCKETS {
            assert_eq!(DelayHistogram::index(DelayHistogram::lower_bound_us(i)), i);
        }
    }
}
