//! `cport chat` with real TCP clients: a thousand clients in ten rooms get
//! every message of their room exactly once and in each sender's order; a
//! client that stops reading is cut off while the room keeps receiving;
//! resets, half-closes and oversized lines disturb nobody; the commands
//! work from a plain line client.

use cport_testutil::cli as util;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use util::*;

/// One multiplexed client of the thousand.
struct Peer {
    s: TcpStream,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

/// Moves bytes for every peer (one thread, `poll`), handing each complete
/// line to `on_line`, until `done` holds or `limit` passes.
fn pump<S>(
    peers: &mut [Peer],
    st: &mut S,
    on_line: fn(&mut S, usize, &[u8]),
    done: fn(&S) -> bool,
    limit: Duration,
) -> bool {
    let end = Instant::now() + limit;
    let mut chunk = vec![0u8; 64 * 1024];
    while !done(st) {
        if Instant::now() >= end {
            return false;
        }
        let ready: Vec<(usize, PollFlags)> = {
            let mut fds: Vec<PollFd> = peers
                .iter()
                .map(|p| {
                    let mut ev = PollFlags::IN;
                    if !p.tx.is_empty() {
                        ev |= PollFlags::OUT;
                    }
                    PollFd::from_borrowed_fd(p.s.as_fd(), ev)
                })
                .collect();
            let tick = Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            poll(&mut fds, Some(&tick)).expect("poll");
            fds.iter()
                .enumerate()
                .map(|(i, f)| (i, f.revents()))
                .filter(|(_, r)| !r.is_empty())
                .collect()
        };
        for (i, rev) in ready {
            let p = &mut peers[i];
            if rev.contains(PollFlags::OUT) && !p.tx.is_empty() {
                match p.s.write(&p.tx) {
                    Ok(n) => {
                        p.tx.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("client {i} write: {e}"),
                }
            }
            if rev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                loop {
                    match p.s.read(&mut chunk) {
                        Ok(0) => panic!("client {i}: the server closed the connection"),
                        Ok(n) => p.rx.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("client {i} read: {e}"),
                    }
                }
                let mut start = 0;
                while let Some(nl) = memchr::memchr(b'\n', &p.rx[start..]) {
                    on_line(st, i, &p.rx[start..start + nl]);
                    start += nl + 1;
                }
                p.rx.drain(..start);
            }
        }
    }
    true
}

const CLIENTS: usize = 1000;
const ROOMS: usize = 10;
const MESSAGES: usize = 20;
const MEMBERS: usize = CLIENTS / ROOMS;

struct Joins {
    joined: Vec<bool>,
    left: usize,
}

fn on_join_line(st: &mut Joins, i: usize, line: &[u8]) {
    let line = std::str::from_utf8(line).unwrap();
    // Joins into this client's room (its own among them); nothing else of
    // any room reaches it.
    let room_join = format!(" joined r{}", i % ROOMS);
    if let Some(joiner) = line.strip_prefix("* c").and_then(|r| r.strip_suffix(&room_join)) {
        if joiner == i.to_string() && !st.joined[i] {
            st.joined[i] = true;
            st.left -= 1;
        }
        return;
    }
    assert!(
        line.starts_with("* welcome, you are guest-") || line.ends_with(&format!(" is now known as c{i}")),
        "client {i}: unexpected line {line:?}"
    );
}

struct Deliveries {
    /// For each client: the next sequence number expected from each sender.
    next: Vec<HashMap<usize, usize>>,
    got: Vec<usize>,
    complete: usize,
}

fn on_message_line(st: &mut Deliveries, i: usize, line: &[u8]) {
    let line = std::str::from_utf8(line).unwrap();
    if let Some(notice) = line.strip_prefix("* ") {
        // Only a later member of this client's own room joining: a notice
        // from another room (or any other notice) is a leak.
        let joiner = notice
            .strip_prefix('c')
            .and_then(|r| r.strip_suffix(&format!(" joined r{}", i % ROOMS)))
            .and_then(|n| n.parse::<usize>().ok());
        assert!(
            joiner.is_some_and(|j| j % ROOMS == i % ROOMS),
            "client {i}: unexpected notice {line:?}"
        );
        return;
    }
    // "[r3] c13: m 13 7"
    let (room, rest) = line
        .split_once("] ")
        .unwrap_or_else(|| panic!("client {i}: unexpected line {line:?}"));
    assert_eq!(
        room,
        format!("[r{}", i % ROOMS),
        "client {i} got another room's message: {line}"
    );
    let mut words = rest.split_whitespace();
    let nick = words.next().unwrap().trim_end_matches(':');
    assert_eq!(words.next(), Some("m"), "{line}");
    let sender: usize = words.next().unwrap().parse().unwrap();
    let seq: usize = words.next().unwrap().parse().unwrap();
    assert_eq!(nick, format!("c{sender}"));
    assert_eq!(sender % ROOMS, i % ROOMS, "{line}");
    let next = st.next[i].entry(sender).or_insert(0);
    assert_eq!(
        seq, *next,
        "client {i}: message {seq} from c{sender} out of order or repeated"
    );
    *next += 1;
    st.got[i] += 1;
    if st.got[i] == MEMBERS * MESSAGES {
        st.complete += 1;
    }
    assert!(st.got[i] <= MEMBERS * MESSAGES, "client {i}: a message arrived twice");
}

#[test]
fn a_thousand_clients_in_ten_rooms_get_every_message_once_in_sender_order() {
    let t0 = Instant::now();
    let cli = Cli::spawn(&["chat", "--listen", "127.0.0.1:0"], &["chat"]);
    let addr = cli.addr("chat");
    let mut peers: Vec<Peer> = (0..CLIENTS)
        .map(|k| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nonblocking(true).unwrap();
            let tx = format!("/nick c{k}\n/join r{}\n", k % ROOMS).into_bytes();
            Peer { s, rx: Vec::new(), tx }
        })
        .collect();
    // Everyone is in a room before anyone speaks.
    let mut joins = Joins {
        joined: vec![false; CLIENTS],
        left: CLIENTS,
    };
    assert!(
        pump(&mut peers, &mut joins, on_join_line, |j| j.left == 0, LONG),
        "{} never joined",
        joins.left
    );
    for (k, p) in peers.iter_mut().enumerate() {
        for seq in 0..MESSAGES {
            p.tx.extend_from_slice(format!("m {k} {seq}\n").as_bytes());
        }
    }
    let mut d = Deliveries {
        next: vec![HashMap::new(); CLIENTS],
        got: vec![0; CLIENTS],
        complete: 0,
    };
    let ok = pump(
        &mut peers,
        &mut d,
        on_message_line,
        |d| d.complete == CLIENTS,
        Duration::from_secs(120),
    );
    let short = d.got.iter().filter(|g| **g < MEMBERS * MESSAGES).count();
    assert!(ok, "{short} clients did not get every message of their room");
    for (i, next) in d.next.iter().enumerate() {
        assert_eq!(next.len(), MEMBERS, "client {i} heard from every member");
        assert!(next.values().all(|n| *n == MESSAGES), "client {i} missed messages");
    }
    eprintln!("1000 clients, 2,000,000 deliveries in {:?}", t0.elapsed());
}

