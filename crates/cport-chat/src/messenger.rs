//! The messenger's state, sans-I/O: the protocol's [`Hub`] (who is called
//! what, who is in which room) plus each room's recent history, turned
//! into what to send to whom and what to store.
//!
//! A joiner gets the room's last messages right after the join notice, from
//! memory, in the same step as the join: no message can slip between the
//! history and the live stream, and no database call runs on a worker.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use cport_proto::chat::{parse_line, Command, Hub, Output};

/// One stored room message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The room.
    pub room: String,
    /// When it was said, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who said it (the nickname at the time).
    pub nick: String,
    /// What was said.
    pub text: String,
}

impl Entry {
    /// The line a joiner is shown for this entry:
    /// `[history ROOM UNIX_MS] NICK: TEXT`.
    #[must_use]
    pub fn line(&self) -> Bytes {
        Bytes::from(format!(
            "[history {} {}] {}: {}\n",
            self.room, self.at_ms, self.nick, self.text
        ))
    }
}

/// How much history the messenger keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentLimits {
    /// Messages shown on joining a room.
    pub per_room: usize,
    /// Rooms whose recent messages are kept; past it, the room quiet for the
    /// longest is forgotten (its messages stay in the database).
    pub rooms: usize,
}

impl Default for RecentLimits {
    fn default() -> Self {
        RecentLimits {
            per_room: 50,
            rooms: 10_000,
        }
    }
}

/// What one step asks for, beside the hub's own [`Output`].
#[derive(Debug, Default)]
pub struct Extra {
    /// History lines for one session, sent after the hub's deliveries.
    pub history: Vec<(u64, Bytes)>,
    /// A message to store.
    pub store: Option<Entry>,
}

/// The messenger: the hub and the recent history of every room.
#[derive(Debug, Default)]
pub struct Messenger {
    hub: Hub,
    recent: HashMap<String, (i64, VecDeque<Entry>)>,
    limits: RecentLimits,
}

impl Messenger {
    /// A messenger that starts with `history` (oldest first, as loaded from
    /// the database).
    #[must_use]
    pub fn new(limits: RecentLimits, history: Vec<Entry>) -> Messenger {
        let mut m = Messenger {
            hub: Hub::new(),
            recent: HashMap::new(),
            limits,
        };
        for e in history {
            m.remember(e);
        }
        m
    }

    /// The hub (for counts and nicknames).
    #[must_use]
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// A session connected.
    pub fn connect(&mut self, id: u64, out: &mut Output) {
        self.hub.connect(id, out);
    }

    /// A session left.
    pub fn disconnect(&mut self, id: u64, out: &mut Output) {
        self.hub.disconnect(id, out);
    }

    /// One line from session `id` at `now_ms`: the hub's answer goes to
    /// `out`; history to show and a message to store go to the result.
    pub fn line(&mut self, id: u64, line: &[u8], now_ms: i64, out: &mut Output) -> Extra {
        let mut extra = Extra::default();
        let before = self.hub.room_of(id).map(str::to_owned);
        let cmd = parse_line(line);
        self.hub.line(id, line, out);
        match cmd {
            Ok(Command::Say(text)) => {
                if let (Some(room), Some(nick)) = (before, self.hub.nick(id)) {
                    let e = Entry {
                        room,
                        at_ms: now_ms,
                        nick: nick.to_owned(),
                        text: text.to_owned(),
                    };
                    self.remember(e.clone());
                    extra.store = Some(e);
                }
            }
            Ok(Command::Join(room)) if self.hub.room_of(id) == Some(room) && before.as_deref() != Some(room) => {
                if let Some((_, entries)) = self.recent.get(room) {
                    extra.history.extend(entries.iter().map(|e| (id, e.line())));
                }
            }
            _ => {}
        }
        extra
    }

    fn remember(&mut self, e: Entry) {
        if self.limits.per_room == 0 {
            return;
        }
        if !self.recent.contains_key(&e.room) && self.recent.len() >= self.limits.rooms.max(1) {
            let quietest = self
                .recent
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(r, _)| r.clone());
            if let Some(r) = quietest {
                self.recent.remove(&r);
            }
        }
        let (at, entries) = self.recent.entry(e.room.clone()).or_default();
        *at = (*at).max(e.at_ms);
        if entries.len() == self.limits.per_room {
            entries.pop_front();
        }
        entries.push_back(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &Output, id: u64) -> Vec<String> {
        out.deliveries()
            .filter(|d| d.to.contains(&id))
            .map(|d| String::from_utf8_lossy(d.data).into_owned())
            .collect()
    }

    #[test]
    fn joiner_gets_the_last_messages_after_the_join_notice() {
        let limits = RecentLimits { per_room: 3, rooms: 10 };
        let mut m = Messenger::new(limits, Vec::new());
        let mut out = Output::new();
        m.connect(1, &mut out);
        m.line(1, b"/join lobby", 0, &mut out);
        let mut stored = Vec::new();
        for i in 0..5 {
            stored.extend(m.line(1, format!("msg {i}").as_bytes(), 100 + i, &mut out).store);
        }
        assert_eq!(stored.len(), 5);
        assert_eq!(stored[4].text, "msg 4");
        m.connect(2, &mut out);
        out.clear();
        let extra = m.line(2, b"/join lobby", 200, &mut out);
        assert!(texts(&out, 2)[0].contains("joined lobby"));
        let hist: Vec<_> = extra
            .history
            .iter()
            .map(|(id, b)| (*id, String::from_utf8_lossy(b).into_owned()))
            .collect();
        assert_eq!(
            hist,
            vec![
                (2, "[history lobby 102] guest-1: msg 2\n".to_owned()),
                (2, "[history lobby 103] guest-1: msg 3\n".to_owned()),
                (2, "[history lobby 104] guest-1: msg 4\n".to_owned()),
            ]
        );
        // Failed commands and rejoining store and show nothing.
        assert!(m.line(2, b"/join lobby", 300, &mut out).history.is_empty());
        assert!(m.line(2, b"/nick guest-9", 300, &mut out).store.is_none());
    }

    #[test]
    fn recent_rooms_are_bounded() {
        let limits = RecentLimits { per_room: 2, rooms: 2 };
        let entries = (0..3)
            .map(|i| Entry {
                room: format!("r{i}"),
                at_ms: i,
                nick: "n".into(),
                text: "t".into(),
            })
            .collect();
        let m = Messenger::new(limits, entries);
        assert_eq!(m.recent.len(), 2);
        assert!(!m.recent.contains_key("r0"), "the quietest room was forgotten");
    }
}
