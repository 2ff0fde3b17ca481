//! IOCP's blocked-thread hand-off: a worker that blocks in the kernel while
//! holding a concurrency slot lets a waiting worker run; one that computes
//! does not; one that comes back takes no new packet while the threads
//! running are at the cap; `Port::blocking` gives the slot back by hand.

use cport_testutil::port as util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cport::{Completion, GetError, Key, OpKind, Port};
use util::*;

/// How long the blocking and spinning handlers hold their slot.
const HOLD: Duration = Duration::from_millis(300);

/// Starts `n` workers that run `handle` on each completion until a quit.
/// A worker may wait long for a packet (waiters are released LIFO, so the
/// oldest may never be), so a timeout is not a failure; the tests bound
/// their own waits.
fn workers(
    port: &Port,
    n: usize,
    handle: impl Fn(&Port, Completion) + Send + Sync + 'static,
) -> Vec<thread::JoinHandle<()>> {
    let handle = Arc::new(handle);
    (0..n)
        .map(|i| {
            let (port, handle) = (port.clone(), handle.clone());
            thread::Builder::new()
                .name(format!("test-worker-{i}"))
                .spawn(move || loop {
                    match port.get(Some(LONG)) {
                        Ok(c) if c.kind() == OpKind::Quit => return,
                        Ok(c) => handle(&port, c),
                        Err(GetError::Timeout) => {}
                        Err(e) => panic!("worker {i}: {e}"),
                    }
                })
                .unwrap()
        })
        .collect()
}

fn stop(port: &Port, threads: Vec<thread::JoinHandle<()>>) {
    port.post_quit(threads.len()).unwrap();
    for t in threads {
        t.join().unwrap();
    }
}

/// How the first packet's handler holds its slot for [`HOLD`].
#[derive(Clone, Copy)]
enum Hold {
    /// Waits on a channel nobody sends on.
    Channel,
    /// `thread::sleep`.
    Sleep,
    /// Computes.
    Spin,
}

/// Concurrency 1, four workers: packet 0 holds the slot for [`HOLD`] as
/// `how` says, then 100 packets are posted. Returns how many of the 100
/// had run when packet 0's handler returned, and the port's stats at the end.
fn hold_then_post_100(backend: cport::Backend, how: Hold) -> (usize, cport::Stats) {
    let port = port_with(backend, |b| b.concurrency(1));
    let done = Arc::new(AtomicUsize::new(0));
    let at_return = Arc::new(Mutex::new(None));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let (_keep_tx, keep_rx) = mpsc::channel::<()>();
    let keep_rx = Mutex::new(keep_rx);
    let (d, r) = (done.clone(), at_return.clone());
    let threads = workers(&port, 4, move |_, c| {
        if c.ctx() != 0 {
            d.fetch_add(1, SeqCst);
            return;
        }
        started_tx.lock().unwrap().send(()).unwrap();
        match how {
            Hold::Channel => {
                let rx = keep_rx.lock().unwrap();
                assert!(rx.recv_timeout(HOLD).is_err(), "nobody sends");
            }
            Hold::Sleep => thread::sleep(HOLD),
            Hold::Spin => {
                let start = Instant::now();
                while start.elapsed() < HOLD {
                    std::hint::black_box(0u64);
                }
            }
        }
        *r.lock().unwrap() = Some(d.load(SeqCst));
    });
    port.post(Key(1), 0, 0u64).unwrap();
    started_rx.recv_timeout(LONG).expect("packet 0 runs");
    for i in 1..=100u64 {
        port.post(Key(1), 0, i).unwrap();
    }
    wait_until("all 101 packets ran", || {
        done.load(SeqCst) == 100 && at_return.lock().unwrap().is_some()
    });
    let ran = at_return.lock().unwrap().unwrap();
    stop(&port, threads);
    (ran, port.stats())
}

