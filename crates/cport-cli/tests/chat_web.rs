//! `cport chat --web` and `cport serve` as a user runs them: the page is
//! served, and a WebSocket client (tungstenite) shares a room with a TCP
//! line client.

use cport_testutil::cli as util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use tungstenite::Message;
use util::*;

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

/// A browser stand-in on `url` and a TCP client on `tcp` talk in one room.
fn web_and_tcp_share_a_room(url: &str, tcp: SocketAddr) {
    let s = TcpStream::connect(url.trim_start_matches("ws://").split('/').next().unwrap()).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let (mut ws, _) = tungstenite::client(url, s).unwrap();
    let read = |ws: &mut tungstenite::WebSocket<TcpStream>, want: &str| loop {
        match ws.read().unwrap() {
            Message::Text(t) if t.as_str() == want => return,
            _ => {}
        }
    };
    ws.send(Message::text("/nick webby")).unwrap();
    ws.send(Message::text("/join hall")).unwrap();
    read(&mut ws, "* webby joined hall");
    let mut nc = LineClient::connect(tcp);
    nc.send("/nick ncat\n/join hall\n");
    read(&mut ws, "* ncat joined hall");
    ws.send(Message::text("hi from the web")).unwrap();
    nc.until(|l| l == "[hall] webby: hi from the web");
    nc.send("hi from nc\n");
    read(&mut ws, "[hall] ncat: hi from nc");
}

#[test]
fn chat_web_serves_the_page_and_the_socket() {
    let cli = Cli::spawn(
        &["chat", "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0"],
        &["chat", "chat-web"],
    );
    let page = get(cli.addr("chat-web"), "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>cport chat</title>"));
    assert!(get(cli.addr("chat-web"), "/chat.js").contains("new WebSocket"));
    web_and_tcp_share_a_room(&format!("ws://{}/ws", cli.addr("chat-web")), cli.addr("chat"));
}

#[test]
fn serve_has_the_chat_page_and_socket_on_its_web_port() {
    let cli = Cli::spawn(&SERVE, &["echo", "chat", "http"]);
    let page = get(cli.addr("http"), "/chat/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>cport chat</title>"));
    web_and_tcp_share_a_room(&format!("ws://{}/chat/ws", cli.addr("http")), cli.addr("chat"));
}

#[test]
fn chat_history_survives_a_sigterm_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("history");
    let data = dir.to_str().unwrap();
    let mut cli = Cli::spawn(&["chat", "--listen", "127.0.0.1:0", "--data", data], &["chat"]);
    let mut a = LineClient::connect(cli.addr("chat"));
    a.send("/nick keeper\n/join vault\n");
    for i in 0..3 {
        a.send(&format!("entry {i}\n"));
    }
    a.until(|l| l == "[vault] keeper: entry 2");
    cli.signal(util::Signal::TERM);
    assert!(cli.wait_exit(LONG).is_some_and(|s| s.success()));
    assert!(dir.join("chat.sqlite3").is_file());

    let cli = Cli::spawn(&["chat", "--listen", "127.0.0.1:0", "--data", data], &["chat"]);
    let mut b = LineClient::connect(cli.addr("chat"));
    b.send("/join vault\n");
    b.until(|l| l.ends_with(" joined vault"));
    for i in 0..3 {
        let l = b.line().unwrap();
        assert!(l.starts_with("[history vault "), "{l}");
        assert!(l.ends_with(&format!("] keeper: entry {i}")), "{l}");
    }
    drop(cli);
}
