//! The kernel sends task work (TWA_SIGNAL) to every thread that set up or
//! submitted to an io_uring when the ring closes, and that wakes the thread
//! from what it blocks in: a socket read with a timeout fails with EINTR.
//! A thread that only issues to a port (never dequeues from it) must never
//! be one of those, not even the thread that builds the port or drops it.
//! (A thread that dequeues does submit: it may be woken so while it lives.)

use cport_testutil::port as util;

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use cport::Key;
use util::*;

/// Blocking reads with a timeout on this thread, each woken by a peer that
/// writes a moment later: how many failed with EINTR.
fn interrupted_reads(rounds: usize) -> usize {
    let (mut a, mut b) = tcp_pair();
    a.set_read_timeout(Some(LONG)).unwrap();
    let writer = thread::spawn(move || {
        for _ in 0..rounds {
            thread::sleep(Duration::from_millis(3));
            b.write_all(b"x").unwrap();
        }
        b
    });
    let mut eintr = 0;
    let mut got = 0;
    let mut byte = [0u8; 1];
    while got < rounds {
        match a.read(&mut byte) {
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => eintr += 1,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    drop(writer.join().unwrap());
    eintr
}

backend_tests! {
    fn dropping_a_port_leaves_the_dropping_thread_uninterrupted(backend: Backend) {
        // The dropping thread never dequeues: it only pushes operations
        // (which never enters the ring), and the port is dropped with them
        // in flight, so dropping it has work to do.
        let mut eintr = 0;
        for round in 0..30u64 {
            let port = port(backend);
            let (h, mut peer) = associated_pair(&port, Key(1));
            port.recv(&h, Vec::with_capacity(8), round).unwrap();
            port.timeout(Duration::from_secs(3600), 2u64).unwrap();
            port.post(Key(2), 0, 3u64).unwrap();
            drop(port);
            peer.write_all(b"late").unwrap();
            eintr += interrupted_reads(4);
        }
        assert_eq!(eintr, 0, "blocking reads after the port was dropped were interrupted");
    }

    fn a_server_shut_down_by_another_thread_leaves_it_uninterrupted(backend: Backend) {
        // Port-owned threads dequeue; this thread issues, shuts down, drops.
        let mut eintr = 0;
        for round in 0..20u64 {
            let port = port(backend);
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let p = port.clone();
                    thread::spawn(move || drain_until_shut_down(&p, |_| {}))
                })
                .collect();
            let (h, _peer) = associated_pair(&port, Key(1));
            port.recv(&h, Vec::with_capacity(8), round).unwrap();
            port.nop(1u64).unwrap();
            port.shutdown();
            for w in workers {
                w.join().unwrap();
            }
            drop(port);
            eintr += interrupted_reads(4);
        }
        assert_eq!(eintr, 0, "blocking reads after the server shut down were interrupted");
    }
}
