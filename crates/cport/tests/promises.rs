//! The port's own promises (issue 10): posted packets never starve I/O,
//! `flush` submits whoever calls it, a thread that never dequeues never
//! enters the ring, a handle or op id belongs to one port, shutdown ends
//! operations with a non-retryable error, and the queue limit holds for
//! multishot operations. Each hang case is bounded inside the test.

use cport_testutil::port as util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use cport::{Key, OpKind, Port, SubmitErrorKind};
use rustix::io::Errno;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
use util::*;

/// Makes `io_uring_enter` fail with `EPERM` for the calling thread only.
fn block_io_uring_enter() {
    let rules = std::collections::BTreeMap::from([(libc::SYS_io_uring_enter, vec![])]);
    let arch = std::env::consts::ARCH
        .try_into()
        .expect("a seccomp-supported architecture");
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(Errno::PERM.raw_os_error() as u32),
        arch,
    )
    .expect("valid seccomp filter");
    let program: BpfProgram = filter.try_into().expect("filter compiles to BPF");
    seccompiler::apply_filter(&program).expect("seccomp filter installed");
}

/// Runs a job that re-posts itself on `port` (concurrency 1) until `done`
/// returns true for a completion that is not the job, or `limit` passes.
/// Returns when the first such completion arrived, measured from `start`,
/// and how many jobs ran before it.
fn run_reposting_job(
    port: &Port,
    batched: bool,
    start: Instant,
    limit: Duration,
    mut done: impl FnMut(&cport::Completion) -> bool,
) -> Option<(Duration, u64)> {
    const JOB: u64 = u64::MAX;
    port.post(Key(0), 0, JOB).unwrap();
    let mut jobs = 0u64;
    let mut batch = Vec::new();
    while start.elapsed() < limit {
        batch.clear();
        if batched {
            port.get_many(&mut batch, 64, Some(LONG)).unwrap();
        } else {
            batch.push(port.get(Some(LONG)).unwrap());
        }
        for c in batch.drain(..) {
            if c.ctx() == JOB {
                jobs += 1;
                port.post(Key(0), 0, JOB).unwrap(); // IOCP's continuation idiom
            } else if done(&c) {
                return Some((start.elapsed(), jobs));
            }
        }
    }
    None
}

