//! The browser viewer's side over real sockets: the page served, and its
//! WebSocket fed the world's geometry, each tick's snapshot and the
//! counters, on both backends (tungstenite as the independent client).

use cport_testutil::game as util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cport_http::HttpServer;
use cport_proto::game::{decode, Packet, MAX_PACKET};
use tungstenite::Message;
use util::*;

backend_tests! {
    fn the_viewer_gets_the_world_each_tick_and_the_counters(backend: Backend) {
        let g = start(config(backend, small_world()));
        let page = cport_game::bundled_page().expect("www/game is in the repository");
        let cfg = cport_game::web_config(g.viewer(), page)
            .listen("127.0.0.1:0".parse().unwrap())
            .backend(backend);
        let web = HttpServer::start(cfg).expect("the web side starts");
        let addr = web.local_addr();

        // The page itself.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200") && body.contains("game.js"), "{body}");

        let mut player = Client::connect(g.local_addr());
        let ok = player.login("alice");
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), cport_testutil::Retrying(s)).unwrap();
        let Message::Text(first) = ws.read().unwrap() else { panic!("the geometry comes first, as text") };
        assert!(first.contains(r#""world":{"tick_hz":20,"zones_x":1,"zones_y":1,"zone_size":200,"cell_size":100}"#), "{first}");

        // Snapshots show alice where the server has her, moving as she moves.
        let seq = player.step(1, 1);
        let moved = player.acked(seq);
        let until = Instant::now() + LONG;
        let (mut seen_move, mut seen_stats) = (false, false);
        while !(seen_move && seen_stats) {
            assert!(Instant::now() < until, "no snapshot with the move, or no counters");
            match ws.read().unwrap() {
                Message::Binary(b) => {
                    let mut at = 0;
                    while let Some((p, used)) = decode(&b[at..], MAX_PACKET).unwrap() {
                        at += used;
                        let Packet::Snapshot(snap) = p else { panic!("a viewer gets snapshots only") };
                        assert_eq!((snap.part, snap.parts, snap.players), (0, 1, 1));
                        let me = snap.entries.iter().find(|e| e.id == ok.player).expect("alice is in the snapshot");
                        seen_move |= (me.x, me.y) == (moved.x, moved.y);
                    }
                    assert_eq!(at, b.len(), "a message holds whole packets");
                }
                Message::Text(t) => {
                    assert!(t.starts_with(r#"{"stats":{"ticks":"#), "{t}");
                    seen_stats |= t.contains(r#""players":1,"#) && t.contains(r#""viewers":1,"#);
                }
                _ => {}
            }
        }
        // A viewer only listens: anything it says closes it.
        ws.send(Message::text("hello")).unwrap();
        let until = Instant::now() + LONG;
        loop {
            assert!(Instant::now() < until, "not closed");
            match ws.read() {
                Ok(Message::Close(c)) => {
                    assert_eq!(c.map(|c| u16::from(c.code)), Some(1003));
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("closed without a close frame: {e}"),
            }
        }
        web.shutdown(Duration::from_secs(2));
    }
}
