//! The chat state machine: sessions, nicknames and rooms.
//!
//! The server owns the sockets; the [`Hub`] owns who is called what and who
//! is in which room. It turns session events into [`Output`]: which bytes go
//! to which sessions, and which sessions to close. A room broadcast is one
//! shared [`Bytes`] for all recipients, so the server can queue it on every
//! session without copying.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::command::{parse_line, ChatError, Command, GUEST_PREFIX};

/// Longest list `/rooms` or `/who` prints; the rest is summarised as a count.
pub const LIST_LIMIT: usize = 50;

const HELP: &str = "\
* commands:
*   /nick NAME       change your nickname
*   /join ROOM       join a room (leaving your current one)
*   /leave           leave your room
*   /rooms           list rooms
*   /who             list the members of your room
*   /msg NICK TEXT   private message
*   /quit            disconnect
*   anything else is said to your room
";

/// One piece of output: `data` to be sent to every session in `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// Recipient session ids, each at most once.
    pub to: &'a [u64],
    /// The bytes to send, shared by all recipients.
    pub data: &'a Bytes,
}

/// What the hub wants done after one or more calls.
///
/// Send the [`deliveries`](Output::deliveries) in order, then close the
/// sessions in [`closes`](Output::closes) once their queued data is flushed.
/// The hub appends to an `Output`; [`clear`](Output::clear) it between uses
/// to reuse its allocations.
#[derive(Debug, Default, Clone)]
pub struct Output {
    /// Recipient ids of all deliveries, back to back.
    recipients: Vec<u64>,
    /// Each delivery: its slice of `recipients`, and its data.
    deliveries: Vec<(usize, usize, Bytes)>,
    closes: Vec<u64>,
}

impl Output {
    /// An empty output.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all deliveries and closes, keeping the allocations.
    pub fn clear(&mut self) {
        self.recipients.clear();
        self.deliveries.clear();
        self.closes.clear();
    }

    /// True when there is nothing to send and nothing to close.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.closes.is_empty()
    }

    /// The deliveries, in the order they must be sent.
    pub fn deliveries(&self) -> impl ExactSizeIterator<Item = Delivery<'_>> + '_ {
        self.deliveries.iter().map(|(start, end, data)| Delivery {
            to: &self.recipients[*start..*end],
            data,
        })
    }

    /// Sessions to close after their deliveries are sent (`/quit`).
    #[must_use]
    pub fn closes(&self) -> &[u64] {
        &self.closes
    }

    fn send_to(&mut self, id: u64, data: Bytes) {
        let start = self.recipients.len();
        self.recipients.push(id);
        self.deliveries.push((start, start + 1, data));
    }

    fn send_to_all(&mut self, ids: impl IntoIterator<Item = u64>, data: Bytes) {
        let start = self.recipients.len();
        self.recipients.extend(ids);
        if self.recipients.len() > start {
            self.deliveries.push((start, self.recipients.len(), data));
        }
    }

    fn error(&mut self, id: u64, err: &ChatError) {
        self.send_to(id, text_line(format_args!("! {err}")));
    }
}

/// Formats one output line (a newline is appended).
fn text_line(args: std::fmt::Arguments<'_>) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    // Writing to a BytesMut cannot fail.
    let _ = buf.write_fmt(args);
    buf.put_u8(b'\n');
    buf.freeze()
}

#[derive(Debug)]
struct Member {
    nick: String,
    room: Option<String>,
}

/// Rooms, nicknames and sessions of one chat server.
///
/// Call [`connect`](Hub::connect) when a session is accepted,
/// [`line`](Hub::line) for every line it sends, and
/// [`disconnect`](Hub::disconnect) when it goes away. Sessions are
/// identified by a `u64` the server chooses (unique among live sessions).
/// Events for unknown sessions produce no output; the hub never panics on
/// any input.
///
/// # Examples
///
/// ```
/// use cport_proto::chat::{Hub, Output};
///
/// let mut hub = Hub::new();
/// let mut out = Output::new();
/// hub.connect(1, &mut out);
/// hub.connect(2, &mut out);
/// hub.line(1, b"/join lobby", &mut out);
/// hub.line(2, b"/join lobby", &mut out);
/// out.clear();
/// hub.line(1, b"hello", &mut out);
/// let d = out.deliveries().next().unwrap();
/// assert_eq!(&d.data[..], b"[lobby] guest-1: hello\n");
/// assert_eq!(d.to.len(), 2); // both members, sender included
/// ```
#[derive(Debug, Default)]
pub struct Hub {
    sessions: HashMap<u64, Member>,
    nicks: HashMap<String, u64>,
    rooms: HashMap<String, HashSet<u64>>,
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of connected sessions.
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Number of rooms (every room has at least one member).
    #[must_use]
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// The nickname of session `id`, if it is connected.
    #[must_use]
    pub fn nick(&self, id: u64) -> Option<&str> {
        self.sessions.get(&id).map(|m| m.nick.as_str())
    }

