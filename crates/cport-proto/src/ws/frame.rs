//! Frame heads (RFC 6455 §5.2): opcodes, close codes, and encoding frames.
//!
//! Decoding lives in the connection state machine ([`super::WsConn`]), which
//! reads a head byte by byte so a frame split anywhere decodes the same.

use bytes::{BufMut, Bytes, BytesMut};

/// Longest frame head: 2 bytes, a 64-bit length, a mask.
pub const MAX_HEAD: usize = 14;

/// Longest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// The next fragment of a message.
    Continuation,
    /// The first frame of a UTF-8 text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// The close handshake.
    Close,
    /// A ping, answered by a pong with the same payload.
    Ping,
    /// A pong (answer, or unsolicited heartbeat).
    Pong,
}

impl Opcode {
    /// The opcode for a 4-bit value, `None` for the reserved ones.
    #[must_use]
    pub fn from_bits(b: u8) -> Option<Opcode> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value on the wire.
    #[must_use]
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    #[must_use]
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Close status codes this codec sends (RFC 6455 §7.4.1).
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The endpoint is going away (shutdown, or the peer stopped answering pings).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol (unmasked frame, reserved bits, bad opcode...).
    pub const PROTOCOL: u16 = 1002;
    /// Text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message larger than the limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server hit an unexpected condition.
    pub const INTERNAL: u16 = 1011;
}

/// Whether a peer may send `code` in a close frame: the registered codes
/// that are meant to go on the wire, and the 3000–4999 ranges for
/// libraries and applications. 1004–1006 and 1015 are reserved and never sent.
#[must_use]
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The head of a frame as bytes: `len` of `buf` are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    buf: [u8; MAX_HEAD],
    len: u8,
}

impl FrameHead {
    /// Builds the head of a frame of `payload_len` bytes, masked with `mask`
    /// (clients) or not (servers).
    #[must_use]
    pub fn new(op: Opcode, fin: bool, payload_len: u64, mask: Option<[u8; 4]>) -> FrameHead {
        let mut buf = [0u8; MAX_HEAD];
        buf[0] = (u8::from(fin) << 7) | op.bits();
        let m = if mask.is_some() { 0x80 } else { 0 };
        let mut n = 2;
        if payload_len < 126 {
            buf[1] = m | payload_len as u8;
        } else if payload_len <= u64::from(u16::MAX) {
            buf[1] = m | 126;
            buf[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            n = 4;
        } else {
            buf[1] = m | 127;
            buf[2..10].copy_from_slice(&payload_len.to_be_bytes());
            n = 10;
        }
        if let Some(k) = mask {
            buf[n..n + 4].copy_from_slice(&k);
            n += 4;
        }
        FrameHead { buf, len: n as u8 }
    }

    /// The head's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// One unfragmented, unmasked frame (what a server sends), head and
/// payload in one buffer. Encode a broadcast once and queue the same
/// `Bytes` on every recipient.
#[must_use]
pub fn encode_frame(op: Opcode, payload: &[u8]) -> Bytes {
    let head = FrameHead::new(op, true, payload.len() as u64, None);
    let mut b = BytesMut::with_capacity(head.as_bytes().len() + payload.len());
    b.put_slice(head.as_bytes());
    b.put_slice(payload);
    b.freeze()
}

/// A close frame's payload: the code then the reason, cut to fit 125 bytes
/// on a character boundary.
#[must_use]
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// One frame as a client sends it (masked with `mask`): for tests, the
/// benchmark and tools that speak to a WebSocket server.
#[must_use]
pub fn encode_client_frame(op: Opcode, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let head = FrameHead::new(op, fin, payload.len() as u64, Some(mask));
    let mut v = Vec::with_capacity(head.as_bytes().len() + payload.len());
    v.extend_from_slice(head.as_bytes());
    let start = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[start..], mask, 0);
    v
}

/// XORs `data` with the mask, starting at byte `offset` of the payload.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let k: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) & 3]);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}
