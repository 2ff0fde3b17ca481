//! Flow control as a user meets it, through the `cport` binary on both
//! backends: a chat client that pastes 100,000 commands at once gets every
//! reply and stays connected; a chat client that never reads, amid fast
//! talkers, is cut after the slow-consumer deadline and nobody else is held
//! up; `cport echo --idle-timeout 1` closes an idle connection after one
//! second, never before.

use cport_testutil::cli as util;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cport::Backend;
use util::*;

/// `cport chat` on `backend` on a free port, with `extra` flags.
fn chat(backend: Backend, extra: &[&str]) -> Cli {
    let mut args = vec!["chat", "--listen", "127.0.0.1:0", "--backend", backend.name()];
    args.extend_from_slice(extra);
    Cli::spawn(&args, &["chat"])
}

/// A chat client that joins `room` as `nick` and waits until it is in.
fn member(addr: std::net::SocketAddr, nick: &str, room: &str) -> LineClient {
    let mut c = LineClient::connect(addr);
    c.send(&format!("/nick {nick}\n/join {room}\n"));
    let want = format!("* {nick} joined {room}");
    c.until(|l| l == want);
    c
}

cport::backend_tests! {
    fn a_hundred_thousand_joins_in_one_write_all_get_replies(backend: Backend) {
        let cli = chat(backend, &[]);
        let mut c = LineClient::connect(cli.addr("chat"));
        assert!(c.line().unwrap().starts_with("* welcome"));
        let n = 100_000;
        let mut w = c.stream.try_clone().unwrap();
        let writer = thread::spawn(move || {
            use std::io::Write;
            w.write_all("/join lobby\n".repeat(n).as_bytes()).unwrap();
        });
        let first = c.line().expect("the first reply");
        assert!(first.ends_with(" joined lobby"), "{first}");
        for i in 1..n {
            let l = c.line().unwrap_or_else(|| panic!("the server closed after {i} replies"));
            assert!(l.starts_with("! ") && l.contains("lobby"), "reply {i}: {l}");
        }
        writer.join().unwrap();
        c.send("/who\n");
        assert_eq!(c.until(|l| l.starts_with("* in lobby")), "* in lobby: ".to_owned() + &first[2..first.len() - " joined lobby".len()]);
    }

    fn a_slow_consumer_amid_fast_talkers_is_cut_after_the_deadline(backend: Backend) {
        // An 8 MiB cap (16 MiB hard) and talk at about 3 MB/s: the slow
        // client's queue passes the cap, and the 1 s deadline cuts it long
        // before it could reach twice the cap.
        let cli = chat(backend, &["--max-queued", "8388608", "--slow-consumer-timeout", "1"]);
        let addr = cli.addr("chat");
        let mut slow = member(addr, "slow", "flood");
        let cut = Arc::new(AtomicBool::new(false));
        // The slow client reads nothing until it is gone from the room, then
        // what the kernel still holds for it.
        let slow_reader = {
            let cut = cut.clone();
            thread::spawn(move || {
                while !cut.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(5));
                }
                let mut rest = Vec::new();
                let _ = slow.stream.read_to_end(&mut rest);
                rest
            })
        };
        let talkers = 3;
        let lines = 6000;
        let body = "x".repeat(1000);
        let members: Vec<LineClient> = (0..talkers).map(|t| member(addr, &format!("t{t}"), "flood")).collect();
        let handles: Vec<_> = members
            .into_iter()
            .enumerate()
            .map(|(t, mut c)| {
                let body = body.clone();
                let cut = cut.clone();
                let mut r = LineClient::from_stream(c.stream.try_clone().unwrap());
                // Every line of every talker reaches every talker, in order.
                let reader = thread::spawn(move || {
                    let mut next = vec![0usize; talkers];
                    while next.iter().any(|n| *n < lines) {
                        let l = r.line().expect("a talker was cut off");
                        if l == "* slow left flood" {
                            cut.store(true, Ordering::Release);
                        } else if let Some(rest) = l.strip_prefix("[flood] t") {
                            let (who, rest) = rest.split_once(": ").unwrap();
                            let who: usize = who.parse().unwrap();
                            let seq: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
                            assert_eq!(seq, next[who], "talker {t}: t{who}'s lines out of order");
                            next[who] += 1;
                        }
                    }
                    r
                });
                thread::spawn(move || {
                    for i in 0..lines {
                        c.send(&format!("{i} {body}\n"));
                        if i % 100 == 99 {
                            thread::sleep(Duration::from_millis(100));
                        }
                    }
                    (reader.join().unwrap(), c)
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut keep: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(60), "the room slowed down: {took:?}");
        if !cut.load(Ordering::Acquire) {
            keep[0].0.until(|l| l == "* slow left flood");
            cut.store(true, Ordering::Release);
        }
        // The slow client's stream ends: it was cut, not merely delayed.
        // (Whole messages at the cut are pinned by the server tests, which
        // see the cut at once; a chat client learns of it only when the
        // session is gone, after the close linger.)
        let rest = slow_reader.join().unwrap();
        assert!(rest.len() > 1 << 20, "the slow client's kernel buffers held only {} bytes", rest.len());
        assert!(rest.len() < 8 << 20, "the slow client got {} bytes: more than it was allowed to queue", rest.len());
    }

    fn idle_timeout_of_one_second_is_never_early(backend: Backend) {
        let cli = Cli::spawn(
            &["echo", "--listen", "127.0.0.1:0", "--backend", backend.name(), "--idle-timeout", "1"],
            &["echo"],
        );
        let addr = cli.addr("echo");
        let clients: Vec<_> = (0..3u64)
            .map(|i| {
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(70 * i));
                    let t0 = Instant::now();
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(LONG)).unwrap();
                    let mut b = [0u8; 1];
                    let n = s.read(&mut b).unwrap_or(0);
                    (n, t0.elapsed())
                })
            })
            .collect();
        for c in clients {
            let (n, took) = c.join().unwrap();
            assert_eq!(n, 0);
            assert!(took >= Duration::from_secs(1), "closed after {took:?}");
            assert!(took < Duration::from_secs(3), "closed only after {took:?}");
        }
    }
}
