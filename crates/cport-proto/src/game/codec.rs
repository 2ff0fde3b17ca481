//! Reading and writing packets: a bounds-checked reader, a writer, and the
//! header rules.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::packet::*;

/// Entries (enters + moves + leaves) one [`Update`] may carry; [`encode`]
/// drops what is past it, so senders split bigger updates ([`Update::split`]).
pub const UPDATE_MAX_ENTRIES: usize = 1500;

/// Why bytes are not a packet. Any of these closes the connection with
/// [`KickReason::MALFORMED`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length field is below 2 (no room for type and version).
    TooShort(usize),
    /// The length field is above the receiver's limit.
    TooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The version byte is not [`VERSION`].
    BadVersion(u8),
    /// The type byte names no packet.
    UnknownType(u8),
    /// A server packet sent by a client (or the other way round).
    WrongDirection(u8),
    /// The body ends before its layout does.
    Truncated,
    /// Bytes are left after the body's layout.
    Trailing(usize),
    /// A field holds a value its type forbids (bad name, bad UTF-8, ...).
    BadField(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort(n) => write!(f, "length {n} is below the header's 2 bytes"),
            DecodeError::TooLarge { len, max } => write!(f, "packet of {len} bytes exceeds the limit of {max}"),
            DecodeError::BadVersion(v) => write!(f, "protocol version {v}, expected {VERSION}"),
            DecodeError::UnknownType(t) => write!(f, "unknown packet type {t:#04x}"),
            DecodeError::WrongDirection(t) => write!(f, "packet type {t:#04x} is not sent in this direction"),
            DecodeError::Truncated => f.write_str("body shorter than its layout"),
            DecodeError::Trailing(n) => write!(f, "{n} bytes after the body"),
            DecodeError::BadField(what) => write!(f, "bad field: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Takes one packet off the front of `buf`.
///
/// Returns `Ok(None)` until the whole packet is there, then the packet and
/// the bytes it used. The header is checked as soon as it is there, so an
/// oversized or malformed packet is refused before its body arrives.
///
/// # Errors
/// A [`DecodeError`]; the stream is then out of sync: close it.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(Packet, usize)>, DecodeError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
    if len < 2 {
        return Err(DecodeError::TooShort(len));
    }
    if len > max_len {
        return Err(DecodeError::TooLarge { len, max: max_len });
    }
    if buf.len() >= HEADER_LEN {
        check_header(buf[2], buf[3])?;
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    parse_frame(&buf[2..2 + len]).map(|p| Some((p, 2 + len)))
}

fn check_header(ty: u8, ver: u8) -> Result<PacketType, DecodeError> {
    if ver != VERSION {
        return Err(DecodeError::BadVersion(ver));
    }
    PacketType::from_u8(ty).ok_or(DecodeError::UnknownType(ty))
}

/// Reads one packet whose length field was already taken off: `frame` is
/// type, version and body.
///
/// # Errors
/// A [`DecodeError`].
pub fn parse_frame(frame: &[u8]) -> Result<Packet, DecodeError> {
    if frame.len() < 2 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let ty = check_header(frame[0], frame[1])?;
    let mut r = Reader { b: &frame[2..] };
    let p = read_body(ty, &mut r)?;
    r.finish()?;
    Ok(p)
}

/// [`parse_frame`] for a server: refuses server-to-client packet types.
///
/// # Errors
/// A [`DecodeError`].
pub fn parse_client_frame(frame: &[u8]) -> Result<Packet, DecodeError> {
    let p = parse_frame(frame)?;
    let ty = p.packet_type();
    if ty.from_client() {
        Ok(p)
    } else {
        Err(DecodeError::WrongDirection(ty as u8))
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(self.u8()? as i8)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadField("bool is not 0 or 1")),
        }
    }
    fn name(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) if valid_name(s) => Ok(s.to_owned()),
            _ => Err(DecodeError::BadField("name")),
        }
    }
    fn text(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u8()?);
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) if (1..=MAX_CHAT).contains(&s.len()) => Ok(s.to_owned()),
            _ => Err(DecodeError::BadField("chat text")),
        }
    }
    /// A count of entries of at least `each` bytes: refused when the body
    /// cannot hold that many, so a lying count allocates nothing.
    fn count(&mut self, each: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16()?);
        if n.saturating_mul(each) > self.b.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
    fn finish(self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.b.len()))
        }
    }
}

