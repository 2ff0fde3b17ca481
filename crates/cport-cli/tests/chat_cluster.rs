//! `cport chat --cluster`: three nodes on one Redis that each test starts
//! on a loopback port of its own (`redis-server` from apt; never a system
//! service). Every message reaches every member of its room on every node
//! exactly once and in each sender's order; `/who`, `/rooms` and `/msg`
//! answer for the whole cluster; a killed node's users leave presence
//! within the expiry while the others lose nothing; a Redis restart is
//! survived without duplicates, local rooms working through the outage; a
//! browser on one node and a TCP client on another share a room.

use cport_testutil::cli as util;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tungstenite::Message;
use util::*;

/// The presence expiry the nodes run with, in seconds.
const TTL: u64 = 3;

/// A `redis-server` of the test's own on a free port of 7600..7650.
struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        for port in 7600..7650 {
            // Taken by another test (or engineer)? Try the next.
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let mut r = Redis { child: None, port };
            if r.spawn() {
                return r;
            }
        }
        panic!("no free port in 7600..7650 for redis-server");
    }

    /// Starts redis-server on `self.port`; whether it answers `PING`.
    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (.ci/run installs it: apt-get install redis-server)");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Some(c) = &mut self.child {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false; // the port was taken meanwhile
                }
            }
            if self.ping() {
                return true;
            }
            if self.answering() {
                // Another test's Redis got the port first.
                self.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// Whether our own redis-server answers (another test's may hold
    /// the port: `INFO server` names the process).
    fn ping(&self) -> bool {
        let Some(child) = &self.child else { return false };
        self.info()
            .is_some_and(|i| i.contains(&format!("process_id:{}\r\n", child.id())))
    }

    /// Whether any Redis answers on the port.
    fn answering(&self) -> bool {
        self.info().is_some()
    }

    fn info(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"INFO server\r\n").ok()?;
        let mut out = Vec::new();
        let mut b = [0u8; 4096];
        // `$LEN\r\n` then the text: read until the process id's line ends.
        while !String::from_utf8_lossy(&out).contains("run_id:") {
            let n = s.read(&mut b).ok()?;
            if n == 0 {
                return None;
            }
            out.extend_from_slice(&b[..n]);
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        assert!(self.spawn(), "redis-server restarted on port {}", self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A chat node (`cport chat --cluster`), TCP only or with `--web`.
fn node(redis: &Redis, id: &str, web: bool) -> Cli {
    node_on(redis, id, web, "auto")
}

/// A chat node on the completion port's `backend` (auto, uring, epoll).
fn node_on(redis: &Redis, id: &str, web: bool, backend: &str) -> Cli {
    let url = redis.url();
    let ttl = TTL.to_string();
    let mut args = vec![
        "chat",
        "--listen",
        "127.0.0.1:0",
        "--cluster",
        &url,
        "--node-id",
        id,
        "--presence-ttl",
        &ttl,
        "--backend",
        backend,
    ];
    if web {
        args.extend(["--web", "127.0.0.1:0"]);
        Cli::spawn(&args, &["chat", "chat-web"])
    } else {
        Cli::spawn(&args, &["chat"])
    }
}

/// A named client: `/nick`, then `/join`, each confirmed.
fn member(addr: SocketAddr, nick: &str, room: &str) -> LineClient {
    let mut c = LineClient::connect(addr);
    c.until(|l| l.starts_with("* welcome"));
    c.send(&format!("/nick {nick}\n"));
    c.until(|l| l.ends_with(&format!("is now known as {nick}")));
    c.send(&format!("/join {room}\n"));
    c.until(|l| l == format!("* {nick} joined {room}"));
    c
}

/// `/who` as the client sees it (the member list, sorted by the server).
fn who(c: &mut LineClient) -> String {
    c.send("/who\n");
    c.until(|l| l.starts_with("* in ") || l.starts_with("! "))
}

/// Waits until `/who` from `c` lists exactly `n` members.
fn await_members(c: &mut LineClient, n: usize, limit: Duration) -> String {
    let end = Instant::now() + limit;
    loop {
        let w = who(c);
        let listed = w.split_once(": ").map_or(0, |(_, l)| l.split(", ").count());
        if listed == n || Instant::now() > end {
            return w;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Many clients read at once: non-blocking sockets and `poll`, lines kept
/// per client.
struct Readers {
    socks: Vec<TcpStream>,
    partial: Vec<Vec<u8>>,
    lines: Vec<Vec<String>>,
}

impl Readers {
    fn new(clients: Vec<LineClient>) -> Readers {
        let socks: Vec<TcpStream> = clients
            .into_iter()
            .map(|c| {
                c.stream.set_nonblocking(true).unwrap();
                c.stream
            })
            .collect();
        let n = socks.len();
        Readers {
            socks,
            partial: vec![Vec::new(); n],
            lines: vec![Vec::new(); n],
        }
    }

    fn send(&mut self, i: usize, text: &str) {
        let mut left = text.as_bytes();
        let end = Instant::now() + LONG;
        while !left.is_empty() {
            match self.socks[i].write(left) {
                Ok(n) => left = &left[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                    assert!(Instant::now() < end, "client {i} could not send");
                    self.read_some(Duration::from_millis(10));
                }
                Err(e) => panic!("send: {e}"),
            }
        }
    }

    /// Reads what is there, waiting up to `wait` for something.
    fn read_some(&mut self, wait: Duration) {
        let mut fds: Vec<PollFd> = self
            .socks
            .iter()
            .map(|s| PollFd::from_borrowed_fd(s.as_fd(), PollFlags::IN))
            .collect();
        let t = Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        match poll(&mut fds, Some(&t)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return,
            Err(e) => panic!("poll: {e}"),
        }
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.revents().is_empty())
            .map(|(i, _)| i)
            .collect();
        drop(fds);
        let mut chunk = [0u8; 64 << 10];
        for i in ready {
            loop {
                match self.socks[i].read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => self.partial[i].extend_from_slice(&chunk[..n]),
                    Err(_) => break,
                }
            }
            while let Some(p) = self.partial[i].iter().position(|b| *b == b'\n') {
                let rest = self.partial[i].split_off(p + 1);
                let mut line = std::mem::replace(&mut self.partial[i], rest);
                line.pop();
                self.lines[i].push(String::from_utf8(line).unwrap());
            }
        }
    }

    /// Reads until `done(lines)` holds, or `limit` passes (false).
    fn until(&mut self, limit: Duration, done: impl Fn(&[Vec<String>]) -> bool) -> bool {
        let end = Instant::now() + limit;
        while !done(&self.lines) {
            if Instant::now() > end {
                return false;
            }
            self.read_some(Duration::from_millis(50));
        }
        true
    }
}

/// The room messages client `i` got: per sender, the sequence numbers in
/// the order they came (`[ROOM] NICK: m SEQ`).
fn said(lines: &[String]) -> HashMap<String, Vec<u64>> {
    let mut by: HashMap<String, Vec<u64>> = HashMap::new();
    for l in lines {
        if let Some((_, rest)) = l.split_once("] ") {
            if l.starts_with('[') && !l.starts_with("[pm") && !l.starts_with("[history") {
                if let Some((nick, text)) = rest.split_once(": m ") {
                    by.entry(nick.to_owned()).or_default().push(text.parse().unwrap());
                }
            }
        }
    }
    by
}

/// The `chat.cluster` part of a node's `/_cport/stats`.
fn cluster_stats(web: SocketAddr) -> serde_json::Value {
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(b"GET /_cport/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let json = &body[body.find("\r\n\r\n").expect("a response") + 4..];
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON stats");
    v["chat"]["cluster"].clone()
}

/// Waits until the node's stats satisfy `f`.
fn await_stats(web: SocketAddr, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let end = Instant::now() + LONG;
    loop {
        let v = cluster_stats(web);
        if f(&v) || Instant::now() > end {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn redis_unreachable_at_start_is_a_clear_error() {
    // A port in our range with nothing on it.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = l.local_addr().unwrap().port();
    drop(l);
    let url = format!("redis://127.0.0.1:{closed}");
    let (mut cmd, _data) = command(&["chat", "--listen", "127.0.0.1:0", "--cluster", &url]);
    let out = cmd.output().expect("run cport");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be reached") && err.contains(&url), "{err}");
}

#[test]
fn three_nodes_300_clients_10_rooms_every_message_once_in_sender_order() {
    raise_fd_limit();
    let redis = Redis::start();
    // The middle node runs on the epoll backend: both backends in one cluster.
    let nodes: Vec<Cli> = (0..3)
        .map(|i| node_on(&redis, &format!("n{i}"), false, if i == 1 { "epoll" } else { "auto" }))
        .collect();
    const CLIENTS: usize = 300;
    const ROOMS: usize = 10;
    const MSGS: u64 = 5;
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(member(
            nodes[i % 3].addr("chat"),
            &format!("c{i}"),
            &format!("r{}", i % ROOMS),
        ));
    }
    // Every node's subscription is in place once every member is present
    // (each node subscribes before it registers its members).
    let per_room = CLIENTS / ROOMS;
    for c in clients.iter_mut().take(ROOMS) {
        let w = await_members(c, per_room, LONG);
        assert_eq!(w.split(", ").count(), per_room, "{w}");
    }
    // /who is the same from every node.
    let w0 = who(&mut clients[0]);
    let w10 = who(&mut clients[10]);
    let w20 = who(&mut clients[20]);
    assert!(w0 == w10 && w10 == w20, "{w0}\n{w10}\n{w20}");
    assert!(w0.contains("c0, c10, c100,"), "{w0}");
    clients[0].send("/rooms\n");
    let rooms = clients[0].until(|l| l.starts_with("* rooms:"));
    assert!(rooms.contains("r0 (30)") && rooms.contains("r9 (30)"), "{rooms}");
    // /msg to a user on another node, and to nobody.
    clients[0].send("/msg c1 across the cluster\n");
    clients[0].until(|l| l == "[pm to c1] across the cluster");
    clients[1].until(|l| l == "[pm from c0] across the cluster");
    clients[0].send("/msg nobody-here hi\n");
    clients[0].until(|l| l == "! no such nickname: nobody-here");
    // Nicknames are unique cluster-wide.
    clients[1].send("/nick c0\n");
    clients[1].until(|l| l == "! nickname c0 is taken");

    let mut rd = Readers::new(clients);
    for k in 0..MSGS {
        for i in 0..CLIENTS {
            rd.send(i, &format!("m {k}\n"));
        }
    }
    let want = per_room * MSGS as usize;
    let complete = rd.until(LONG * 3, |lines| {
        lines
            .iter()
            .all(|l| said(l).values().map(Vec::len).sum::<usize>() >= want)
    });
    // A little longer: anything extra (a duplicate) would show now.
    rd.until(Duration::from_millis(500), |_| false);
    for i in 0..CLIENTS {
        let got = said(&rd.lines[i]);
        assert_eq!(
            got.len(),
            per_room,
            "client c{i} heard {} senders (complete: {complete})",
            got.len()
        );
        for (nick, seqs) in &got {
            let n: usize = nick[1..].parse().unwrap();
            assert_eq!(n % ROOMS, i % ROOMS, "c{i} got a message of another room from {nick}");
            assert_eq!(
                seqs,
                &(0..MSGS).collect::<Vec<_>>(),
                "c{i} from {nick}: once each, in order"
            );
        }
    }
    drop(nodes);
}

#[test]
fn a_killed_node_leaves_presence_and_the_others_lose_nothing() {
    let redis = Redis::start();
    let mut nodes: Vec<Cli> = (0..3).map(|i| node(&redis, &format!("k{i}"), false)).collect();
    let mut a = member(nodes[0].addr("chat"), "alive-a", "room");
    let b = member(nodes[1].addr("chat"), "alive-b", "room");
    let _doomed: Vec<LineClient> = (0..5)
        .map(|i| member(nodes[2].addr("chat"), &format!("doomed{i}"), "room"))
        .collect();
    let w = await_members(&mut a, 7, LONG);
    assert!(w.contains("doomed4"), "{w}");
    let mut rd = Readers::new(vec![a, b]);
    const MSGS: u64 = 200;
    for k in 0..MSGS {
        rd.send(0, &format!("m {k}\n"));
        rd.send(1, &format!("m {k}\n"));
        if k == MSGS / 2 {
            nodes[2].signal(Signal::KILL);
        }
    }
    assert!(nodes[2].wait_exit(LONG).is_some());
    let got_all = rd.until(LONG, |lines| {
        lines
            .iter()
            .all(|l| said(l).values().map(Vec::len).sum::<usize>() >= 2 * MSGS as usize)
    });
    rd.until(Duration::from_millis(300), |_| false);
    for i in 0..2 {
        let got = said(&rd.lines[i]);
        for nick in ["alive-a", "alive-b"] {
            assert_eq!(
                got.get(nick).cloned().unwrap_or_default(),
                (0..MSGS).collect::<Vec<_>>(),
                "client {i} from {nick} (all in: {got_all})"
            );
        }
    }
    // Presence: the killed node's users are gone within the expiry.
    let killed_at = Instant::now();
    let mut a = LineClient::from_stream(rd.socks.remove(0));
    a.stream.set_nonblocking(false).unwrap();
    let w = await_members(&mut a, 2, Duration::from_secs(TTL + 5));
    assert!(!w.contains("doomed"), "{w}");
    assert!(
        killed_at.elapsed() <= Duration::from_secs(TTL + 5),
        "left within the expiry"
    );
    assert!(w.contains("alive-a, alive-b"), "{w}");
}

#[test]
fn a_redis_restart_is_survived_without_duplicates() {
    let mut redis = Redis::start();
    let nodes: Vec<Cli> = (0..2).map(|i| node(&redis, &format!("x{i}"), i == 0)).collect();
    let web = nodes[0].addr("chat-web");
    assert_eq!(cluster_stats(web)["redis_up"], true);
    let a1 = member(nodes[0].addr("chat"), "a1", "room");
    let a2 = member(nodes[0].addr("chat"), "a2", "room");
    let mut b1 = member(nodes[1].addr("chat"), "b1", "room");
    await_members(&mut b1, 3, LONG);
    let mut rd = Readers::new(vec![a1, a2, b1]);
    // Before, during and after the outage: a1 and b1 keep talking.
    let mut k = 0u64;
    let mut say = |rd: &mut Readers, n: u64| {
        for _ in 0..n {
            rd.send(0, &format!("m {k}\n"));
            rd.send(2, &format!("m {k}\n"));
            k += 1;
        }
    };
    say(&mut rd, 50);
    let crossed = rd.until(LONG, |lines| {
        said(&lines[0]).get("b1").map_or(0, Vec::len) == 50 && said(&lines[2]).get("a1").map_or(0, Vec::len) == 50
    });
    assert!(crossed, "the first 50 crossed nodes before the outage");
    redis.stop();
    let v = await_stats(web, |v| v["redis_up"] == false);
    assert_eq!(v["redis_up"], false, "the outage shows in /_cport/stats: {v}");
    say(&mut rd, 50);
    // Local members hear the outage's messages at once.
    let local = rd.until(LONG, |lines| said(&lines[1]).get("a1").map_or(0, Vec::len) >= 100);
    assert!(
        local,
        "a2 heard a1 through the outage: {:?}",
        said(&rd.lines[1]).get("a1").map(Vec::len)
    );
    redis.restart();
    // Recovered: a message after the restart crosses nodes again.
    let end = Instant::now() + LONG;
    let mut extra = 1000u64;
    loop {
        rd.send(0, &format!("m {extra}\n"));
        let crossed = rd.until(Duration::from_millis(500), |lines| {
            said(&lines[2]).get("a1").is_some_and(|s| s.contains(&extra))
        });
        if crossed {
            break;
        }
        assert!(
            Instant::now() < end,
            "the nodes did not recover after the Redis restart"
        );
        extra += 1;
    }
    let v = await_stats(web, |v| v["redis_up"] == true);
    assert!(v["reconnects"].as_u64() >= Some(1), "{v}");
    say(&mut rd, 50);
    rd.until(LONG, |lines| {
        said(&lines[1]).get("b1").is_some_and(|s| s.contains(&149))
            && said(&lines[2]).get("a1").is_some_and(|s| s.contains(&149))
    });
    rd.until(Duration::from_millis(500), |_| false);
    for (i, who_) in ["a1", "a2", "b1"].iter().enumerate() {
        for (nick, seqs) in said(&rd.lines[i]) {
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                seqs.len(),
                "{who_} got a message of {nick} twice: {seqs:?}"
            );
            // The probes sent while waiting for the recovery (1000 and on)
            // come between the outage's messages and the last 50.
            let seqs: Vec<u64> = seqs.into_iter().filter(|s| *s < 1000).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{who_} from {nick} out of order: {seqs:?}"
            );
            // Everything said before the outage and after the recovery.
            let before: Vec<u64> = (0..50).collect();
            assert_eq!(&seqs[..50], &before[..], "{who_} from {nick}");
            assert!(seqs.contains(&149), "{who_} from {nick}: after the recovery");
        }
    }
    // Same-node delivery lost nothing during the outage.
    let a1_at_a2 = said(&rd.lines[1]).remove("a1").unwrap();
    assert!((0..150).all(|s| a1_at_a2.contains(&s)), "{a1_at_a2:?}");
}

#[test]
fn a_browser_on_one_node_and_a_tcp_client_on_another_share_a_room() {
    let redis = Redis::start();
    let web_node = node(&redis, "w0", true);
    let tcp_node = node(&redis, "w1", false);
    let mut tcp = member(tcp_node.addr("chat"), "tcp-user", "lobby");
    let url = format!("ws://{}/ws", web_node.addr("chat-web"));
    let s = TcpStream::connect(web_node.addr("chat-web")).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let (mut ws, _) = tungstenite::client(url.as_str(), s).unwrap();
    let read = |ws: &mut tungstenite::WebSocket<TcpStream>, want: &str| loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str().ends_with(want) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("waiting for {want:?}: {e}"),
        }
    };
    ws.send(Message::text("/nick web-user")).unwrap();
    read(&mut ws, " is now known as web-user");
    ws.send(Message::text("/join lobby")).unwrap();
    read(&mut ws, "* web-user joined lobby");
    tcp.until(|l| l == "* web-user joined lobby");
    ws.send(Message::text("hello from the browser")).unwrap();
    tcp.until(|l| l == "[lobby] web-user: hello from the browser");
    tcp.send("hello from nc\n");
    read(&mut ws, "[lobby] tcp-user: hello from nc");
    ws.send(Message::text("/msg tcp-user psst")).unwrap();
    read(&mut ws, "[pm to tcp-user] psst");
    tcp.until(|l| l == "[pm from web-user] psst");
}
