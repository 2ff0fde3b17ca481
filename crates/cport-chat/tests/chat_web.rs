//! The messenger with TCP line clients and WebSocket browsers (tungstenite
//! as the browser stand-in) in the same rooms, in process: exactly-once
//! delivery in each sender's order with 500 clients, history that survives
//! a restart, and bad WebSocket input that harms nobody else.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cport_chat::{Chat, ChatConfig};
use cport_http::HttpServer;
use cport_server::Server;
use cport_testutil::Retrying;
use tungstenite::{Message, WebSocket};

const LONG: Duration = Duration::from_secs(30);

/// A scratch directory with a stand-in chat page, removed on drop (also
/// when the test panics).
// The `TempDir` is held for its `Drop`, which removes the directory.
struct Temp(PathBuf, #[allow(dead_code)] tempfile::TempDir);
impl Temp {
    fn new(tag: &str) -> Temp {
        let d = tempfile::Builder::new()
            .prefix(&format!("cport-chat-test-{tag}-"))
            .tempdir()
            .unwrap();
        let p = d.path().to_path_buf();
        std::fs::create_dir_all(p.join("page")).unwrap();
        std::fs::write(p.join("page/index.html"), "<!doctype html><title>chat</title>").unwrap();
        Temp(p, d)
    }
}

/// The chat's TCP side and web side, on free loopback ports.
struct Running {
    chat: Arc<Chat>,
    tcp: Option<Server>,
    web: Option<HttpServer>,
}

impl Running {
    fn start(dir: &Temp, max_line: usize) -> Running {
        Running::start_capped(dir, max_line, 4 << 20)
    }

    fn start_capped(dir: &Temp, max_line: usize, max_queued: usize) -> Running {
        let cfg = ChatConfig {
            max_line,
            data_dir: Some(dir.0.join("data")),
            ..ChatConfig::default()
        };
        let chat = Chat::new(&cfg).unwrap();
        let tcp = cport_chat::tcp_builder("127.0.0.1:0".parse().unwrap(), max_line, None)
            .start(chat.tcp_handler())
            .unwrap();
        let web = HttpServer::start(
            cport_chat::web_config(&chat, dir.0.join("page"), "127.0.0.1:0".parse().unwrap())
                .max_queued_bytes(max_queued),
        )
        .unwrap();
        Running {
            chat,
            tcp: Some(tcp),
            web: Some(web),
        }
    }
    fn tcp_addr(&self) -> SocketAddr {
        self.tcp.as_ref().unwrap().local_addr()
    }
    fn web_addr(&self) -> SocketAddr {
        self.web.as_ref().unwrap().local_addr()
    }
    fn stop(mut self) {
        self.tcp.take().unwrap().shutdown(Duration::from_secs(2));
        self.web.take().unwrap().shutdown(Duration::from_secs(2));
    }
}

/// A chat client over either transport, reading one line at a time.
enum Client {
    Tcp(BufReader<TcpStream>),
    Ws(Box<WebSocket<Retrying<TcpStream>>>),
}

impl Client {
    fn tcp(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        let mut c = Client::Tcp(BufReader::new(s));
        assert!(c.line().unwrap().starts_with("* welcome"));
        c
    }
    fn ws(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{addr}/ws"), Retrying(s)).unwrap();
        let mut c = Client::Ws(Box::new(ws));
        assert!(c.line().unwrap().starts_with("* welcome"));
        c
    }
    fn send(&mut self, line: &str) {
        match self {
            Client::Tcp(r) => r.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap(),
            Client::Ws(ws) => ws.send(Message::text(line)).unwrap(),
        }
    }
    fn line(&mut self) -> Option<String> {
        match self {
            Client::Tcp(r) => {
                let mut l = String::new();
                match r.read_line(&mut l) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(l.trim_end_matches('\n').to_owned()),
                }
            }
            Client::Ws(ws) => loop {
                match ws.read() {
                    Ok(Message::Text(t)) => return Some(t.to_string()),
                    Ok(Message::Ping(_) | Message::Pong(_)) => {}
                    _ => return None,
                }
            },
        }
    }
    fn until(&mut self, what: impl Fn(&str) -> bool) -> String {
        loop {
            let l = self.line().expect("stream ended");
            if what(&l) {
                return l;
            }
        }
    }
}

