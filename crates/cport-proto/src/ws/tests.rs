use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn conn() -> (WsConn, Instant) {
    let now = Instant::now();
    (WsConn::new(WsConfig::default(), now), now)
}

fn frame(op: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
    encode_client_frame(op, fin, payload, MASK)
}

/// Feeds `bytes`, returns the events and every frame queued to send.
fn run(ws: &mut WsConn, now: Instant, bytes: &[u8]) -> (Vec<WsEvent>, Vec<Vec<u8>>) {
    let mut ev = Vec::new();
    ws.feed(bytes, now, &mut ev);
    let mut out = Vec::new();
    while let Some(b) = ws.poll_transmit() {
        out.push(b.to_vec());
    }
    (ev, out)
}

fn closed_with(ev: &[WsEvent]) -> Option<u16> {
    match ev.last() {
        Some(WsEvent::Closed(c)) => c.code,
        _ => None,
    }
}

/// The close frame a server sent with `code`.
fn close_frame(code: u16) -> Vec<u8> {
    encode_frame(Opcode::Close, &code.to_be_bytes()).to_vec()
}

fn sent_close_code(out: &[Vec<u8>]) -> Option<u16> {
    let f = out.last()?;
    (f[0] == 0x88 && f.len() >= 4).then(|| u16::from_be_bytes([f[2], f[3]]))
}

#[test]
fn rfc_accept_key_example() {
    assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn text_and_binary_messages_come_out_whole() {
    let (mut ws, now) = conn();
    let mut bytes = frame(Opcode::Text, true, "héllo".as_bytes());
    bytes.extend(frame(Opcode::Binary, true, &[0, 255, 7]));
    let (ev, out) = run(&mut ws, now, &bytes);
    assert_eq!(
        ev,
        vec![WsEvent::Text("héllo".into()), WsEvent::Binary(vec![0, 255, 7].into())]
    );
    assert!(out.is_empty());
}

#[test]
fn lengths_of_7_16_and_64_bits_decode() {
    for len in [0usize, 125, 126, 65535, 65536, 200_000] {
        let (mut ws, now) = conn();
        let payload = vec![b'a'; len];
        let (ev, _) = run(&mut ws, now, &frame(Opcode::Binary, true, &payload));
        assert_eq!(ev, vec![WsEvent::Binary(payload.into())], "len {len}");
    }
    assert_eq!(FrameHead::new(Opcode::Text, true, 125, None).as_bytes().len(), 2);
    assert_eq!(FrameHead::new(Opcode::Text, true, 126, None).as_bytes().len(), 4);
    assert_eq!(FrameHead::new(Opcode::Text, true, 65536, None).as_bytes().len(), 10);
}

#[test]
fn unmasked_frame_closes_1002() {
    let (mut ws, now) = conn();
    let (ev, out) = run(&mut ws, now, &encode_frame(Opcode::Text, b"hi"));
    assert_eq!(closed_with(&ev), Some(1002));
    assert_eq!(sent_close_code(&out), Some(1002));
    assert!(ws.is_closed());
}

#[test]
fn reserved_bits_and_opcodes_close_1002() {
    for rsv in [0x40u8, 0x20, 0x10] {
        let (mut ws, now) = conn();
        let mut f = frame(Opcode::Text, true, b"x");
        f[0] |= rsv;
        assert_eq!(closed_with(&run(&mut ws, now, &f).0), Some(1002), "rsv {rsv:#x}");
    }
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let (mut ws, now) = conn();
        let mut f = frame(Opcode::Text, true, b"x");
        f[0] = 0x80 | op;
        assert_eq!(closed_with(&run(&mut ws, now, &f).0), Some(1002), "opcode {op}");
    }
}

#[test]
fn control_frames_over_125_or_fragmented_close_1002() {
    let (mut ws, now) = conn();
    let f = frame(Opcode::Ping, true, &[0; 126]);
    assert_eq!(closed_with(&run(&mut ws, now, &f).0), Some(1002));
    let (mut ws, now) = conn();
    let f = frame(Opcode::Ping, false, b"x");
    assert_eq!(closed_with(&run(&mut ws, now, &f).0), Some(1002));
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let (mut ws, now) = conn();
    let (ev, out) = run(&mut ws, now, &frame(Opcode::Ping, true, b"are you there"));
    assert!(ev.is_empty());
    assert_eq!(out, vec![encode_frame(Opcode::Pong, b"are you there").to_vec()]);
    let (ev, out) = run(&mut ws, now, &frame(Opcode::Pong, true, b"x"));
    assert_eq!(ev, vec![WsEvent::Pong("x".into())]);
    assert!(out.is_empty());
}

