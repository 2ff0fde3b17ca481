//! The packets: one type per message, the fields in wire order, and the
//! header's constants.

/// The protocol version every packet carries.
pub const VERSION: u8 = 1;
/// Bytes of the header: length (2), type (1), version (1).
pub const HEADER_LEN: usize = 4;
/// The largest value of the length field (type + version + body).
pub const MAX_PACKET: usize = u16::MAX as usize;
/// Players per [`Snapshot`] part (14 bytes each: a part stays under the
/// 64 KiB packet limit).
pub const SNAPSHOT_PART_ENTRIES: usize = 4000;

/// The longest player name, in bytes.
pub const MAX_NAME: usize = 16;
/// The longest chat text, in bytes (UTF-8).
pub const MAX_CHAT: usize = 200;

/// `true` for a valid player name: 1..=16 bytes of `A-Z a-z 0-9 _ -`.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Packet type codes. Client packets are below 0x80, server packets above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PacketType {
    Login = 0x01,
    Resume = 0x02,
    Input = 0x03,
    Chat = 0x04,
    Ping = 0x05,
    Logout = 0x06,
    StatsRequest = 0x07,
    WholeWorld = 0x08,
    LoginOk = 0x81,
    Update = 0x82,
    ZoneChange = 0x83,
    ChatMsg = 0x84,
    Kick = 0x85,
    Pong = 0x86,
    Stats = 0x87,
    Snapshot = 0x88,
}

impl PacketType {
    /// The type for a code, if it is one.
    #[must_use]
    pub fn from_u8(b: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match b {
            0x01 => Login,
            0x02 => Resume,
            0x03 => Input,
            0x04 => Chat,
            0x05 => Ping,
            0x06 => Logout,
            0x07 => StatsRequest,
            0x08 => WholeWorld,
            0x81 => LoginOk,
            0x82 => Update,
            0x83 => ZoneChange,
            0x84 => ChatMsg,
            0x85 => Kick,
            0x86 => Pong,
            0x87 => Stats,
            0x88 => Snapshot,
            _ => return None,
        })
    }

    /// `true` for packets a client sends.
    #[must_use]
    pub fn from_client(self) -> bool {
        (self as u8) < 0x80
    }
}

/// One movement input: a step of (`dx`, `dy`) world units, numbered by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// The client's input sequence number (increasing; echoed back as `last_seq`).
    pub seq: u32,
    /// Step along x; the server allows `|dx| <= max_step`.
    pub dx: i8,
    /// Step along y; the server allows `|dy| <= max_step`.
    pub dy: i8,
}

/// The world's geometry and rules, sent at login so that a client predicts
/// exactly what the server computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldInfo {
    /// Ticks per second.
    pub tick_hz: u16,
    /// Zones across.
    pub zones_x: u16,
    /// Zones down.
    pub zones_y: u16,
    /// A zone's side, in world units.
    pub zone_size: u32,
    /// An area-of-interest cell's side, in world units.
    pub cell_size: u32,
    /// The largest `|dx|` or `|dy|` of one input.
    pub max_step: u8,
    /// Inputs per second a client may send (sustained).
    pub max_input_rate: u16,
}

/// Login accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOk {
    /// The player's id (stable while the player is in the world).
    pub player: u32,
    /// The token that resumes this player after a dropped connection.
    pub token: u64,
    /// `true` when this login resumed a player that was still in the world.
    pub resumed: bool,
    /// The zone the player is in.
    pub zone: u16,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// The last input sequence the server applied for this player.
    pub last_seq: u32,
    /// The rules.
    pub world: WorldInfo,
}

/// Another player coming into view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Player id.
    pub id: u32,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// That player's last applied input sequence.
    pub last_seq: u32,
    /// That player's name.
    pub name: String,
}

/// A player in view that moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityMove {
    /// Player id.
    pub id: u32,
    /// New position.
    pub x: i32,
    /// New position.
    pub y: i32,
    /// That player's last applied input sequence.
    pub last_seq: u32,
}

/// What changed for one player in one tick: its own state, and the players
/// in its area of interest that entered, moved or left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// The tick number.
    pub tick: u32,
    /// The last input sequence applied for the receiver (for reconciliation).
    pub last_seq: u32,
    /// The receiver's authoritative position.
    pub x: i32,
    /// The receiver's authoritative position.
    pub y: i32,
    /// Players now in view that were not.
    pub enters: Vec<Entity>,
    /// Players in view that moved.
    pub moves: Vec<EntityMove>,
    /// Ids of players no longer in view.
    pub leaves: Vec<u32>,
}

/// A chat line from a player in the same zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMsg {
    /// Sender id.
    pub from: u32,
    /// Sender name.
    pub name: String,
    /// The text.
    pub text: String,
}

/// Why the server closes a connection; sent in [`Packet::Kick`] just before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KickReason(pub u8);

