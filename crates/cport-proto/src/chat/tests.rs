use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// A hub plus a reusable output, with helpers that flatten deliveries.
struct Fixture {
    hub: Hub,
    out: Output,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            hub: Hub::new(),
            out: Output::new(),
        }
    }

    /// Connects sessions `ids`, discarding the welcome lines.
    fn with(ids: &[u64]) -> Self {
        let mut f = Self::new();
        for &id in ids {
            f.hub.connect(id, &mut f.out);
        }
        f.out.clear();
        f
    }

    /// Sends `line` from `id` and returns `(recipient, text)` pairs in order.
    fn send(&mut self, id: u64, line: &str) -> Vec<(u64, String)> {
        self.out.clear();
        self.hub.line(id, line.as_bytes(), &mut self.out);
        self.hub.check_invariants();
        flatten(&self.out)
    }

    /// Everything session `id` receives from `line` sent by `from`.
    fn seen_by(&mut self, from: u64, line: &str, id: u64) -> Vec<String> {
        let got = self.send(from, line);
        got.into_iter().filter(|(to, _)| *to == id).map(|(_, t)| t).collect()
    }
}

fn flatten(out: &Output) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    for d in out.deliveries() {
        for &to in d.to {
            all.push((to, String::from_utf8(d.data.to_vec()).unwrap()));
        }
    }
    all
}

#[test]
fn connect_assigns_guest_nick_and_welcomes() {
    let mut f = Fixture::new();
    f.hub.connect(7, &mut f.out);
    assert_eq!(f.hub.nick(7), Some("guest-7"));
    let got = flatten(&f.out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 7);
    assert!(got[0].1.starts_with("* welcome, you are guest-7."));
    assert!(got[0].1.ends_with('\n'));
}

#[test]
fn connecting_twice_is_ignored() {
    let mut f = Fixture::with(&[1]);
    f.send(1, "/nick alice");
    f.hub.connect(1, &mut f.out);
    assert_eq!(f.hub.nick(1), Some("alice"));
    assert_eq!(f.hub.sessions(), 1);
}

#[test]
fn events_for_unknown_sessions_produce_nothing() {
    let mut f = Fixture::with(&[1]);
    assert!(f.send(9, "/join lobby").is_empty());
    f.hub.disconnect(9, &mut f.out);
    assert!(f.out.is_empty());
    assert_eq!(f.hub.rooms(), 0);
}

#[test]
fn output_is_empty_only_with_nothing_to_send_or_close() {
    let mut f = Fixture::new();
    assert!(f.out.is_empty());
    f.hub.connect(1, &mut f.out);
    assert!(!f.out.is_empty(), "a welcome to send");
    f.out.clear();
    assert!(f.out.is_empty());
    f.hub.line(1, b"/quit", &mut f.out);
    assert_eq!(f.out.closes(), &[1]);
    assert!(!f.out.is_empty(), "a bye to send and a session to close");
}

#[test]
fn sessions_and_rooms_are_counted() {
    let mut f = Fixture::with(&[1, 2, 3]);
    assert_eq!((f.hub.sessions(), f.hub.rooms()), (3, 0));
    f.send(1, "/join a");
    f.send(2, "/join b");
    f.send(3, "/join b");
    assert_eq!(f.hub.rooms(), 2);
    f.hub.disconnect(2, &mut f.out);
    assert_eq!((f.hub.sessions(), f.hub.rooms()), (2, 2));
    f.send(1, "/quit");
    assert_eq!((f.hub.sessions(), f.hub.rooms()), (1, 1));
}

#[test]
fn message_without_room_is_an_error() {
    let mut f = Fixture::with(&[1]);
    assert_eq!(
        f.send(1, "hello"),
        vec![(1, "! you are not in a room (try /join ROOM)\n".to_owned())]
    );
}

#[test]
fn room_message_reaches_every_member_once_sender_included() {
    let mut f = Fixture::with(&[1, 2, 3, 4]);
    for id in [1, 2, 3] {
        f.send(id, "/join lobby");
    }
    f.send(4, "/join other");
    f.send(1, "/nick alice");
    f.out.clear();
    f.hub.line(1, b"hi all", &mut f.out);
    let deliveries: Vec<Delivery<'_>> = f.out.deliveries().collect();
    assert_eq!(deliveries.len(), 1, "one shared buffer for the broadcast");
    let mut to = deliveries[0].to.to_vec();
    to.sort_unstable();
    assert_eq!(to, vec![1, 2, 3]);
    assert_eq!(&deliveries[0].data[..], b"[lobby] alice: hi all\n");
}

