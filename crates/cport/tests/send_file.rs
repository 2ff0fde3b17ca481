//! `send_file` to peers that stop reading holds no kernel thread (issue 11):
//! on io_uring a drain that meets a full socket waits with a poll instead
//! of parking an io-wq worker in a blocking splice. The thread count stays
//! flat however many transfers stall, a transfer to a reading peer finishes
//! meanwhile, and every stalled one completes exactly once when cancelled.

use cport_testutil::port as util;

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cport::{Key, OpKind};
use socket2::SockRef;
use util::*;

/// Threads of this process that are io_uring workers (`iou-wrk-*`).
fn io_workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("iou-wrk"))
        .count()
}

/// A connection whose two ends buffer little, so a peer that never reads
/// stalls the sender after about a hundred KiB.
fn small_pair(port: &cport::Port, key: Key) -> (cport::Handle, TcpStream) {
    let (peer, ours) = tcp_pair();
    SockRef::from(&ours).set_send_buffer_size(32 * 1024).unwrap();
    SockRef::from(&peer).set_recv_buffer_size(32 * 1024).unwrap();
    (port.associate(ours, key).unwrap(), peer)
}

backend_tests! {
    fn stalled_downloads_hold_no_kernel_thread(backend: Backend) {
        let stalled = affordable_connections(300);
        const LEN: usize = 4 << 20;
        let data = pattern(LEN, 7);
        let tmp = TempFile::with_contents("stall", &data);
        let file = Arc::new(tmp.open_read());
        let port = port(backend);
        let workers_before = io_workers();

        let mut pairs = Vec::new();
        for i in 0..stalled {
            let (h, peer) = small_pair(&port, Key(i as u64));
            port.send_file(&h, file.clone(), 0, LEN as u64, i as u64).unwrap();
            pairs.push((h, peer));
        }
        // Let every transfer fill its socket and stall, while the port is
        // driven by a thread that dequeues (nothing completes yet).
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            if let Ok(c) = port.get(Some(Duration::from_millis(50))) {
                panic!("a stalled transfer completed: {c:?}");
            }
        }
        let workers_stalled = io_workers();
        assert!(
            workers_stalled <= workers_before + 16,
            "{stalled} stalled transfers hold {workers_stalled} io_uring worker threads (before: {workers_before})"
        );

        // A normal download to a peer that reads finishes promptly meanwhile.
        let (h, mut reader) = small_pair(&port, Key(1_000_000));
        let started = Instant::now();
        port.send_file(&h, file.clone(), 0, LEN as u64, 1_000_000u64).unwrap();
        let reading = thread::spawn(move || {
            let mut got = Vec::with_capacity(LEN);
            reader.set_read_timeout(Some(LONG)).unwrap();
            while got.len() < LEN {
                let mut buf = [0u8; 65536];
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            got
        });
        let c = next(&port);
        assert_eq!((c.kind(), c.ctx(), c.bytes()), (OpKind::SendFile, 1_000_000, LEN));
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(reading.join().unwrap() == data, "the reading peer got the file");
        port.close(&h).unwrap();
        assert!(io_workers() <= workers_before + 16);

        // Every stalled transfer ends exactly once when its handle closes.
        for (h, _) in &pairs {
            port.close(h).unwrap();
        }
        let mut ended: HashMap<u64, usize> = HashMap::new();
        for _ in 0..stalled {
            let c = next(&port);
            assert_eq!(c.kind(), OpKind::SendFile);
            assert!(c.is_cancelled() || c.result().is_err(), "{c:?}");
            *ended.entry(c.ctx()).or_default() += 1;
        }
        assert_eq!(ended.len(), stalled);
        assert!(ended.values().all(|&n| n == 1));
        assert_nothing_more(&port);
        assert_eq!(port.stats().handles, 0);
        drop(pairs);
    }

    fn a_socket_keeps_waiting_for_data_after_a_send_file(backend: Backend) {
        // send_file makes the socket non-blocking on io_uring: later
        // receives and sends on it must still wait for the peer, never come
        // back with EAGAIN (a keep-alive HTTP connection after a download).
        let data = pattern(256 * 1024, 3);
        let tmp = TempFile::with_contents("keepalive", &data);
        let port = port(backend);
        let (h, mut peer) = associated_pair(&port, Key(1));
        port.send_file(&h, Arc::new(tmp.open_read()), 0, data.len() as u64, 1u64).unwrap();
        let len = data.len();
        let reader = thread::spawn(move || {
            let mut got = vec![0u8; len];
            peer.read_exact(&mut got).map(|_| (got, peer))
        });
        assert_eq!(next_of(&port, OpKind::SendFile, 1).bytes(), data.len());
        let (got, mut peer) = reader.join().unwrap().unwrap();
        assert!(got == data);
        // Nothing to read yet: the receives wait (single and multishot).
        port.recv(&h, Vec::with_capacity(16), 2u64).unwrap();
        let pool = port.buf_pool(4, 64).unwrap();
        assert_nothing_more(&port);
        std::io::Write::write_all(&mut peer, b"next").unwrap();
        let mut c = next_of(&port, OpKind::Recv, 2);
        assert_eq!(vec_of(&mut c), b"next");
        port.recv_pooled_multi(&h, &pool, 3u64).unwrap();
        assert_nothing_more(&port);
        std::io::Write::write_all(&mut peer, b"more").unwrap();
        let c = next_of(&port, OpKind::RecvPooled, 3);
        assert!(c.more() && c.bytes() == 4, "{c:?}");
        port.send(&h, &b"reply"[..], 4u64).unwrap();
        assert_eq!(next_of(&port, OpKind::Send, 4).bytes(), 5);
        let mut r = [0u8; 5];
        peer.read_exact(&mut r).unwrap();
        assert_eq!(&r, b"reply");
        port.close(&h).unwrap();
        let c = next_of(&port, OpKind::RecvPooled, 3);
        assert!(!c.more() && c.is_cancelled(), "{c:?}");
        assert_nothing_more(&port);
    }
}
