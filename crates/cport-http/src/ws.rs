//! WebSocket endpoints on the HTTP server's port: the upgrade, then the
//! session speaks WebSocket (RFC 6455) through the sans-I/O
//! [`cport_proto::ws::WsConn`], on the same server-core session (same
//! per-session send cap, same flow control).
//!
//! An application registers a [`WsHandler`] on a path
//! ([`HttpConfig::websocket`](crate::HttpConfig::websocket)); a request on
//! that path with `Upgrade: websocket` is checked (400, 426, 403) and
//! answered 101, and from then on every received chunk goes to the codec.
//! The idle pings and close deadlines run on the session's own timer
//! ([`Session::set_timer`], fired through `Handler::on_timer` in order with
//! the session's chunks): no thread of their own.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cport_proto::ws::{encode_frame, Close, FrameHead, Opcode, WsConfig, WsConn, WsEvent};
use cport_server::Session;
use parking_lot::Mutex;

/// A complete message received on a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message (valid UTF-8: the codec checked it).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl WsMessage {
    /// The message's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WsMessage::Text(b) | WsMessage::Binary(b) => b,
        }
    }

    /// The text of a text message.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            // The codec validated it; a failure here would be a codec bug,
            // answered as "not text" rather than a panic.
            WsMessage::Text(b) => std::str::from_utf8(b).ok(),
            WsMessage::Binary(_) => None,
        }
    }
}

/// What an application does with WebSocket sessions. Called by the HTTP
/// server's workers; as with [`cport_server::Handler`], calls for one
/// session never overlap and come in order: `on_open`, each message, then
/// `on_close` exactly once.
pub trait WsHandler: Send + Sync + 'static {
    /// The handshake succeeded (the 101 answer is queued).
    fn on_open(&self, ws: &WsSession) {
        let _ = ws;
    }

    /// A complete message arrived.
    fn on_message(&self, ws: &WsSession, msg: WsMessage);

    /// The session ended: `close` says how when the close handshake (or a
    /// protocol failure) ended it, `None` when the TCP side just went away.
    fn on_close(&self, ws: &WsSession, close: Option<&Close>) {
        let _ = (ws, close);
    }
}

/// Where WebSocket upgrades are accepted, and with what rules.
#[derive(Clone, Default)]
pub struct WsRoutes {
    pub(crate) routes: Vec<(String, Arc<dyn WsHandler>)>,
    /// Allowed `Origin`s (empty: any). A browser page on another site is
    /// refused with 403.
    pub origins: Vec<String>,
    /// The codec's limits and timers.
    pub config: WsConfig,
}

impl fmt::Debug for WsRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsRoutes")
            .field("paths", &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>())
            .field("origins", &self.origins)
            .field("config", &self.config)
            .finish()
    }
}

impl WsRoutes {
    /// Accepts WebSocket upgrades on `path` (exact match, e.g. `/ws`).
    pub fn add(&mut self, path: impl Into<String>, handler: Arc<dyn WsHandler>) {
        self.routes.push((path.into(), handler));
    }

    /// The handler for a request path (query ignored).
    pub(crate) fn find(&self, target: &str) -> Option<&Arc<dyn WsHandler>> {
        let path = target.split(['?', '#']).next().unwrap_or(target);
        self.routes.iter().find(|(p, _)| p == path).map(|(_, h)| h)
    }

    /// `true` when no path accepts upgrades.
    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Payloads up to this size are copied behind their frame head into one
/// buffer when sent: a copy of a few KiB costs less than a second queued
/// item and the send it may take on its own.
const COPY_MAX: usize = 16 << 10;

/// One WebSocket session: a handle any thread may use to send and close.
///
/// Cheap to clone. Sends never block; they go to the server core's send
/// queue (with its cap: a client that does not read is cut off).
#[derive(Clone)]
pub struct WsSession {
    session: Session,
    conn: Arc<Mutex<WsState>>,
}

/// The codec and the deadline the session's timer is set for.
struct WsState {
    conn: WsConn,
    /// When the session's timer fires next (`None`: not set). It is moved
    /// only earlier between firings: a deadline that moved later (a message
    /// arrived, so the idle ping waits) is found when the timer fires, which
    /// sets it again. A received message then costs no timer call.
    timer: Option<Instant>,
}

impl std::ops::Deref for WsState {
    type Target = WsConn;
    fn deref(&self) -> &WsConn {
        &self.conn
    }
}

impl std::ops::DerefMut for WsState {
    fn deref_mut(&mut self) -> &mut WsConn {
        &mut self.conn
    }
}

impl WsState {
    /// Sets the session's timer for the codec's next deadline if that is
    /// earlier than the one it is set for (or `always`).
    fn arm(&mut self, session: &Session, always: bool) {
        let want = self.conn.poll_timeout();
        let earlier = match (want, self.timer) {
            (Some(w), Some(t)) => w < t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if earlier || always {
            self.timer = want;
            session.set_timer(want.map(|w| w.saturating_duration_since(Instant::now())));
        }
    }
}

impl fmt::Debug for WsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSession").field("id", &self.session.id()).finish()
    }
}

impl WsSession {
    /// The underlying session's id (unique in the server, never reused).
    #[must_use]
    pub fn id(&self) -> u64 {
        self.session.id()
    }

