//! The server core's handler: one game connection. Parses each packet
//! (sans-I/O codec), enforces the per-connection packet rate, and hands the
//! player's commands to the engine. Anything malformed closes the
//! connection with a reason code; nothing a peer sends can panic it.

use std::sync::Arc;
use std::time::Instant;

use cport_proto::game::{encode_to_bytes, parse_client_frame, KickReason, Packet};
use cport_server::{Completion, DisconnectReason, FrameAction, FrameError, Handler, Message, ServerHandle, Session};

use crate::engine::{kick, Conn, Engine};
use crate::zone::Cmd;

/// Per-connection state on the session's worker.
pub struct ConnState {
    conn: Arc<Conn>,
    /// Packet tokens in thousandths (refilled at `packet_rate` per second).
    tokens: i64,
    last: Instant,
}

/// The game's [`Handler`]: the sessions' packets, and the world's own
/// completions on the server's port (its tick, its zones' steps, logins
/// back from the database). Made by [`Game::handler`](crate::Game::handler).
pub struct GameHandler {
    pub(crate) engine: Arc<Engine>,
    /// Packets per second one connection may send (sustained; bursts of
    /// one second's worth).
    pub(crate) packet_rate: u32,
}

impl GameHandler {
    /// Takes one packet's token; `false` when the connection is past its rate.
    fn admit(&self, st: &mut ConnState, now: Instant) -> bool {
        let cap = i64::from(self.packet_rate) * 1000;
        let ms = now.duration_since(st.last).as_millis().min(10_000) as i64;
        st.last = now;
        st.tokens = (st.tokens + ms * i64::from(self.packet_rate)).min(cap);
        if st.tokens < 1000 {
            return false;
        }
        st.tokens -= 1000;
        true
    }
}

impl Handler for GameHandler {
    type State = ConnState;

    fn on_connect(&self, _: &Session) -> ConnState {
        ConnState {
            conn: Arc::new(Conn::default()),
            tokens: i64::from(self.packet_rate) * 1000,
            last: Instant::now(),
        }
    }

    fn on_message(&self, s: &Session, st: &mut ConnState, msg: Message) {
        if !s.is_open() {
            return;
        }
        self.engine.stats.received(msg.len() + 2);
        if !self.admit(st, Instant::now()) {
            tracing::info!(session = s.id(), "game client past its packet rate");
            return kick(s, KickReason::RATE_LIMITED);
        }
        let p = match parse_client_frame(&msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(session = s.id(), error = %e, "malformed game packet");
                return kick(s, KickReason::MALFORMED);
            }
        };
        let link = st.conn.link.lock().clone();
        match (p, link) {
            (Packet::Login { name }, None) => self.engine.login(s, &st.conn, name),
            (Packet::Resume { name, token }, None) => self.engine.resume(s, &st.conn, &name, token),
            (Packet::Ping { nonce }, _) => {
                let tick = self.engine.stats.ticks() as u32;
                let _ = s.send(encode_to_bytes(&Packet::Pong { nonce, tick }));
            }
            (Packet::StatsRequest { last_ticks }, _) => {
                let stats = self.engine.stats.snapshot(last_ticks as usize);
                let _ = s.send(encode_to_bytes(&Packet::Stats(stats)));
            }
            (Packet::WholeWorld { on }, _) => self.engine.watch(s, on),
            (Packet::Input(i), Some(link)) => self.queue(s, &link, Cmd::Move(i)),
            (Packet::Chat { text }, Some(link)) => self.queue(s, &link, Cmd::Chat(text)),
            (Packet::Logout, Some(link)) => link.logout.store(true, std::sync::atomic::Ordering::Release),
            (_, _) => kick(s, KickReason::NOT_LOGGED_IN),
        }
    }

    fn on_disconnect(&self, s: &Session, st: ConnState, reason: &DisconnectReason) {
        tracing::debug!(session = s.id(), %reason, "game connection ended");
        self.engine.watch(s, false);
        let link = st.conn.link.lock().take();
        if let Some(link) = link {
            self.engine.detach(&link, s);
        }
    }

    fn on_frame_error(&self, s: &Session, _: &mut ConnState, err: &FrameError) -> FrameAction {
        tracing::info!(session = s.id(), error = %err, "bad game frame");
        let _ = s.send(encode_to_bytes(&Packet::Kick {
            reason: KickReason::MALFORMED,
        }));
        FrameAction::Close
    }

    fn on_completion(&self, _: &ServerHandle, tag: u64, c: Completion) {
        self.engine.handle(tag, c);
    }
}

impl GameHandler {
    /// Queues a command for the player's next tick; a client that floods
    /// past the tick's capacity is cut.
    fn queue(&self, s: &Session, link: &crate::engine::Link, cmd: Cmd) {
        let mut inbox = link.inbox.lock();
        if inbox.len() >= self.engine.rules.max_pending {
            drop(inbox);
            return kick(s, KickReason::RATE_LIMITED);
        }
        inbox.push(cmd);
    }
}
