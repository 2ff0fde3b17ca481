//! The Redis client as a state machine, sans-I/O: it never touches a
//! socket or the clock. The caller (the glue on the completion port)
//! connects when [`RedisLink::poll_connect`] says so, sends what
//! [`RedisLink::poll_transmit`] hands out (one send at a time), feeds what
//! it receives to [`RedisLink::on_received`], reports a lost connection to
//! [`RedisLink::on_lost`], and drains [`RedisLink::poll_event`].
//!
//! - Commands are pipelined: everything queued leaves in one write, and
//!   replies are matched to commands in order (Redis answers in order).
//! - One connection carries commands and pub/sub together: the link speaks
//!   RESP3 (`HELLO 3`), where pushes are frames of their own.
//! - On a lost connection it reconnects with exponential backoff, then
//!   re-subscribes every channel before anything else is sent.
//! - The outgoing queue is bounded in bytes: a command that does not fit is
//!   refused at once ([`Refused::Full`]), so a slow or dead Redis never
//!   holds up the caller; each command says what becomes of it when the
//!   connection is lost ([`Replay`]).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::resp::{bytes_of, encode_command, error_of, items_of, map_get, str_of, Decoder, Frame};

/// What happens to a command when the connection is lost before its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Failed (a query: its answer is wanted now or never). Refused at once
    /// while the link is down.
    Never,
    /// Sent after the reconnect if it had not been written yet; failed if
    /// it had (it may have run: running it twice would repeat it).
    IfUnsent,
    /// Sent again after the reconnect even if it had been written (safe
    /// because receivers drop repeats, as for publishes with a sequence).
    Always,
}

/// Why a command was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The link is down and the command is not kept for the reconnect.
    Down,
    /// The outgoing queue is at its bound.
    Full,
}

/// What the link tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent<T> {
    /// The connection is up and the handshake done; channels are being
    /// re-subscribed. `reconnected` is false the first time.
    Up {
        /// The server's version (from `HELLO`).
        version: String,
        /// Whether sharded pub/sub (`SPUBLISH`, Redis 7) is in use.
        sharded: bool,
        /// Whether a connection was up before this one.
        reconnected: bool,
    },
    /// The connection was lost (`was_up`) or a connect attempt failed; the
    /// next attempt is due in `retry_in`.
    Down {
        /// What happened.
        reason: String,
        /// Whether the link had been up.
        was_up: bool,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// The reply to a command.
    Reply(T, Frame),
    /// A command's reply will never come (the connection was lost).
    Failed(T),
    /// A pub/sub message on a subscribed channel.
    Message {
        /// The channel.
        channel: Bytes,
        /// The payload.
        payload: Bytes,
    },
}

/// Limits and timings of the link.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Bytes of commands queued at most while Redis is slow or away.
    pub max_queue: usize,
    /// Bytes handed to one send at most.
    pub max_write: usize,
    /// The largest reply accepted.
    pub max_frame: usize,
    /// The first reconnect delay; it doubles per failed attempt...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// Use sharded pub/sub when the server has it (Redis 7+).
    pub allow_sharded: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            max_queue: 4 << 20,
            max_write: 256 << 10,
            max_frame: 16 << 20,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            allow_sharded: true,
        }
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No connection; the next attempt waits for its time.
    Down,
    /// The caller is connecting.
    Connecting,
    /// Connected; `HELLO 3` sent, its reply awaited.
    Handshake,
    /// Ready for commands.
    Up,
}

/// Counters of the link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections made after the first.
    pub reconnects: u64,
    /// Connections lost or attempts failed.
    pub losses: u64,
    /// Commands refused because the queue was full.
    pub overflowed: u64,
    /// Commands refused because the link was down.
    pub refused_down: u64,
    /// Commands whose reply never came.
    pub failed: u64,
    /// Error replies from Redis.
    pub errors: u64,
    /// Pub/sub messages received.
    pub messages: u64,
}