fn read_body(ty: PacketType, r: &mut Reader<'_>) -> Result<Packet, DecodeError> {
    Ok(match ty {
        PacketType::Login => Packet::Login { name: r.name()? },
        PacketType::Resume => Packet::Resume {
            name: r.name()?,
            token: r.u64()?,
        },
        PacketType::Input => Packet::Input(Input {
            seq: r.u32()?,
            dx: r.i8()?,
            dy: r.i8()?,
        }),
        PacketType::Chat => Packet::Chat { text: r.text()? },
        PacketType::Ping => Packet::Ping { nonce: r.u64()? },
        PacketType::Logout => Packet::Logout,
        PacketType::StatsRequest => Packet::StatsRequest { last_ticks: r.u32()? },
        PacketType::WholeWorld => Packet::WholeWorld { on: r.bool()? },
        PacketType::LoginOk => Packet::LoginOk(LoginOk {
            player: r.u32()?,
            token: r.u64()?,
            resumed: r.bool()?,
            zone: r.u16()?,
            x: r.i32()?,
            y: r.i32()?,
            last_seq: r.u32()?,
            world: WorldInfo {
                tick_hz: r.u16()?,
                zones_x: r.u16()?,
                zones_y: r.u16()?,
                zone_size: r.u32()?,
                cell_size: r.u32()?,
                max_step: r.u8()?,
                max_input_rate: r.u16()?,
            },
        }),
        PacketType::Update => {
            let mut u = Update {
                tick: r.u32()?,
                last_seq: r.u32()?,
                x: r.i32()?,
                y: r.i32()?,
                ..Update::default()
            };
            let n = r.count(18)?;
            u.enters.reserve(n);
            for _ in 0..n {
                u.enters.push(Entity {
                    id: r.u32()?,
                    x: r.i32()?,
                    y: r.i32()?,
                    last_seq: r.u32()?,
                    name: r.name()?,
                });
            }
            let n = r.count(16)?;
            u.moves.reserve(n);
            for _ in 0..n {
                u.moves.push(EntityMove {
                    id: r.u32()?,
                    x: r.i32()?,
                    y: r.i32()?,
                    last_seq: r.u32()?,
                });
            }
            let n = r.count(4)?;
            u.leaves.reserve(n);
            for _ in 0..n {
                u.leaves.push(r.u32()?);
            }
            Packet::Update(u)
        }
        PacketType::ZoneChange => Packet::ZoneChange {
            zone: r.u16()?,
            x: r.i32()?,
            y: r.i32()?,
        },
        PacketType::ChatMsg => Packet::ChatMsg(ChatMsg {
            from: r.u32()?,
            name: r.name()?,
            text: r.text()?,
        }),
        PacketType::Kick => Packet::Kick {
            reason: KickReason(r.u8()?),
        },
        PacketType::Pong => Packet::Pong {
            nonce: r.u64()?,
            tick: r.u32()?,
        },
        PacketType::Stats => Packet::Stats(Stats {
            ticks: r.u64()?,
            tick_p50_us: r.u32()?,
            tick_p99_us: r.u32()?,
            tick_max_us: r.u32()?,
            players: r.u32()?,
            player_ticks: r.u64()?,
            cpu_us: r.u64()?,
            handoffs: r.u64()?,
            corrections: r.u64()?,
        }),
        PacketType::Snapshot => {
            let mut s = Snapshot {
                tick: r.u32()?,
                part: r.u16()?,
                parts: r.u16()?,
                players: r.u32()?,
                entries: Vec::new(),
            };
            let n = r.count(14)?;
            s.entries.reserve(n);
            for _ in 0..n {
                s.entries.push(SnapEntry {
                    id: r.u32()?,
                    zone: r.u16()?,
                    x: r.i32()?,
                    y: r.i32()?,
                });
            }
            Packet::Snapshot(s)
        }
    })
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_str(out: &mut BytesMut, s: &str, max: usize) {
    let s = clip(s, max);
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

/// Appends `p`, header included.
///
/// Strings longer than their limit are cut; an [`Update`] keeps at most
/// [`UPDATE_MAX_ENTRIES`] entries and a [`Snapshot`] at most
/// [`SNAPSHOT_PART_ENTRIES`](SNAPSHOT_PART_ENTRIES), so every encoded
/// packet fits the length field. (A decoder refuses names with characters
/// outside the name set and empty chat text: send valid ones.)
pub fn encode(p: &Packet, out: &mut BytesMut) {
    let start = out.len();
    out.put_u16_le(0);
    out.put_u8(p.packet_type() as u8);
    out.put_u8(VERSION);
    match p {
        Packet::Login { name } => put_str(out, name, MAX_NAME),
        Packet::Resume { name, token } => {
            put_str(out, name, MAX_NAME);
            out.put_u64_le(*token);
        }
        Packet::Input(i) => {
            out.put_u32_le(i.seq);
            out.put_i8(i.dx);
            out.put_i8(i.dy);
        }
        Packet::Chat { text } => put_str(out, text, MAX_CHAT),
        Packet::Ping { nonce } => out.put_u64_le(*nonce),
        Packet::Logout => {}
        Packet::StatsRequest { last_ticks } => out.put_u32_le(*last_ticks),
        Packet::WholeWorld { on } => out.put_u8(u8::from(*on)),
        Packet::LoginOk(l) => {
            out.put_u32_le(l.player);
            out.put_u64_le(l.token);
            out.put_u8(u8::from(l.resumed));
            out.put_u16_le(l.zone);
            out.put_i32_le(l.x);
            out.put_i32_le(l.y);
            out.put_u32_le(l.last_seq);
            let w = &l.world;
            out.put_u16_le(w.tick_hz);
            out.put_u16_le(w.zones_x);
            out.put_u16_le(w.zones_y);
            out.put_u32_le(w.zone_size);
            out.put_u32_le(w.cell_size);
            out.put_u8(w.max_step);
            out.put_u16_le(w.max_input_rate);
        }
        Packet::Update(u) => put_update(out, u),
        Packet::ZoneChange { zone, x, y } => {
            out.put_u16_le(*zone);
            out.put_i32_le(*x);
            out.put_i32_le(*y);
        }
        Packet::ChatMsg(c) => {
            out.put_u32_le(c.from);
            put_str(out, &c.name, MAX_NAME);
            put_str(out, &c.text, MAX_CHAT);
        }
        Packet::Kick { reason } => out.put_u8(reason.0),
        Packet::Pong { nonce, tick } => {
            out.put_u64_le(*nonce);
            out.put_u32_le(*tick);
        }
        Packet::Stats(s) => {
            out.put_u64_le(s.ticks);
            out.put_u32_le(s.tick_p50_us);
            out.put_u32_le(s.tick_p99_us);
            out.put_u32_le(s.tick_max_us);
            out.put_u32_le(s.players);
            out.put_u64_le(s.player_ticks);
            out.put_u64_le(s.cpu_us);
            out.put_u64_le(s.handoffs);
            out.put_u64_le(s.corrections);
        }
        Packet::Snapshot(s) => {
            out.put_u32_le(s.tick);
            out.put_u16_le(s.part);
            out.put_u16_le(s.parts);
            out.put_u32_le(s.players);
            let n = s.entries.len().min(SNAPSHOT_PART_ENTRIES);
            out.put_u16_le(n as u16);
            for e in &s.entries[..n] {
                out.put_u32_le(e.id);
                out.put_u16_le(e.zone);
                out.put_i32_le(e.x);
                out.put_i32_le(e.y);
            }
        }
    }
    let len = out.len() - start - 2;
    debug_assert!(len <= MAX_PACKET);
    out[start..start + 2].copy_from_slice(&(len as u16).to_le_bytes());
}

/// Appends `u` as one `Update` packet, or as the packets of
/// [`Update::split`] when it has more than [`UPDATE_MAX_ENTRIES`] entries:
/// what [`encode`] of each part does, without copying the update in the
/// usual one-packet case (the server encodes one per player per tick).
pub fn encode_update(u: &Update, out: &mut BytesMut) {
    if u.enters.len() + u.moves.len() + u.leaves.len() > UPDATE_MAX_ENTRIES {
        for part in u.clone().split() {
            encode(&Packet::Update(part), out);
        }
        return;
    }
    let start = out.len();
    out.put_u16_le(0);
    out.put_u8(PacketType::Update as u8);
    out.put_u8(VERSION);
    put_update(out, u);
    let len = out.len() - start - 2;
    out[start..start + 2].copy_from_slice(&(len as u16).to_le_bytes());
}

/// An update's body (at most [`UPDATE_MAX_ENTRIES`] entries).
fn put_update(out: &mut BytesMut, u: &Update) {
    out.put_u32_le(u.tick);
    out.put_u32_le(u.last_seq);
    out.put_i32_le(u.x);
    out.put_i32_le(u.y);
    let mut room = UPDATE_MAX_ENTRIES;
    let n = u.enters.len().min(room);
    room -= n;
    out.put_u16_le(n as u16);
    for e in &u.enters[..n] {
        out.put_u32_le(e.id);
        out.put_i32_le(e.x);
        out.put_i32_le(e.y);
        out.put_u32_le(e.last_seq);
        put_str(out, &e.name, MAX_NAME);
    }
    let n = u.moves.len().min(room);
    room -= n;
    out.put_u16_le(n as u16);
    for m in &u.moves[..n] {
        out.put_u32_le(m.id);
        out.put_i32_le(m.x);
        out.put_i32_le(m.y);
        out.put_u32_le(m.last_seq);
    }
    let n = u.leaves.len().min(room);
    out.put_u16_le(n as u16);
    for id in &u.leaves[..n] {
        out.put_u32_le(*id);
    }
}

/// [`encode`] into a buffer of its own, ready to queue on sessions.
#[must_use]
pub fn encode_to_bytes(p: &Packet) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    encode(p, &mut out);
    out.freeze()
}

impl Update {
    /// Splits into updates of at most [`UPDATE_MAX_ENTRIES`] entries each,
    /// every one repeating the receiver's own state (at least one update).
    #[must_use]
    pub fn split(self) -> Vec<Update> {
        let total = self.enters.len() + self.moves.len() + self.leaves.len();
        if total <= UPDATE_MAX_ENTRIES {
            return vec![self];
        }
        let head = Update {
            tick: self.tick,
            last_seq: self.last_seq,
            x: self.x,
            y: self.y,
            ..Update::default()
        };
        let mut out: Vec<Update> = Vec::new();
        let mut cur = head.clone();
        let mut used = 0;
        let mut full = |cur: &mut Update, used: &mut usize| {
            if *used == UPDATE_MAX_ENTRIES {
                out.push(std::mem::replace(cur, head.clone()));
                *used = 0;
            }
            *used += 1;
        };
        for e in self.enters {
            full(&mut cur, &mut used);
            cur.enters.push(e);
        }
        for m in self.moves {
            full(&mut cur, &mut used);
            cur.moves.push(m);
        }
        for l in self.leaves {
            full(&mut cur, &mut used);
            cur.leaves.push(l);
        }
        out.push(cur);
        out
    }
}

/// The fuzz target's body: decodes `data` as a stream until it ends or
/// breaks, and checks that each decoded packet encodes back to the bytes it
/// came from. Panics only if that round trip fails (a codec bug).
pub fn fuzz_stream(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((p, used))) = decode(rest, MAX_PACKET) {
        let again = encode_to_bytes(&p);
        assert_eq!(&again[..], &rest[..used], "re-encoding {p:?} changed its bytes");
        rest = &rest[used..];
    }
    let _ = parse_client_frame(data);
}
