//! Graceful shutdown: under load it neither hangs nor leaks an fd and keeps
//! its deadline; data already queued is delivered; a peer that never reads
//! is cut at the deadline. These tests count this process's open fds, so
//! they run one at a time.

use cport_testutil::server as util;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cport_server::{DisconnectReason, Handler, Message, ReasonKind, Session};
use parking_lot::Mutex;
use util::*;

/// Fd counts are per process: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Sends `bytes` to each client on connect, then nothing.
#[derive(Clone, Default)]
struct Push {
    bytes: usize,
    gone: Disconnects,
}

impl Handler for Push {
    type State = ();
    fn on_connect(&self, s: &Session) {
        let chunk = vec![7u8; 64 * 1024];
        let mut left = self.bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            if s.send(chunk[..n].to_vec()).is_err() {
                return; // the shutdown began while we were queueing
            }
            left -= n;
        }
    }
    fn on_message(&self, _: &Session, _: &mut (), _: Message) {}
    fn on_disconnect(&self, s: &Session, _: (), reason: &DisconnectReason) {
        self.gone.lock().push((s.id(), reason.kind()));
    }
}

backend_tests! {
    fn shutdown_under_load_keeps_its_deadline_and_leaks_no_fd(backend: Backend) {
        let _serial = SERIAL.lock();
        let before = fd_count();
        let echo = Echo::default();
        let server = builder(backend).start(echo.clone()).unwrap();
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let echoed = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..64)
            .map(|i| {
                let (stop, echoed) = (stop.clone(), echoed.clone());
                thread::spawn(move || {
                    let mut s = connect(addr);
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let msg = vec![i as u8; 1 + (i * 97) % 3000];
                    let mut back = vec![0u8; msg.len()];
                    while !stop.load(Ordering::Relaxed) {
                        if s.write_all(&msg).is_err() || s.read_exact(&mut back).is_err() {
                            return; // the server went away: expected
                        }
                        assert_eq!(back, msg);
                        echoed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        assert!(eventually(LONG, || echoed.load(Ordering::Relaxed) > 2000), "load is running");
        let deadline = Duration::from_secs(1);
        let t0 = Instant::now();
        let report = server.shutdown(deadline);
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert!(took < deadline + Duration::from_secs(3), "shutdown took {took:?}");
        assert_eq!(report.sessions, 64, "{report:?}");
        for c in clients {
            c.join().unwrap();
        }
        let gone = echo.gone.lock();
        assert_eq!(gone.len(), 64, "every session got on_disconnect once");
        assert!(gone.iter().all(|(_, k)| *k == ReasonKind::Shutdown || *k == ReasonKind::PeerClosed));
        drop(gone);
        drop(echo);
        assert!(eventually(LONG, || fd_count() == before), "fds leaked: {} before, {} after", before, fd_count());
    }

    fn shutdown_delivers_what_was_already_queued(backend: Backend) {
        let _serial = SERIAL.lock();
        let before = fd_count();
        let push = Push { bytes: 8 << 20, ..Default::default() };
        let server = builder(backend).max_queued_bytes(16 << 20).start(push.clone()).unwrap();
        let mut c = connect(server.local_addr());
        assert!(eventually(LONG, || server.stats().messages_out == 128), "on_connect queued everything");
        // Shut down while megabytes are still queued; a reader drains them.
        let reader = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            let (got, res) = read_to_end_or_reset(&mut c);
            (got.len(), res.is_ok())
        });
        let report = server.shutdown(Duration::from_secs(10));
        assert_eq!(report.aborted, 0, "{report:?}");
        let (n, clean) = reader.join().unwrap();
        assert_eq!(n, 8 << 20, "every queued byte arrived");
        assert!(clean, "the stream ended with a FIN, not a reset");
        assert_eq!(push.gone.lock().as_slice()[0].1, ReasonKind::Shutdown);
        assert!(eventually(LONG, || fd_count() == before), "fds leaked");
    }

    fn a_peer_that_never_reads_is_cut_at_the_deadline(backend: Backend) {
        let _serial = SERIAL.lock();
        let before = fd_count();
        let push = Push { bytes: 12 << 20, ..Default::default() };
        let server = builder(backend).max_queued_bytes(16 << 20).start(push.clone()).unwrap();
        let c = connect(server.local_addr());
        let mut idle = connect(server.local_addr());
        // Both on_connects queued everything (12 MiB in 64 KiB messages each):
        // a shutdown that began before would leave one with little to flush.
        assert!(eventually(LONG, || server.stats().messages_out == 2 * 192 && server.stats().sessions == 2));
        let t0 = Instant::now();
        let report = server.shutdown(Duration::from_millis(500));
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "took {took:?}");
        assert_eq!(report.aborted, 2, "neither reads: both are cut, {report:?}");
        let mut buf = [0u8; 16];
        let _ = idle.read(&mut buf);
        drop((c, idle));
        assert!(eventually(LONG, || fd_count() == before), "fds leaked");
    }

    fn dropping_a_server_shuts_it_down(backend: Backend) {
        let _serial = SERIAL.lock();
        let before = fd_count();
        let echo = Echo::default();
        let server = builder(backend).shutdown_deadline(Duration::from_millis(200)).start(echo.clone()).unwrap();
        let mut c = connect(server.local_addr());
        assert_eq!(round_trip(&mut c, b"hi", 2), b"hi");
        drop(server);
        let (_, _) = read_to_end_or_reset(&mut c);
        assert_eq!(echo.gone.lock().len(), 1);
        drop(c);
        assert!(eventually(LONG, || fd_count() == before), "fds leaked");
    }
}