#[test]
fn fragments_with_control_frames_between_make_one_message() {
    let (mut ws, now) = conn();
    let mut b = frame(Opcode::Text, false, b"frag");
    b.extend(frame(Opcode::Ping, true, b"p"));
    b.extend(frame(Opcode::Continuation, false, b"men"));
    b.extend(frame(Opcode::Pong, true, b""));
    b.extend(frame(Opcode::Continuation, true, b"ted"));
    let (ev, out) = run(&mut ws, now, &b);
    assert_eq!(
        ev,
        vec![WsEvent::Pong(Default::default()), WsEvent::Text("fragmented".into())]
    );
    assert_eq!(out, vec![encode_frame(Opcode::Pong, b"p").to_vec()]);
}

#[test]
fn read_stops_after_each_frame_so_answers_keep_their_order() {
    let (mut ws, now) = conn();
    let mut b = frame(Opcode::Text, true, b"first");
    let first_len = b.len();
    b.extend(frame(Opcode::Ping, true, b"then"));
    let mut ev = Vec::new();
    let n = ws.read(&b, now, &mut ev);
    assert_eq!(n, first_len);
    assert_eq!(ev, vec![WsEvent::Text("first".into())]);
    assert!(ws.poll_transmit().is_none(), "the pong waits for the message's answer");
    ev.clear();
    assert_eq!(ws.read(&b[n..], now, &mut ev), b.len() - n);
    assert!(ev.is_empty());
    assert_eq!(
        ws.poll_transmit().unwrap().to_vec(),
        encode_frame(Opcode::Pong, b"then").to_vec()
    );
}

#[test]
fn fragmentation_out_of_order_closes_1002() {
    let (mut ws, now) = conn();
    assert_eq!(
        closed_with(&run(&mut ws, now, &frame(Opcode::Continuation, true, b"x")).0),
        Some(1002)
    );
    let (mut ws, now) = conn();
    let mut b = frame(Opcode::Text, false, b"a");
    b.extend(frame(Opcode::Binary, true, b"b"));
    assert_eq!(closed_with(&run(&mut ws, now, &b).0), Some(1002));
}

#[test]
fn invalid_utf8_closes_1007_as_soon_as_it_arrives() {
    let (mut ws, now) = conn();
    // First fragment valid, second starts with a byte no UTF-8 can hold:
    // fails on that fragment, before the message is finished.
    let (ev, _) = run(&mut ws, now, &frame(Opcode::Text, false, "κόσμε".as_bytes()));
    assert!(ev.is_empty());
    let (ev, out) = run(&mut ws, now, &frame(Opcode::Continuation, false, &[0xce, 0xbc, 0xff]));
    assert_eq!(closed_with(&ev), Some(1007));
    assert_eq!(sent_close_code(&out), Some(1007));
}

#[test]
fn invalid_utf8_is_caught_inside_a_frame_before_its_end() {
    let (mut ws, now) = conn();
    let f = frame(Opcode::Text, true, &[b'a', 0xff, b'b', b'c', b'd']);
    // Only the head and two payload bytes: the 0xff is already fatal.
    let (ev, _) = run(&mut ws, now, &f[..8]);
    assert_eq!(closed_with(&ev), Some(1007));
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let (mut ws, now) = conn();
    let euro = "€".as_bytes();
    let mut b = frame(Opcode::Text, false, &euro[..1]);
    b.extend(frame(Opcode::Continuation, false, &euro[1..2]));
    b.extend(frame(Opcode::Continuation, true, &euro[2..]));
    assert_eq!(run(&mut ws, now, &b).0, vec![WsEvent::Text("€".into())]);
    // ...but a message that ends inside one is not.
    let (mut ws, now) = conn();
    assert_eq!(
        closed_with(&run(&mut ws, now, &frame(Opcode::Text, true, &euro[..2])).0),
        Some(1007)
    );
}

#[test]
fn message_over_the_limit_closes_1009_from_the_head() {
    let now = Instant::now();
    let cfg = WsConfig {
        max_message: 100,
        ..WsConfig::default()
    };
    let mut ws = WsConn::new(cfg.clone(), now);
    let f = frame(Opcode::Binary, true, &[0; 101]);
    assert_eq!(closed_with(&run(&mut ws, now, &f[..8]).0), Some(1009));
    // Fragments add up.
    let mut ws = WsConn::new(cfg, now);
    let mut b = frame(Opcode::Binary, false, &[0; 60]);
    b.extend(frame(Opcode::Continuation, true, &[0; 60]));
    assert_eq!(closed_with(&run(&mut ws, now, &b).0), Some(1009));
}

