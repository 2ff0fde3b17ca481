//! IOCP's thread rules under load: many threads issuing and dequeuing with
//! every operation completing exactly once, the concurrency cap, LIFO release
//! of waiting threads, and giving a slot back with `release_slot`.

use cport_testutil::port as util;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cport::{Completion, GetError, Handle, Key, OpKind, Port};
use util::*;

/// One bit per ctx: records that an operation completed, and catches any
/// second completion of it.
struct Seen {
    bits: Vec<AtomicU64>,
}

impl Seen {
    fn new(n: usize) -> Seen {
        Seen {
            bits: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    /// Marks `ctx`; `false` if it was already marked (a duplicate).
    fn mark(&self, ctx: u64) -> bool {
        let bit = 1u64 << (ctx % 64);
        self.bits[(ctx / 64) as usize].fetch_or(bit, SeqCst) & bit == 0
    }
    fn count(&self) -> u64 {
        self.bits.iter().map(|b| u64::from(b.load(SeqCst).count_ones())).sum()
    }
}

/// Takes one unit from a budget; `false` once it is spent.
fn take(budget: &AtomicUsize) -> bool {
    budget.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// Ping-pong traffic plus nop and post chains, driven from the handlers of
/// the threads that dequeue: every completion may issue the next operation.
struct Stress {
    port: Port,
    seen: Seen,
    /// ctx values handed out so far (= operations accepted).
    issued: AtomicU64,
    completed: AtomicU64,
    by_kind: Mutex<HashMap<OpKind, u64>>,
    failures: Mutex<Vec<String>>,
    /// Per connection: (client handle, server handle), and the client's
    /// progress: rounds done and bytes of the current echo received.
    conns: Vec<(Handle, Handle)>,
    progress: Vec<Mutex<(usize, Vec<u8>)>>,
    conns_done: AtomicUsize,
    nops: AtomicUsize,
    posts: AtomicUsize,
    chains_done: AtomicUsize,
}

const ROUNDS: usize = 2_500;
const MSG: usize = 8;
const POST_KEY: Key = Key(u64::MAX);

impl Stress {
    fn ctx(&self) -> u64 {
        self.issued.fetch_add(1, SeqCst)
    }

    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }

    fn issue(&self, r: Result<cport::OpId, cport::SubmitError>, what: &str) {
        if let Err(e) = r {
            self.fail(format!("issuing {what}: {e}"));
        }
    }

    fn client_round(&self, conn: usize, round: usize) {
        let (client, _) = self.conns[conn];
        self.issue(
            self.port.recv(&client, Vec::with_capacity(MSG), self.ctx()),
            "client recv",
        );
        let msg = (round as u64).to_le_bytes().to_vec();
        self.issue(self.port.send(&client, msg, self.ctx()), "client send");
    }

    fn next_nop(&self) {
        if take(&self.nops) {
            self.issue(self.port.nop(self.ctx()), "nop");
        } else {
            self.chains_done.fetch_add(1, SeqCst);
        }
    }

    fn next_post(&self) {
        if take(&self.posts) {
            if let Err(e) = self.port.post(POST_KEY, 0, self.ctx()) {
                self.fail(format!("posting: {e}"));
            }
        } else {
            self.chains_done.fetch_add(1, SeqCst);
        }
    }

    fn handle(&self, mut c: Completion) {
        if !self.seen.mark(c.ctx()) {
            self.fail(format!("ctx {} completed twice: {c:?}", c.ctx()));
        }
        *self.by_kind.lock().unwrap().entry(c.kind()).or_default() += 1;
        let conn = (c.key().0 / 2) as usize;
        let server_side = c.key().0 % 2 == 1;
        match c.kind() {
            OpKind::Nop => self.next_nop(),
            OpKind::Post => self.next_post(),
            OpKind::Send | OpKind::SendVectored => {
                if c.result().is_err() {
                    self.fail(format!("send failed: {c:?}"));
                }
            }
            OpKind::Recv if server_side => match c.result() {
                Ok(n) if *n > 0 => {
                    let (_, server) = self.conns[conn];
                    let data = c.take_buf().unwrap();
                    self.issue(self.port.send(&server, data, self.ctx()), "echo");
                    self.issue(
                        self.port.recv(&server, Vec::with_capacity(64), self.ctx()),
                        "server recv",
                    );
                }
                // Cancelled when the test closes the connection at the end.
                _ => {}
            },
            OpKind::Recv => {
                let n = c.bytes();
                if n == 0 {
                    self.fail(format!("client recv got nothing: {c:?}"));
                    return;
                }
                let data = c.take_buf().unwrap();
                let mut p = self.progress[conn].lock().unwrap();
                p.1.extend_from_slice(&data);
                if p.1.len() < MSG {
                    let (client, _) = self.conns[conn];
                    let want = MSG - p.1.len();
                    self.issue(
                        self.port.recv(&client, Vec::with_capacity(want), self.ctx()),
                        "client recv",
                    );
                    return;
                }
                let round = u64::from_le_bytes(p.1[..MSG].try_into().unwrap()) as usize;
                if round != p.0 || p.1.len() != MSG {
                    self.fail(format!(
                        "conn {conn}: echo of round {round} ({} bytes) in round {}",
                        p.1.len(),
                        p.0
                    ));
                }
                p.0 += 1;
                p.1.clear();
                if p.0 < ROUNDS {
                    self.client_round(conn, p.0);
                } else {
                    self.conns_done.fetch_add(1, SeqCst);
                }
            }
            other => self.fail(format!("unexpected {other}: {c:?}")),
        }
        self.completed.fetch_add(1, SeqCst);
    }
}

backend_tests! {
    fn eight_threads_complete_over_100k_operations_exactly_once(backend: Backend) {
        const THREADS: usize = 8;
        const CONNS: usize = 8;
        const CHAINS: usize = 8;
        const NOPS: usize = 10_000;
        const POSTS: usize = 10_000;
        let port = port_with(backend, |b| b.concurrency(4));
        let mut conns = Vec::new();
        let l = listener();
        for i in 0..CONNS as u64 {
            let (client, server) = tcp_pair_on(&l);
            let ch = port.associate(client, Key(2 * i)).unwrap();
            let sh = port.associate(server, Key(2 * i + 1)).unwrap();
            conns.push((ch, sh));
        }
        let st = Arc::new(Stress {
            port: port.clone(),
            seen: Seen::new(200_000),
            issued: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            by_kind: Mutex::new(HashMap::new()),
            failures: Mutex::new(Vec::new()),
            progress: (0..CONNS).map(|_| Mutex::new((0, Vec::new()))).collect(),
            conns,
            conns_done: AtomicUsize::new(0),
            nops: AtomicUsize::new(NOPS),
            posts: AtomicUsize::new(POSTS),
            chains_done: AtomicUsize::new(0),
        });
        let start = Instant::now();
        let workers = {
            let st = st.clone();
            spawn_workers(&port, THREADS, move |c| st.handle(c))
        };
        for i in 0..CONNS {
            let (_, server) = st.conns[i];
            st.issue(port.recv(&server, Vec::with_capacity(64), st.ctx()), "server recv");
            st.client_round(i, 0);
        }
        for _ in 0..CHAINS {
            st.next_nop();
            st.next_post();
        }
        wait_until_for(Duration::from_secs(40), "the traffic is done", || {
            st.conns_done.load(SeqCst) == CONNS && st.chains_done.load(SeqCst) == 2 * CHAINS
                || !st.failures.lock().unwrap().is_empty()
        });
        // End the servers' pending receives, then wait for every last completion.
        for (ch, sh) in &st.conns {
            port.close(sh).unwrap();
            port.close(ch).unwrap();
        }
        wait_until("every issued operation completed", || {
            st.completed.load(SeqCst) == st.issued.load(SeqCst) || !st.failures.lock().unwrap().is_empty()
        });
        let traffic = start.elapsed();
        port.post_quit(THREADS).unwrap();
        for w in workers {
            w.join().expect("worker panicked");
        }
        let elapsed = start.elapsed();

        let failures = st.failures.lock().unwrap();
        assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), &failures[..failures.len().min(5)]);
        let issued = st.issued.load(SeqCst);
        assert!(issued >= 100_000, "only {issued} operations");
        assert_eq!(st.seen.count(), issued, "every operation completed");
        assert_eq!(st.completed.load(SeqCst), issued, "and exactly once");
        let stats = port.stats();
        assert_eq!(stats.total_completed(), issued + THREADS as u64, "port counts agree (plus quit packets)");
        for (kind, n) in st.by_kind.lock().unwrap().iter() {
            assert_eq!(stats.completed_of(*kind), *n, "{kind} count");
        }
        assert_eq!(stats.completed_of(OpKind::Nop), NOPS as u64);
        assert_eq!(stats.completed_of(OpKind::Post), POSTS as u64);
        // Closing both ends races each server receive's cancel against the
        // peer's end of stream: either way it completes once, and nothing
        // else may fail.
        assert!(stats.errors <= CONNS as u64, "only the server receives may fail: {}", stats.errors);
        assert_eq!((stats.in_flight, stats.queued, stats.handles), (0, 0, 0));
        let busy: Vec<_> = stats.threads.iter().filter(|t| t.completions > 0).collect();
        assert_eq!(busy.len(), THREADS, "every worker dequeued something: {:?}", stats.threads);
        assert!(stats.max_running <= 4);
        eprintln!(
            "{issued} operations on {THREADS} threads in {traffic:?} ({elapsed:?} with the workers' exit); {} backend calls",
            stats.backend_calls
        );
    }