#[test]
fn join_is_announced_to_the_room_including_the_joiner() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/join lobby");
    let mut got = f.send(2, "/join lobby");
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, "* guest-2 joined lobby\n".to_owned()),
            (2, "* guest-2 joined lobby\n".to_owned()),
        ]
    );
    assert_eq!(f.hub.room_of(2), Some("lobby"));
}

#[test]
fn joining_another_room_leaves_the_first() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/join a");
    f.send(2, "/join a");
    let got = f.send(2, "/join b");
    assert!(got.contains(&(1, "* guest-2 left a\n".to_owned())));
    assert!(got.contains(&(2, "* guest-2 left a\n".to_owned())));
    assert!(got.contains(&(2, "* guest-2 joined b\n".to_owned())));
    assert_eq!(f.hub.rooms(), 2);
    assert_eq!(f.hub.room_of(2), Some("b"));
}

#[test]
fn joining_the_current_room_is_an_error() {
    let mut f = Fixture::with(&[1]);
    f.send(1, "/join a");
    assert_eq!(f.send(1, "/join a"), vec![(1, "! you are already in a\n".to_owned())]);
}

#[test]
fn leave_notifies_and_drops_the_empty_room() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/join a");
    f.send(2, "/join a");
    let mut got = f.send(1, "/leave");
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, "* guest-1 left a\n".to_owned()),
            (2, "* guest-1 left a\n".to_owned())
        ]
    );
    f.send(2, "/leave");
    assert_eq!(f.hub.rooms(), 0);
    assert_eq!(
        f.send(2, "/leave"),
        vec![(2, "! you are not in a room (try /join ROOM)\n".to_owned())]
    );
}

#[test]
fn nick_change_is_unique_and_announced() {
    let mut f = Fixture::with(&[1, 2]);
    assert_eq!(
        f.send(1, "/nick alice"),
        vec![(1, "* guest-1 is now known as alice\n".to_owned())]
    );
    assert_eq!(
        f.send(2, "/nick alice"),
        vec![(2, "! nickname alice is taken\n".to_owned())]
    );
    assert_eq!(
        f.send(1, "/nick alice"),
        vec![(1, "* you are already alice\n".to_owned())]
    );
    f.send(1, "/join r");
    f.send(2, "/join r");
    let got = f.send(1, "/nick alicia");
    assert_eq!(got.len(), 2, "whole room hears of it");
    assert!(got.iter().all(|(_, t)| t == "* alice is now known as alicia\n"));
    // The old name is free again.
    assert_eq!(f.send(2, "/nick alice")[0].1, "* guest-2 is now known as alice\n");
}

#[test]
fn nicks_are_case_sensitive() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/nick Bob");
    assert_eq!(f.send(2, "/nick bob")[0].1, "* guest-2 is now known as bob\n");
}

#[test]
fn guest_prefix_is_reserved() {
    let mut f = Fixture::with(&[1, 2]);
    assert_eq!(
        f.send(1, "/nick guest-2"),
        vec![(1, "! names starting with guest- are reserved\n".to_owned())]
    );
}

#[test]
fn who_lists_sorted_members_of_the_current_room() {
    let mut f = Fixture::with(&[1, 2, 3]);
    f.send(1, "/nick zed");
    f.send(2, "/nick amy");
    f.send(1, "/join r");
    f.send(2, "/join r");
    f.send(3, "/join elsewhere");
    assert_eq!(f.send(1, "/who"), vec![(1, "* in r: amy, zed\n".to_owned())]);
    assert_eq!(f.seen_by(3, "/who", 3), vec!["* in elsewhere: guest-3\n"]);
}

#[test]
fn who_without_room_is_an_error() {
    let mut f = Fixture::with(&[1]);
    assert_eq!(f.send(1, "/who")[0].1, "! you are not in a room (try /join ROOM)\n");
}

#[test]
fn rooms_lists_names_and_counts() {
    let mut f = Fixture::with(&[1, 2, 3]);
    assert_eq!(
        f.send(1, "/rooms"),
        vec![(1, "* no rooms yet (/join ROOM creates one)\n".to_owned())]
    );
    f.send(1, "/join b");
    f.send(2, "/join b");
    f.send(3, "/join a");
    assert_eq!(f.send(1, "/rooms"), vec![(1, "* rooms: a (1), b (2)\n".to_owned())]);
}

#[test]
fn long_lists_are_truncated() {
    let ids: Vec<u64> = (0..(LIST_LIMIT as u64 + 5)).collect();
    let mut f = Fixture::with(&ids);
    for &id in &ids {
        f.send(id, &format!("/join r{id}"));
    }
    let got = f.send(0, "/rooms");
    assert!(got[0].1.ends_with(", and 5 more\n"), "{}", got[0].1);
    for &id in &ids {
        f.send(id, "/join big");
    }
    let got = f.send(0, "/who");
    assert!(got[0].1.ends_with(", and 5 more\n"), "{}", got[0].1);
}