/// A chat client that joins `room` as `nick` and waits until it is in.
fn member(addr: std::net::SocketAddr, nick: &str, room: &str) -> LineClient {
    let mut c = LineClient::connect(addr);
    c.send(&format!("/nick {nick}\n/join {room}\n"));
    let want = format!("* {nick} joined {room}");
    c.until(|l| l == want);
    c
}

#[test]
fn a_client_that_stops_reading_is_cut_off_while_the_room_keeps_receiving() {
    let cap = 1 << 20;
    let cli = Cli::spawn(
        &["chat", "--listen", "127.0.0.1:0", "--max-queued", &cap.to_string()],
        &["chat"],
    );
    let addr = cli.addr("chat");
    let slow = LineClient::connect(addr);
    cport_testutil::set_rcvbuf(&slow.stream, 4096);
    let mut slow = slow;
    slow.send("/nick slow\n/join flood\n");
    slow.until(|l| l == "* slow joined flood");
    let mut fast = member(addr, "fast", "flood");
    let mut sender = member(addr, "sender", "flood");
    // The sender reads its own copies in a thread and keeps at most a
    // window of lines unconfirmed: full speed, as a client with flow control
    // sends. Whatever the slow member does must not slow the others down.
    let mut echo = LineClient::from_stream(sender.stream.try_clone().unwrap());
    let lines = 20_000;
    let window = 256;
    let body = "x".repeat(1000);
    let confirmed = Arc::new(AtomicUsize::new(0));
    let c2 = confirmed.clone();
    let reader = thread::spawn(move || {
        while c2.load(Ordering::Acquire) < lines {
            let l = echo.line().expect("sender cut off");
            if l.starts_with("[flood] sender: ") {
                c2.fetch_add(1, Ordering::Release);
            }
        }
    });
    let t0 = Instant::now();
    let writer = thread::spawn(move || {
        for i in 0..lines {
            while i >= confirmed.load(Ordering::Acquire) + window {
                thread::sleep(Duration::from_micros(100));
            }
            sender.send(&format!("{i} {body}\n"));
        }
        sender
    });
    let mut seen = 0;
    let mut slow_left = false;
    while seen < lines {
        let l = fast.line().expect("the fast reader was cut off");
        if let Some(rest) = l.strip_prefix("[flood] sender: ") {
            let n: usize = rest.split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(n, seen, "messages arrive once, in order");
            seen += 1;
        } else if l == "* slow left flood" {
            slow_left = true;
        }
    }
    let took = t0.elapsed();
    let _sender = writer.join().unwrap();
    reader.join().unwrap();
    if !slow_left {
        fast.until(|l| l == "* slow left flood");
    }
    assert!(took < Duration::from_secs(60), "the room slowed down: {took:?}");
    // The slow client's stream ends (it was cut, not merely delayed).
    slow.stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    drop(slow);
}

