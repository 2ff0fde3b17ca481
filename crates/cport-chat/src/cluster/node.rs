//! One node of the clustered messenger, sans-I/O: the local [`Messenger`]
//! (sessions, nicknames, local room members) plus what makes rooms span
//! nodes, all through one [`RedisLink`]:
//!
//! - a room message is delivered to the local members at once (so local
//!   rooms work while Redis is away) and published on the room's channel
//!   with this node's origin and a sequence number; other nodes deliver it
//!   to their members, dropping what they already delivered (a replay after
//!   a reconnect) and their own echoes;
//! - a node subscribes to a room's channel while it has local members;
//! - presence lives in Redis: per room a sorted set of nicknames scored by
//!   expiry, refreshed by a heartbeat, so a dead node's users vanish within
//!   the expiry; a nickname is a key `SET NX` with the same expiry;
//! - `/who` and `/rooms` ask Redis, `/msg` finds the recipient's node and
//!   publishes on that node's channel;
//! - each room's history is a stream (`XADD MAXLEN ~`), read on a join.
//!
//! Time comes in as arguments; the caller carries the link's bytes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport_proto::chat::{parse_line, Command, Output, GUEST_PREFIX, LIST_LIMIT};

use super::link::{strings_of, LinkConfig, LinkEvent, LinkStats, RedisLink, Replay};
use super::resp::{bytes_of, int_of, items_of, str_of, Frame};
use crate::messenger::{Entry, Messenger};

/// Settings of a clustered node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Redis's address.
    pub redis: SocketAddr,
    /// This node's name (shown in logs; unique per node).
    pub node_id: String,
    /// A user whose node stops refreshing leaves presence after this.
    pub presence_ttl: Duration,
    /// Messages kept per room stream (approximately: `MAXLEN ~`).
    pub history_len: usize,
    /// Messages shown to a joiner.
    pub history_on_join: usize,
    /// The link's limits and backoff.
    pub link: LinkConfig,
    /// Prefix of every Redis key and channel.
    pub prefix: String,
}

impl ClusterConfig {
    /// Defaults for a node `node_id` on Redis at `redis`.
    #[must_use]
    pub fn new(redis: SocketAddr, node_id: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            redis,
            node_id: node_id.into(),
            presence_ttl: Duration::from_secs(10),
            history_len: 1000,
            history_on_join: 50,
            link: LinkConfig::default(),
            prefix: "cport:chat:".into(),
        }
    }
}

/// Counters of the node beside the link's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Room messages (and notices) published.
    pub published: u64,
    /// Publishes refused by the bounded queue (delivered locally only).
    pub publish_dropped: u64,
    /// Messages from other nodes delivered here.
    pub remote_delivered: u64,
    /// Repeats from other nodes dropped (replays after a reconnect).
    pub duplicates: u64,
    /// The link's counters.
    pub link: LinkStats,
    /// Whether the link is up now.
    pub up: bool,
    /// Rooms subscribed now.
    pub rooms_subscribed: u64,
}

/// Messages for local sessions that the hub did not produce: each to its
/// recipients, in order.
#[derive(Debug, Default)]
pub struct Sends {
    /// `(recipients, data)`, in the order to send them.
    pub items: Vec<(Vec<u64>, Bytes)>,
}

impl Sends {
    fn to(&mut self, id: u64, data: impl Into<Bytes>) {
        self.items.push((vec![id], data.into()));
    }
}

/// What a reply answers.
#[derive(Debug)]
pub enum Tag {
    /// `SET nick NX`: the claim of session `id` on `nick`.
    Claim {
        /// The session.
        id: u64,
        /// The nickname claimed.
        nick: String,
    },
    /// `/who` of session `id` in `room`.
    Who {
        /// The session.
        id: u64,
        /// Its room.
        room: String,
    },
    /// `/rooms` of session `id`.
    Rooms {
        /// The session.
        id: u64,
    },
    /// `/msg`: where `to` lives.
    MsgLookup {
        /// The sender.
        id: u64,
        /// The recipient's nickname.
        to: String,
        /// The text.
        text: String,
    },
    /// `/msg`: the publish to the recipient's node.
    MsgSent {
        /// The sender.
        id: u64,
        /// The recipient's nickname.
        to: String,
        /// The text.
        text: String,
    },
    /// The history a joiner of `room` is shown.
    History {
        /// The joiner.
        id: u64,
        /// The room.
        room: String,
    },
}