/// What a reply in flight answers.
#[derive(Debug)]
enum Expect<T> {
    Hello,
    User(Option<T>),
}

#[derive(Debug)]
struct Cmd<T> {
    bytes: Bytes,
    /// `None`: no reply comes (the subscribe family's answers are pushes).
    expect: Option<Expect<T>>,
    replay: Replay,
}

/// The Redis link state machine; `T` tags the commands whose replies the
/// owner wants back.
#[derive(Debug)]
pub struct RedisLink<T> {
    cfg: LinkConfig,
    state: LinkState,
    attempt: u32,
    retry_at: Option<Instant>,
    queue: VecDeque<Cmd<T>>,
    queued_bytes: usize,
    inflight: VecDeque<Cmd<T>>,
    writing: bool,
    decoder: Decoder,
    channels: BTreeSet<Bytes>,
    sharded: bool,
    ever_up: bool,
    events: VecDeque<LinkEvent<T>>,
    stats: LinkStats,
}

impl<T> RedisLink<T> {
    /// A link that wants to connect at once.
    #[must_use]
    pub fn new(cfg: LinkConfig, now: Instant) -> RedisLink<T> {
        RedisLink {
            cfg,
            state: LinkState::Down,
            attempt: 0,
            retry_at: Some(now),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            writing: false,
            decoder: Decoder::new(cfg.max_frame),
            channels: BTreeSet::new(),
            sharded: false,
            ever_up: false,
            events: VecDeque::new(),
            stats: LinkStats::default(),
        }
    }