backend_tests! {
    fn a_handler_blocked_on_a_channel_lets_the_others_run(backend: Backend) {
        let (ran, stats) = hold_then_post_100(backend, Hold::Channel);
        assert_eq!(ran, 100, "packets ran only after the blocked handler returned");
        assert!(stats.handoffs >= 1);
        assert!(stats.detection_delay_p50.is_some() && stats.detection_delay_p99.is_some());
        assert!(stats.max_running <= 1, "a packet was handed out over the cap");
    }

    fn a_handler_asleep_lets_the_others_run(backend: Backend) {
        let (ran, stats) = hold_then_post_100(backend, Hold::Sleep);
        assert_eq!(ran, 100, "packets ran only after the sleeping handler returned");
        assert!(stats.handoffs >= 1);
        assert_eq!(stats.blocked_now, 0);
    }

    fn a_handler_that_computes_keeps_its_slot(backend: Backend) {
        let (ran, stats) = hold_then_post_100(backend, Hold::Spin);
        assert_eq!(ran, 0, "a computing handler's slot was handed off");
        assert_eq!(stats.handoffs, 0);
    }

    fn no_handoff_when_it_is_turned_off(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1).handoff(false));
        port.post(Key(1), 0, 1u64).unwrap();
        port.post(Key(1), 0, 2u64).unwrap();
        let _first = next(&port);
        let p = port.clone();
        // This thread blocks in `join` holding the only slot.
        let other = thread::spawn(move || p.get(Some(Duration::from_millis(300))).map(|c| c.ctx()));
        assert!(matches!(other.join().unwrap(), Err(GetError::Timeout)));
        assert_eq!(port.stats().handoffs, 0);
    }

    /// IOCP's rule, over many rounds: a handler blocks, its slot goes to
    /// another worker, which then computes; when the blocked one comes back
    /// it finishes its packet, but no worker takes a new one until the
    /// threads running are under the cap again (the computing one is done).
    fn a_thread_back_from_blocking_waits_until_running_is_under_the_cap(backend: Backend) {
        const ROUNDS: u64 = 8;
        let port = port_with(backend, |b| b.concurrency(1));
        let spin_end = Arc::new(Mutex::new(None::<Instant>));
        let early = Arc::new(AtomicUsize::new(0));
        let markers = Arc::new(AtomicUsize::new(0));
        let blockers = Arc::new(AtomicUsize::new(0));
        // The blocked handler waits until the test has seen its slot handed
        // off (a fixed sleep could end before a monitor starved of CPU on a
        // loaded machine looked twice).
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let (se, ea, mk, bl) = (spin_end.clone(), early.clone(), markers.clone(), blockers.clone());
        let block = move || {
            let _ = released.lock().unwrap().recv_timeout(Duration::from_secs(10));
        };
        let threads = workers(&port, 3, move |_, c| match c.ctx() {
            // Blocks, then computes a little once back (seen running again:
            // more threads run than the cap for a while).
            1 => {
                bl.fetch_add(1, SeqCst);
                block();
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(30) {
                    std::hint::black_box(0u64);
                }
            }
            // Blocks and returns to `get` before it is seen running again.
            4 => {
                bl.fetch_add(1, SeqCst);
                block();
            }
            // The stand-in: computes well past the blocked one's return.
            2 => {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(150) {
                    std::hint::black_box(0u64);
                }
                *se.lock().unwrap() = Some(Instant::now());
            }
            _ => {
                let started = Instant::now();
                if !matches!(*se.lock().unwrap(), Some(end) if started >= end) {
                    ea.fetch_add(1, SeqCst);
                }
                mk.fetch_add(1, SeqCst);
            }
        });
        for round in 1..=ROUNDS {
            *spin_end.lock().unwrap() = None;
            port.post(Key(1), 0, if round % 2 == 0 { 1u64 } else { 4 }).unwrap();
            wait_until("the blocking packet runs", || blockers.load(SeqCst) == round as usize);
            // Work waits behind the blocked handler: its slot is handed off
            // (now, or already, if no thread was watching the backend).
            port.post(Key(1), 0, 2u64).unwrap();
            wait_until("the blocked handler's slot is handed off", || port.stats().handoffs >= round);
            release.send(()).unwrap();
            for _ in 0..5 {
                port.post(Key(1), 0, 3u64).unwrap();
            }
            wait_until("the round's markers ran", || markers.load(SeqCst) == 5 * round as usize);
        }
        let stats = port.stats();
        stop(&port, threads);
        assert_eq!(early.load(SeqCst), 0, "a packet was taken while the threads running were at the cap");
        assert!(stats.max_running <= 1, "max_running {}", stats.max_running);
        assert!(stats.handoffs >= ROUNDS);
        assert!(stats.over_cap > Duration::ZERO, "the blocked handler was never seen running again");
        assert_eq!(stats.blocked_now, 0);
    }

    fn blocking_scopes_nest_and_survive_panics(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1).handoff(false));
        // Outside a completion there is no slot to give back.
        assert_eq!(port.blocking(|| 7), 7);
        assert_eq!(port.stats().blocking_scopes, 0);
        port.post(Key(1), 0, 1u64).unwrap();
        port.post(Key(1), 0, 2u64).unwrap();
        let _first = next(&port);
        assert_eq!(port.stats().running, 1);
        let got = port.blocking(|| {
            let s = port.stats();
            assert_eq!((s.running, s.blocked_now), (0, 1));
            port.blocking(|| {
                let s = port.stats();
                assert_eq!((s.running, s.blocked_now), (0, 1), "a nested scope gives back nothing more");
            });
            // The slot is free: another thread runs the second packet.
            let p = port.clone();
            thread::spawn(move || p.get(Some(LONG)).map(|c| c.ctx())).join().unwrap()
        });
        assert_eq!(got.unwrap(), 2);
        let s = port.stats();
        assert_eq!((s.running, s.blocked_now, s.blocking_scopes), (1, 0, 1));

        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            port.blocking(|| port.blocking(|| panic!("inside the scope")))
        }));
        assert!(r.is_err());
        let s = port.stats();
        assert_eq!((s.running, s.blocked_now, s.blocking_scopes), (1, 0, 2), "the panic left the count wrong");
        // The slot goes back at the next `get` as usual.
        assert!(matches!(port.get(Some(SHORT)), Err(GetError::Timeout)));
        assert_eq!(port.stats().running, 0);
    }

    /// Back from a scope while another thread runs in its slot, a thread
    /// counts as running (over the cap) and takes no packet until that
    /// thread is done.
    fn leaving_a_blocking_scope_at_the_cap_waits_for_a_free_slot(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1).handoff(false));
        port.post(Key(1), 0, 1u64).unwrap();
        let _first = next(&port);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let p = port.clone();
        let other = port.blocking(|| {
            port.post(Key(1), 0, 2u64).unwrap();
            let (got_tx, got_rx) = mpsc::channel();
            let t = thread::spawn(move || {
                let c = p.get(Some(LONG)).unwrap();
                got_tx.send(c.ctx()).unwrap();
                let _ = done_rx.recv_timeout(LONG);
                p.release_slot();
            });
            assert_eq!(got_rx.recv_timeout(LONG).unwrap(), 2);
            t
        });
        let s = port.stats();
        assert_eq!(s.running, 2, "back from the scope: over the cap");
        port.post(Key(1), 0, 3u64).unwrap();
        assert!(matches!(port.get(Some(SHORT)), Err(GetError::Timeout)), "a packet taken at the cap");
        done_tx.send(()).unwrap();
        other.join().unwrap();
        assert_eq!(next(&port).ctx(), 3);
        assert!(port.stats().over_cap > Duration::ZERO);
    }

    /// Hand-offs racing shutdown, many times: every posted packet is
    /// delivered once and every worker sees the shutdown (none is left
    /// parked: a lost wake-up would hang the join, which fails after LONG).
    fn handoff_racing_shutdown_loses_no_wakeup(backend: Backend) {
        for round in 0..20u64 {
            let port = port_with(backend, |b| b.concurrency(1));
            let seen = Arc::new(AtomicUsize::new(0));
            let exited = Arc::new(AtomicUsize::new(0));
            let blocked_once = Arc::new(AtomicBool::new(false));
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let (p, seen, exited, b) = (port.clone(), seen.clone(), exited.clone(), blocked_once.clone());
                    thread::spawn(move || {
                        drain_until_shut_down(&p, |c| {
                            if c.kind() == OpKind::Post {
                                seen.fetch_add(1, SeqCst);
                                if !b.swap(true, SeqCst) {
                                    thread::sleep(Duration::from_millis(3));
                                }
                            }
                        });
                        exited.fetch_add(1, SeqCst);
                    })
                })
                .collect();
            let mut posted = 0;
            for i in 0..50u64 {
                if port.post(Key(1), 0, i).is_ok() {
                    posted += 1;
                }
            }
            // Shut down at a point that moves with the round: before, during
            // and after the hand-off.
            thread::sleep(Duration::from_micros(300 * (round % 10)));
            port.shutdown();
            let deadline = Instant::now() + LONG;
            while exited.load(SeqCst) < 3 {
                assert!(Instant::now() < deadline, "round {round}: a worker never saw the shutdown");
                thread::sleep(Duration::from_millis(1));
            }
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(seen.load(SeqCst), posted, "round {round}");
        }
    }
}
