//! Flow control and timing through real sockets, on both backends: output
//! produced in answer to a session's own input pauses its receiving instead
//! of cutting it off, so a client that reads gets every byte back however
//! much it sends at once; a session that does not read what others send it
//! is still cut at the cap after the deadline, whole messages only; and
//! timeouts never fire early.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use cport_server::{Backend, ReasonKind};
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