/// Counts users in live rooms: `[room, count, ...]`, expired entries removed.
const ROOMS_SCRIPT: &str = "\
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, r in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[2] .. r
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  local n = redis.call('ZCARD', k)
  if n > 0 then out[#out + 1] = r; out[#out + 1] = n end
end
return out";

/// The clustered side of one node.
#[derive(Debug)]
pub struct ClusterNode {
    cfg: ClusterConfig,
    /// `node_id@start_ms`: a restarted node is a new origin.
    origin: String,
    seq: u64,
    link: RedisLink<Tag>,
    /// Local members per room.
    rooms: HashMap<String, HashSet<u64>>,
    /// Local nicknames, both ways.
    nick_of: HashMap<u64, String>,
    id_of: HashMap<String, u64>,
    /// The last sequence delivered per (origin, room).
    last_seen: HashMap<(String, String), u64>,
    next_beat: Instant,
    stats: ClusterStats,
}

/// A session's place before and after one step.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    nick: Option<String>,
    room: Option<String>,
}

fn place(m: &Messenger, id: u64) -> Place {
    Place {
        nick: m.hub().nick(id).map(str::to_owned),
        room: m.hub().room_of(id).map(str::to_owned),
    }
}

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

fn bs(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

impl ClusterNode {
    /// A node that connects at once; `start_ms` makes its origin unique.
    #[must_use]
    pub fn new(cfg: ClusterConfig, now: Instant, start_ms: i64) -> ClusterNode {
        let origin = format!("{}@{start_ms}", cfg.node_id);
        let mut link = RedisLink::new(cfg.link, now);
        link.subscribe(b(format!("{}node:{origin}", cfg.prefix)));
        ClusterNode {
            cfg,
            origin,
            seq: 0,
            link,
            rooms: HashMap::new(),
            nick_of: HashMap::new(),
            id_of: HashMap::new(),
            last_seen: HashMap::new(),
            next_beat: now,
            stats: ClusterStats::default(),
        }
    }

    /// This node's origin (`node_id@start_ms`).
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The link (for the I/O glue).
    pub fn link(&mut self) -> &mut RedisLink<Tag> {
        &mut self.link
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            link: self.link.stats(),
            up: self.link.is_up(),
            rooms_subscribed: self.rooms.len() as u64,
            ..self.stats
        }
    }

    fn key(&self, kind: &str, name: &str) -> Bytes {
        b(format!("{}{kind}:{name}", self.cfg.prefix))
    }

    fn ttl_ms(&self) -> u64 {
        self.cfg.presence_ttl.as_millis() as u64
    }

    /// A session connected (the hub already welcomed it).
    pub fn connect(&mut self, m: &Messenger, id: u64, now_ms: i64) {
        let _ = now_ms;
        if let Some(nick) = m.hub().nick(id) {
            let nick = nick.to_owned();
            self.claim_plain(id, &nick);
            self.nick_of.insert(id, nick.clone());
            self.id_of.insert(nick, id);
        }
    }

    /// Registers `nick` for `id` without `NX` (guest names are unique by
    /// construction; the heartbeat re-registers after a Redis restart).
    fn claim_plain(&mut self, id: u64, nick: &str) {
        let args = [
            bs("SET"),
            self.key("nick", nick),
            b(format!("{} {id}", self.origin)),
            bs("PX"),
            b(self.ttl_ms().to_string()),
        ];
        let _ = self.link.command(&args, None, Replay::IfUnsent);
    }

    /// A session left (`before` is where it was).
    pub fn disconnect(&mut self, m: &mut Messenger, id: u64, now_ms: i64, out: &mut Output) {
        let before = place(m, id);
        m.disconnect(id, out);
        self.moved(id, &before, &Place { nick: None, room: None }, now_ms);
    }

    /// One line from session `id`.
    pub fn line(&mut self, m: &mut Messenger, id: u64, line: &[u8], now_ms: i64, out: &mut Output, sends: &mut Sends) {
        let before = place(m, id);
        let Some(nick) = before.nick.clone() else { return };
        match parse_line(line) {
            Ok(Command::Nick(new)) if !new.starts_with(GUEST_PREFIX) && new != nick => {
                let args = [
                    bs("SET"),
                    self.key("nick", new),
                    b(format!("{} {id}", self.origin)),
                    bs("NX"),
                    bs("PX"),
                    b(self.ttl_ms().to_string()),
                ];
                let tag = Tag::Claim {
                    id,
                    nick: new.to_owned(),
                };
                if self.link.command(&args, Some(tag), Replay::Never).is_err() {
                    sends.to(
                        id,
                        "! the cluster is unreachable: nicknames cannot change until it is back\n",
                    );
                }
                return;
            }
            Ok(Command::Who) if self.link.is_up() => {
                if let Some(room) = before.room.clone() {
                    let args = [
                        bs("ZRANGEBYSCORE"),
                        self.key("who", &room),
                        b(now_ms.to_string()),
                        bs("+inf"),
                    ];
                    if self
                        .link
                        .command(&args, Some(Tag::Who { id, room }), Replay::Never)
                        .is_ok()
                    {
                        return;
                    }
                }
            }
            Ok(Command::Rooms) if self.link.is_up() => {
                let args = [
                    bs("EVAL"),
                    bs(ROOMS_SCRIPT),
                    bs("1"),
                    self.key("rooms", "live"),
                    b(now_ms.to_string()),
                    b(format!("{}who:", self.cfg.prefix)),
                ];
                if self.link.command(&args, Some(Tag::Rooms { id }), Replay::Never).is_ok() {
                    return;
                }
            }
            Ok(Command::Msg { to, text }) if !self.id_of.contains_key(to) => {
                let args = [bs("GET"), self.key("nick", to)];
                let tag = Tag::MsgLookup {
                    id,
                    to: to.to_owned(),
                    text: text.to_owned(),
                };
                if self.link.command(&args, Some(tag), Replay::Never).is_err() {
                    sends.to(
                        id,
                        format!("! no such nickname on this node: {to} (the cluster is unreachable)\n"),
                    );
                }
                return;
            }
            _ => {}
        }
        let local_only = matches!(parse_line(line), Ok(Command::Who | Command::Rooms)) && !self.link.is_up();
        let extra = m.line(id, line, now_ms, out);
        if local_only {
            sends.to(id, "* (the cluster is unreachable: this node only)\n");
        }
        let after = place(m, id);
        if let (Some(e), Some(room)) = (&extra.store, &before.room) {
            let line = format!("[{room}] {}: {}\n", e.nick, e.text);
            self.publish(room, line.into());
            self.store(e);
        }
        self.moved(id, &before, &after, now_ms);
    }

    /// Publishes `data` to the room's other nodes (local members have it).
    fn publish(&mut self, room: &str, data: Bytes) {
        self.seq += 1;
        let mut payload = format!("{} {}\n", self.origin, self.seq).into_bytes();
        payload.extend_from_slice(&data);
        let args = [
            bs(self.link.publish_verb()),
            self.key("room", room),
            Bytes::from(payload),
        ];
        match self.link.command(&args, None, Replay::Always) {
            Ok(()) => self.stats.published += 1,
            Err(_) => self.stats.publish_dropped += 1,
        }
    }

    fn store(&mut self, e: &Entry) {
        let args = [
            bs("XADD"),
            self.key("history", &e.room),
            bs("MAXLEN"),
            bs("~"),
            b(self.cfg.history_len.to_string()),
            bs("*"),
            bs("at"),
            b(e.at_ms.to_string()),
            bs("nick"),
            b(e.nick.clone()),
            bs("text"),
            b(e.text.clone()),
        ];
        let _ = self.link.command(&args, None, Replay::IfUnsent);
    }

    /// Carries a session's change of nickname or room to Redis and the
    /// room's other nodes.
    fn moved(&mut self, id: u64, before: &Place, after: &Place, now_ms: i64) {
        let room_changed = before.room != after.room;
        let nick_changed = before.nick != after.nick;
        if !room_changed && !nick_changed {
            return;
        }
        if let (Some(room), Some(nick)) = (&before.room, &before.nick) {
            let args = [bs("ZREM"), self.key("who", room), b(nick.clone())];
            let _ = self.link.command(&args, None, Replay::IfUnsent);
            if room_changed {
                self.publish(room, b(format!("* {nick} left {room}\n")));
                if let Some(members) = self.rooms.get_mut(room) {
                    members.remove(&id);
                    if members.is_empty() {
                        self.rooms.remove(room);
                        self.link.unsubscribe(&self.key("room", room));
                        self.last_seen.retain(|(_, r), _| r != room);
                    }
                }
            }
        }
        if nick_changed {
            if let Some(old) = &before.nick {
                self.nick_of.remove(&id);
                self.id_of.remove(old);
                let args = [bs("DEL"), self.key("nick", old)];
                let _ = self.link.command(&args, None, Replay::IfUnsent);
            }
            if let Some(new) = &after.nick {
                self.nick_of.insert(id, new.clone());
                self.id_of.insert(new.clone(), id);
            }
        }
        let (Some(room), Some(nick)) = (&after.room, &after.nick) else {
            return;
        };
        if room_changed {
            let first = !self.rooms.contains_key(room);
            self.rooms.entry(room.clone()).or_default().insert(id);
            if first {
                self.link.subscribe(self.key("room", room));
            }
        }
        let exp = (now_ms + self.ttl_ms() as i64).to_string();
        let args = [bs("ZADD"), self.key("who", room), b(exp.clone()), b(nick.clone())];
        let _ = self.link.command(&args, None, Replay::IfUnsent);
        let args = [bs("ZADD"), self.key("rooms", "live"), b(exp), b(room.clone())];
        let _ = self.link.command(&args, None, Replay::IfUnsent);
        if !room_changed {
            let old = before.nick.clone().unwrap_or_default();
            self.publish(room, b(format!("* {old} is now known as {nick}\n")));
            return;
        }
        self.publish(room, b(format!("* {nick} joined {room}\n")));
        if self.cfg.history_on_join > 0 {
            let args = [
                bs("XREVRANGE"),
                self.key("history", room),
                bs("+"),
                bs("-"),
                bs("COUNT"),
                b(self.cfg.history_on_join.to_string()),
            ];
            let tag = Tag::History { id, room: room.clone() };
            let _ = self.link.command(&args, Some(tag), Replay::Never);
        }
    }

    /// Refreshes presence when due: every local nickname and room member
    /// re-registered with a new expiry (which also restores them after a
    /// Redis restart).
    pub fn tick(&mut self, now: Instant, now_ms: i64) {
        if now < self.next_beat {
            return;
        }
        self.next_beat = now + self.cfg.presence_ttl / 3;
        if !self.link.is_up() {
            return;
        }
        self.beat(now_ms);
    }

    fn beat(&mut self, now_ms: i64) {
        let ttl = self.ttl_ms().to_string();
        let exp = (now_ms + self.ttl_ms() as i64).to_string();
        let nicks: Vec<(u64, String)> = self.nick_of.iter().map(|(i, n)| (*i, n.clone())).collect();
        for (id, nick) in nicks {
            let args = [
                bs("SET"),
                self.key("nick", &nick),
                b(format!("{} {id}", self.origin)),
                bs("PX"),
                b(ttl.clone()),
            ];
            let _ = self.link.command(&args, None, Replay::Never);
        }
        let mut live = vec![bs("ZADD"), self.key("rooms", "live")];
        let rooms: Vec<(String, Vec<u64>)> = self
            .rooms
            .iter()
            .map(|(r, m)| (r.clone(), m.iter().copied().collect()))
            .collect();
        for (room, members) in rooms {
            let mut args = vec![bs("ZADD"), self.key("who", &room)];
            for id in members {
                if let Some(n) = self.nick_of.get(&id) {
                    args.push(b(exp.clone()));
                    args.push(b(n.clone()));
                }
            }
            if args.len() > 2 {
                let _ = self.link.command(&args, None, Replay::Never);
            }
            live.push(b(exp.clone()));
            live.push(b(room));
        }
        if live.len() > 2 {
            let _ = self.link.command(&live, None, Replay::Never);
        }
    }

    /// Handles what the link reported since the last call.
    pub fn pump(&mut self, m: &mut Messenger, now: Instant, now_ms: i64, sends: &mut Sends) {
        let _ = now;
        while let Some(ev) = self.link.poll_event() {
            match ev {
                LinkEvent::Up {
                    version,
                    sharded,
                    reconnected,
                } => {
                    if reconnected {
                        tracing::warn!(node = %self.origin, %version, sharded, "chat cluster: Redis is back; rooms re-subscribed");
                    } else {
                        tracing::info!(node = %self.origin, %version, sharded, "chat cluster: Redis link up");
                    }
                    self.beat(now_ms);
                }
                LinkEvent::Down {
                    reason,
                    was_up,
                    retry_in,
                } => {
                    if was_up {
                        tracing::warn!(node = %self.origin, %reason, ?retry_in, "chat cluster: Redis link lost; local rooms go on, reconnecting");
                    } else {
                        tracing::debug!(node = %self.origin, %reason, ?retry_in, "chat cluster: Redis connect failed");
                    }
                }
                LinkEvent::Message { channel, payload } => self.on_message(&channel, &payload, sends),
                LinkEvent::Reply(tag, frame) => self.on_reply(m, tag, &frame, now_ms, sends),
                LinkEvent::Failed(tag) => on_failed(tag, sends),
            }
        }
    }

    fn on_message(&mut self, channel: &[u8], payload: &[u8], sends: &mut Sends) {
        let Some(name) = channel.strip_prefix(self.cfg.prefix.as_bytes()) else {
            return;
        };
        if let Some(room) = name.strip_prefix(b"room:") {
            let Ok(room) = std::str::from_utf8(room) else { return };
            let Some((head, body)) = split_once(payload, b'\n') else {
                return;
            };
            let Some((origin, seq)) = std::str::from_utf8(head).ok().and_then(|h| h.rsplit_once(' ')) else {
                return;
            };
            let Ok(seq) = seq.parse::<u64>() else { return };
            if origin == self.origin {
                return; // delivered locally when said
            }
            let Some(members) = self.rooms.get(room) else { return };
            let last = self.last_seen.entry((origin.to_owned(), room.to_owned())).or_insert(0);
            if seq <= *last {
                self.stats.duplicates += 1;
                return;
            }
            *last = seq;
            self.stats.remote_delivered += 1;
            sends
                .items
                .push((members.iter().copied().collect(), Bytes::copy_from_slice(body)));
        } else if name.starts_with(b"node:") {
            // A private message: `from\nto\ntext`.
            let mut parts = payload.splitn(3, |c| *c == b'\n');
            let (Some(from), Some(to), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
                return;
            };
            let (Ok(from), Ok(to), Ok(text)) = (
                std::str::from_utf8(from),
                std::str::from_utf8(to),
                std::str::from_utf8(text),
            ) else {
                return;
            };
            if let Some(&id) = self.id_of.get(to) {
                sends.to(id, format!("[pm from {from}] {text}\n"));
            }
        }
    }

    fn on_reply(&mut self, m: &mut Messenger, tag: Tag, frame: &Frame, now_ms: i64, sends: &mut Sends) {
        match tag {
            Tag::Claim { id, nick } => {
                if str_of(frame) != Some("OK") {
                    sends.to(id, format!("! nickname {nick} is taken\n"));
                    return;
                }
                let before = place(m, id);
                if before.nick.is_none() {
                    // Gone meanwhile: give the name back.
                    let _ = self
                        .link
                        .command(&[bs("DEL"), self.key("nick", &nick)], None, Replay::IfUnsent);
                    return;
                }
                let mut out = Output::new();
                m.line(id, format!("/nick {nick}").as_bytes(), now_ms, &mut out);
                for d in out.deliveries() {
                    sends.items.push((d.to.to_vec(), d.data.clone()));
                }
                let after = place(m, id);
                if after.nick.as_deref() != Some(nick.as_str()) {
                    let _ = self
                        .link
                        .command(&[bs("DEL"), self.key("nick", &nick)], None, Replay::IfUnsent);
                }
                self.moved(id, &before, &after, now_ms);
            }
            Tag::Who { id, room } => {
                let mut nicks = strings_of(frame);
                nicks.sort_unstable();
                nicks.dedup();
                let total = nicks.len();
                nicks.truncate(LIST_LIMIT);
                let mut text = nicks.join(", ");
                more(&mut text, total);
                sends.to(id, format!("* in {room}: {text}\n"));
            }
            Tag::Rooms { id } => {
                let items = items_of(frame).unwrap_or_default();
                let mut rooms: Vec<(String, i64)> = items
                    .chunks(2)
                    .filter_map(|p| match p {
                        [r, n] => Some((str_of(r)?.to_owned(), int_of(n)?)),
                        _ => None,
                    })
                    .collect();
                if rooms.is_empty() {
                    sends.to(id, "* no rooms yet (/join ROOM creates one)\n");
                    return;
                }
                rooms.sort_unstable();
                let total = rooms.len();
                let shown: Vec<String> = rooms
                    .iter()
                    .take(LIST_LIMIT)
                    .map(|(r, n)| format!("{r} ({n})"))
                    .collect();
                let mut text = shown.join(", ");
                more(&mut text, total);
                sends.to(id, format!("* rooms: {text}\n"));
            }
            Tag::MsgLookup { id, to, text } => {
                let Some(owner) = str_of(frame)
                    .and_then(|v| v.rsplit_once(' '))
                    .map(|(o, _)| o.to_owned())
                else {
                    sends.to(id, format!("! no such nickname: {to}\n"));
                    return;
                };
                let Some(from) = m.hub().nick(id).map(str::to_owned) else {
                    return;
                };
                let args = [
                    bs(self.link.publish_verb()),
                    b(format!("{}node:{owner}", self.cfg.prefix)),
                    b(format!("{from}\n{to}\n{text}")),
                ];
                let tag = Tag::MsgSent { id, to, text };
                if let Err((_, Some(tag))) = self.link.command(&args, Some(tag), Replay::Never) {
                    on_failed(tag, sends);
                }
            }
            Tag::MsgSent { id, to, text } => {
                if int_of(frame).unwrap_or(0) > 0 {
                    sends.to(id, format!("[pm to {to}] {text}\n"));
                } else {
                    sends.to(id, format!("! no such nickname: {to}\n"));
                }
            }
            Tag::History { id, room } => {
                if m.hub().room_of(id) != Some(room.as_str()) {
                    return;
                }
                let mut entries: Vec<Entry> = items_of(frame)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|e| stream_entry(&room, e))
                    .collect();
                entries.reverse();
                for e in entries {
                    sends.to(id, e.line());
                }
            }
        }
    }
}

