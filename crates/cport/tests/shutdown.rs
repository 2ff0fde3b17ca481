//! Shutting a port down with thousands of operations in flight: each one
//! completes exactly once, blocked threads are released, and nothing new is
//! accepted. (Dropping a busy port, with fd counting, is in `fd_leaks.rs`.)

use cport_testutil::port as util;

use std::collections::HashMap;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use cport::{Buf, GetError, Key, OpKind, Payload, SubmitErrorKind};
use util::*;

backend_tests! {
    fn shutdown_ends_every_pending_operation_exactly_once(backend: Backend) {
        const RECVS_PER_CONN: usize = 4;
        let conns = affordable_connections(500);
        let port = port(backend);
        let l = listener();
        let mut peers = Vec::new();
        let mut handles = Vec::new();
        let mut expected: HashMap<u64, OpKind> = HashMap::new();
        let mut ctx = 0u64;
        for i in 0..conns {
            let (peer, ours) = tcp_pair_on(&l);
            let h = port.associate(ours, Key(i as u64)).unwrap();
            for _ in 0..RECVS_PER_CONN {
                port.recv(&h, Vec::with_capacity(32), ctx).unwrap();
                expected.insert(ctx, OpKind::Recv);
                ctx += 1;
            }
            peers.push(peer);
            handles.push(h);
        }
        // Multishot operations, a far-off timer, and packets already queued.
        let lh = port.associate(listener(), Key(1_000_000)).unwrap();
        port.accept_multi(&lh, ctx).unwrap();
        expected.insert(ctx, OpKind::Accept);
        ctx += 1;
        let pool = port.buf_pool(16, 512).unwrap();
        port.recv_pooled_multi(&handles[0], &pool, ctx).unwrap();
        expected.insert(ctx, OpKind::RecvPooled);
        ctx += 1;
        port.timeout(Duration::from_secs(3600), ctx).unwrap();
        expected.insert(ctx, OpKind::Timeout);
        ctx += 1;
        for _ in 0..3 {
            port.post(Key(7), 0, ctx).unwrap();
            expected.insert(ctx, OpKind::Post);
            ctx += 1;
        }
        assert!(expected.len() >= 2_000 || conns < 500);
        assert_eq!(port.stats().in_flight, expected.len() - 3);

        port.shutdown();
        assert!(port.is_shut_down());
        port.shutdown(); // twice is harmless

        // Nothing new is accepted, and the buffer comes back.
        let e = port.recv(&handles[1], b"back".to_vec(), 0u64).unwrap_err();
        assert_eq!(e.kind, SubmitErrorKind::ShutDown);
        assert!(matches!(e.payload, Payload::Buf(Buf::Vec(v)) if v == b"back"));
        assert_eq!(port.post(Key(1), 0, 0u64).unwrap_err().kind, SubmitErrorKind::ShutDown);
        assert_eq!(port.nop(0u64).unwrap_err().kind, SubmitErrorKind::ShutDown);

        let start = Instant::now();
        let mut seen: HashMap<u64, usize> = HashMap::new();
        drain_until_shut_down(&port, |mut c| {
            *seen.entry(c.ctx()).or_default() += 1;
            let want = expected.get(&c.ctx()).unwrap_or_else(|| panic!("unknown completion {c:?}"));
            assert_eq!(c.kind(), *want, "{c:?}");
            assert!(!c.more(), "a multishot op delivered after shutdown: {c:?}");
            match c.kind() {
                OpKind::Post => assert!(c.result().is_ok(), "queued packets are still delivered"),
                OpKind::Recv => {
                    assert!(c.is_shutdown(), "{c:?}");
                    assert!(matches!(c.take_buf(), Some(Buf::Vec(v)) if v.capacity() == 32));
                }
                _ => assert!(c.is_shutdown(), "{c:?}"),
            }
        });
        let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "delivered twice: {dupes:?}");
        assert_eq!(seen.len(), expected.len(), "every operation completed");
        assert!(start.elapsed() < LONG, "draining took {:?}", start.elapsed());
        assert!(matches!(port.get(Some(LONG)), Err(GetError::ShutDown)));
        assert!(matches!(port.get(None), Err(GetError::ShutDown)));
        let s = port.stats();
        assert_eq!((s.in_flight, s.queued), (0, 0));
        assert_eq!(s.total_completed(), expected.len() as u64);
        drop(peers);
    }

    fn shutdown_releases_every_blocked_getter(backend: Backend) {
        let port = port_with(backend, |b| b.concurrency(4));
        let before = port.stats().backend_calls;
        let getters: Vec<_> = (0..4)
            .map(|_| {
                let p = port.clone();
                thread::spawn(move || p.get(Some(Duration::from_secs(10))).map(|c| c.ctx()))
            })
            .collect();
        wait_until("one leads and three wait", || {
            let s = port.stats();
            s.waiting == 3 && s.backend_calls > before
        });
        let start = Instant::now();
        port.shutdown();
        for g in getters {
            match g.join().unwrap() {
                Err(GetError::ShutDown) => {}
                other => panic!("expected ShutDown, got {other:?}"),
            }
        }
        assert!(start.elapsed() < LONG, "released only after {:?}", start.elapsed());
    }

    fn shutdown_with_a_multishot_accept_and_live_connections_is_clean(backend: Backend) {
        let port = port(backend);
        let l = listener();
        let addr = l.local_addr().unwrap();
        let lh = port.associate(l, Key(1)).unwrap();
        port.accept_multi(&lh, 1u64).unwrap();
        let _clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut accepted = 0;
        while accepted < 3 {
            let mut c = next_of(&port, OpKind::Accept, 1);
            assert!(c.more());
            let s = c.take_accepted().unwrap();
            let h = port.associate(s, Key(10 + accepted)).unwrap();
            port.recv(&h, Vec::with_capacity(8), 100 + accepted).unwrap();
            accepted += 1;
        }
        port.shutdown();
        let mut ends = Vec::new();
        drain_until_shut_down(&port, |c| {
            assert!(c.is_shutdown(), "{c:?}");
            ends.push(c.ctx());
        });
        ends.sort();
        assert_eq!(ends, [1, 100, 101, 102]);
    }
}
