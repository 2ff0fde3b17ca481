//! One WebSocket connection, server side, as a state machine: received
//! bytes and the time in, messages and frames to send out.
//!
//! Call order: [`WsConn::read`] each received chunk until it is used up
//! (any split: a frame cut anywhere decodes the same), handling the events
//! and sending what [`WsConn::poll_transmit`] hands out after each call, so
//! answers leave in the order of the frames they answer ([`WsConn::feed`]
//! does the whole chunk at once when that order does not matter); call
//! [`WsConn::handle_timeout`] at [`WsConn::poll_timeout`]. Once
//! [`WsConn::is_closed`], send what is left to transmit and close the TCP
//! connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{
    apply_mask, close_payload, code, encode_frame, is_valid_close_code, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEAD,
};

/// Limits and timers of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// Largest message (all fragments together). Larger closes with 1009
    /// as soon as a frame head announces it. Default 1 MiB.
    pub max_message: usize,
    /// Send a ping after this long without hearing from the peer (`None`:
    /// never). Default 30 s.
    pub ping_interval: Option<Duration>,
    /// How long the peer has to answer that ping (with anything) before the
    /// connection is given up. Default 10 s.
    pub ping_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours.
    /// Default 5 s.
    pub close_timeout: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: 1 << 20,
            ping_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Who ended the connection, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The peer sent a close frame (ours echoed it).
    Peer,
    /// We sent a close frame ([`WsConn::close`]) and the peer answered.
    Local,
    /// The peer broke the protocol; we sent a close frame with the code.
    Failed,
    /// The peer stopped answering (idle ping or close handshake deadline).
    Timeout,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The status code: the peer's, or the one we failed the connection
    /// with; `None` when the peer's close frame carried none.
    pub code: Option<u16>,
    /// The reason text that came with it.
    pub reason: String,
    /// Who ended it.
    pub cause: CloseCause,
}

/// What the connection hands to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete text message; its bytes are valid UTF-8.
    Text(Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A pong arrived (the answer to our ping, or a heartbeat).
    Pong(Bytes),
    /// The connection is closed: send what is left to transmit, then close
    /// the TCP side. Comes exactly once; nothing comes after it.
    Closed(Close),
}

/// Where the frame decoder is.
#[derive(Debug)]
enum Rx {
    /// Reading a frame head: `have` bytes of it are in `buf`.
    Head { buf: [u8; MAX_HEAD], have: usize },
    /// Reading a payload: `left` bytes to go, `at` read so far.
    Payload {
        op: Opcode,
        fin: bool,
        mask: [u8; 4],
        left: u64,
        at: usize,
    },
}

/// The close handshake's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Our close frame is out; waiting for the peer's until the deadline.
    CloseSent {
        deadline: Instant,
    },
    Closed,
}

/// A server-side WebSocket connection. See the module docs for the call order.
#[derive(Debug)]
pub struct WsConn {
    cfg: WsConfig,
    rx: Rx,
    phase: Phase,
    /// The data message being assembled: its kind (text or binary) and bytes.
    msg_kind: Option<Opcode>,
    message: BytesMut,
    /// Bytes of a text `message` known to be valid UTF-8 so far.
    utf8_ok: usize,
    /// The control frame being read (at most 125 bytes).
    control: Vec<u8>,
    out: VecDeque<Bytes>,
    /// When the peer was last heard from.
    last_rx: Instant,
    /// The deadline of the ping we sent and the peer has not answered.
    ping_deadline: Option<Instant>,
}

impl WsConn {
    /// A connection that has just completed its handshake at `now`.
    #[must_use]
    pub fn new(cfg: WsConfig, now: Instant) -> WsConn {
        WsConn {
            cfg,
            rx: Rx::Head {
                buf: [0; MAX_HEAD],
                have: 0,
            },
            phase: Phase::Open,
            msg_kind: None,
            message: BytesMut::new(),
            utf8_ok: 0,
            control: Vec::new(),
            out: VecDeque::new(),
            last_rx: now,
            ping_deadline: None,
        }
    }

