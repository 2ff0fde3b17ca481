//! Flow control and timing through real sockets, on both backends: output
//! produced in answer to a session's own input pauses its receiving instead
//! of cutting it off, so a client that reads gets every byte back however
//! much it sends at once; a session that does not read what others send it
//! is still cut at the cap after the deadline, whole messages only; and
//! timeouts never fire early.

mod util;

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use cport_server::{Backend, ReasonKind};
use util::*;

backend_tests! {
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