/// A command's reply will not come: tell whoever waits.
fn on_failed(tag: Tag, sends: &mut Sends) {
    let (id, text) = match tag {
        Tag::Claim { id, .. } => (id, "! the cluster is unreachable: try /nick again later\n".to_owned()),
        Tag::MsgLookup { id, to, .. } | Tag::MsgSent { id, to, .. } => (
            id,
            format!("! {to} cannot be reached now (the cluster is unreachable)\n"),
        ),
        Tag::Who { id, .. } | Tag::Rooms { id } => (id, "! the cluster is unreachable; try again\n".to_owned()),
        Tag::History { .. } => return,
    };
    sends.to(id, text);
}

/// One stream entry `[id, [field, value, ...]]` as a history entry.
fn stream_entry(room: &str, e: &Frame) -> Option<Entry> {
    let parts = items_of(e)?;
    let fields = items_of(parts.get(1)?)?;
    let mut entry = Entry {
        room: room.to_owned(),
        at_ms: 0,
        nick: String::new(),
        text: String::new(),
    };
    for kv in fields.chunks(2) {
        let [k, v] = kv else { continue };
        let v = str_of(v)?;
        match bytes_of(k)? {
            b"at" => entry.at_ms = v.parse().ok()?,
            b"nick" => entry.nick = v.to_owned(),
            b"text" => entry.text = v.to_owned(),
            _ => {}
        }
    }
    Some(entry)
}

