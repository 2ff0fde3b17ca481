//! Thousands of busy connections (issue 13): 5,000 sessions on one worker,
//! every byte echoed back in order, on both backends; and the receive pool,
//! started far too small, grows under the burst and shrinks after it.
//!
//! The client is independent of cport: blocking connects, then one epoll
//! loop (rustix) over non-blocking sockets.

use cport_testutil::server as util;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cport_server::{Backend, DisconnectReason, Handler, Message, Session};
use parking_lot::Mutex;
use rustix::event::epoll;
use util::*;

const CONNS: usize = 5000;
const ROUNDS: usize = 3;
/// Whole-test bound: the machine running it may be loaded.
const DEADLINE: Duration = Duration::from_secs(240);
/// The pool's bounds: `MIN` is far below one buffer per session.
const POOL_MIN: u16 = 64;
const POOL_MAX: u16 = 8192;

/// Echo that, while `hold` is set, keeps each received chunk (its pool
/// buffer) instead of answering, so the pool must hold one buffer per session.
#[derive(Clone, Default)]
struct HoldingEcho {
    hold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<(Session, Message)>>>,
    gone: Disconnects,
}

impl Handler for HoldingEcho {
    type State = ();
    fn on_connect(&self, _: &Session) {}
    fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
        if self.hold.load(SeqCst) {
            self.held.lock().push((s.clone(), msg));
        } else {
            let _ = s.send(msg);
        }
    }
    fn on_disconnect(&self, s: &Session, _: (), reason: &DisconnectReason) {
        self.gone.lock().push((s.id(), reason.kind()));
    }
}

/// Connection `i`'s message in round `r`: its length and bytes differ per
/// connection and round, so a byte delivered to the wrong session, twice,
/// or out of order fails the comparison.
fn message(i: usize, r: usize) -> Vec<u8> {
    let len = 1 + (i * 131 + r * 977) % 1500;
    (0..len)
        .map(|k| (i * 7 + r * 13 + k * 31) as u8 ^ (k >> 8) as u8)
        .collect()
}

/// Sends round `r` on every connection, then reads until each has its echo
/// back; returns what each received in the round.
fn round(socks: &mut [TcpStream], ep: &impl AsFd, r: usize, end: Instant, mut between: impl FnMut()) -> Vec<Vec<u8>> {
    let want: Vec<Vec<u8>> = (0..socks.len()).map(|i| message(i, r)).collect();
    for (s, m) in socks.iter_mut().zip(&want) {
        // At most 1,500 bytes into an empty send buffer: never short.
        s.write_all(m).expect("write");
    }
    between();
    let mut got: Vec<Vec<u8>> = want.iter().map(|m| Vec::with_capacity(m.len())).collect();
    let mut done = 0;
    let empty = epoll::Event {
        flags: epoll::EventFlags::empty(),
        data: epoll::EventData::new_u64(0),
    };
    let mut events = vec![empty; 1024];
    let wait = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let mut buf = [0u8; 4096];
    while done < socks.len() {
        assert!(
            Instant::now() < end,
            "round {r}: {done} of {} echoes back before the deadline",
            socks.len()
        );
        let ready = match epoll::wait(ep, &mut events[..], Some(&wait)) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => 0,
            Err(e) => panic!("epoll_wait: {e}"),
        };
        for ev in &events[..ready] {
            let i = ev.data.u64() as usize;
            loop {
                match socks[i].read(&mut buf) {
                    Ok(0) => panic!("connection {i} closed by the server"),
                    Ok(n) => {
                        let before = got[i].len();
                        got[i].extend_from_slice(&buf[..n]);
                        assert!(got[i].len() <= want[i].len(), "connection {i}: more bytes than it sent");
                        if before < want[i].len() && got[i].len() == want[i].len() {
                            done += 1;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("connection {i}: {e}"),
                }
            }
        }
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "connection {i}, round {r}: echoed bytes differ");
    }
    got
}

/// The two backends' tests share this process and its descriptor limit:
/// one at a time (both at once need 20,000 descriptors and hit EMFILE).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn many_connections(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock();
    let limit = cport_testutil::raise_fd_limit();
    // Both ends live in this process: two descriptors per connection.
    let need = 2 * CONNS as u64 + 256;
    if limit < need {
        eprintln!("skipped: RLIMIT_NOFILE is {limit} (the hard limit), {need} needed for {CONNS} connections");
        return;
    }
    let end = Instant::now() + DEADLINE;
    let echo = HoldingEcho::default();
    echo.hold.store(true, SeqCst);
    let server = builder(backend)
        .recv_pool(POOL_MIN, POOL_MAX, 4096)
        .start(echo.clone())
        .unwrap();
    let addr = server.local_addr();
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    let mut socks = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nonblocking(true).unwrap();
        epoll::add(&ep, &s, epoll::EventData::new_u64(i as u64), epoll::EventFlags::IN).unwrap();
        socks.push(s);
    }
    assert!(
        eventually(LONG, || server.stats().sessions == CONNS as u64),
        "all {CONNS} sessions open: {:?}",
        server.stats()
    );
    assert_eq!(server.recv_pool_usage().in_service, POOL_MIN);

    // Round 0: the handler holds every chunk, so the pool must grow to one
    // buffer per session before the burst can be answered.
    let mut peak = 0;
    round(&mut socks, &ep, 0, end, || {
        let arrived = eventually(Duration::from_secs(90), || echo.held.lock().len() == CONNS);
        let usage = server.recv_pool_usage();
        assert!(
            arrived,
            "every chunk arrived while held: {} of {CONNS}, pool {usage:?}",
            echo.held.lock().len()
        );
        assert!(usage.grows >= 1, "{usage:?}");
        assert!(usage.in_service as usize >= CONNS, "{usage:?}");
        assert_eq!(usage.held as usize, CONNS, "{usage:?}");
        peak = usage.in_service;
        echo.hold.store(false, SeqCst);
        for (s, m) in echo.held.lock().drain(..) {
            s.send(m).expect("echo a held chunk");
        }
    });
    // More rounds as a plain echo: every byte back, in order.
    for r in 1..ROUNDS {
        round(&mut socks, &ep, r, end, || {});
    }

    // Idle: the pool gives what it grew back, a period at a time.
    let shrunk = eventually(Duration::from_secs(60), || {
        let u = server.recv_pool_usage();
        u.shrinks >= 1 && u.in_service < peak && u.held == 0
    });
    let usage = server.recv_pool_usage();
    assert!(shrunk, "the pool shrank after the burst (peak {peak}): {usage:?}");
    assert!(usage.in_service >= POOL_MIN, "{usage:?}");

    let stats = server.stats();
    let total: usize = (0..ROUNDS)
        .flat_map(|r| (0..CONNS).map(move |i| message(i, r).len()))
        .sum();
    assert_eq!(stats.bytes_in, total as u64, "{stats:?}");
    assert_eq!(stats.bytes_out, total as u64, "{stats:?}");
    drop(socks);
    assert!(
        eventually(LONG, || echo.gone.lock().len() == CONNS),
        "every session ended"
    );
    let mut kinds = HashMap::new();
    for (_, k) in echo.gone.lock().iter() {
        *kinds.entry(format!("{k:?}")).or_insert(0) += 1;
    }
    assert_eq!(kinds.get("PeerClosed"), Some(&CONNS), "{kinds:?}");
    let report = server.shutdown(LONG);
    assert_eq!(report.sessions, 0);
}

cport::backend_tests! {
    fn five_thousand_busy_connections_echo_in_order_and_the_pool_sizes_itself(backend: Backend) {
        many_connections(backend);
    }
}
