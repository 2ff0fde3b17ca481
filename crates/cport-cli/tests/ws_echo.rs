//! `cport echo --ws` against the case groups of the Autobahn test suite:
//! framing, ping/pong, reserved bits, opcodes, fragmentation, UTF-8
//! handling, close codes and limits. Well-formed traffic comes from an
//! independent client library (tungstenite); the malformed frames no
//! library would send go over a raw socket. Every case asserts its outcome:
//! the echo, the pong, or the close code followed by the TCP close.

use cport_testutil::cli as util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use util::*;

const MASK: [u8; 4] = [0x9a, 0x11, 0x5c, 0xe2];

/// A masked client frame with the given first byte (FIN, RSV, opcode).
fn raw_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![b0];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n <= 0xffff {
        f.push(0x80 | 126);
        f.extend((n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend((n as u64).to_be_bytes());
    }
    f.extend(MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    f
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// A WebSocket client over a bare socket, for frames a library won't send.
struct Raw {
    s: TcpStream,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{head}"
        );
        Raw { s }
    }

    fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed on an earlier frame.
        let _ = self.s.write_all(bytes);
    }

    /// The next frame from the server: (first byte, payload). Server frames
    /// are never masked.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).ok()?;
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut p = vec![0u8; len];
        self.s.read_exact(&mut p).ok()?;
        Some((h[0], p))
    }

    /// Asserts the next frame is a close with `code`, then that the server
    /// closes the TCP connection.
    fn expect_close(&mut self, code: Option<u16>, case: &str) {
        let (b0, p) = self.frame().unwrap_or_else(|| panic!("{case}: no close frame"));
        assert_eq!(b0, FIN | CLOSE, "{case}: expected a close frame, got {b0:#x} {p:?}");
        let got = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
        assert_eq!(got, code, "{case}: close code");
        self.expect_eof(case);
    }

    fn expect_eof(&mut self, case: &str) {
        let mut rest = Vec::new();
        match self.s.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{case}: bytes after close: {rest:?}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{case}: {e}"),
        }
    }

    fn expect(&mut self, b0: u8, payload: &[u8], case: &str) {
        let (g0, p) = self.frame().unwrap_or_else(|| panic!("{case}: connection ended"));
        assert_eq!((g0, p.len()), (b0, payload.len()), "{case}");
        assert!(p == payload, "{case}: payload differs");
    }
}

fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

fn client(addr: SocketAddr) -> WebSocket<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{addr}/"), s).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

/// The echo of `msg`, skipping pongs.
fn echo(ws: &mut WebSocket<TcpStream>, msg: Message) -> Message {
    ws.send(msg).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Pong(_) | Message::Frame(_) => {}
            m => return m,
        }
    }
}

fn server(backend: &str, extra: &[&str]) -> Cli {
    let mut args = vec!["echo", "--ws", "--listen", "127.0.0.1:0", "--backend", backend];
    args.extend_from_slice(extra);
    Cli::spawn(&args, &["echo"])
}

/// 1.x: text and binary messages of the lengths where the encoding changes.
fn framing(addr: SocketAddr) {
    let mut ws = client(addr);
    for len in [0usize, 125, 126, 127, 128, 65535, 65536, 100_000] {
        let text: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        assert_eq!(
            echo(&mut ws, Message::text(text.clone())),
            Message::text(text),
            "text {len}"
        );
        let bin: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert_eq!(
            echo(&mut ws, Message::binary(bin.clone())),
            Message::binary(bin),
            "binary {len}"
        );
    }
    // Many small messages in one write come back in order.
    let mut raw = Raw::connect(addr);
    let mut burst = Vec::new();
    for i in 0..100u8 {
        burst.extend(raw_frame(FIN | BINARY, &[i; 3]));
    }
    raw.send(&burst);
    for i in 0..100u8 {
        raw.expect(FIN | BINARY, &[i; 3], "burst");
    }
}