    /// Where the connection stands.
    #[must_use]
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Whether commands are flowing now.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// Whether sharded pub/sub is in use on this connection.
    #[must_use]
    pub fn sharded(&self) -> bool {
        self.sharded
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Bytes of commands waiting to be written.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Commands written whose replies have not come yet.
    #[must_use]
    pub fn awaiting(&self) -> usize {
        self.inflight.len()
    }

    /// The channels subscribed (or to be, once up).
    pub fn channels(&self) -> impl Iterator<Item = &Bytes> {
        self.channels.iter()
    }

    /// Queues a command; its reply comes back as [`LinkEvent::Reply`] with
    /// `tag` (or is dropped with `None`).
    ///
    /// # Errors
    /// [`Refused`] (with the tag back) when the queue is full, or the link
    /// is down and `replay` is [`Replay::Never`]. Nothing waits.
    pub fn command(&mut self, args: &[Bytes], tag: Option<T>, replay: Replay) -> Result<(), (Refused, Option<T>)> {
        if self.state == LinkState::Down && replay == Replay::Never {
            self.stats.refused_down += 1;
            return Err((Refused::Down, tag));
        }
        let mut b = BytesMut::new();
        encode_command(&mut b, args);
        if self.queued_bytes + b.len() > self.cfg.max_queue {
            self.stats.overflowed += 1;
            return Err((Refused::Full, tag));
        }
        self.push(b.freeze(), Some(Expect::User(tag)), replay);
        Ok(())
    }

    /// Subscribes to `channel` (kept across reconnects).
    pub fn subscribe(&mut self, channel: Bytes) {
        if self.channels.insert(channel.clone()) && self.state == LinkState::Up {
            let verb = if self.sharded { "SSUBSCRIBE" } else { "SUBSCRIBE" };
            self.push_untracked(&[Bytes::from_static(verb.as_bytes()), channel]);
        }
    }

    /// Unsubscribes from `channel`.
    pub fn unsubscribe(&mut self, channel: &Bytes) {
        if self.channels.remove(channel) && self.state == LinkState::Up {
            let verb = if self.sharded { "SUNSUBSCRIBE" } else { "UNSUBSCRIBE" };
            self.push_untracked(&[Bytes::from_static(verb.as_bytes()), channel.clone()]);
        }
    }

    /// The verb that publishes on this connection (`SPUBLISH` or `PUBLISH`).
    #[must_use]
    pub fn publish_verb(&self) -> &'static str {
        if self.sharded {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    fn push(&mut self, bytes: Bytes, expect: Option<Expect<T>>, replay: Replay) {
        self.queued_bytes += bytes.len();
        self.queue.push_back(Cmd { bytes, expect, replay });
    }

    fn push_untracked(&mut self, args: &[Bytes]) {
        let mut b = BytesMut::new();
        encode_command(&mut b, args);
        self.push(b.freeze(), None, Replay::Never);
    }

    /// Whether the caller should start connecting now; if so the link is
    /// [`LinkState::Connecting`] until [`on_connected`](Self::on_connected)
    /// or [`on_lost`](Self::on_lost).
    pub fn poll_connect(&mut self, now: Instant) -> bool {
        match (self.state, self.retry_at) {
            (LinkState::Down, Some(at)) if now >= at => {
                self.state = LinkState::Connecting;
                self.retry_at = None;
                true
            }
            _ => false,
        }
    }

    /// When the link next needs [`poll_connect`](Self::poll_connect).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The connection is made: the handshake (`HELLO 3`) goes first.
    pub fn on_connected(&mut self) {
        if self.state != LinkState::Connecting {
            return;
        }
        self.state = LinkState::Handshake;
        let mut b = BytesMut::new();
        encode_command(&mut b, &[Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")]);
        // Ahead of whatever waited for the connection.
        self.queued_bytes += b.len();
        self.queue.push_front(Cmd {
            bytes: b.freeze(),
            expect: Some(Expect::Hello),
            replay: Replay::Never,
        });
    }

    /// Bytes to send now, if any: everything queued (up to the write
    /// bound) in one buffer. Call [`on_sent`](Self::on_sent) when all of it
    /// is written; until then this answers `None`.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.writing || self.queue.is_empty() {
            return None;
        }
        // During the handshake only HELLO itself may go.
        let only_hello = self.state == LinkState::Handshake;
        if !matches!(self.state, LinkState::Up | LinkState::Handshake) {
            return None;
        }
        let mut out = BytesMut::new();
        while let Some(cmd) = self.queue.front() {
            if only_hello && !matches!(cmd.expect, Some(Expect::Hello)) {
                break;
            }
            if !out.is_empty() && out.len() + cmd.bytes.len() > self.cfg.max_write {
                break;
            }
            let cmd = self.queue.pop_front().expect("front exists");
            self.queued_bytes -= cmd.bytes.len();
            out.extend_from_slice(&cmd.bytes);
            if cmd.expect.is_some() {
                self.inflight.push_back(cmd);
            }
        }
        if out.is_empty() {
            return None;
        }
        self.writing = true;
        Some(out.freeze())
    }

    /// The buffer from [`poll_transmit`](Self::poll_transmit) is written.
    pub fn on_sent(&mut self) {
        self.writing = false;
    }

    /// Bytes arrived from Redis at `now`.
    pub fn on_received(&mut self, data: &[u8], now: Instant) {
        if !matches!(self.state, LinkState::Up | LinkState::Handshake) {
            return;
        }
        self.decoder.feed(data);
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(reason) = self.on_frame(frame) {
                        self.on_lost(now, &reason);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.on_lost(now, &e.to_string());
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), String> {
        if let Frame::Push { data, .. } = &frame {
            let kind = data.first().and_then(bytes_of).unwrap_or_default();
            if (kind == b"message" || kind == b"smessage") && data.len() == 3 {
                if let (Some(ch), Some(p)) = (bytes_of(&data[1]), bytes_of(&data[2])) {
                    self.stats.messages += 1;
                    self.events.push_back(LinkEvent::Message {
                        channel: Bytes::copy_from_slice(ch),
                        payload: Bytes::copy_from_slice(p),
                    });
                }
            }
            // (S)SUBSCRIBE confirmations and other pushes carry nothing the
            // owner needs.
            return Ok(());
        }
        let cmd = self
            .inflight
            .pop_front()
            .ok_or_else(|| "a reply from Redis that no command asked for".to_owned())?;
        if error_of(&frame).is_some() {
            self.stats.errors += 1;
        }
        match cmd.expect {
            Some(Expect::Hello) => self.on_hello(&frame),
            Some(Expect::User(Some(tag))) => {
                self.events.push_back(LinkEvent::Reply(tag, frame));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_hello(&mut self, frame: &Frame) -> Result<(), String> {
        if let Some(e) = error_of(frame) {
            return Err(format!("Redis refused HELLO 3 (RESP3 needs Redis 6 or later): {e}"));
        }
        let version = map_get(frame, "version").and_then(str_of).unwrap_or("?").to_owned();
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        self.sharded = self.cfg.allow_sharded && major >= 7;
        self.state = LinkState::Up;
        self.attempt = 0;
        let reconnected = self.ever_up;
        if reconnected {
            self.stats.reconnects += 1;
        }
        self.ever_up = true;
        // Re-subscribe ahead of everything that waited.
        if !self.channels.is_empty() {
            let verb = if self.sharded { "SSUBSCRIBE" } else { "SUBSCRIBE" };
            let mut args = vec![Bytes::from_static(verb.as_bytes())];
            args.extend(self.channels.iter().cloned());
            let mut b = BytesMut::new();
            encode_command(&mut b, &args);
            self.queued_bytes += b.len();
            self.queue.push_front(Cmd {
                bytes: b.freeze(),
                expect: None,
                replay: Replay::Never,
            });
        }
        self.events.push_back(LinkEvent::Up {
            version,
            sharded: self.sharded,
            reconnected,
        });
        Ok(())
    }

    /// The connection is gone (or the connect failed) at `now`: commands
    /// whose replies are pending fail or wait for the next connection, as
    /// their [`Replay`] says, and the next attempt is scheduled.
    pub fn on_lost(&mut self, now: Instant, reason: &str) {
        if self.state == LinkState::Down {
            return;
        }
        let was_up = self.state == LinkState::Up;
        self.state = LinkState::Down;
        self.writing = false;
        self.decoder.reset();
        self.stats.losses += 1;
        self.attempt = self.attempt.saturating_add(1);
        let retry_in = self
            .cfg
            .backoff_min
            .saturating_mul(1u32 << (self.attempt - 1).min(16))
            .min(self.cfg.backoff_max);
        self.retry_at = Some(now + retry_in);
        // Written commands: replayed in their order ahead of the unwritten.
        let mut keep = VecDeque::new();
        for cmd in self.inflight.drain(..) {
            if cmd.replay == Replay::Always {
                keep.push_back(cmd);
            } else if let Some(Expect::User(Some(tag))) = cmd.expect {
                self.stats.failed += 1;
                self.events.push_back(LinkEvent::Failed(tag));
            }
        }
        for cmd in self.queue.drain(..) {
            match (&cmd.expect, cmd.replay) {
                (Some(Expect::User(_)), Replay::Always | Replay::IfUnsent) => keep.push_back(cmd),
                (Some(Expect::User(_)), Replay::Never) => {
                    if let Some(Expect::User(Some(tag))) = cmd.expect {
                        self.stats.failed += 1;
                        self.events.push_back(LinkEvent::Failed(tag));
                    }
                }
                // HELLO and (un)subscribes are made anew on the next connection.
                _ => {}
            }
        }
        self.queued_bytes = keep.iter().map(|c| c.bytes.len()).sum();
        self.queue = keep;
        self.events.push_back(LinkEvent::Down {
            reason: reason.to_owned(),
            was_up,
            retry_in,
        });
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent<T>> {
        self.events.pop_front()
    }
}

/// The items of an array reply as UTF-8 strings (non-strings skipped).
#[must_use]
pub fn strings_of(f: &Frame) -> Vec<String> {
    items_of(f)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| str_of(i).map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_REPLY_7: &[u8] = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n";
    const HELLO_REPLY_6: &[u8] = b"%1\r\n$7\r\nversion\r\n$5\r\n6.2.0\r\n";

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn events<T>(l: &mut RedisLink<T>) -> Vec<LinkEvent<T>> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    /// A link through connect and handshake against a server of `hello`.
    fn up(hello: &[u8], now: Instant) -> RedisLink<u32> {
        let mut l = RedisLink::new(LinkConfig::default(), now);
        assert!(l.poll_connect(now));
        l.on_connected();
        let out = l.poll_transmit().unwrap();
        assert_eq!(&out[..], b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
        l.on_sent();
        l.on_received(hello, now);
        assert!(l.is_up());
        l
    }

    #[test]
    fn pipelined_replies_match_commands_in_order_across_splits() {
        let now = Instant::now();
        let mut l = up(HELLO_REPLY_7, now);
        assert!(matches!(
            &events(&mut l)[..],
            [LinkEvent::Up {
                sharded: true,
                reconnected: false,
                ..
            }]
        ));
        for i in 0..3 {
            l.command(&[b("INCR"), b("k")], Some(i), Replay::Never).unwrap();
        }
        l.command(&[b("PING")], None, Replay::Never).unwrap();
        l.command(&[b("GET"), b("k")], Some(9), Replay::Never).unwrap();
        let out = l.poll_transmit().unwrap();
        assert_eq!(
            out.windows(4).filter(|w| w == b"INCR").count(),
            3,
            "one write carries all"
        );
        assert!(l.poll_transmit().is_none(), "one write at a time");
        l.on_sent();
        // A push in the middle, and every split point.
        let replies: &[u8] = b":1\r\n:2\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n:3\r\n+PONG\r\n$1\r\n3\r\n";
        for b_ in replies {
            l.on_received(std::slice::from_ref(b_), now);
        }
        let ev = events(&mut l);
        let replies: Vec<(u32, Option<i64>)> = ev
            .iter()
            .filter_map(|e| match e {
                LinkEvent::Reply(t, f) => Some((*t, super::super::resp::int_of(f))),
                _ => None,
            })
            .collect();
        assert_eq!(replies, vec![(0, Some(1)), (1, Some(2)), (2, Some(3)), (9, None)]);
        assert!(ev
            .iter()
            .any(|e| matches!(e, LinkEvent::Message { payload, .. } if &payload[..] == b"p")));
        assert!(l.is_up());
    }

    #[test]
    fn reconnect_resubscribes_first_and_replays_by_rule() {
        let t0 = Instant::now();
        let mut l = up(HELLO_REPLY_7, t0);
        l.subscribe(b("room:a"));
        l.subscribe(b("room:b"));
        l.unsubscribe(&b("room:b"));
        l.command(&[b("SPUBLISH"), b("room:a"), b("1")], Some(1), Replay::Always)
            .unwrap();
        l.command(&[b("XADD"), b("h"), b("*"), b("t"), b("1")], Some(2), Replay::IfUnsent)
            .unwrap();
        l.command(&[b("GET"), b("n")], Some(3), Replay::Never).unwrap();
        let out = l.poll_transmit().unwrap();
        assert!(out.windows(11).any(|w| w == b"SSUBSCRIBE\r"));
        l.on_sent();
        events(&mut l);
        // Lost with all three written: the publish waits, the others fail.
        l.on_lost(t0, "reset");
        assert_eq!(l.state(), LinkState::Down);
        let ev = events(&mut l);
        assert!(ev.contains(&LinkEvent::Failed(2)) && ev.contains(&LinkEvent::Failed(3)));
        assert!(matches!(ev.last(), Some(LinkEvent::Down { was_up: true, .. })));
        // While down: queries refused, replayable commands kept.
        assert_eq!(
            l.command(&[b("GET"), b("n")], Some(4), Replay::Never),
            Err((Refused::Down, Some(4)))
        );
        l.command(&[b("XADD"), b("h"), b("*"), b("t"), b("2")], Some(5), Replay::IfUnsent)
            .unwrap();
        // Backoff: not before its time.
        let at = l.poll_timeout().unwrap();
        assert!(at > t0);
        assert!(!l.poll_connect(t0));
        assert!(l.poll_connect(at));
        l.on_connected();
        let hello = l.poll_transmit().unwrap();
        assert!(hello.starts_with(b"*2\r\n$5\r\nHELLO"));
        assert!(
            !hello.windows(7).any(|w| w == b"SPUBLIS"),
            "nothing goes before the handshake"
        );
        l.on_sent();
        l.on_received(HELLO_REPLY_7, at);
        assert!(matches!(&events(&mut l)[..], [LinkEvent::Up { reconnected: true, .. }]));
        let out = l.poll_transmit().unwrap();
        let s = String::from_utf8_lossy(&out);
        let sub = s.find("SSUBSCRIBE").unwrap();
        let publ = s.find("SPUBLISH").unwrap();
        assert!(sub < publ, "re-subscribed before the replay: {s}");
        assert!(s.contains("room:a") && !s.contains("room:b"));
        assert!(s.contains("$1\r\n2\r\n"), "the unsent XADD goes");
        assert_eq!(l.stats().reconnects, 1);
    }

    #[test]
    fn the_queue_is_bounded_and_backoff_grows_to_its_cap() {
        let t0 = Instant::now();
        let cfg = LinkConfig {
            max_queue: 100,
            ..LinkConfig::default()
        };
        let mut l: RedisLink<u32> = RedisLink::new(cfg, t0);
        assert!(l.poll_connect(t0));
        // Not up yet: replayable commands queue up to the bound.
        let big = b(&"x".repeat(40));
        assert!(l
            .command(&[b("PUBLISH"), b("c"), big.clone()], Some(1), Replay::Always)
            .is_ok());
        assert_eq!(
            l.command(&[b("PUBLISH"), b("c"), big.clone()], Some(2), Replay::Always),
            Err((Refused::Full, Some(2)))
        );
        assert_eq!(l.stats().overflowed, 1);
        let mut delays = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            l.on_lost(now, "refused");
            let at = l.poll_timeout().unwrap();
            delays.push(at - now);
            now = at;
            assert!(l.poll_connect(now));
        }
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(2));
        assert!(l.queued_bytes() > 0, "the publish still waits");
    }

    #[test]
    fn redis_6_uses_plain_pubsub_and_garbage_drops_the_connection() {
        let now = Instant::now();
        let mut l = up(HELLO_REPLY_6, now);
        assert!(!l.sharded());
        assert_eq!(l.publish_verb(), "PUBLISH");
        l.on_received(b"!!nonsense\r\n", now);
        assert_eq!(l.state(), LinkState::Down);
        // A reply nobody asked for is a broken stream too.
        let mut l = up(HELLO_REPLY_7, now);
        l.on_received(b"+OK\r\n", now);
        assert_eq!(l.state(), LinkState::Down);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever Redis sends, the link neither panics nor grows without
        /// bound: it stays up with the frames it could read, or drops the
        /// connection.
        #[test]
        fn any_bytes_from_redis_are_handled(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let now = Instant::now();
            let cfg = LinkConfig { max_frame: 1024, ..LinkConfig::default() };
            let mut l: RedisLink<u32> = RedisLink::new(cfg, now);
            prop_assert!(l.poll_connect(now));
            l.on_connected();
            let _ = l.poll_transmit();
            l.on_sent();
            l.on_received(b"%1\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n", now);
            for i in 0..8u32 {
                let _ = l.command(&[Bytes::from_static(b"GET"), Bytes::from(i.to_string())], Some(i), Replay::Never);
            }
            let _ = l.poll_transmit();
            l.on_sent();
            for c in &chunks {
                l.on_received(c, now);
                while l.poll_event().is_some() {}
            }
            prop_assert!(matches!(l.state(), LinkState::Up | LinkState::Down));
            prop_assert!(l.awaiting() <= 8);
        }
    }
}