#[test]
fn five_hundred_tcp_and_websocket_clients_get_every_message_once_in_order() {
    const ROOMS: usize = 10;
    const PER_ROOM: usize = 50; // 30 TCP, 20 WebSocket
    const EACH: usize = 4;
    let dir = Temp::new("mixed");
    let run = Running::start(&dir, 4096);
    let (tcp, web) = (run.tcp_addr(), run.web_addr());
    let started = Instant::now();
    let rooms: Vec<_> = (0..ROOMS)
        .map(|r| {
            std::thread::spawn(move || {
                let room = format!("room{r}");
                let mut clients: Vec<Client> = (0..PER_ROOM)
                    .map(|i| if i % 5 < 3 { Client::tcp(tcp) } else { Client::ws(web) })
                    .collect();
                for (i, c) in clients.iter_mut().enumerate() {
                    c.send(&format!("/nick u{r}x{i}"));
                    c.until(|l| l.ends_with(&format!("is now known as u{r}x{i}")));
                    c.send(&format!("/join {room}"));
                    c.until(|l| l == format!("* u{r}x{i} joined {room}"));
                }
                for seq in 0..EACH {
                    for (i, c) in clients.iter_mut().enumerate() {
                        c.send(&format!("m {i} {seq}"));
                    }
                }
                for (me, c) in clients.iter_mut().enumerate() {
                    let mut next = [0usize; PER_ROOM];
                    let mut got = 0;
                    while got < PER_ROOM * EACH {
                        let l = c
                            .line()
                            .unwrap_or_else(|| panic!("{room} client {me}: stream ended after {got}"));
                        let Some(body) = l.strip_prefix(&format!("[{room}] ")) else {
                            continue;
                        };
                        let (nick, text) = body.split_once(": ").unwrap();
                        let mut w = text.split(' ');
                        assert_eq!(w.next(), Some("m"), "{l}");
                        let from: usize = w.next().unwrap().parse().unwrap();
                        let seq: usize = w.next().unwrap().parse().unwrap();
                        assert_eq!(nick, format!("u{r}x{from}"));
                        assert_eq!(
                            seq, next[from],
                            "{room} client {me}: sender {from} out of order or repeated"
                        );
                        next[from] += 1;
                        got += 1;
                    }
                    assert!(next.iter().all(|&n| n == EACH));
                }
                // Nothing more: no duplicates queued behind.
                clients[0].send("/who");
                let who = clients[0].until(|l| l.starts_with("* in "));
                assert!(who.contains(&format!("u{r}x{}", PER_ROOM - 1)), "{who}");
            })
        })
        .collect();
    for t in rooms {
        t.join().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    run.stop();
}

#[test]
fn history_survives_a_restart_and_is_shown_on_join_across_transports() {
    let dir = Temp::new("history");
    let run = Running::start(&dir, 4096);
    let mut w = Client::ws(run.web_addr());
    w.send("/nick web");
    w.send("/join lobby");
    w.until(|l| l == "* web joined lobby");
    let mut t = Client::tcp(run.tcp_addr());
    t.send("/nick term");
    t.send("/join lobby");
    for i in 0..3 {
        w.send(&format!("from the browser {i}"));
        w.until(|l| l == format!("[lobby] web: from the browser {i}"));
    }
    t.send("from nc");
    w.until(|l| l == "[lobby] term: from nc");
    // Private messages and /who cross transports too.
    t.send("/msg web psst");
    assert_eq!(w.until(|l| l.starts_with("[pm")), "[pm from term] psst");
    w.send("/who");
    assert_eq!(w.until(|l| l.starts_with("* in ")), "* in lobby: term, web");
    drop((w, t));
    run.stop();

    let run = Running::start(&dir, 4096);
    for mut c in [Client::tcp(run.tcp_addr()), Client::ws(run.web_addr())] {
        c.send("/join lobby");
        c.until(|l| l.ends_with(" joined lobby"));
        let hist: Vec<String> = (0..4).map(|_| c.line().unwrap()).collect();
        let texts: Vec<&str> = hist
            .iter()
            .map(|l| {
                assert!(l.starts_with("[history lobby "), "{l}");
                l.split_once("] ").unwrap().1
            })
            .collect();
        assert_eq!(
            texts,
            [
                "web: from the browser 0",
                "web: from the browser 1",
                "web: from the browser 2",
                "term: from nc"
            ]
        );
        c.send("/leave");
        c.until(|l| l.ends_with(" left lobby"));
    }
    run.stop();
}

#[test]
fn bad_websocket_input_is_refused_and_others_go_on() {
    let dir = Temp::new("bad");
    let run = Running::start(&dir, 100);
    let mut calm = Client::tcp(run.tcp_addr());
    calm.send("/nick calm");
    calm.send("/join r");
    calm.until(|l| l == "* calm joined r");

    let mut w = Client::ws(run.web_addr());
    w.send("/join r");
    w.until(|l| l.ends_with(" joined r"));
    // Too long for a line: an error, the session goes on.
    w.send(&"x".repeat(150));
    assert!(w.until(|l| l.starts_with('!')).starts_with("! line too long"));
    // Binary is not the protocol: an error, the session goes on.
    if let Client::Ws(ws) = &mut w {
        ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    }
    assert!(w.until(|l| l.starts_with('!')).contains("binary"));
    w.send("still here");
    calm.until(|l| l.ends_with(": still here"));
    // Far too long for a message: closed with 1009.
    if let Client::Ws(ws) = &mut w {
        ws.send(Message::text("y".repeat(20_000))).unwrap();
        let closed = loop {
            match ws.read() {
                Ok(Message::Close(c)) => break c.map(|c| u16::from(c.code)),
                Ok(_) => {}
                Err(e) => panic!("expected a close frame: {e}"),
            }
        };
        assert_eq!(closed, Some(1009));
    }
    calm.until(|l| l.ends_with(" left r"));
    // Invalid UTF-8 over a raw socket: closed with 1007; a flood from
    // another browser reaches the room in order.
    let mut raw = TcpStream::connect(run.web_addr()).unwrap();
    raw.set_read_timeout(Some(LONG)).unwrap();
    write!(
        raw,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    raw.write_all(&cport_proto::ws::encode_client_frame(
        cport_proto::ws::Opcode::Text,
        true,
        &[0xff, 0xfe],
        [9; 4],
    ))
    .unwrap();
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut raw, &mut all);
    let close = all.iter().rposition(|&b| b == 0x88).expect("a close frame");
    assert_eq!(&all[close + 2..close + 4], &1007u16.to_be_bytes());

    let mut flood = Client::ws(run.web_addr());
    flood.send("/nick flood");
    flood.send("/join r");
    for i in 0..2000 {
        flood.send(&format!("f{i}"));
    }
    for i in 0..2000 {
        calm.until(|l| l == format!("[r] flood: f{i}"));
    }
    assert_eq!(run.chat.history_dropped(), 0);
    drop(flood);
    run.stop();
}

#[test]
fn a_browser_that_never_reads_is_cut_and_the_room_goes_on() {
    let dir = Temp::new("slow");
    let run = Running::start_capped(&dir, 8192, 256 << 10);
    let mut slow = Client::ws(run.web_addr());
    slow.send("/nick sleepy");
    slow.send("/join busy");
    slow.until(|l| l == "* sleepy joined busy");
    let mut reader = Client::tcp(run.tcp_addr());
    reader.send("/join busy");
    reader.until(|l| l.ends_with(" joined busy"));
    let mut talker = Client::tcp(run.tcp_addr());
    talker.send("/nick talker");
    talker.send("/join busy");
    reader.until(|l| l == "* talker joined busy");
    let text = "z".repeat(4000);
    // 16 MB in batches the readers keep up with, while the browser reads
    // nothing: it is cut off on the way; the reader gets every line in order.
    let mut sleepy_left = false;
    let mut next = 0;
    for batch in 0..80 {
        for i in 0..50 {
            talker.send(&format!("{} {text}", batch * 50 + i));
        }
        while next < (batch + 1) * 50 {
            let l = reader.line().expect("the reader was disturbed");
            if l == "* sleepy left busy" {
                sleepy_left = true;
            } else if let Some(body) = l.strip_prefix("[busy] talker: ") {
                assert_eq!(body.split(' ').next().unwrap(), next.to_string());
                next += 1;
            }
        }
        // The talker reads its own lines too (it is in the room).
        let last = format!("[busy] talker: {} ", batch * 50 + 49);
        talker.until(|l| l.starts_with(&last));
    }
    if !sleepy_left {
        reader.until(|l| l == "* sleepy left busy");
    }
    assert_eq!(run.chat.sessions(), 2, "the browser that never read was cut off");
    drop(slow);
    run.stop();
}