    /// `true` while messages may be sent: no close frame has gone out.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// `true` once the connection is over: flush, then close the TCP side.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The next frame to send (pongs, pings, close frames), in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](WsConn::handle_timeout) wants to run next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open => match self.ping_deadline {
                Some(d) => Some(d),
                None => self.cfg.ping_interval.map(|i| self.last_rx + i),
            },
            Phase::CloseSent { deadline } => Some(deadline),
            Phase::Closed => None,
        }
    }

    /// Runs the timers: sends the idle ping, gives up on a peer that did
    /// not answer it or our close frame in time.
    pub fn handle_timeout(&mut self, now: Instant, events: &mut Vec<WsEvent>) {
        match self.phase {
            Phase::Open => {
                if let Some(d) = self.ping_deadline {
                    if now >= d {
                        self.end(code::GOING_AWAY, "ping not answered", CloseCause::Timeout, events);
                    }
                } else if let Some(i) = self.cfg.ping_interval {
                    if now >= self.last_rx + i {
                        self.out.push_back(encode_frame(Opcode::Ping, b""));
                        self.ping_deadline = Some(now + self.cfg.ping_timeout);
                    }
                }
            }
            Phase::CloseSent { deadline } if now >= deadline => {
                self.phase = Phase::Closed;
                events.push(WsEvent::Closed(Close {
                    code: None,
                    reason: String::new(),
                    cause: CloseCause::Timeout,
                }));
            }
            _ => {}
        }
    }

    /// Starts the close handshake with `code` and `reason`: the close frame
    /// is queued; the peer's answer (or the close timeout) ends the connection.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        if self.phase == Phase::Open {
            self.out
                .push_back(encode_frame(Opcode::Close, &close_payload(code, reason)));
            self.phase = Phase::CloseSent {
                deadline: now + self.cfg.close_timeout,
            };
        }
    }

    /// Fails the connection: queues a close frame with `code` and ends it.
    fn end(&mut self, code: u16, reason: &str, cause: CloseCause, events: &mut Vec<WsEvent>) {
        if self.phase == Phase::Closed {
            return;
        }
        if self.phase == Phase::Open {
            self.out
                .push_back(encode_frame(Opcode::Close, &close_payload(code, reason)));
        }
        self.phase = Phase::Closed;
        self.message = BytesMut::new();
        self.control = Vec::new();
        events.push(WsEvent::Closed(Close {
            code: Some(code),
            reason: reason.to_owned(),
            cause,
        }));
    }

    /// Decodes one received chunk: complete messages, pongs and the close
    /// come out in `events`; pongs for pings and close answers go to the
    /// transmit queue. Bytes after the connection closed are ignored.
    ///
    /// The transmit queue and `events` are filled in one go, so their
    /// relative order is lost; a server that must keep it (an echo: a
    /// pong after the message before it) uses [`read`](WsConn::read).
    pub fn feed(&mut self, mut data: &[u8], now: Instant, events: &mut Vec<WsEvent>) {
        while !data.is_empty() {
            let n = self.read(data, now, events);
            data = &data[n..];
        }
    }

    /// Decodes `data` up to the end of the first frame that completes in it
    /// and returns how many bytes it used (at least one, or all of them
    /// once closed). Handle the events and send what
    /// [`poll_transmit`](WsConn::poll_transmit) gives after each call, and
    /// every answer leaves in the order of the frames it answers.
    pub fn read(&mut self, data: &[u8], now: Instant, events: &mut Vec<WsEvent>) -> usize {
        if data.is_empty() || self.phase == Phase::Closed {
            return data.len();
        }
        self.last_rx = now;
        self.ping_deadline = None;
        let total = data.len();
        let mut data = data;
        while !data.is_empty() && self.phase != Phase::Closed {
            match &mut self.rx {
                Rx::Head { buf, have } => {
                    let need = head_len(&buf[..*have]);
                    let n = (need - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    let (buf, have) = (*buf, *have);
                    if have == 2 {
                        if let Err((c, why)) = self.check_start(buf[0], buf[1]) {
                            self.end(c, why, CloseCause::Failed, events);
                            return total;
                        }
                    }
                    if have >= 2 && have == head_len(&buf[..have]) {
                        self.start_payload(&buf[..have], events);
                        if matches!(self.rx, Rx::Head { .. }) {
                            break; // an empty payload: the frame is done
                        }
                    }
                }
                Rx::Payload { op, mask, left, at, .. } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    let (op, mask, off) = (*op, *mask, *at);
                    *left -= n as u64;
                    *at += n;
                    let chunk = &data[..n];
                    data = &data[n..];
                    if op.is_control() {
                        let start = self.control.len();
                        self.control.extend_from_slice(chunk);
                        apply_mask(&mut self.control[start..], mask, off);
                    } else {
                        let start = self.message.len();
                        self.message.extend_from_slice(chunk);
                        apply_mask(&mut self.message[start..], mask, off);
                        if self.msg_kind == Some(Opcode::Text) && !self.check_utf8(false) {
                            self.end(code::INVALID_DATA, "text is not UTF-8", CloseCause::Failed, events);
                            return total;
                        }
                    }
                    if let Rx::Payload { left: 0, .. } = self.rx {
                        self.finish_frame(events);
                        break;
                    }
                }
            }
        }
        if self.phase == Phase::Closed {
            total
        } else {
            total - data.len()
        }
    }

    /// Checks the first two bytes of a head: RSV bits, opcode, masking,
    /// control-frame rules, fragmentation order.
    fn check_start(&self, b0: u8, b1: u8) -> Result<(), (u16, &'static str)> {
        if b0 & 0x70 != 0 {
            return Err((code::PROTOCOL, "reserved bits set"));
        }
        let op = Opcode::from_bits(b0 & 0x0F).ok_or((code::PROTOCOL, "reserved opcode"))?;
        if b1 & 0x80 == 0 {
            return Err((code::PROTOCOL, "client frame not masked"));
        }
        let fin = b0 & 0x80 != 0;
        if op.is_control() {
            if !fin {
                return Err((code::PROTOCOL, "fragmented control frame"));
            }
            if usize::from(b1 & 0x7F) > MAX_CONTROL_PAYLOAD {
                return Err((code::PROTOCOL, "control frame over 125 bytes"));
            }
        } else if op == Opcode::Continuation {
            if self.msg_kind.is_none() {
                return Err((code::PROTOCOL, "continuation without a message"));
            }
        } else if self.msg_kind.is_some() {
            return Err((code::PROTOCOL, "new message inside a fragmented one"));
        }
        Ok(())
    }

    /// A complete head: checks the length and moves on to the payload.
    fn start_payload(&mut self, head: &[u8], events: &mut Vec<WsEvent>) {
        let fin = head[0] & 0x80 != 0;
        let op = Opcode::from_bits(head[0] & 0x0F).expect("checked in check_start");
        let (len, at) = match head[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
            127 => (u64::from_be_bytes(head[2..10].try_into().expect("8 bytes")), 10),
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 {
            self.end(
                code::PROTOCOL,
                "64-bit length with the top bit set",
                CloseCause::Failed,
                events,
            );
            return;
        }
        let mask: [u8; 4] = head[at..at + 4].try_into().expect("4 bytes");
        if !op.is_control() {
            let total = self.message.len() as u64 + len;
            if total > self.cfg.max_message as u64 {
                self.end(code::TOO_BIG, "message too big", CloseCause::Failed, events);
                return;
            }
            if op != Opcode::Continuation {
                self.msg_kind = Some(op);
                self.utf8_ok = 0;
            }
            // Reserve what the frame announces, but not a peer's promise of
            // a large frame before its bytes come.
            self.message.reserve((len as usize).min(64 << 10));
        }
        self.rx = Rx::Payload {
            op,
            fin,
            mask,
            left: len,
            at: 0,
        };
        if len == 0 {
            self.finish_frame(events);
        }
    }

    /// Validates the text received so far; `fin`: the message is complete,
    /// so a truncated character at the end is an error too.
    fn check_utf8(&mut self, fin: bool) -> bool {
        match std::str::from_utf8(&self.message[self.utf8_ok..]) {
            Ok(_) => {
                self.utf8_ok = self.message.len();
                true
            }
            Err(e) => {
                self.utf8_ok += e.valid_up_to();
                // `error_len() == None`: the bytes end inside a character
                // that may still be completed by the next ones.
                e.error_len().is_none() && !fin
            }
        }
    }

    /// A frame's payload is complete: act on it.
    fn finish_frame(&mut self, events: &mut Vec<WsEvent>) {
        let Rx::Payload { op, fin, .. } = self.rx else {
            return;
        };
        self.rx = Rx::Head {
            buf: [0; MAX_HEAD],
            have: 0,
        };
        match op {
            Opcode::Ping => {
                if self.phase == Phase::Open {
                    self.out.push_back(encode_frame(Opcode::Pong, &self.control));
                }
                self.control.clear();
            }
            Opcode::Pong => {
                let p = Bytes::copy_from_slice(&self.control);
                self.control.clear();
                events.push(WsEvent::Pong(p));
            }
            Opcode::Close => self.peer_closed(events),
            _ if fin => {
                let kind = self.msg_kind.take();
                if kind == Some(Opcode::Text) && !self.check_utf8(true) {
                    self.end(code::INVALID_DATA, "text is not UTF-8", CloseCause::Failed, events);
                    return;
                }
                let data = self.message.split().freeze();
                if self.phase == Phase::Open {
                    events.push(match kind {
                        Some(Opcode::Text) => WsEvent::Text(data),
                        _ => WsEvent::Binary(data),
                    });
                }
            }
            _ => {}
        }
    }

    /// The peer's close frame: validate, answer (unless we started), end.
    fn peer_closed(&mut self, events: &mut Vec<WsEvent>) {
        let payload = std::mem::take(&mut self.control);
        let (code, reason) = match payload.len() {
            0 => (None, String::new()),
            1 => return self.end(code::PROTOCOL, "close payload of one byte", CloseCause::Failed, events),
            _ => {
                let c = u16::from_be_bytes([payload[0], payload[1]]);
                if !is_valid_close_code(c) {
                    return self.end(code::PROTOCOL, "invalid close code", CloseCause::Failed, events);
                }
                match std::str::from_utf8(&payload[2..]) {
                    Ok(r) => (Some(c), r.to_owned()),
                    Err(_) => {
                        return self.end(
                            code::INVALID_DATA,
                            "close reason is not UTF-8",
                            CloseCause::Failed,
                            events,
                        )
                    }
                }
            }
        };
        let cause = match self.phase {
            Phase::Open => {
                // Echo the code (an empty close is answered empty).
                let answer = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
                self.out.push_back(encode_frame(Opcode::Close, &answer));
                CloseCause::Peer
            }
            _ => CloseCause::Local,
        };
        self.phase = Phase::Closed;
        self.message = BytesMut::new();
        events.push(WsEvent::Closed(Close { code, reason, cause }));
    }
}

/// How long the head that starts with `have` is (2 until the second byte is known).
fn head_len(have: &[u8]) -> usize {
    if have.len() < 2 {
        return 2;
    }
    let ext = match have[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if have[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}