    /// Eight threads share two slots. Every third packet, the handler gives
    /// its slot back (`release_slot`), so its next `get` comes in without a
    /// slot while the others run: the fast path of `get` must then wait like
    /// anyone else. The handlers' own count of threads inside a handler
    /// (long enough, 20 µs, for an overlap to show) must never pass the cap.
    fn running_threads_never_exceed_the_concurrency_cap(backend: Backend) {
        const PACKETS: u64 = 20_000;
        const THREADS: usize = 8;
        let port = port_with(backend, |b| b.concurrency(2));
        // Threads between `get` returning and their next `get` or
        // `release_slot`: inside the slot window, so it can only under-count.
        let running = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let handled = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (port, running, max_seen, handled) = (port.clone(), running.clone(), max_seen.clone(), handled.clone());
                thread::spawn(move || loop {
                    let c = port.get(Some(LONG)).expect("a packet");
                    if c.kind() == OpKind::Quit {
                        return;
                    }
                    let now = running.fetch_add(1, SeqCst) + 1;
                    max_seen.fetch_max(now, SeqCst);
                    let spin = Instant::now();
                    while spin.elapsed() < Duration::from_micros(20) {
                        std::hint::spin_loop();
                    }
                    running.fetch_sub(1, SeqCst);
                    if c.ctx() % 3 == 0 {
                        port.release_slot();
                    }
                    handled.fetch_add(1, SeqCst);
                })
            })
            .collect();
        wait_until("the workers are parked", || port.stats().waiting >= THREADS - 2);
        let mut sampled_max = 0;
        for i in 0..PACKETS {
            port.post(Key(1), 0, i).unwrap();
            if i % 100 == 0 {
                sampled_max = sampled_max.max(port.stats().running);
            }
        }
        wait_until_for(Duration::from_secs(30), "every packet is handled", || {
            sampled_max = sampled_max.max(port.stats().running);
            handled.load(SeqCst) == PACKETS
        });
        port.post_quit(THREADS).unwrap();
        for w in workers {
            w.join().expect("worker panicked");
        }
        let stats = port.stats();
        assert_eq!(stats.completed_of(OpKind::Post), PACKETS);
        assert!(max_seen.load(SeqCst) <= 2, "handlers saw {} at once", max_seen.load(SeqCst));
        assert!(sampled_max <= 2, "running was {sampled_max}");
        assert_eq!(stats.max_running, 2, "the cap was reached and never passed");
    }

    /// T1..T4 call `get` one after another; then one packet at a time is
    /// posted. The most recent waiter must be released first: T4, T3, T2,
    /// then T1. T1, the first to call `get` on an idle port, becomes the
    /// *leader* (it waits in the backend, not on the waiter stack; sched.rs
    /// treats it as the oldest waiter), so it is woken through the backend
    /// last; T2..T4 are on the stack and are handed packets directly.
    fn the_most_recent_waiter_is_released_first(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(8));
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for t in 1..=4u64 {
            let before = port.stats();
            let (port2, tx) = (port.clone(), tx.clone());
            threads.push(thread::spawn(move || {
                let c = port2.get(Some(Duration::from_secs(10))).expect("released");
                tx.send((t, c.ctx())).unwrap();
            }));
            if t == 1 {
                wait_until("T1 leads (waits in the backend)", || {
                    let s = port.stats();
                    s.backend_calls > before.backend_calls || s.waiting > 0
                });
            } else {
                wait_until("the thread is parked", || port.stats().waiting > before.waiting);
            }
        }
        let mut order = Vec::new();
        for ctx in 0..4u64 {
            port.post(Key(1), 0, ctx).unwrap();
            let (t, got) = rx.recv_timeout(LONG).unwrap_or_else(|e| panic!("no waiter released for packet {ctx} (so far {order:?}): {e}"));
            assert_eq!(got, ctx);
            order.push(t);
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(order, [4, 3, 2, 1], "waiters released last-in, first-out");
    }

    fn a_thread_that_comes_back_is_released_before_older_waiters(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(8));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 1..=3u64 {
            let before = port.stats();
            let (port2, tx, stop) = (port.clone(), tx.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                while !stop.load(SeqCst) {
                    match port2.get(Some(Duration::from_secs(10))) {
                        Ok(c) if c.kind() == OpKind::Quit => return,
                        Ok(c) => tx.send((t, c.ctx())).unwrap(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
            wait_until("the thread waits", || {
                let s = port.stats();
                s.waiting > before.waiting || (t == 1 && s.backend_calls > before.backend_calls)
            });
        }
        // T3 is released first; it handles the packet and calls `get` again,
        // so it is the most recent waiter once more: the hot thread keeps
        // the work (IOCP's reason for LIFO).
        for ctx in 0..3u64 {
            let waiting = port.stats().waiting;
            port.post(Key(1), 0, ctx).unwrap();
            let (t, got) = rx.recv_timeout(LONG).unwrap();
            assert_eq!((t, got), (3, ctx));
            wait_until("T3 waits again", || port.stats().waiting == waiting);
        }
        stop.store(true, SeqCst);
        port.post_quit(3).unwrap();
        for t in threads {
            t.join().unwrap();
        }
    }

    /// A packet queued while every slot is taken must reach the thread
    /// waiting in the backend as soon as a slot is given back.
    fn a_slot_given_back_lets_the_leader_take_a_queued_packet(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(2));
        let before = port.stats().backend_calls;
        let p = port.clone();
        let leader = thread::spawn(move || p.get(Some(LONG)).map(|c| c.ctx()).map_err(|e| e.to_string()));
        wait_until("T1 leads", || port.stats().backend_calls > before);
        // T2 and T3 wait on the stack, each takes one packet and keeps its
        // slot until told to give it back.
        let (got_tx, got_rx) = mpsc::channel();
        let mut releases = Vec::new();
        let mut holders = Vec::new();
        for _ in 0..2 {
            let waiting = port.stats().waiting;
            let (rel_tx, rel_rx) = mpsc::channel::<()>();
            let (p, got_tx) = (port.clone(), got_tx.clone());
            holders.push(thread::spawn(move || {
                let c = p.get(Some(LONG)).expect("a packet");
                got_tx.send(c.ctx()).unwrap();
                let _ = rel_rx.recv_timeout(LONG);
                p.release_slot();
            }));
            releases.push(rel_tx);
            wait_until("the thread waits", || port.stats().waiting > waiting);
        }
        port.post(Key(1), 0, 1u64).unwrap();
        port.post(Key(1), 0, 2u64).unwrap();
        for _ in 0..2 {
            got_rx.recv_timeout(LONG).expect("a waiter took a packet");
        }
        assert_eq!(port.stats().running, 2);
        port.post(Key(1), 0, 3u64).unwrap();
        assert_eq!(port.stats().queued, 1, "no slot free: the packet waits");
        let start = Instant::now();
        releases[0].send(()).unwrap();
        let r = leader.join().unwrap();
        assert_eq!(r, Ok(3));
        assert!(start.elapsed() < LONG / 2, "the leader got the packet only after {:?}", start.elapsed());
        releases[1].send(()).unwrap();
        for h in holders {
            h.join().unwrap();
        }
    }

    fn release_slot_lets_another_thread_run(backend: Backend) {
        // The manual release alone: with automatic hand-off, this thread
        // blocked in `join` would give its slot away by itself (tests/handoff.rs).
        let port = port_with(backend, |b| b.concurrency(1).handoff(false));
        port.post(Key(1), 0, 1u64).unwrap();
        port.post(Key(1), 0, 2u64).unwrap();
        let first = next(&port);
        assert_eq!(first.ctx(), 1);
        // This thread holds the only slot: another thread cannot run.
        let p = port.clone();
        let blocked = thread::spawn(move || p.get(Some(SHORT)).map(|c| c.ctx()));
        assert!(matches!(blocked.join().unwrap(), Err(GetError::Timeout)));
        assert_eq!(port.stats().queued, 1);

        // Give the slot back while still "working" (no new `get` here).
        port.release_slot();
        let p = port.clone();
        let other = thread::spawn(move || {
            let c = p.get(Some(LONG)).expect("released slot lets this thread run");
            let running = p.stats().running;
            p.release_slot();
            (c.ctx(), running)
        });
        assert_eq!(other.join().unwrap(), (2, 1));
        let stats = port.stats();
        assert_eq!((stats.running, stats.max_running), (0, 1));
        // Releasing twice is harmless.
        port.release_slot();
        assert_eq!(port.stats().running, 0);
    }

    fn a_thread_with_packets_ready_takes_one_without_waiting(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1));
        for ctx in 0..100u64 {
            port.post(Key(1), 0, ctx).unwrap();
        }
        let calls = port.stats().backend_calls;
        for ctx in 0..100u64 {
            assert_eq!(next(&port).ctx(), ctx);
        }
        assert_eq!(port.stats().backend_calls, calls, "ready packets need no trip to the kernel");
    }

    fn an_operation_outlives_the_thread_that_issued_it(backend: Backend) {
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        let p = port.clone();
        thread::spawn(move || {
            p.recv(&h, Vec::with_capacity(16), 1u64).unwrap();
        })
        .join()
        .unwrap();
        // The issuing thread is gone; the receive must still be pending.
        peer.write_all(b"cross").unwrap();
        let c = next_of(&port, OpKind::Recv, 1);
        assert_eq!(c.bytes(), 5, "{:?}", c.result());
    }

    fn a_post_wakes_the_thread_waiting_in_the_backend(backend: Backend) {
        let port = port(backend);
        let before = port.stats().backend_calls;
        let p = port.clone();
        let waiter = thread::spawn(move || {
            let start = Instant::now();
            let r = p.get(Some(LONG)).map(|c| c.ctx());
            (r, start.elapsed())
        });
        wait_until("the thread waits in the backend", || port.stats().backend_calls > before);
        port.post(Key(1), 0, 7u64).unwrap();
        let (r, waited) = waiter.join().unwrap();
        assert_eq!(r.ok(), Some(7), "the post reached the waiting thread");
        assert!(waited < LONG / 2, "the post was delivered only after {waited:?}");
    }
}