/// 2.x: pings are answered with their payload; bad pings fail the connection.
fn ping_pong(addr: SocketAddr) {
    let mut raw = Raw::connect(addr);
    raw.send(&raw_frame(FIN | PING, b""));
    raw.expect(FIN | PONG, b"", "2.1 empty ping");
    raw.send(&raw_frame(FIN | PING, b"Hello, world!"));
    raw.expect(FIN | PONG, b"Hello, world!", "2.2 text payload");
    raw.send(&raw_frame(FIN | PING, &[0x00, 0xff, 0xfe, 0xfd]));
    raw.expect(FIN | PONG, &[0x00, 0xff, 0xfe, 0xfd], "2.3 binary payload");
    raw.send(&raw_frame(FIN | PING, &[0xfe; 125]));
    raw.expect(FIN | PONG, &[0xfe; 125], "2.4 125 bytes");
    // 2.6: a ping sent in 1-byte pieces.
    for b in raw_frame(FIN | PING, b"slow") {
        raw.send(&[b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    raw.expect(FIN | PONG, b"slow", "2.6 split ping");
    // 2.7/2.8: unsolicited pongs are ignored; 2.10: ten pings, ten pongs.
    raw.send(&raw_frame(FIN | PONG, b"unasked"));
    let mut many = Vec::new();
    for i in 0..10u8 {
        many.extend(raw_frame(FIN | PING, &[i]));
    }
    raw.send(&many);
    for i in 0..10u8 {
        raw.expect(FIN | PONG, &[i], "2.10 ten pings");
    }
    // 2.5: a ping over 125 bytes fails the connection.
    raw.send(&raw_frame(FIN | PING, &[0xfe; 126]));
    raw.expect_close(Some(1002), "2.5 ping of 126 bytes");
}

/// 3.x: reserved bits fail the connection, after what came before is echoed.
fn reserved_bits(addr: SocketAddr) {
    for (rsv, op) in [
        (0x40, TEXT),
        (0x20, TEXT),
        (0x60, TEXT),
        (0x10, BINARY),
        (0x50, PING),
        (0x70, BINARY),
    ] {
        let case = format!("3.x rsv {rsv:#x} op {op}");
        let mut raw = Raw::connect(addr);
        let mut b = raw_frame(FIN | TEXT, b"Hello");
        b.extend(raw_frame(FIN | rsv | op, b"bad"));
        b.extend(raw_frame(FIN | PING, b""));
        raw.send(&b);
        raw.expect(FIN | TEXT, b"Hello", &case);
        raw.expect_close(Some(1002), &case);
    }
}

/// 4.x: reserved opcodes fail the connection.
fn opcodes(addr: SocketAddr) {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let case = format!("4.x opcode {op:#x}");
        let mut raw = Raw::connect(addr);
        let mut b = raw_frame(FIN | TEXT, b"Hello");
        b.extend(raw_frame(FIN | op, b"payload"));
        raw.send(&b);
        raw.expect(FIN | TEXT, b"Hello", &case);
        raw.expect_close(Some(1002), &case);
    }
}

/// 5.x: fragmented messages, control frames between fragments, and the
/// orders that are not allowed.
fn fragmentation(addr: SocketAddr) {
    let mut raw = Raw::connect(addr);
    // 5.3-5.9: fragments with a ping in between, the pong comes first.
    let mut b = raw_frame(TEXT, b"frag");
    b.extend(raw_frame(FIN | PING, b"p"));
    b.extend(raw_frame(0, b"men"));
    b.extend(raw_frame(0, b"t"));
    b.extend(raw_frame(FIN, b"ed"));
    raw.send(&b);
    raw.expect(FIN | PONG, b"p", "5.6 ping between fragments");
    raw.expect(FIN | TEXT, b"fragmented", "5.6 message");
    // 5.19-ish: a 1-byte-per-frame binary message.
    let data: Vec<u8> = (0..50).collect();
    let mut b = Vec::new();
    for (i, c) in data.iter().enumerate() {
        let op = if i == 0 { BINARY } else { 0 };
        let fin = if i == data.len() - 1 { FIN } else { 0 };
        b.extend(raw_frame(fin | op, &[*c]));
    }
    raw.send(&b);
    raw.expect(FIN | BINARY, &data, "5.x one byte per frame");
    // 5.1/5.2: a fragmented ping or pong fails the connection.
    raw.send(&raw_frame(PING, b"frag"));
    raw.expect_close(Some(1002), "5.1 fragmented ping");

    let mut raw = Raw::connect(addr);
    raw.send(&raw_frame(FIN, b"orphan"));
    raw.expect_close(Some(1002), "5.9 continuation without a message");

    let mut raw = Raw::connect(addr);
    let mut b = raw_frame(TEXT, b"one");
    b.extend(raw_frame(FIN | TEXT, b"two"));
    raw.send(&b);
    raw.expect_close(Some(1002), "5.18 new message inside a fragmented one");
}

/// 6.x: text must be UTF-8, checked across fragments and as early as possible.
fn utf8(addr: SocketAddr) {
    let mut ws = client(addr);
    for s in ["Hello-µ@ßöäüàá-UTF-8!!", "κόσμε", "\u{10FFFF}", "\u{FFFD}", "€𝄞"] {
        assert_eq!(echo(&mut ws, Message::text(s)), Message::text(s), "6.x {s}");
    }
    // A character cut across frames is fine.
    let mut raw = Raw::connect(addr);
    let clef = "𝄞".as_bytes();
    let mut b = raw_frame(TEXT, &clef[..1]);
    b.extend(raw_frame(0, &clef[1..3]));
    b.extend(raw_frame(FIN, &clef[3..]));
    raw.send(&b);
    raw.expect(FIN | TEXT, clef, "6.x split character");

    let invalid: [&[u8]; 6] = [
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64,
        ],
        &[0xff],
        &[0xc0, 0xaf],             // overlong
        &[0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
        &[0xed, 0xa0, 0x80],       // surrogate
        &[0xe2, 0x82],             // truncated at the end
    ];
    for bad in invalid {
        let mut raw = Raw::connect(addr);
        raw.send(&raw_frame(FIN | TEXT, bad));
        raw.expect_close(Some(1007), &format!("6.x invalid {bad:x?}"));
    }
    // 6.4: fail fast: the first fragment is invalid and the message never
    // ends; the close must come anyway.
    let mut raw = Raw::connect(addr);
    raw.send(&raw_frame(
        TEXT,
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xf4, 0x90,
        ],
    ));
    raw.expect_close(Some(1007), "6.4.1 fail fast across fragments");
    // ...even inside one frame whose end has not arrived.
    let mut raw = Raw::connect(addr);
    let f = raw_frame(FIN | TEXT, &[b'a', b'b', 0xff, b'c', b'd', b'e', b'f', b'g']);
    raw.send(&f[..9]);
    raw.expect_close(Some(1007), "6.4.3 fail fast inside a frame");
}

/// 7.x: the close handshake.
fn close_codes(addr: SocketAddr) {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut raw = Raw::connect(addr);
        raw.send(&raw_frame(FIN | CLOSE, &code.to_be_bytes()));
        raw.expect_close(Some(code), &format!("7.7 valid code {code}"));
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999] {
        let mut raw = Raw::connect(addr);
        raw.send(&raw_frame(FIN | CLOSE, &code.to_be_bytes()));
        raw.expect_close(Some(1002), &format!("7.9 invalid code {code}"));
    }
    let mut raw = Raw::connect(addr);
    raw.send(&raw_frame(FIN | CLOSE, b""));
    raw.expect_close(None, "7.3.1 empty close");
    let mut raw = Raw::connect(addr);
    raw.send(&raw_frame(FIN | CLOSE, &[0x03]));
    raw.expect_close(Some(1002), "7.3.2 one-byte payload");
    let mut raw = Raw::connect(addr);
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(&[0xce, 0xba, 0xff]);
    raw.send(&raw_frame(FIN | CLOSE, &p));
    raw.expect_close(Some(1007), "7.5.1 reason not UTF-8");
    let mut raw = Raw::connect(addr);
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(&[b'x'; 123]);
    raw.send(&raw_frame(FIN | CLOSE, &p));
    raw.expect_close(Some(1000), "7.3.6 longest reason");
    // 7.1.x: nothing is echoed after the close.
    let mut raw = Raw::connect(addr);
    let mut b = raw_frame(FIN | CLOSE, &1000u16.to_be_bytes());
    b.extend(raw_frame(FIN | TEXT, b"after close"));
    raw.send(&b);
    raw.expect_close(Some(1000), "7.1.3 message after close");
    // The library's own close handshake completes.
    let mut ws = client(addr);
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    let got = loop {
        match ws.read() {
            Ok(Message::Close(c)) => break c,
            Ok(_) => {}
            Err(e) => panic!("7.1.1 close handshake: {e}"),
        }
    };
    assert_eq!(got.map(|c| c.code), Some(CloseCode::Normal));
    // An unmasked client frame is a protocol error.
    let mut raw = Raw::connect(addr);
    raw.send(&[FIN | TEXT, 2, b'h', b'i']);
    raw.expect_close(Some(1002), "unmasked frame");
}

