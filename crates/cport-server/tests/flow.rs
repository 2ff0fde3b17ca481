//! Flow control and timing through real sockets, on both backends: output
//! produced in answer to a session's own input pauses its receiving instead
//! of cutting it off, so a client that reads gets every byte back however
//! much it sends at once; a session that does not read what others send it
//! is still cut at the cap after the deadline, whole messages only; and
//! timeouts never fire early.

use cport_testutil::server as util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport_server::{Framing, ReasonKind, RecvMode};
use util::*;

/// Sends `data` in one write, shuts the write side, and reads everything
/// that comes back until the server closes (a reader at full speed).
fn send_all_then_read_to_end(addr: std::net::SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut c = connect(addr);
    let mut r = c.try_clone().unwrap();
    let reader = thread::spawn(move || read_to_end_or_reset(&mut r));
    c.write_all(data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (got, res) = reader.join().unwrap();
    res.expect("the stream ended cleanly");
    got
}

backend_tests! {
    fn ten_megabytes_then_a_half_close_all_come_back(backend: Backend) {
        let echo = Echo::default();
        let server = builder(backend).start(echo.clone()).unwrap();
        let data = Rng(11).bytes(10 << 20);
        let got = send_all_then_read_to_end(server.local_addr(), &data);
        assert_eq!(got.len(), data.len(), "bytes lost");
        assert!(got == data, "bytes differ");
        assert!(eventually(LONG, || echo.gone.lock().len() == 1));
        assert_eq!(echo.gone.lock()[0].1, ReasonKind::PeerClosed);
        assert_eq!(server.stats().disconnects_of(ReasonKind::SlowConsumer), 0);
    }

    fn ten_megabytes_with_two_workers_all_come_back(backend: Backend) {
        // Single-shot receives: a paused session is simply not re-armed.
        let server = builder(backend).threads(2).recv_mode(RecvMode::Single).start(Echo::default()).unwrap();
        let data = Rng(12).bytes(10 << 20);
        let got = send_all_then_read_to_end(server.local_addr(), &data);
        assert!(got == data, "{} of {} bytes came back", got.len(), data.len());
        assert_eq!(server.stats().disconnects_of(ReasonKind::SlowConsumer), 0);
    }

    fn a_hundred_thousand_lines_in_one_write_all_echo(backend: Backend) {
        let echo = Echo::lines();
        let server = builder(backend).framing(Framing::Lines { max_line: 100 }).start(echo.clone()).unwrap();
        let data: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        let got = send_all_then_read_to_end(server.local_addr(), data.as_bytes());
        assert!(got == data.as_bytes(), "{} of {} bytes came back", got.len(), data.len());
        assert!(eventually(LONG, || echo.gone.lock().len() == 1));
        assert_eq!(echo.gone.lock()[0].1, ReasonKind::PeerClosed);
    }

    fn pause_and_resume_rearm_the_receive_exactly_once(backend: Backend) {
        let server = builder(backend).water_marks(64 << 10, 16 << 10).start(Echo::default()).unwrap();
        let mut c = connect(server.local_addr());
        assert_eq!(round_trip(&mut c, b"hi", 2), b"hi");
        thread::sleep(Duration::from_millis(100));
        let idle = server.port().stats().in_flight;
        for round in 0..3u64 {
            // 16 MiB (more than the kernel buffers both ways) written while
            // the reader waits a moment: the echo backs up, receiving pauses,
            // and resumes as the reader drains.
            let data = Rng(round + 1).bytes(16 << 20);
            let got = thread::scope(|scope| {
                let reader = scope.spawn(|| {
                    thread::sleep(Duration::from_millis(300));
                    let mut got = vec![0u8; data.len()];
                    (&c).read_exact(&mut got).map(|_| got)
                });
                (&c).write_all(&data).unwrap();
                reader.join().unwrap().unwrap()
            });
            assert!(got == data, "round {round}");
        }
        assert_eq!(round_trip(&mut c, b"still", 5), b"still");
        let stats = server.stats();
        assert!(stats.receive_pauses > 0, "back-pressure never engaged: {stats:?}");
        assert_eq!(stats.receive_pauses, stats.receive_resumes, "{stats:?}");
        // One receive armed for the session again, as before: not two.
        assert!(
            eventually(LONG, || server.port().stats().in_flight == idle),
            "operations in flight: {} after, {idle} before",
            server.port().stats().in_flight
        );
        assert_eq!(server.stats().disconnects_of(ReasonKind::SlowConsumer), 0);
    }

    fn a_slow_consumer_is_cut_after_the_deadline_with_whole_messages(backend: Backend) {
        let cap = 256 << 10;
        let deadline = Duration::from_millis(600);
        let keep = Keep::default();
        let server = builder(backend)
            .max_queued_bytes(cap)
            .slow_consumer_timeout(deadline)
            .close_linger(Duration::from_secs(20))
            .start(keep.clone())
            .unwrap();
        let addr = server.local_addr();
        let mut slow = connect(addr);
        let mut fast = connect(addr);
        let (slow_s, fast_s) = (session_of(&keep, &slow), session_of(&keep, &fast));
        let line = |i: u64| Bytes::from(format!("{i:08} {}\n", "m".repeat(1000)));
        // The fast client reads everything, counting lines.
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match fast.read(&mut buf) {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        // Fill the slow client's kernel buffers, then its queue past the cap
        // (and staying there: not just one large send in flight).
        let mut i = 0;
        let t0 = Instant::now();
        loop {
            for _ in 0..16 {
                server.broadcast([&slow_s, &fast_s], &line(i));
                i += 1;
            }
            if slow_s.queued_bytes() > cap {
                thread::sleep(Duration::from_millis(50));
                if slow_s.queued_bytes() > cap {
                    break;
                }
            }
            assert!(t0.elapsed() < LONG && slow_s.is_open(), "the queue never stayed past the cap");
        }
        let over = Instant::now();
        // Then a trickle that stays under twice the cap: only the deadline cuts.
        let mut cut = None;
        while cut.is_none() && over.elapsed() < LONG {
            let b = server.broadcast([&slow_s, &fast_s], &line(i));
            i += 1;
            if b.refused > 0 || !slow_s.is_open() {
                cut = Some(over.elapsed());
            }
            thread::sleep(Duration::from_millis(20));
        }
        let cut = cut.expect("the slow consumer was cut");
        assert!(cut >= deadline, "cut {cut:?} after passing the cap: before the {deadline:?} deadline");
        assert!(cut < deadline + Duration::from_secs(2), "cut only {cut:?} after passing the cap");
        assert!(fast_s.is_open(), "the fast client was held up: {:?}", keep.gone.lock());
        // What the slow client gets is whole lines, in order, then the end.
        let (got, _) = read_to_end_or_reset(&mut slow);
        assert!(!got.is_empty());
        assert!(got.ends_with(b"\n"), "the last message was truncated ({} bytes)", got.len());
        for (k, l) in cport_proto::framing::split_newlines(&got).filter(|l| !l.is_empty()).enumerate() {
            assert!([l, b"\n"].concat() == line(k as u64), "line {k} is not whole or out of order");
        }
        assert!(eventually(LONG, || keep.gone.lock().iter().any(|(id, k)| *id == slow_s.id() && *k == ReasonKind::SlowConsumer)));
        fast_s.close();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), i as usize * 1010, "the fast client got every message");
    }

    fn a_64_mib_echo_with_a_full_speed_reader_completes(backend: Backend) {
        let server = builder(backend).start(Echo::default()).unwrap();
        let block = Rng(64).bytes(1 << 20);
        let mut c = connect(server.local_addr());
        let mut r = c.try_clone().unwrap();
        let total = 64usize << 20;
        let check = block.clone();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0usize;
            while got < total {
                let n = r.read(&mut buf).expect("reading the echo");
                assert!(n > 0, "the server closed after {got} bytes");
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, check[(got + i) % check.len()], "byte {} differs", got + i);
                }
                got += n;
            }
            got
        });
        for _ in 0..64 {
            c.write_all(&block).unwrap();
        }
        assert_eq!(reader.join().unwrap(), total);
        assert_eq!(server.stats().disconnects_of(ReasonKind::SlowConsumer), 0);
    }

    fn idle_timeout_never_fires_early(backend: Backend) {
        // A coarse tick, as the old default: the timeout used to fire up to
        // one tick early (0.5 s for a 1 s timeout).
        let tick = Duration::from_millis(500);
        let echo = Echo::default();
        let server = builder(backend)
            .tick(tick)
            .idle_timeout(Some(Duration::from_secs(1)))
            .start(echo.clone())
            .unwrap();
        let addr = server.local_addr();
        // Connections opened at different points between two ticks.
        let clients: Vec<_> = (0..4u64)
            .map(|i| {
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(130 * i));
                    let t0 = Instant::now();
                    let mut c = connect(addr);
                    let mut b = [0u8; 1];
                    let n = c.read(&mut b).unwrap_or(0);
                    (n, t0.elapsed())
                })
            })
            .collect();
        for c in clients {
            let (n, took) = c.join().unwrap();
            assert_eq!(n, 0, "the server sent nothing and closed");
            assert!(took >= Duration::from_secs(1), "closed after {took:?}: before the 1 s idle timeout");
            assert!(took < Duration::from_secs(1) + 4 * tick, "closed only after {took:?}");
        }
        assert!(eventually(LONG, || echo.gone.lock().len() == 4));
        assert!(echo.gone.lock().iter().all(|(_, k)| *k == ReasonKind::IdleTimeout));
    }
}