backend_tests! {
    fn a_self_reposting_job_does_not_delay_a_timeout(backend: Backend) {
        for batched in [false, true] {
            let port = port_with(backend, |b| b.concurrency(1));
            let start = Instant::now();
            port.timeout(Duration::from_millis(10), 7u64).unwrap();
            let got = run_reposting_job(&port, batched, start, Duration::from_secs(3), |c| {
                c.kind() == OpKind::Timeout && c.ctx() == 7
            });
            let (at, jobs) = got.unwrap_or_else(|| panic!("timeout starved by posted jobs (batched: {batched})"));
            assert!(at < Duration::from_millis(500), "10 ms timeout delivered after {at:?}");
            assert!(at >= Duration::from_millis(10), "fired early: {at:?}");
            assert!(jobs > 0, "the job ran meanwhile");
        }
    }

    fn a_self_reposting_job_does_not_delay_a_receive_with_data_waiting(backend: Backend) {
        for batched in [false, true] {
            let port = port_with(backend, |b| b.concurrency(1));
            let (h, mut peer) = associated_pair(&port, Key(1));
            peer.write_all(b"waiting").unwrap();
            thread::sleep(Duration::from_millis(20)); // the data is there before the receive
            let start = Instant::now();
            port.recv(&h, Vec::with_capacity(64), 9u64).unwrap();
            let mut got = Vec::new();
            let res = run_reposting_job(&port, batched, start, Duration::from_secs(3), |c| {
                if c.ctx() == 9 {
                    got = match c.payload() {
                        cport::Payload::Buf(b) => b.as_slice().to_vec(),
                        _ => Vec::new(),
                    };
                    true
                } else {
                    false
                }
            });
            let (at, _) = res.unwrap_or_else(|| panic!("receive starved by posted jobs (batched: {batched})"));
            assert_eq!(got, b"waiting");
            assert!(at < Duration::from_millis(500), "receive delivered after {at:?}");
        }
    }

    fn a_completion_waits_behind_a_bounded_number_of_posted_packets(backend: Backend) {
        // 300 jobs that re-post themselves keep the queue 300 deep forever.
        // A receive whose data is waiting completes in the kernel at once;
        // the port learns of it within FAIR_RUN (128) dequeues and queues it
        // behind what is queued then: at most 300 + 128 jobs go first.
        const DEPTH: u64 = 300;
        let port = port_with(backend, |b| b.concurrency(1));
        let (h, mut peer) = associated_pair(&port, Key(1));
        peer.write_all(b"x").unwrap();
        thread::sleep(Duration::from_millis(20));
        for i in 0..DEPTH {
            port.post(Key(0), 0, i).unwrap();
        }
        port.recv(&h, Vec::with_capacity(8), 1_000_000u64).unwrap();
        port.flush();
        let mut before = 0u64;
        let mut batch = Vec::new();
        'outer: while before < 100 * DEPTH {
            batch.clear();
            port.get_many(&mut batch, 64, Some(LONG)).unwrap();
            for c in batch.drain(..) {
                if c.kind() == OpKind::Recv {
                    assert_eq!(c.bytes(), 1);
                    break 'outer;
                }
                before += 1;
                port.post(Key(0), 0, c.ctx()).unwrap();
            }
        }
        assert!(before <= DEPTH + 128, "{before} posted packets went ahead of a ready receive");
    }

    fn flush_submits_when_every_slot_is_held_by_a_waiting_handler(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(1));
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.post(Key(0), 0, 1u64).unwrap();
        // The only worker takes the slot and waits for the send below: no
        // thread waits in the kernel for the port.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (held_tx, held_rx) = mpsc::channel::<()>();
        let p = port.clone();
        let worker = thread::spawn(move || {
            let c = p.get(Some(LONG)).unwrap();
            assert_eq!(c.ctx(), 1);
            held_tx.send(()).unwrap();
            let _ = go_rx.recv_timeout(LONG);
            // Then the send's completion.
            let c = p.get(Some(LONG)).unwrap();
            (c.kind(), c.result().as_ref().ok().copied())
        });
        held_rx.recv_timeout(LONG).unwrap();
        assert_eq!(port.stats().running, 1);
        // From a thread that never dequeues: send, flush, and the peer must
        // see the bytes while the handler still holds the slot.
        port.send(&h, &b"flushed"[..], 2u64).unwrap();
        port.flush();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 7];
        let read = peer.read_exact(&mut buf);
        go_tx.send(()).unwrap();
        assert!(read.is_ok(), "flushed send never reached the peer: {read:?}");
        assert_eq!(&buf, b"flushed");
        assert_eq!(worker.join().unwrap(), (OpKind::Send, Some(7)));
    }

    fn flush_waits_for_a_leader_in_the_kernel_to_submit(backend: Backend) {
        // A worker waits in the kernel (it leads); another thread issues and
        // flushes: when flush returns the send is in, so the peer gets it
        // without anyone else doing anything.
        let port = port_with(backend, |b| b.concurrency(2));
        let (h, mut peer) = associated_pair(&port, Key(1));
        let p = port.clone();
        let worker = thread::spawn(move || p.get(Some(LONG)).map(|c| c.ctx()));
        wait_until("the worker leads", || port.stats().waiting == 0 && port.stats().threads.len() == 1);
        thread::sleep(Duration::from_millis(20));
        port.send(&h, &b"ok"[..], 3u64).unwrap();
        port.flush();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 2];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ok");
        assert_eq!(worker.join().unwrap().unwrap(), 3);
    }

    fn a_handle_from_another_port_is_refused(backend: Backend) {
        let port_a = port(backend);
        let port_b = port(backend);
        let (ha, mut peer_a) = associated_pair(&port_a, Key(1));
        let (hb, mut peer_b) = associated_pair(&port_b, Key(2));
        // Both tables start at slot 0: the handles differ only by port.
        let e = port_b.send(&ha, &b"wrong"[..], 1u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::ForeignPort);
        assert_eq!(e.to_string(), "handle or operation belongs to another completion port");
        assert!(matches!(e.payload, cport::Payload::Buf(_)), "the buffer comes back");
        assert_eq!(port_b.recv(&ha, Vec::with_capacity(8), 2u64).unwrap_err().kind, SubmitErrorKind::ForeignPort);
        assert_eq!(port_b.cancel(&ha).unwrap_err().kind, SubmitErrorKind::ForeignPort);
        assert_eq!(port_b.close(&ha).unwrap_err().kind, SubmitErrorKind::ForeignPort);
        assert_nothing_more(&port_b);
        // Nothing reached either socket.
        for peer in [&mut peer_a, &mut peer_b] {
            peer.set_nonblocking(true).unwrap();
            let mut b = [0u8; 8];
            assert!(matches!(peer.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
            peer.set_nonblocking(false).unwrap();
        }
        // Each port still serves its own handle, under its own key.
        port_a.send(&ha, &b"a"[..], 3u64).unwrap();
        let c = next_of(&port_a, OpKind::Send, 3);
        assert_eq!((c.key(), c.handle()), (Key(1), Some(ha)));
        port_b.send(&hb, &b"b"[..], 4u64).unwrap();
        assert_eq!(next_of(&port_b, OpKind::Send, 4).key(), Key(2));
    }

    fn an_op_id_from_another_port_is_refused(backend: Backend) {
        let port_a = port(backend);
        let port_b = port(backend);
        let ta = port_a.timeout(Duration::from_secs(3600), 1u64).unwrap();
        let tb = port_b.timeout(Duration::from_secs(3600), 2u64).unwrap();
        // Same slot, same generation in each backend's table.
        let e = port_b.cancel_op(ta).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::ForeignPort);
        assert_nothing_more(&port_b);
        assert_eq!(port_b.stats().in_flight, 1, "port B's own timeout untouched");
        port_b.cancel_op(tb).unwrap();
        assert!(next_of(&port_b, OpKind::Timeout, 2).is_cancelled());
        port_a.cancel_op(ta).unwrap();
        assert!(next_of(&port_a, OpKind::Timeout, 1).is_cancelled());
    }

    fn operations_ended_by_shutdown_are_not_retryable(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        port.recv(&h, Vec::with_capacity(8), 1u64).unwrap();
        port.timeout(Duration::from_secs(3600), 2u64).unwrap();
        port.shutdown();
        let mut n = 0;
        drain_until_shut_down(&port, |c| {
            n += 1;
            assert!(c.is_shutdown(), "{c:?}");
            let e = c.result().as_ref().unwrap_err();
            assert_ne!(e.kind(), std::io::ErrorKind::Interrupted, "retry loops would issue again");
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        });
        assert_eq!(n, 2);
    }

    fn a_thread_that_never_dequeues_never_enters_a_full_ring(backend: Backend) {
        // Two submission slots, eight receives issued by a thread that may
        // not call io_uring_enter at all (seccomp answers EPERM): it must
        // never enter the ring, even with the queue full (io_uring would
        // make it the owner of those requests and interrupt its own blocking
        // calls with EINTR). A worker that dequeues submits them.
        let port = port_with(backend, |b| b.concurrency(1).ring_entries(2));
        let pairs: Vec<_> = (0..8).map(|i| associated_pair(&port, Key(i))).collect();
        let handles: Vec<_> = pairs.iter().map(|(h, _)| *h).collect();
        let p = port.clone();
        let issued = within(LONG, "issuing into a full ring", move || {
            block_io_uring_enter();
            for (i, h) in handles.iter().enumerate() {
                p.recv(h, Vec::with_capacity(16), i as u64).unwrap();
            }
            p.nop(100u64).unwrap();
            p.flush(); // waits for a leader, or submits itself: not this thread
            true
        });
        assert!(issued);
        let mut peers: Vec<TcpStream> = pairs.into_iter().map(|(_, p)| p).collect();
        for p in &mut peers {
            p.write_all(b"data").unwrap();
        }
        let mut got: Vec<(u64, usize)> = (0..9).map(|_| next(&port)).map(|c| (c.ctx(), c.bytes())).collect();
        got.sort();
        let mut want: Vec<(u64, usize)> = (0..8).map(|i| (i, 4)).collect();
        want.push((100, 0));
        assert_eq!(got, want);
        assert_nothing_more(&port);
    }

    fn completions_reaped_before_a_backend_error_are_settled(backend: Backend) {
        // A receive's completion is in the kernel's queue, a cancel waits to
        // be submitted, and the handle is closing. The thread that reaps it
        // cannot submit (seccomp makes io_uring_enter fail): its `get` fails,
        // but the completion is settled all the same (the fd is closed after
        // the handle's last operation) and delivered once.
        let port = port_with(backend, |b| b.concurrency(1).batch_submissions(false));
        let (h, mut peer) = associated_pair(&port, Key(1));
        peer.write_all(b"ready").unwrap();
        thread::sleep(Duration::from_millis(20));
        port.post(Key(0), 0, 0u64).unwrap();
        assert_eq!(next(&port).ctx(), 0); // this thread holds the slot: issuing submits at once
        port.recv(&h, Vec::with_capacity(16), 1u64).unwrap();
        thread::sleep(Duration::from_millis(20));
        port.close(&h).unwrap();
        port.release_slot();
        let p = port.clone();
        let first = within(LONG, "the failing leader returns", move || {
            block_io_uring_enter();
            p.get(Some(Duration::from_secs(1))).map(|c| c.ctx()).map_err(|e| e.to_string())
        });
        let mut delivered = vec![];
        match first {
            Ok(ctx) => delivered.push(ctx),
            Err(e) => assert!(e.contains("waiting for completions failed"), "{e}"),
        }
        while delivered.is_empty() {
            delivered.push(next(&port).ctx());
        }
        assert_eq!(delivered, [1]);
        assert_eq!(port.stats().handles, 0, "the closing handle's fd was closed after its last operation");
        assert_eq!(port.stats().in_flight, 0);
        assert_nothing_more(&port);
    }

    fn a_flood_of_accepts_stays_within_the_queue_limit(backend: Backend) {
        const LIMIT: usize = 16;
        const CLIENTS: usize = 100;
        let port = port_with(backend, |b| b.concurrency(1).queue_limit(LIMIT));
        let l = listener();
        let addr = l.local_addr().unwrap();
        let lh = port.associate(l, Key(1)).unwrap();
        port.accept_multi(&lh, 1u64).unwrap();
        port.flush();
        // Every client connects before anyone dequeues: a flood waiting in
        // the listen backlog.
        let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| TcpStream::connect(addr).unwrap()).collect();
        thread::sleep(Duration::from_millis(50));
        let mut accepted = Vec::new();
        let mut stopped = 0;
        let mut most = 0;
        let deadline = Instant::now() + LONG;
        while accepted.len() < CLIENTS {
            assert!(Instant::now() < deadline, "{} of {CLIENTS} accepted", accepted.len());
            let mut c = next(&port);
            let s = port.stats();
            // What was queued or in flight just before this dequeue.
            most = most.max(s.queued + s.in_flight + 1);
            assert_eq!(c.kind(), OpKind::Accept);
            if let Some(stream) = c.take_accepted() {
                accepted.push(stream);
            }
            if !c.more() {
                // Stopped at the limit, and it says so: re-armed with room.
                assert_eq!(errno(&c), Some(Errno::NOBUFS.raw_os_error()), "{c:?}");
                stopped += 1;
                port.accept_multi(&lh, 2u64).unwrap();
            }
        }
        assert!(most <= LIMIT, "queue reached {most} with a limit of {LIMIT} ({stopped} stops)");
        port.close(&lh).unwrap();
        loop {
            let c = next(&port);
            if !c.more() {
                assert!(c.is_cancelled(), "{c:?}");
                break;
            }
        }
        assert_nothing_more(&port);
        drop(clients);
    }
}

