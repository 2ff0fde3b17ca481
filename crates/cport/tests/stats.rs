//! The counters a program reads with `Port::stats`: completions by kind,
//! errors, what is in flight and queued, handles, and per-thread figures.

use cport_testutil::port as util;

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use cport::{Key, OpKind};
use util::*;

backend_tests! {
    fn completed_of_counts_each_kind_and_errors(backend: Backend) {
        let port = port(backend);
        let s = port.stats();
        assert_eq!((s.total_completed(), s.errors, s.in_flight, s.queued, s.handles), (0, 0, 0, 0, 0));
        assert_eq!(s.completed.len(), OpKind::ALL.len(), "every kind has a counter");

        for v in 0..3u64 {
            port.post(Key(1), 0, v).unwrap();
        }
        port.nop(10u64).unwrap();
        port.nop(11u64).unwrap();
        port.timeout(Duration::from_millis(1), 20u64).unwrap();
        let (h, _peer) = associated_pair(&port, Key(2));
        port.send(&h, "abc", 30u64).unwrap();
        let refused = {
            let l = listener();
            l.local_addr().unwrap()
        };
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let ch = port.associate(TcpStream::from(sock), Key(3)).unwrap();
        port.connect(&ch, refused, 40u64).unwrap();
        let s = port.stats();
        assert_eq!(s.queued, 3, "posted packets wait in the queue");
        assert_eq!(s.handles, 2);

        for _ in 0..8 {
            next(&port);
        }
        let s = port.stats();
        assert_eq!(s.completed_of(OpKind::Post), 3);
        assert_eq!(s.completed_of(OpKind::Nop), 2);
        assert_eq!(s.completed_of(OpKind::Timeout), 1);
        assert_eq!(s.completed_of(OpKind::Send), 1);
        assert_eq!(s.completed_of(OpKind::Connect), 1);
        assert_eq!(s.completed_of(OpKind::Recv), 0);
        assert_eq!(s.total_completed(), 8);
        assert_eq!(s.errors, 1, "the refused connect");
        assert_eq!((s.in_flight, s.queued), (0, 0));
        port.close(&ch).unwrap();
        assert_eq!(port.stats().handles, 1);
    }

    fn in_flight_counts_operations_until_they_complete(backend: Backend) {
        let port = port(backend);
        let (h, _peer) = associated_pair(&port, Key(1));
        for v in 0..5u64 {
            port.recv(&h, Vec::with_capacity(8), v).unwrap();
        }
        assert_eq!(port.stats().in_flight, 5);
        port.cancel(&h).unwrap();
        for _ in 0..5 {
            assert!(next(&port).is_cancelled());
        }
        let s = port.stats();
        assert_eq!((s.in_flight, s.queued, s.errors), (0, 0, 5));
        assert_eq!(s.completed_of(OpKind::Recv), 5);
    }

    fn per_thread_busy_time_and_completions_are_reported(backend: Backend) {
        const WORK: Duration = Duration::from_millis(30);
        let port = port(backend);
        for v in 0..3u64 {
            port.post(Key(1), 0, v).unwrap();
        }
        let p = port.clone();
        thread::Builder::new()
            .name("stats-a".into())
            .spawn(move || {
                for _ in 0..2 {
                    next(&p);
                    thread::sleep(WORK); // "handling"
                }
                p.release_slot(); // closes the last busy interval
            })
            .unwrap()
            .join()
            .unwrap();
        let p = port.clone();
        thread::Builder::new()
            .name("stats-b".into())
            .spawn(move || {
                let mut out = Vec::new();
                assert_eq!(p.get_many(&mut out, 4, Some(LONG)).unwrap(), 1);
                p.release_slot();
            })
            .unwrap()
            .join()
            .unwrap();
        let s = port.stats();
        let of = |name: &str| s.threads.iter().find(|t| t.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no stats for {name}: {:?}", s.threads)).clone();
        let a = of("stats-a");
        let b = of("stats-b");
        assert_eq!(a.completions, 2);
        assert!(a.busy >= 2 * WORK, "busy {:?}", a.busy);
        assert_eq!(b.completions, 1);
        assert!(b.busy < WORK, "busy {:?}", b.busy);
        assert_eq!(s.threads.len(), 2, "only threads that called get appear: {:?}", s.threads);
        assert_eq!(s.completed_of(OpKind::Post), 3);
    }
}