#[test]
fn a_list_of_exactly_the_limit_is_not_summarised() {
    let ids: Vec<u64> = (0..LIST_LIMIT as u64).collect();
    let mut f = Fixture::with(&ids);
    for &id in &ids {
        f.send(id, &format!("/join r{id}"));
    }
    let got = f.send(0, "/rooms");
    assert!(!got[0].1.contains("more"), "{}", got[0].1);
    for &id in &ids {
        f.send(id, "/join big");
    }
    let got = f.send(0, "/who");
    assert!(!got[0].1.contains("more"), "{}", got[0].1);
}

#[test]
fn private_message_goes_to_target_with_echo_to_sender() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/nick alice");
    f.send(2, "/nick bob");
    assert_eq!(
        f.send(1, "/msg bob psst"),
        vec![
            (2, "[pm from alice] psst\n".to_owned()),
            (1, "[pm to bob] psst\n".to_owned()),
        ]
    );
}

#[test]
fn private_message_to_unknown_nick_is_an_error() {
    let mut f = Fixture::with(&[1]);
    assert_eq!(
        f.send(1, "/msg nobody hi"),
        vec![(1, "! no such nickname: nobody\n".to_owned())]
    );
}

#[test]
fn quit_says_bye_tells_the_room_and_closes() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/nick alice");
    f.send(1, "/join r");
    f.send(2, "/join r");
    let got = f.send(1, "/quit");
    assert_eq!(got, vec![(1, "* bye\n".to_owned()), (2, "* alice left r\n".to_owned())]);
    assert_eq!(f.out.closes(), &[1]);
    assert_eq!(f.hub.nick(1), None);
    // Lines after /quit and the later disconnect are no-ops.
    assert!(f.send(1, "hello").is_empty());
    f.hub.disconnect(1, &mut f.out);
    assert_eq!(f.send(2, "/nick alice")[0].1, "* guest-2 is now known as alice\n");
}

#[test]
fn disconnect_frees_nick_and_room() {
    let mut f = Fixture::with(&[1, 2]);
    f.send(1, "/nick alice");
    f.send(1, "/join r");
    f.out.clear();
    f.hub.disconnect(1, &mut f.out);
    f.hub.check_invariants();
    assert!(f.out.closes().is_empty());
    assert_eq!(f.hub.rooms(), 0);
    assert_eq!(f.hub.sessions(), 1);
    assert_eq!(f.send(2, "/nick alice")[0].1, "* guest-2 is now known as alice\n");
}

#[test]
fn bad_input_gets_an_error_line() {
    let mut f = Fixture::with(&[1]);
    assert_eq!(
        f.send(1, "/frobnicate")[0].1,
        "! unknown command /frobnicate (try /help)\n"
    );
    f.out.clear();
    f.hub.line(1, b"\xc3\x28", &mut f.out);
    assert_eq!(flatten(&f.out), vec![(1, "! line is not valid UTF-8\n".to_owned())]);
    assert!(f.send(1, "   ").is_empty(), "blank lines are ignored");
}

#[test]
fn help_lists_commands() {
    let mut f = Fixture::with(&[1]);
    let got = f.send(1, "/help");
    assert_eq!(got.len(), 1);
    for cmd in ["/nick", "/join", "/leave", "/rooms", "/who", "/msg", "/quit"] {
        assert!(got[0].1.contains(cmd), "help mentions {cmd}");
    }
    assert!(got[0].1.lines().all(|l| l.starts_with("* ")));
}

#[derive(Debug, Clone)]
enum Op {
    Connect(u64),
    Disconnect(u64),
    Line(u64, Vec<u8>),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("guest-1".to_owned()),
        "[a-c]{1,2}",
    ]
}

fn chat_line() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        name().prop_map(|n| format!("/nick {n}")),
        name().prop_map(|n| format!("/join {n}")),
        (name(), "[a-z ]{0,8}").prop_map(|(n, t)| format!("/msg {n} {t}")),
        Just("/leave".to_owned()),
        Just("/rooms".to_owned()),
        Just("/who".to_owned()),
        Just("/quit".to_owned()),
        Just("/help".to_owned()),
        "[a-z /]{0,12}",
    ];
    prop_oneof![
        4 => text.prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..6;
    prop_oneof![
        1 => id.clone().prop_map(Op::Connect),
        1 => id.clone().prop_map(Op::Disconnect),
        6 => (id, chat_line()).prop_map(|(id, l)| Op::Line(id, l)),
    ]
}