backend_tests! {
    fn many_issuers_flushing_while_workers_lead_and_block(backend: Backend) {
        // Stress for the leader/flush path: threads that never dequeue issue
        // sends and flush, while workers lead, run handlers that sometimes
        // hold their slot for a while, and dequeue. Every send completes
        // once and every byte reaches its peer in order.
        const ISSUERS: usize = 4;
        const CONNS: usize = 2;
        const ROUNDS: usize = 150;
        const MSG: usize = 512;
        let port = port_with(backend, |b| b.concurrency(2));
        let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u64, usize>::new()));
        let s2 = seen.clone();
        let workers = spawn_workers(&port, 3, move |c| {
            assert!(c.result().is_ok(), "{c:?}");
            *s2.lock().unwrap().entry(c.ctx()).or_default() += 1;
            if c.ctx() % 7 == 0 {
                thread::sleep(Duration::from_millis(1)); // holds its slot
            }
        });
        let mut readers = Vec::new();
        let mut issuers = Vec::new();
        for i in 0..ISSUERS {
            let mut hs = Vec::new();
            for j in 0..CONNS {
                let key = (i * CONNS + j) as u64;
                let (h, mut peer) = associated_pair(&port, Key(key));
                hs.push(h);
                readers.push(thread::spawn(move || {
                    let want = pattern(ROUNDS * MSG, key);
                    let mut got = vec![0u8; want.len()];
                    peer.read_exact(&mut got).map(|_| got == want)
                }));
            }
            let p = port.clone();
            issuers.push(thread::spawn(move || {
                for r in 0..ROUNDS {
                    for (j, h) in hs.iter().enumerate() {
                        let key = (i * CONNS + j) as u64;
                        let data = pattern(ROUNDS * MSG, key)[r * MSG..(r + 1) * MSG].to_vec();
                        let ctx = key * 1_000_000 + r as u64;
                        // One send in flight per connection keeps the bytes in order.
                        p.send(h, data, ctx).unwrap();
                        p.flush();
                    }
                    // The next round only after this one is out: wait for its completions.
                    let until = Instant::now() + LONG;
                    while p.stats().in_flight > 0 && Instant::now() < until {
                        thread::yield_now();
                    }
                }
            }));
        }
        for t in issuers {
            t.join().expect("issuer");
        }
        for r in readers {
            assert!(r.join().unwrap().expect("peer reads everything"), "bytes arrived out of order or wrong");
        }
        wait_until("every send completion is handled", || seen.lock().unwrap().len() == ISSUERS * CONNS * ROUNDS);
        assert!(seen.lock().unwrap().values().all(|&n| n == 1), "a completion was delivered twice");
        port.post_quit(3).unwrap();
        for w in workers {
            w.join().unwrap();
        }
    }
}