impl KickReason {
    /// A packet broke the protocol.
    pub const MALFORMED: KickReason = KickReason(1);
    /// Too many packets or inputs per second.
    pub const RATE_LIMITED: KickReason = KickReason(2);
    /// Repeated impossible moves.
    pub const CHEATING: KickReason = KickReason(3);
    /// The server has its maximum of players.
    pub const SERVER_FULL: KickReason = KickReason(4);
    /// That name is playing on another connection.
    pub const NAME_IN_USE: KickReason = KickReason(5);
    /// Resume with an unknown name or a wrong token, or after the grace period.
    pub const BAD_TOKEN: KickReason = KickReason(6);
    /// A game packet before login, or a second login.
    pub const NOT_LOGGED_IN: KickReason = KickReason(7);
    /// The player resumed on another connection.
    pub const REPLACED: KickReason = KickReason(8);
    /// The server is shutting down.
    pub const SHUTDOWN: KickReason = KickReason(9);
    /// The client did not read what it was sent (never delivered: logged).
    pub const SLOW_CONSUMER: KickReason = KickReason(10);

    /// A short name for logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "malformed",
            2 => "rate_limited",
            3 => "cheating",
            4 => "server_full",
            5 => "name_in_use",
            6 => "bad_token",
            7 => "not_logged_in",
            8 => "replaced",
            9 => "shutdown",
            10 => "slow_consumer",
            _ => "unknown",
        }
    }
}

/// The server's counters, answered to [`Packet::StatsRequest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Ticks run.
    pub ticks: u64,
    /// Tick duration, median over the ticks asked for, µs.
    pub tick_p50_us: u32,
    /// Tick duration, 99th percentile over the ticks asked for, µs.
    pub tick_p99_us: u32,
    /// Longest of the ticks asked for, µs.
    pub tick_max_us: u32,
    /// Players in the world.
    pub players: u32,
    /// Sum over ticks of the players in the world then.
    pub player_ticks: u64,
    /// The server process's CPU time (user + system), µs.
    pub cpu_us: u64,
    /// Zone hand-offs done.
    pub handoffs: u64,
    /// Inputs corrected or dropped by validation.
    pub corrections: u64,
}

/// One player in a spectator snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapEntry {
    /// Player id.
    pub id: u32,
    /// Zone index (`zy * zones_x + zx`).
    pub zone: u16,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
}

/// Part of the state of the whole world (every player), for spectators and
/// for the server's broadcast-everything mode. Big worlds come in several
/// parts of one tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The tick number.
    pub tick: u32,
    /// This part's index, from 0.
    pub part: u16,
    /// Parts in this tick's snapshot.
    pub parts: u16,
    /// Players in the world (all parts).
    pub players: u32,
    /// The players in this part.
    pub entries: Vec<SnapEntry>,
}

/// A game packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Client: enter the world under `name` (a new or saved player).
    Login {
        /// 1..=16 bytes of `A-Z a-z 0-9 _ -`.
        name: String,
    },
    /// Client: take over a player that is still in the world after a dropped connection.
    Resume {
        /// The player's name.
        name: String,
        /// The token from its [`LoginOk`].
        token: u64,
    },
    /// Client: one movement step.
    Input(Input),
    /// Client: a chat line to the players of the same zone.
    Chat {
        /// 1..=200 bytes of UTF-8.
        text: String,
    },
    /// Client: a round trip; answered with [`Packet::Pong`].
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Client: leave the world (saved at once, no grace period).
    Logout,
    /// Client: ask for the server's counters ([`Packet::Stats`]).
    StatsRequest {
        /// The tick percentiles cover this many of the latest ticks (at
        /// most the 2,048 the server keeps; 0: all it keeps).
        last_ticks: u32,
    },
    /// Client: receive (or stop receiving) the whole world each tick as
    /// [`Packet::Snapshot`] parts: a spectator's view, with or without a
    /// player of its own.
    WholeWorld {
        /// On or off.
        on: bool,
    },
    /// Server: login accepted.
    LoginOk(LoginOk),
    /// Server: this tick's changes within the receiver's area of interest.
    Update(Update),
    /// Server: the receiver was handed to another zone.
    ZoneChange {
        /// The new zone.
        zone: u16,
        /// Position.
        x: i32,
        /// Position.
        y: i32,
    },
    /// Server: a chat line.
    ChatMsg(ChatMsg),
    /// Server: the connection is being closed, and why.
    Kick {
        /// Why.
        reason: KickReason,
    },
    /// Server: answer to [`Packet::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// The current tick.
        tick: u32,
    },
    /// Server: counters.
    Stats(Stats),
    /// Server: the whole world (spectator view / broadcast-everything mode).
    Snapshot(Snapshot),
}

impl Packet {
    /// This packet's type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Login { .. } => PacketType::Login,
            Packet::Resume { .. } => PacketType::Resume,
            Packet::Input(_) => PacketType::Input,
            Packet::Chat { .. } => PacketType::Chat,
            Packet::Ping { .. } => PacketType::Ping,
            Packet::Logout => PacketType::Logout,
            Packet::StatsRequest { .. } => PacketType::StatsRequest,
            Packet::WholeWorld { .. } => PacketType::WholeWorld,
            Packet::LoginOk(_) => PacketType::LoginOk,
            Packet::Update(_) => PacketType::Update,
            Packet::ZoneChange { .. } => PacketType::ZoneChange,
            Packet::ChatMsg(_) => PacketType::ChatMsg,
            Packet::Kick { .. } => PacketType::Kick,
            Packet::Pong { .. } => PacketType::Pong,
            Packet::Stats(_) => PacketType::Stats,
            Packet::Snapshot(_) => PacketType::Snapshot,
        }
    }
}