    /// The peer's address.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.session.peer_addr()
    }

    /// The server-core session underneath.
    #[must_use]
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Sends a text message. `false` when the session is closing or was cut off.
    pub fn send_text(&self, text: &str) -> bool {
        self.send_frame(encode_frame(Opcode::Text, text.as_bytes()))
    }

    /// Sends a message. Up to `COPY_MAX` (16 KiB) the frame head and the
    /// payload are written into one buffer: one queued item, one send. A
    /// larger payload is not copied: head and payload go out as two buffers.
    pub fn send(&self, msg: WsMessage) -> bool {
        let (op, payload) = match msg {
            WsMessage::Text(b) => (Opcode::Text, b),
            WsMessage::Binary(b) => (Opcode::Binary, b),
        };
        let head = FrameHead::new(op, true, payload.len() as u64, None);
        let conn = self.conn.lock();
        if !conn.is_open() {
            return false;
        }
        if payload.len() <= COPY_MAX {
            let mut frame = Vec::with_capacity(head.as_bytes().len() + payload.len());
            frame.extend_from_slice(head.as_bytes());
            frame.extend_from_slice(&payload);
            return self.session.send(frame).is_ok();
        }
        self.session.send(Bytes::copy_from_slice(head.as_bytes())).is_ok() && self.session.send(payload).is_ok()
    }

    /// Sends a frame already encoded with [`encode_frame`]: encode a
    /// broadcast once and hand the same buffer to every recipient.
    pub fn send_frame(&self, frame: Bytes) -> bool {
        let conn = self.conn.lock();
        conn.is_open() && self.session.send(frame).is_ok()
    }

    /// Starts the close handshake with `code`; the TCP side closes when the
    /// peer answers, or at the close timeout.
    pub fn close(&self, code: u16, reason: &str) {
        let mut conn = self.conn.lock();
        conn.close(code, reason, Instant::now());
        flush(&self.session, &mut conn);
    }

    /// `true` until a close frame has gone out or come in.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.conn.lock().is_open() && self.session.is_open()
    }
}

/// Sends what the codec queued; closes the TCP side once it is closed, or
/// else has the session's timer run at the codec's next deadline.
fn flush(session: &Session, conn: &mut WsState) {
    while let Some(f) = conn.poll_transmit() {
        if session.send(f).is_err() {
            break;
        }
    }
    if conn.is_closed() {
        session.close();
    } else {
        conn.arm(session, false);
    }
}

/// A connection that was upgraded: its handler and session.
pub(crate) struct Upgraded {
    handler: Arc<dyn WsHandler>,
    ws: WsSession,
    /// How it ended, once it did (for `on_close`).
    close: Option<Close>,
    /// The codec's events, kept between chunks so a message costs no
    /// allocation here.
    events: Vec<WsEvent>,
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ws.fmt(f)
    }
}

impl Upgraded {
    /// Starts WebSocket on `session` (its 101 answer already queued).
    /// Its timer is not set yet: [`start_timer`](Self::start_timer) does,
    /// once the request's own timeout is over.
    pub(crate) fn open(session: &Session, handler: Arc<dyn WsHandler>, cfg: &WsConfig) -> Upgraded {
        let ws = WsSession {
            session: session.clone(),
            conn: Arc::new(Mutex::new(WsState {
                conn: WsConn::new(cfg.clone(), Instant::now()),
                timer: None,
            })),
        };
        handler.on_open(&ws);
        Upgraded {
            handler,
            ws,
            close: None,
            events: Vec::new(),
        }
    }

    /// Feeds a received chunk and hands the messages to the handler.
    pub(crate) fn on_chunk(&mut self, chunk: &[u8]) {
        if self.close.is_some() {
            return;
        }
        let now = Instant::now();
        let mut events = std::mem::take(&mut self.events);
        let mut data = chunk;
        // Frame by frame, so a pong or close leaves after the answers to
        // the messages before it.
        while !data.is_empty() && self.close.is_none() {
            {
                let mut conn = self.ws.conn.lock();
                let n = conn.read(data, now, &mut events);
                data = &data[n..];
                flush(&self.ws.session, &mut conn);
            }
            self.dispatch(&mut events);
        }
        self.events = events;
    }

    fn dispatch(&mut self, events: &mut Vec<WsEvent>) {
        for ev in events.drain(..) {
            match ev {
                WsEvent::Text(b) => self.handler.on_message(&self.ws, WsMessage::Text(b)),
                WsEvent::Binary(b) => self.handler.on_message(&self.ws, WsMessage::Binary(b)),
                WsEvent::Pong(_) => {}
                WsEvent::Closed(c) => {
                    tracing::debug!(session = self.ws.id(), code = ?c.code, cause = ?c.cause, reason = %c.reason, "websocket closed");
                    self.close = Some(c);
                }
            }
        }
    }

    /// Hands the session's timer (the request timeout's until now) to the
    /// codec's deadlines.
    pub(crate) fn start_timer(&self) {
        self.ws.conn.lock().arm(&self.ws.session, true);
    }

    /// The session's timer fired: runs the codec's timers if one is due
    /// (the idle ping, or giving up on a peer that answers neither it nor
    /// our close frame), and sets the timer for the next deadline.
    pub(crate) fn on_timer(&mut self) {
        let now = Instant::now();
        let mut events = std::mem::take(&mut self.events);
        {
            let mut conn = self.ws.conn.lock();
            conn.timer = None;
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now, &mut events);
            }
            if conn.is_closed() {
                // The peer stopped answering: nothing it would read.
                self.ws.session.abort();
            } else {
                flush(&self.ws.session, &mut conn);
            }
        }
        self.dispatch(&mut events);
        self.events = events;
    }

    /// The session ended.
    pub(crate) fn on_disconnect(self) {
        self.handler.on_close(&self.ws, self.close.as_ref());
    }
}