    /// The room session `id` is in, if any.
    #[must_use]
    pub fn room_of(&self, id: u64) -> Option<&str> {
        self.sessions.get(&id).and_then(|m| m.room.as_deref())
    }

    /// Registers a new session under the nickname `guest-<id>` and welcomes it.
    ///
    /// Does nothing if `id` is already connected.
    pub fn connect(&mut self, id: u64, out: &mut Output) {
        if self.sessions.contains_key(&id) {
            return;
        }
        let nick = format!("{GUEST_PREFIX}{id}");
        self.nicks.insert(nick.clone(), id);
        out.send_to(
            id,
            text_line(format_args!(
                "* welcome, you are {nick}. /nick NAME to rename, /join ROOM to chat, /help for more"
            )),
        );
        self.sessions.insert(id, Member { nick, room: None });
    }

    /// Handles one line (without its newline) from session `id`.
    pub fn line(&mut self, id: u64, line: &[u8], out: &mut Output) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        let result = match parse_line(line) {
            Ok(cmd) => self.apply(id, cmd, out),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            out.error(id, &e);
        }
    }

    /// Forgets session `id`, telling its room it left. Does nothing if `id`
    /// is not connected.
    pub fn disconnect(&mut self, id: u64, out: &mut Output) {
        self.leave_room(id, false, out);
        if let Some(member) = self.sessions.remove(&id) {
            self.nicks.remove(&member.nick);
        }
    }

    fn apply(&mut self, id: u64, cmd: Command<'_>, out: &mut Output) -> Result<(), ChatError> {
        match cmd {
            Command::Empty => {}
            Command::Say(text) => self.say(id, text, out)?,
            Command::Nick(nick) => self.rename(id, nick, out)?,
            Command::Join(room) => self.join(id, room, out)?,
            Command::Leave => {
                if !self.leave_room(id, true, out) {
                    return Err(ChatError::NotInRoom);
                }
            }
            Command::Rooms => out.send_to(id, self.list_rooms()),
            Command::Who => {
                let data = self.list_members(id).ok_or(ChatError::NotInRoom)?;
                out.send_to(id, data);
            }
            Command::Msg { to, text } => self.private(id, to, text, out)?,
            Command::Help => out.send_to(id, Bytes::from_static(HELP.as_bytes())),
            Command::Quit => {
                out.send_to(id, Bytes::from_static(b"* bye\n"));
                self.disconnect(id, out);
                out.closes.push(id);
            }
        }
        Ok(())
    }

    fn say(&self, id: u64, text: &str, out: &mut Output) -> Result<(), ChatError> {
        let Some(me) = self.sessions.get(&id) else {
            return Ok(());
        };
        let room = me.room.as_deref().ok_or(ChatError::NotInRoom)?;
        let data = text_line(format_args!("[{room}] {}: {text}", me.nick));
        self.broadcast(room, data, out);
        Ok(())
    }

    fn private(&self, id: u64, to: &str, text: &str, out: &mut Output) -> Result<(), ChatError> {
        let &target = self.nicks.get(to).ok_or_else(|| ChatError::NoSuchNick(to.to_owned()))?;
        let Some(from) = self.nick(id) else {
            return Ok(());
        };
        out.send_to(target, text_line(format_args!("[pm from {from}] {text}")));
        out.send_to(id, text_line(format_args!("[pm to {to}] {text}")));
        Ok(())
    }

    fn rename(&mut self, id: u64, nick: &str, out: &mut Output) -> Result<(), ChatError> {
        if nick.starts_with(GUEST_PREFIX) {
            return Err(ChatError::ReservedName);
        }
        match self.nicks.get(nick) {
            Some(&owner) if owner == id => {
                out.send_to(id, text_line(format_args!("* you are already {nick}")));
                return Ok(());
            }
            Some(_) => return Err(ChatError::NickTaken(nick.to_owned())),
            None => {}
        }
        let Some(me) = self.sessions.get_mut(&id) else {
            return Ok(());
        };
        let old = std::mem::replace(&mut me.nick, nick.to_owned());
        self.nicks.remove(&old);
        self.nicks.insert(nick.to_owned(), id);
        let data = text_line(format_args!("* {old} is now known as {nick}"));
        match self.room_of(id) {
            Some(room) => self.broadcast(room, data, out),
            None => out.send_to(id, data),
        }
        Ok(())
    }

    fn join(&mut self, id: u64, room: &str, out: &mut Output) -> Result<(), ChatError> {
        if self.room_of(id) == Some(room) {
            return Err(ChatError::AlreadyInRoom(room.to_owned()));
        }
        self.leave_room(id, true, out);
        let Some(me) = self.sessions.get_mut(&id) else {
            return Ok(());
        };
        me.room = Some(room.to_owned());
        let data = text_line(format_args!("* {} joined {room}", me.nick));
        self.rooms.entry(room.to_owned()).or_default().insert(id);
        self.broadcast(room, data, out);
        Ok(())
    }

    /// Takes `id` out of its room, telling the remaining members (and `id`
    /// itself if `tell_self`). Returns whether it was in a room.
    fn leave_room(&mut self, id: u64, tell_self: bool, out: &mut Output) -> bool {
        let Some(me) = self.sessions.get_mut(&id) else {
            return false;
        };
        let Some(room) = me.room.take() else {
            return false;
        };
        let data = text_line(format_args!("* {} left {room}", me.nick));
        if let Some(members) = self.rooms.get_mut(&room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(&room);
            } else {
                out.send_to_all(members.iter().copied(), data.clone());
            }
        }
        if tell_self {
            out.send_to(id, data);
        }
        true
    }

    fn broadcast(&self, room: &str, data: Bytes, out: &mut Output) {
        if let Some(members) = self.rooms.get(room) {
            out.send_to_all(members.iter().copied(), data);
        }
    }

    fn list_rooms(&self) -> Bytes {
        if self.rooms.is_empty() {
            return Bytes::from_static(b"* no rooms yet (/join ROOM creates one)\n");
        }
        let mut rooms: Vec<(&str, usize)> = self
            .rooms
            .iter()
            .map(|(name, members)| (name.as_str(), members.len()))
            .collect();
        rooms.sort_unstable();
        let shown = rooms.iter().take(LIST_LIMIT).map(|(name, n)| format!("{name} ({n})"));
        let mut text = shown.collect::<Vec<_>>().join(", ");
        append_more(&mut text, rooms.len());
        text_line(format_args!("* rooms: {text}"))
    }

    fn list_members(&self, id: u64) -> Option<Bytes> {
        let room = self.room_of(id)?;
        let members = self.rooms.get(room)?;
        let mut nicks: Vec<&str> = members
            .iter()
            .filter_map(|m| self.sessions.get(m))
            .map(|m| m.nick.as_str())
            .collect();
        nicks.sort_unstable();
        let total = nicks.len();
        nicks.truncate(LIST_LIMIT);
        let mut text = nicks.join(", ");
        append_more(&mut text, total);
        Some(text_line(format_args!("* in {room}: {text}")))
    }

    /// Checks the hub's internal consistency (test aid).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert_eq!(self.nicks.len(), self.sessions.len());
        for (nick, id) in &self.nicks {
            assert_eq!(&self.sessions[id].nick, nick, "nick index points at owner");
        }
        for (id, m) in &self.sessions {
            assert_eq!(self.nicks.get(&m.nick), Some(id));
            if let Some(room) = &m.room {
                assert!(self.rooms[room].contains(id), "member listed in its room");
            }
        }
        for (room, members) in &self.rooms {
            assert!(!members.is_empty(), "no empty rooms kept");
            for id in members {
                assert_eq!(self.sessions[id].room.as_deref(), Some(room.as_str()));
            }
        }
    }
}

fn append_more(text: &mut String, total: usize) {
    if total > LIST_LIMIT {
        let _ = write!(text, ", and {} more", total - LIST_LIMIT);
    }
}
