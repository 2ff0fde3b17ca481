//! `Port::snapshot` against known operations, and the stuck-op report: a
//! send behind a peer that never reads is reported, an idle receive is not.

use cport_testutil::port as util;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use cport::{GetError, Key, OpKind, WorkerState};
use util::*;

/// Receives on idle connections.
const IDLE: usize = 8;

backend_tests! {
    fn idle_receives_show_in_flight_with_growing_ages(backend: Backend) {
        let port = port(backend);
        let mut peers = Vec::new();
        let mut handles = Vec::new();
        for i in 0..IDLE {
            let (h, peer) = associated_pair(&port, Key(100 + i as u64));
            port.recv(&h, Vec::with_capacity(16), i as u64).unwrap();
            handles.push(h);
            peers.push(peer);
        }
        let first = port.snapshot();
        assert!(first.enabled);
        assert_eq!(first.in_flight_of(OpKind::Recv), IDLE, "{first:?}");
        assert_eq!(first.in_flight_total(), IDLE, "nothing else is in flight: {first:?}");
        thread::sleep(Duration::from_millis(30));
        let second = port.snapshot();
        assert_eq!(second.in_flight_of(OpKind::Recv), IDLE);
        let (a, b) = (first.oldest_of(OpKind::Recv).unwrap(), second.oldest_of(OpKind::Recv).unwrap());
        assert!(b >= a + Duration::from_millis(30), "ages grow: {a:?} then {b:?}");

        // The oldest first, each on its own handle.
        let ops = port.in_flight_ops(3);
        assert_eq!(ops.len(), 3);
        assert!(ops.iter().all(|o| o.kind == OpKind::Recv && !o.multishot));
        assert!(ops.windows(2).all(|w| w[0].age >= w[1].age), "{ops:?}");
        assert_eq!(ops[0].key, Key(100), "the first issued is the oldest");
        let on = port.in_flight_on(&handles[3]);
        assert_eq!(on.len(), 1);
        assert_eq!((on[0].key, on[0].handle), (Key(103), Some(handles[3])));

        // Complete them: nothing in flight, and one latency figure each.
        for p in &mut peers {
            p.write_all(b"x").unwrap();
        }
        for _ in 0..IDLE {
            let c = next(&port);
            assert_eq!((c.kind(), c.bytes()), (OpKind::Recv, 1));
        }
        let done = port.snapshot();
        assert_eq!(done.in_flight_of(OpKind::Recv), 0, "{done:?}");
        assert_eq!(done.in_flight_total(), 0);
        let lat = done.latency.iter().find(|l| l.kind == OpKind::Recv).expect("receive latency");
        assert_eq!(lat.count, IDLE as u64);
        assert!(lat.p50 <= lat.p99 && lat.p99 <= lat.max, "{lat:?}");
        assert!(lat.max >= Duration::from_millis(30), "they waited at least the sleep: {lat:?}");
        assert_eq!(done.completed, IDLE as u64);
    }

    fn introspection_off_keeps_counts_without_ages(backend: Backend) {
        let port = port_with(backend, |b| b.introspect(false));
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.recv(&h, Vec::with_capacity(16), 0u64).unwrap();
        let s = port.snapshot();
        assert!(!s.enabled);
        assert_eq!((s.in_flight_of(OpKind::Recv), s.oldest_of(OpKind::Recv)), (1, None));
        peer.write_all(b"x").unwrap();
        next(&port);
        assert!(port.snapshot().latency.is_empty(), "no stamps, no latency");
    }

    fn workers_show_running_and_waiting(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(2).handoff(false));
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
        let runner = {
            let port = port.clone();
            thread::Builder::new().name("runner".into()).spawn(move || {
                let c = port.get(Some(LONG)).unwrap();
                assert_eq!(c.ctx(), 1);
                go_rx.recv().unwrap(); // "in the handler" until told
            }).unwrap()
        };
        port.post(Key(1), 0, 1u64).unwrap();
        let state_of = |name: &str| {
            port.snapshot().workers.iter().find(|w| w.name.as_deref() == Some(name)).map(|w| w.state)
        };
        wait_until("the runner runs its handler", || state_of("runner") == Some(WorkerState::Running));
        // Only now: a second waiter would take the first packet (LIFO).
        let waiter = {
            let port = port.clone();
            thread::Builder::new().name("waiter".into()).spawn(move || {
                assert!(matches!(port.get(Some(LONG)), Ok(c) if c.ctx() == 2));
            }).unwrap()
        };
        wait_until("the waiter waits", || state_of("waiter") == Some(WorkerState::Waiting));
        let s = port.snapshot();
        assert_eq!((s.running, s.concurrency), (1, 2), "{s:?}");
        port.post(Key(1), 0, 2u64).unwrap();
        waiter.join().unwrap();
        go_tx.send(()).unwrap();
        runner.join().unwrap();
    }

    fn a_send_behind_a_peer_that_never_reads_is_reported_stuck_an_idle_receive_is_not(backend: Backend) {
        let port = port_with(backend, |b| b.stuck_after(Duration::from_millis(300)));
        // An idle connection with a receive pending: waiting, not stuck.
        let (idle, _idle_peer) = associated_pair(&port, Key(1));
        port.recv(&idle, Vec::with_capacity(16), 1u64).unwrap();
        // A peer that never reads: send until one send stays pending.
        let (h, _deaf) = associated_pair(&port, Key(2));
        let chunk = vec![7u8; 1 << 20];
        let deadline = Instant::now() + LONG * 4;
        loop {
            port.send(&h, chunk.clone(), 2u64).unwrap();
            match port.get(Some(Duration::from_millis(500))) {
                Ok(c) => assert_eq!(c.kind(), OpKind::Send, "only sends complete"),
                Err(GetError::Timeout) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < deadline, "the socket never filled");
        }
        wait_until("the stuck send is reported", || port.snapshot().stuck >= 1);
        // Several more looks: still reported once, and the receive never.
        thread::sleep(Duration::from_millis(500));
        assert_eq!(port.report_stuck(), 0, "already reported");
        let s = port.snapshot();
        assert_eq!(s.stuck, 1, "one stuck op, reported once: {s:?}");
        assert_eq!((s.in_flight_of(OpKind::Send), s.in_flight_of(OpKind::Recv)), (1, 1));
        assert!(s.oldest_of(OpKind::Recv).unwrap() >= s.stuck_after, "the receive is old too, yet not stuck");
        port.close(&h).unwrap();
        port.close(&idle).unwrap();
        for _ in 0..2 {
            next(&port);
        }
    }
}