fn more(text: &mut String, total: usize) {
    if total > LIST_LIMIT {
        let _ = write!(text, ", and {} more", total - LIST_LIMIT);
    }
}

fn split_once(s: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|c| *c == at)?;
    Some((&s[..i], &s[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messenger::RecentLimits;

    const HELLO: &[u8] = b"%1\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n";

    struct Rig {
        node: ClusterNode,
        m: Messenger,
        out: Output,
        sends: Sends,
        now: Instant,
    }

    impl Rig {
        fn new() -> Rig {
            let now = Instant::now();
            let cfg = ClusterConfig::new("127.0.0.1:1".parse().unwrap(), "me");
            let mut node = ClusterNode::new(cfg, now, 1);
            assert!(node.link().poll_connect(now));
            node.link().on_connected();
            let hello = node.link().poll_transmit().unwrap();
            assert!(hello.starts_with(b"*2\r\n$5\r\nHELLO"));
            node.link().on_sent();
            node.link().on_received(HELLO, now);
            let limits = RecentLimits { per_room: 0, rooms: 1 };
            let mut r = Rig {
                node,
                m: Messenger::new(limits, Vec::new()),
                out: Output::new(),
                sends: Sends::default(),
                now,
            };
            r.pump();
            r.wire(); // the heartbeat after the handshake
            r
        }

        fn pump(&mut self) {
            self.node.pump(&mut self.m, self.now, 1000, &mut self.sends);
        }

        /// What the node wrote to Redis since the last call.
        fn wire(&mut self) -> String {
            let mut all = String::new();
            while let Some(b) = self.node.link().poll_transmit() {
                all.push_str(&String::from_utf8_lossy(&b));
                self.node.link().on_sent();
            }
            all
        }

        /// Answers every command written so far with `+OK`.
        fn settle(&mut self) {
            self.wire();
            for _ in 0..self.node.link().awaiting() {
                self.node.link().on_received(b"+OK\r\n", self.now);
            }
            self.pump();
        }

        fn connect(&mut self, id: u64) {
            self.m.connect(id, &mut self.out);
            self.node.connect(&self.m, id, 1000);
        }

        fn line(&mut self, id: u64, l: &str) {
            self.node
                .line(&mut self.m, id, l.as_bytes(), 1000, &mut self.out, &mut self.sends);
        }

        /// A push from Redis on `channel`.
        fn push(&mut self, channel: &str, payload: &str) {
            let frame = format!(
                ">3\r\n$8\r\nsmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
                channel.len(),
                payload.len()
            );
            self.node.link().on_received(frame.as_bytes(), self.now);
            self.pump();
        }

        fn sent(&mut self) -> Vec<(Vec<u64>, String)> {
            self.sends
                .items
                .drain(..)
                .map(|(to, d)| (to, String::from_utf8_lossy(&d).into_owned()))
                .collect()
        }
    }

    #[test]
    fn subscribes_while_a_local_member_is_in_the_room() {
        let mut r = Rig::new();
        r.connect(1);
        r.connect(2);
        r.line(1, "/join lobby");
        let w = r.wire();
        assert!(w.contains("SSUBSCRIBE") && w.contains("cport:chat:room:lobby"), "{w}");
        assert!(w.contains("* guest-1 joined lobby"), "the join is published: {w}");
        r.line(2, "/join lobby");
        assert!(!r.wire().contains("SSUBSCRIBE"), "subscribed once per room");
        r.line(1, "/leave");
        assert!(!r.wire().contains("SUNSUBSCRIBE"), "a member is left");
        r.line(2, "/quit");
        let w = r.wire();
        assert!(w.contains("SUNSUBSCRIBE") && w.contains("* guest-2 left lobby"), "{w}");
    }

    #[test]
    fn remote_messages_reach_local_members_once_and_own_echoes_none() {
        let mut r = Rig::new();
        r.connect(1);
        r.line(1, "/join lobby");
        r.line(1, "hi");
        let w = r.wire();
        assert!(
            w.contains("SPUBLISH") && w.contains("me@1 2\n[lobby] guest-1: hi\n"),
            "{w}"
        );
        r.sent();
        // Our own echo: already delivered by the hub.
        r.push("cport:chat:room:lobby", "me@1 2\n[lobby] guest-1: hi\n");
        assert!(r.sent().is_empty());
        // Another node's, then its replay after a reconnect, then the next.
        r.push("cport:chat:room:lobby", "other@5 7\n[lobby] bob: one\n");
        r.push("cport:chat:room:lobby", "other@5 7\n[lobby] bob: one\n");
        r.push("cport:chat:room:lobby", "other@5 6\n[lobby] bob: older\n");
        r.push("cport:chat:room:lobby", "other@5 8\n[lobby] bob: two\n");
        let got = r.sent();
        assert_eq!(
            got,
            vec![
                (vec![1], "[lobby] bob: one\n".to_owned()),
                (vec![1], "[lobby] bob: two\n".to_owned()),
            ]
        );
        assert_eq!(r.node.stats().duplicates, 2);
        // A room without local members, and garbage: nothing, no panic.
        r.push("cport:chat:room:elsewhere", "other@5 9\n[elsewhere] bob: x\n");
        r.push("cport:chat:room:lobby", "no sequence here");
        r.push("cport:chat:room:lobby", "other@5 notanumber\nx\n");
        assert!(r.sent().is_empty());
    }

    #[test]
    fn local_rooms_work_while_redis_is_away_and_queries_say_so() {
        let mut r = Rig::new();
        r.connect(1);
        r.connect(2);
        r.line(1, "/join lobby");
        r.line(2, "/join lobby");
        r.wire();
        r.node.link().on_lost(r.now, "gone");
        r.pump();
        r.out.clear();
        r.line(1, "still here");
        let local: Vec<_> = r.out.deliveries().map(|d| d.to.len()).collect();
        assert_eq!(local, vec![2], "both local members get it from the hub");
        r.line(1, "/who");
        let sent = r.sent();
        assert!(sent.iter().any(|(_, t)| t.contains("this node only")), "{sent:?}");
        r.line(1, "/nick alice");
        assert!(r.sent().iter().any(|(_, t)| t.contains("cannot change")));
        r.line(1, "/msg someone hi");
        assert!(r.sent().iter().any(|(_, t)| t.contains("unreachable")));
        assert!(r.node.stats().link.refused_down >= 2);
    }

    #[test]
    fn a_nickname_is_claimed_in_redis_before_it_is_taken() {
        let mut r = Rig::new();
        r.connect(1);
        r.line(1, "/join lobby");
        r.settle();
        r.sent();
        r.line(1, "/nick alice");
        let w = r.wire();
        assert!(w.contains("cport:chat:nick:alice") && w.contains("NX"), "{w}");
        assert_eq!(r.m.hub().nick(1), Some("guest-1"), "not before Redis agrees");
        r.node.link().on_received(b"_\r\n", r.now); // NX failed: taken elsewhere
        r.pump();
        assert_eq!(r.sent(), vec![(vec![1], "! nickname alice is taken\n".to_owned())]);
        r.line(1, "/nick alice");
        r.wire();
        assert_eq!(r.node.link().awaiting(), 1);
        r.node.link().on_received(b"+OK\r\n", r.now);
        r.pump();
        assert_eq!(r.m.hub().nick(1), Some("alice"));
        let w = r.wire();
        assert!(
            w.contains("* guest-1 is now known as alice"),
            "the room's other nodes hear it: {w}"
        );
        assert!(w.contains("DEL") && w.contains("cport:chat:nick:guest-1"), "{w}");
    }
}