#[test]
fn peer_close_is_echoed_then_closed() {
    let (mut ws, now) = conn();
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"bye");
    let (ev, out) = run(&mut ws, now, &frame(Opcode::Close, true, &p));
    assert_eq!(
        ev,
        vec![WsEvent::Closed(Close {
            code: Some(1000),
            reason: "bye".into(),
            cause: CloseCause::Peer
        })]
    );
    assert_eq!(out, vec![close_frame(1000)]);
    assert!(ws.is_closed());
    // Bytes after the close are ignored.
    let (ev, out) = run(&mut ws, now, &frame(Opcode::Text, true, b"late"));
    assert!(ev.is_empty() && out.is_empty());
}

#[test]
fn empty_close_is_answered_empty() {
    let (mut ws, now) = conn();
    let (ev, out) = run(&mut ws, now, &frame(Opcode::Close, true, b""));
    assert_eq!(closed_with(&ev), None);
    assert_eq!(out, vec![vec![0x88, 0]]);
}

#[test]
fn close_codes_are_checked() {
    for c in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let (mut ws, now) = conn();
        let (ev, out) = run(&mut ws, now, &frame(Opcode::Close, true, &c.to_be_bytes()));
        assert_eq!(closed_with(&ev), Some(c));
        assert_eq!(out, vec![close_frame(c)], "code {c}");
    }
    for c in [0u16, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535] {
        let (mut ws, now) = conn();
        let (_, out) = run(&mut ws, now, &frame(Opcode::Close, true, &c.to_be_bytes()));
        assert_eq!(sent_close_code(&out), Some(1002), "code {c}");
    }
    let (mut ws, now) = conn();
    let (_, out) = run(&mut ws, now, &frame(Opcode::Close, true, &[0x03]));
    assert_eq!(sent_close_code(&out), Some(1002), "one-byte payload");
    let (mut ws, now) = conn();
    let (_, out) = run(&mut ws, now, &frame(Opcode::Close, true, &[0x03, 0xe8, 0xff]));
    assert_eq!(sent_close_code(&out), Some(1007), "reason not UTF-8");
}

#[test]
fn server_close_waits_for_the_answer_or_the_deadline() {
    let (mut ws, now) = conn();
    ws.close(1001, "shutting down", now);
    assert!(!ws.is_open() && !ws.is_closed());
    let sent = ws.poll_transmit().unwrap();
    assert_eq!(&sent[..4], &[0x88, 15, 0x03, 0xe9]);
    // Messages after our close are dropped; the peer's close ends it.
    let mut b = frame(Opcode::Text, true, b"ignored");
    b.extend(frame(Opcode::Close, true, &1001u16.to_be_bytes()));
    let (ev, out) = run(&mut ws, now, &b);
    assert!(out.is_empty(), "no second close frame");
    assert!(matches!(
        &ev[..],
        [WsEvent::Closed(Close {
            cause: CloseCause::Local,
            ..
        })]
    ));

    let (mut ws, now) = conn();
    ws.close(1000, "", now);
    assert_eq!(ws.poll_timeout(), Some(now + Duration::from_secs(5)));
    let mut ev = Vec::new();
    ws.handle_timeout(now + Duration::from_secs(5), &mut ev);
    assert!(matches!(
        &ev[..],
        [WsEvent::Closed(Close {
            cause: CloseCause::Timeout,
            ..
        })]
    ));
    assert!(ws.is_closed());
}