proptest! {
    #[test]
    fn random_sessions_keep_the_hub_consistent(ops in prop::collection::vec(op(), 0..120)) {
        let mut hub = Hub::new();
        let mut out = Output::new();
        for op in ops {
            out.clear();
            // Room membership before the op, to check broadcast delivery.
            let before: Option<(String, Vec<u64>)> = match &op {
                Op::Line(id, _) => hub.room_of(*id).map(|r| {
                    let mut m: Vec<u64> =
                        (0..6).filter(|i| hub.room_of(*i) == Some(r)).collect();
                    m.sort_unstable();
                    (r.to_owned(), m)
                }),
                _ => None,
            };
            match &op {
                Op::Connect(id) => hub.connect(*id, &mut out),
                Op::Disconnect(id) => hub.disconnect(*id, &mut out),
                Op::Line(id, line) => hub.line(*id, line, &mut out),
            }
            hub.check_invariants();

            let closed: Vec<u64> = out.closes().to_vec();
            let mut per_data: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
            for d in out.deliveries() {
                let mut seen = d.to.to_vec();
                seen.sort_unstable();
                seen.dedup();
                prop_assert_eq!(seen.len(), d.to.len(), "no duplicate recipient");
                prop_assert!(d.data.ends_with(b"\n"));
                for to in d.to {
                    let live = hub.nick(*to).is_some() || closed.contains(to);
                    prop_assert!(live, "delivery to a session that is gone");
                }
                per_data.entry(d.data.to_vec()).or_default().extend_from_slice(d.to);
            }

            // A room message reaches every member exactly once.
            if let (Op::Line(id, line), Some((room, members))) = (&op, before) {
                if let Ok(Command::Say(text)) = parse_line(line) {
                    let nick = hub.nick(*id).unwrap_or_default();
                    let msg = format!("[{room}] {nick}: {text}\n").into_bytes();
                    let mut got = per_data.remove(&msg).unwrap_or_default();
                    got.sort_unstable();
                    prop_assert_eq!(got, members);
                }
            }
        }
    }
}

/// The members of `id`'s room among the sessions a proptest uses (0..6).
fn room_members(hub: &Hub, id: u64) -> Vec<u64> {
    match hub.room_of(id) {
        Some(room) => (0..6).filter(|i| hub.room_of(*i) == Some(room)).collect(),
        None => Vec::new(),
    }
}

/// Room isolation: every delivery an event of session X causes goes only to
/// X itself or to members of X's room, as it was before the event or is
/// after it (a join tells the old room and the new one); the one exception
/// is a private message, which reaches its target and nothing else. Every
/// notice (join, leave, quit, nick change) is covered, for any sequence.
#[test]
fn every_delivery_stays_in_the_senders_room() {
    crate::coverage::run_with_coverage(
        prop::collection::vec(op(), 0..120),
        256,
        &[("isolation at stake", 128)],
        |ops| {
            let mut hub = Hub::new();
            let mut out = Output::new();
            let mut at_stake = false;
            for op in ops {
                out.clear();
                let id = match &op {
                    Op::Connect(id) | Op::Disconnect(id) | Op::Line(id, _) => *id,
                };
                let before = room_members(&hub, id);
                let pm_target = match &op {
                    Op::Line(_, line) => match parse_line(line) {
                        Ok(Command::Msg { to, .. }) => (0..6).find(|i| hub.nick(*i) == Some(to)),
                        _ => None,
                    },
                    _ => None,
                };
                match &op {
                    Op::Connect(id) => hub.connect(*id, &mut out),
                    Op::Disconnect(id) => hub.disconnect(*id, &mut out),
                    Op::Line(id, line) => hub.line(*id, line, &mut out),
                }
                let after = room_members(&hub, id);
                let allowed = |to: u64| to == id || before.contains(&to) || after.contains(&to);
                let outsiders = (0..6).any(|i| hub.nick(i).is_some() && !allowed(i));
                for d in out.deliveries() {
                    let pm = d.data.starts_with(b"[pm from ");
                    at_stake |= outsiders && d.data.starts_with(b"* ");
                    for &to in d.to {
                        prop_assert!(
                            allowed(to) || (pm && Some(to) == pm_target),
                            "{:?} by session {} reached session {} (room before {:?}, after {:?}): {:?}",
                            op,
                            id,
                            to,
                            before,
                            after,
                            String::from_utf8_lossy(d.data)
                        );
                    }
                }
            }
            Ok(if at_stake {
                "isolation at stake"
            } else {
                "no notice with outsiders"
            })
        },
    );
}
