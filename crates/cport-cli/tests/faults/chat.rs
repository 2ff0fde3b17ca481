//! A chat slow consumer amid fast talkers: a member that stops reading is
//! cut off (the send-queue cap is for exactly this), while the talkers, who
//! read everything the room says as fast as it comes, lose nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::clients::{closed_within, warm_chat, LineClient};
use crate::server::{Backend, Launch, Tolerance};

/// Talkers, each a writer and a reader of the whole room.
const TALKERS: usize = 4;
/// Lines each talker says.
const LINES: usize = 4_000;
/// Lines a talker may have said that it has not yet seen come back.
const WINDOW: usize = 64;

pub fn slow_consumer(b: Backend) {
    let cap = 256 << 10;
    let server = Launch::new(
        &["chat", "--listen", "127.0.0.1:0", "--max-queued", &cap.to_string()],
        &["chat"],
    )
    .spawn(b);
    let addr = server.addr("chat");
    warm_chat(addr);
    // A small receive window, set before connecting so it is advertised.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut slow = LineClient::from_stream(sock.into());
    slow.stream.set_read_timeout(Some(crate::server::LONG)).unwrap();
    slow.send("/nick slow\n/join r\n");
    slow.until_line("* slow joined r");
    let before = server.quiet_usage();

    // 4 x 4,000 lines of 600 bytes: ~10 MB for each member, far past what
    // the cap and the kernel's socket buffers hold for the slow one.
    let body = "x".repeat(600);
    let mut talkers = Vec::new();
    for t in 0..TALKERS {
        let c = LineClient::member(addr, &format!("t{t}"), "r");
        let reader = LineClient::from_stream(c.stream.try_clone().unwrap());
        talkers.push((c, reader, Arc::new(AtomicUsize::new(0))));
    }
    // Everyone joined: wait for the last join on each talker's stream.
    let last = format!("* t{} joined r", TALKERS - 1);
    for (c, ..) in talkers.iter_mut().take(TALKERS - 1) {
        c.until_line(&last);
    }
    let t0 = Instant::now();
    let mut threads = Vec::new();
    for (t, (mut c, mut reader, seen_own)) in talkers.into_iter().enumerate() {
        let body = body.clone();
        let seen = seen_own.clone();
        threads.push(thread::spawn(move || {
            for i in 0..LINES {
                while i >= seen.load(Ordering::Acquire) + WINDOW {
                    thread::sleep(Duration::from_micros(200));
                }
                c.send(&format!("{i} {body}\n"));
            }
            c
        }));
        threads.push(thread::spawn(move || {
            // Every talker's lines, once each, in the order each said them.
            let mut next = [0usize; TALKERS];
            let mut slow_left = false;
            while next.iter().sum::<usize>() < TALKERS * LINES || !slow_left {
                let l = reader
                    .try_line()
                    .unwrap_or_else(|e| panic!("talker {t}: {e} with {next:?} lines seen, slow left: {slow_left}"))
                    .unwrap_or_else(|| panic!("talker {t} was cut off"));
                if l == "* slow left r" {
                    slow_left = true;
                    continue;
                }
                let Some((from, rest)) = l.strip_prefix("[r] t").and_then(|r| r.split_once(": ")) else {
                    continue;
                };
                let from: usize = from.parse().unwrap();
                let n: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
                assert_eq!(n, next[from], "talker {t}: t{from}'s lines arrive once, in order");
                next[from] += 1;
                if from == t {
                    seen_own.store(next[from], Ordering::Release);
                }
            }
            reader
        }));
    }
    let done: Vec<_> = threads.into_iter().map(|h| h.join().map(drop)).collect();
    assert!(done.iter().all(|d| d.is_ok()), "{b:?}: a talker failed");
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "{b:?}: the room slowed down: {:?}",
        t0.elapsed()
    );
    // The slow member was cut, not merely delayed: its stream ends.
    assert!(
        closed_within(&mut slow.stream, Duration::from_secs(10)),
        "{b:?}: slow member still open"
    );
    drop(slow);
    // A bulk case by the suite's own rule: about 50 MB went through the
    // server (10 MB to each of five members), so the allocator and the
    // io_uring buffer ring's touched pages may stay resident (14 MiB was
    // seen on a fresh machine); fds and threads must still be exact.
    server.assert_flat(&before, Tolerance::BULK);
    server.assert_no_panic();
}