#[test]
fn idle_ping_then_deadline() {
    let (mut ws, t0) = conn();
    let mut ev = Vec::new();
    let t1 = t0 + Duration::from_secs(30);
    assert_eq!(ws.poll_timeout(), Some(t1));
    ws.handle_timeout(t1 - Duration::from_millis(1), &mut ev);
    assert!(ws.poll_transmit().is_none(), "not idle yet");
    ws.handle_timeout(t1, &mut ev);
    assert_eq!(ws.poll_transmit().unwrap().to_vec(), vec![0x89, 0]);
    assert_eq!(ws.poll_timeout(), Some(t1 + Duration::from_secs(10)));
    // An answer resets the clock.
    let (ev2, _) = run(&mut ws, t1 + Duration::from_secs(1), &frame(Opcode::Pong, true, b""));
    assert_eq!(ev2.len(), 1);
    assert_eq!(ws.poll_timeout(), Some(t1 + Duration::from_secs(31)));
    // No answer: closed with 1001 at the deadline.
    let t2 = t1 + Duration::from_secs(31);
    ws.handle_timeout(t2, &mut ev);
    assert!(ws.poll_transmit().is_some());
    ws.handle_timeout(t2 + Duration::from_secs(10), &mut ev);
    assert_eq!(closed_with(&ev), Some(1001));
    assert!(ws.is_closed());
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

#[test]
fn handshake_accepts_version_13_and_declines_deflate() {
    let req = upgrade_request(
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    );
    assert!(wants_upgrade(req.as_bytes()));
    let up = upgrade(req.as_bytes(), &[]).unwrap();
    let text = String::from_utf8(up.response).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 "));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(!text.to_ascii_lowercase().contains("extensions"), "deflate is declined");
    assert!(up.deflate_declined);
}

#[test]
fn handshake_refusals_have_their_status() {
    let r = |extra: &str, origins: &[String]| upgrade(upgrade_request(extra).as_bytes(), origins).map(|_| ());
    assert_eq!(
        r("Sec-WebSocket-Version: 8\r\n", &[]),
        Err(HandshakeError::UnsupportedVersion)
    );
    assert!(String::from_utf8(HandshakeError::UnsupportedVersion.response())
        .unwrap()
        .contains("\r\nSec-WebSocket-Version: 13\r\n"));
    assert_eq!(r("", &[]).unwrap_err().status(), 400);
    let allowed = vec!["http://good.example".to_owned()];
    assert_eq!(
        r("Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n", &allowed),
        Err(HandshakeError::ForbiddenOrigin)
    );
    assert_eq!(
        r("Sec-WebSocket-Version: 13\r\nOrigin: http://good.example\r\n", &allowed),
        Ok(())
    );
    let bad_key = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(upgrade(bad_key.as_bytes(), &[]).unwrap_err().status(), 400);
    let post = upgrade_request("Sec-WebSocket-Version: 13\r\n").replacen("GET", "POST", 1);
    assert_eq!(upgrade(post.as_bytes(), &[]).unwrap_err().status(), 400);
    assert!(!wants_upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
}

/// A message as the client sends it: its fragments (with pings between).
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    data: Vec<u8>,
    cuts: Vec<usize>,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        "\\PC{0,40}",
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(0usize..300, 0..4),
    )
        .prop_map(|(text, s, bin, mut cuts)| {
            let data = if text { s.into_bytes() } else { bin };
            cuts.iter_mut().for_each(|c| *c = (*c).min(data.len()));
            cuts.sort_unstable();
            Msg { text, data, cuts }
        })
}

fn encode_msgs(msgs: &[Msg], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        let mut bounds = vec![0];
        bounds.extend(&m.cuts);
        bounds.push(m.data.len());
        let n = bounds.len() - 1;
        for i in 0..n {
            let op = match (i, m.text) {
                (0, true) => Opcode::Text,
                (0, false) => Opcode::Binary,
                _ => Opcode::Continuation,
            };
            out.extend(encode_client_frame(
                op,
                i + 1 == n,
                &m.data[bounds[i]..bounds[i + 1]],
                mask,
            ));
            if i + 1 < n {
                out.extend(encode_client_frame(Opcode::Ping, true, b"p", mask));
            }
        }
    }
    out
}

fn feed_split(bytes: &[u8], cuts: &[usize]) -> (Vec<WsEvent>, usize) {
    let (mut ws, now) = conn();
    let mut ev = Vec::new();
    let mut at = 0;
    let mut sorted: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
    sorted.sort_unstable();
    sorted.push(bytes.len());
    let mut pongs = 0;
    for c in sorted {
        ws.feed(&bytes[at..c], now, &mut ev);
        at = c;
        while ws.poll_transmit().is_some() {
            pongs += 1;
        }
    }
    (ev, pongs)
}

proptest! {
    #[test]
    fn messages_round_trip_however_the_stream_is_split(
        msgs in proptest::collection::vec(msg(), 0..6),
        mask in any::<[u8; 4]>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let bytes = encode_msgs(&msgs, mask);
        let want: Vec<WsEvent> = msgs.iter().map(|m| if m.text {
            WsEvent::Text(m.data.clone().into())
        } else {
            WsEvent::Binary(m.data.clone().into())
        }).collect();
        let (whole, pongs_whole) = feed_split(&bytes, &[]);
        prop_assert_eq!(&whole, &want);
        let (split, pongs_split) = feed_split(&bytes, &cuts);
        prop_assert_eq!(&split, &want);
        prop_assert_eq!(pongs_whole, pongs_split);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_the_same(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let (a, _) = feed_split(&bytes, &[]);
        let (b, _) = feed_split(&bytes, &cuts);
        prop_assert_eq!(a, b);
        let mut with_cut = vec![3u8];
        with_cut.extend(&bytes);
        fuzz_feed(&with_cut);
    }

    #[test]
    fn handshake_never_panics(head in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = wants_upgrade(&head);
        let _ = upgrade(&head, &["http://a".to_owned()]);
    }
}