/// 9.x: large messages in one frame and in many, and the size limit.
fn limits(addr: SocketAddr, max: usize) {
    let mut ws = client(addr);
    for len in [64 << 10, 256 << 10, max] {
        let bin: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            echo(&mut ws, Message::binary(bin.clone())),
            Message::binary(bin),
            "9.x {len}"
        );
    }
    // 9.3-ish: a message in 64 KiB fragments.
    let mut raw = Raw::connect(addr);
    let data: Vec<u8> = (0..max).map(|i| (i * 13) as u8).collect();
    let chunks: Vec<&[u8]> = data.chunks(64 << 10).collect();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 { BINARY } else { 0 };
        let fin = if i + 1 == chunks.len() { FIN } else { 0 };
        raw.send(&raw_frame(fin | op, c));
    }
    raw.expect(FIN | BINARY, &data, "9.x fragmented");
    // One byte over the limit: 1009, decided from the frame head.
    let mut raw = Raw::connect(addr);
    let f = raw_frame(FIN | BINARY, &vec![0u8; max + 1]);
    raw.send(&f[..14]);
    raw.expect_close(Some(1009), "message over the limit");
}

/// The handshake's refusals: 426 for another version, 400 for a bad request.
fn handshake(addr: SocketAddr) {
    let ask = |extra: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
        )
        .unwrap();
        read_head(&mut s)
    };
    let h = ask("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n");
    assert!(h.starts_with("HTTP/1.1 426 "), "{h}");
    assert!(h.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{h}");
    let h = ask("Sec-WebSocket-Version: 13\r\n");
    assert!(h.starts_with("HTTP/1.1 400 "), "{h}");
    let h = ask("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n");
    assert!(h.starts_with("HTTP/1.1 101 "), "{h}");
    assert!(
        !h.to_ascii_lowercase().contains("sec-websocket-extensions"),
        "deflate declined: {h}"
    );
}

fn all_groups(backend: &str) {
    const MAX: usize = 1 << 20;
    let max = MAX.to_string();
    let cli = server(backend, &["--max-message", &max]);
    let addr = cli.addr("echo");
    handshake(addr);
    framing(addr);
    ping_pong(addr);
    reserved_bits(addr);
    opcodes(addr);
    fragmentation(addr);
    utf8(addr);
    close_codes(addr);
    limits(addr, MAX);
}

#[test]
fn autobahn_case_groups_pass_on_auto_backend() {
    all_groups("auto");
}

#[test]
fn autobahn_case_groups_pass_on_epoll() {
    all_groups("epoll");
}

#[test]
fn bench_ws_drives_the_websocket_echo() {
    let cli = server("auto", &[]);
    let url = format!("ws://{}/", cli.addr("echo"));
    let r = run_json(&[
        "bench",
        "ws",
        "--target",
        &url,
        "--conns",
        "8",
        "--size",
        "100",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--json",
    ]);
    assert_eq!(r["kind"], "ws");
    assert!(r["messages"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["connect_errors"], 0, "{r}");
}
