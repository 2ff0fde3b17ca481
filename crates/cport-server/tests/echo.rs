//! Echo through the framework: many connections, random sizes up to 1 MiB,
//! bytes back identical; with one worker (multishot receive) and with two
//! (single-shot receive re-armed in order), on both backends.

use cport_testutil::server as util;

use std::thread;

use cport_server::{Backend, ReasonKind, RecvMode};
use util::*;

/// `conns` clients each send `msgs` messages of random size (up to 1 MiB)
/// while a reader thread checks that the same bytes come back in order.
fn echo_integrity(backend: Backend, threads: usize, mode: RecvMode, conns: usize, msgs: usize) {
    let echo = Echo::default();
    let server = builder(backend)
        .threads(threads)
        .recv_mode(mode)
        .start(echo.clone())
        .unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                let mut data = Vec::new();
                for _ in 0..msgs {
                    let size = match rng.below(4) {
                        0 => 1 + rng.below(64) as usize,
                        1 => 1 + rng.below(8192) as usize,
                        _ => 1 + rng.below(1 << 20) as usize,
                    };
                    data.extend(rng.bytes(size));
                }
                let got = write_and_read_back(&connect(addr), &data).expect("echo came back");
                assert!(got == data, "client {i}: echoed bytes differ");
                data.len()
            })
        })
        .collect();
    let mut total = 0;
    for c in clients {
        total += c.join().unwrap();
    }
    assert!(
        eventually(LONG, || echo.gone.lock().len() == conns),
        "every session ended"
    );
    let stats = server.stats();
    assert_eq!(stats.bytes_in, total as u64);
    assert_eq!(stats.bytes_out, total as u64);
    assert_eq!(stats.disconnects_of(ReasonKind::PeerClosed), conns as u64);
    assert_eq!(stats.sessions, 0);
    let report = server.shutdown(LONG);
    assert_eq!(report.sessions, 0);
}

backend_tests! {
    fn echo_integrity_one_worker_multishot(backend: Backend) {
        echo_integrity(backend, 1, RecvMode::Multishot, 24, 4);
    }

    fn echo_integrity_two_workers_single_shot(backend: Backend) {
        echo_integrity(backend, 2, RecvMode::Single, 24, 4);
    }

    fn echo_integrity_one_worker_single_shot(backend: Backend) {
        echo_integrity(backend, 1, RecvMode::Single, 8, 4);
    }

    /// `Auto` picks multishot for one worker and single-shot for more.
    fn echo_integrity_auto_mode(backend: Backend) {
        echo_integrity(backend, 1, RecvMode::Auto, 8, 2);
        echo_integrity(backend, 2, RecvMode::Auto, 8, 2);
    }

    /// Two workers could run two chunks of one session out of order.
    fn multishot_with_two_workers_is_refused(backend: Backend) {
        let started = builder(backend).threads(2).recv_mode(RecvMode::Multishot).start(Echo::default());
        let Err(err) = started else {
            panic!("multishot with two workers must be refused");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }

    fn many_small_echoes_keep_their_order(backend: Backend) {
        let server = builder(backend).start(Echo::default()).unwrap();
        let addr = server.local_addr();
        let clients: Vec<_> = (0..50)
            .map(|i| {
                thread::spawn(move || {
                    let mut s = connect(addr);
                    for k in 0..200u32 {
                        let msg = format!("{i}:{k};");
                        assert_eq!(round_trip(&mut s, msg.as_bytes(), msg.len()), msg.as_bytes());
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let stats = server.stats();
        assert_eq!(stats.accepted, 50);
        assert!(stats.messages_in >= 50 * 200 / 2, "{stats:?}");
    }

    fn a_tiny_receive_pool_only_slows_sessions_down(backend: Backend) {
        // Eight 4 KiB buffers for sixteen busy sessions: receives run out of
        // buffers (ENOBUFS) and must be re-armed when buffers come back.
        let server = builder(backend).recv_buffers(8, 4096).start(Echo::default()).unwrap();
        let addr = server.local_addr();
        let clients: Vec<_> = (0..16)
            .map(|i| {
                thread::spawn(move || {
                    let data = Rng(i + 7).bytes(256 * 1024);
                    assert!(write_and_read_back(&connect(addr), &data).unwrap() == data);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }
}