#[test]
fn resets_half_closes_and_oversized_lines_disturb_nobody() {
    let cli = Cli::spawn(&["chat", "--listen", "127.0.0.1:0"], &["chat"]);
    let addr = cli.addr("chat");
    let mut a = member(addr, "alice", "calm");
    let mut b = member(addr, "bob", "calm");
    let talk = thread::spawn(move || {
        for i in 0..200 {
            a.send(&format!("steady {i}\n"));
            thread::sleep(Duration::from_millis(2));
        }
        a
    });
    for round in 0..3 {
        // Reset in the middle of sending: half a line and a burst, then RST.
        let mut r = member(addr, &format!("resetter{round}"), "calm");
        r.send(&"noise\n".repeat(500));
        r.send("half a li");
        cport_testutil::reset_on_close(&r.stream);
        drop(r);
        // Half-close: its last words still reach the room (and itself), then it is gone.
        let mut h = member(addr, &format!("closer{round}"), "calm");
        h.send("last words\n");
        h.stream.shutdown(Shutdown::Write).unwrap();
        h.until(|l| l.ends_with(": last words"));
        while h.line().is_some() {}
        // An over-long line gets an error line; the session goes on.
        let mut o = member(addr, &format!("long{round}"), "calm");
        o.send(&format!("{}\nafter the long one\n", "y".repeat(5000)));
        o.until(|l| l.starts_with("! line too long"));
        o.until(|l| l.ends_with(": after the long one"));
        o.send("/quit\n");
        o.until(|l| l == "* bye");
        assert!(o.line().is_none(), "/quit ends the stream");
    }
    let mut a = talk.join().unwrap();
    let mut next = 0;
    while next < 200 {
        let l = b.line().expect("bob was disturbed");
        if let Some(rest) = l.strip_prefix("[calm] alice: steady ") {
            assert_eq!(rest.parse::<usize>().unwrap(), next);
            next += 1;
        }
    }
    a.send("/who\n");
    let who = a.until(|l| l.starts_with("* in calm: "));
    assert_eq!(who, "* in calm: alice, bob", "everyone else has left");
}

#[test]
fn commands_work_from_a_plain_line_client() {
    let cli = Cli::spawn(&["chat", "--listen", "127.0.0.1:0"], &["chat"]);
    let addr = cli.addr("chat");
    let mut a = LineClient::connect(addr);
    assert!(a.line().unwrap().starts_with("* welcome, you are guest-"));
    a.send("/nick ann\n");
    assert!(a.line().unwrap().ends_with("is now known as ann"));
    let mut b = LineClient::connect(addr);
    b.line();
    b.send("/nick ann\n");
    assert_eq!(b.line().unwrap(), "! nickname ann is taken");
    b.send("/dance\n");
    assert_eq!(b.line().unwrap(), "! unknown command /dance (try /help)");
    b.send("hello?\n");
    assert!(b.line().unwrap().starts_with("! you are not in a room"));
    b.send("/nick ben\n/msg ann psst\n");
    b.until(|l| l == "[pm to ann] psst");
    assert_eq!(a.until(|l| l.starts_with("[pm")), "[pm from ben] psst");
    a.send("/join lobby\n");
    a.until(|l| l == "* ann joined lobby");
    b.send("/rooms\n");
    assert_eq!(b.until(|l| l.starts_with("* rooms")), "* rooms: lobby (1)");
    b.send("/quit\n");
    b.until(|l| l == "* bye");
    assert!(b.line().is_none());
}
