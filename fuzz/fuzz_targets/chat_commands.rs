//! Chat commands: each input line parsed, then the whole input played
//! through the hub by a few sessions, as the server does.
//!
//! Invariants beyond "no panic": names the parser accepts pass
//! `validate_name`; the hub only delivers to connected sessions and closes
//! only sessions that exist; every delivered message is whole lines; after
//! everyone disconnects, no session and no room is left.
#![no_main]

use std::collections::HashSet;

use cport_proto::chat::{parse_line, validate_name, Command, Hub, Output};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut hub = Hub::new();
    let mut out = Output::new();
    let mut live: HashSet<u64> = HashSet::new();
    for id in 0..4 {
        hub.connect(id, &mut out);
        live.insert(id);
    }
    check(&out, &live);
    out.clear();
    // Each line is said by session (first byte % 4); a first byte of 0xff
    // disconnects that session instead, 0xfe reconnects it.
    for line in data.split(|&b| b == b'\n') {
        let Some((&who, text)) = line.split_first() else {
            continue;
        };
        let id = u64::from(who % 4);
        match parse_line(text) {
            Ok(Command::Nick(n)) | Ok(Command::Join(n)) => assert!(validate_name(n).is_ok(), "{n:?}"),
            Ok(Command::Msg { to, .. }) => assert!(validate_name(to).is_ok(), "{to:?}"),
            _ => {}
        }
        match who {
            0xff if live.remove(&id) => hub.disconnect(id, &mut out),
            0xfe if live.insert(id) => hub.connect(id, &mut out),
            _ if live.contains(&id) => hub.line(id, text, &mut out),
            _ => {}
        }
        check(&out, &live);
        let closes = out.closes().to_vec();
        out.clear();
        for closed in closes {
            if live.remove(&closed) {
                hub.disconnect(closed, &mut out);
            }
        }
        check(&out, &live);
        out.clear();
    }
    for id in live.drain() {
        hub.disconnect(id, &mut out);
    }
    assert_eq!(hub.sessions(), 0);
    assert_eq!(hub.rooms(), 0);
});

/// What the hub asked for goes only to live sessions, as whole lines.
fn check(out: &Output, live: &HashSet<u64>) {
    for d in out.deliveries() {
        assert!(d.data.ends_with(b"\n"), "{:?}", d.data);
        let unique: HashSet<&u64> = d.to.iter().collect();
        assert_eq!(unique.len(), d.to.len(), "a recipient twice in one delivery");
        for to in d.to.iter() {
            assert!(live.contains(to), "delivery to {to}, not connected");
        }
    }
    for c in out.closes() {
        assert!(live.contains(c), "close of {c}, not connected");
    }
}
