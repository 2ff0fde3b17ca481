//! The messenger on the completion port: TCP line clients on a
//! `cport_server` server and browsers on WebSocket sessions of the HTTP
//! server, both feeding one [`Messenger`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use cport_http::{HttpConfig, HttpServer, WsClose, WsConfig, WsHandler, WsMessage, WsSession};
use cport_proto::chat::Output;
use cport_proto::framing::split_newlines;
use cport_proto::ws::{encode_frame, Opcode};
use cport_server::{
    broadcast, Completion, DisconnectReason, FrameAction, FrameError, Framing, Handler, Message, Server, ServerBuilder,
    ServerHandle, Session,
};
use parking_lot::Mutex;

use crate::cluster::{probe, ClusterConfig, ClusterIo, ClusterNode, ClusterStats, Sends};
use crate::history::{now_ms, History, HistoryLimits};
use crate::messenger::{Extra, Messenger, RecentLimits};

/// A participant's connection: a TCP line client or a browser.
#[derive(Clone, Debug)]
enum Peer {
    Tcp(Session),
    Ws(WsSession),
}

/// Hub ids: TCP and WebSocket sessions come from two servers whose
/// session ids may coincide; the low bit says which. In a cluster each
/// node adds its number times [`NODE_ID_STRIDE`], so guest names
/// (`guest-<id>`) are unique across nodes.
fn tcp_id(base: u64, s: &Session) -> u64 {
    base + (s.id() << 1)
}
fn ws_id(base: u64, ws: &WsSession) -> u64 {
    base + ((ws.id() << 1) | 1)
}

/// How far apart the hub ids of two cluster nodes start: node 3's first
/// guest is `guest-30000000002`.
pub const NODE_ID_STRIDE: u64 = 10_000_000_000;

/// Settings of the messenger.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// The longest line (TCP) or text message (WebSocket), in bytes.
    pub max_line: usize,
    /// Where the history database lives (`None`: no history kept).
    pub data_dir: Option<PathBuf>,
    /// Limits on the stored history.
    pub history: HistoryLimits,
    /// Messages a joiner is shown, and rooms kept in memory for that.
    pub recent: RecentLimits,
    /// Run as one node of a cluster on Redis (`None`: a single node with
    /// in-process rooms and SQLite history).
    pub cluster: Option<ClusterConfig>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_line: 4096,
            data_dir: Some(PathBuf::from(".")),
            history: HistoryLimits::default(),
            recent: RecentLimits::default(),
            cluster: None,
        }
    }
}

struct Inner {
    messenger: Messenger,
    peers: HashMap<u64, Peer>,
    out: Output,
    /// The cluster node and its Redis link, in cluster mode.
    cluster: Option<ClusterIo>,
    sends: Sends,
}

/// The messenger shared by the TCP server's and the web server's workers.
///
/// One lock orders everything: every member of a room queues the room's
/// messages in the one order the hub produced them, whichever transport
/// each member uses.
pub struct Chat {
    inner: Mutex<Inner>,
    /// `None` without a data directory, and after [`Chat::close_history`].
    history: Mutex<Option<History>>,
    max_line: usize,
    /// Added to every hub id (see [`NODE_ID_STRIDE`]).
    id_base: u64,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("history", &*self.history.lock()).finish()
    }
}

impl Chat {
    /// Opens the history (if any) and builds the messenger with it.
    ///
    /// # Errors
    /// When the history database cannot be opened.
    pub fn new(cfg: &ChatConfig) -> io::Result<Arc<Chat>> {
        let (cluster, id_base) = match &cfg.cluster {
            Some(c) => {
                let (version, n) = probe(c.redis, &c.prefix, Duration::from_secs(3))?;
                tracing::info!(redis = %c.redis, %version, node = %c.node_id, number = n, "chat cluster: Redis answers");
                let node = ClusterNode::new(c.clone(), Instant::now(), now_ms());
                (Some(ClusterIo::new(node, c.redis)), n.saturating_mul(NODE_ID_STRIDE))
            }
            None => (None, 0),
        };
        let data_dir = if cluster.is_some() { None } else { cfg.data_dir.as_ref() };
        let (history, recent) = match data_dir {
            Some(dir) => {
                let (h, recent) = History::open(dir, cfg.history, cfg.recent.per_room, cfg.recent.rooms)
                    .map_err(|e| io::Error::other(format!("chat history in {}: {e}", dir.display())))?;
                tracing::info!(db = %h.path().display(), loaded = recent.len(), "chat history opened");
                (Some(h), recent)
            }
            None => (None, Vec::new()),
        };
        // In a cluster the history lives in Redis streams, not in memory.
        let limits = if cluster.is_some() {
            RecentLimits {
                per_room: 0,
                ..cfg.recent
            }
        } else {
            cfg.recent
        };
        Ok(Arc::new(Chat {
            inner: Mutex::new(Inner {
                messenger: Messenger::new(limits, recent),
                peers: HashMap::new(),
                out: Output::new(),
                cluster,
                sends: Sends::default(),
            }),
            history: Mutex::new(history),
            max_line: cfg.max_line.max(1),
            id_base,
        }))
    }

    /// Starts the Redis link on `server`'s port (cluster mode; otherwise
    /// nothing). Call once the TCP server (whose handler is
    /// [`tcp_handler`](Chat::tcp_handler)) has started: the link's
    /// completions arrive at that handler.
    ///
    /// # Errors
    /// When the port refuses the start.
    pub fn attach(&self, server: &ServerHandle) -> io::Result<()> {
        match &mut self.inner.lock().cluster {
            Some(c) => c.start(server.port().clone()),
            None => Ok(()),
        }
    }

    /// The cluster's counters (`None` for a single node).
    pub fn cluster_stats(&self) -> Option<ClusterStats> {
        self.inner.lock().cluster.as_ref().map(|c| c.node.stats())
    }

    /// The messenger's part of `/_cport/stats`: sessions, and in a cluster
    /// the Redis link (up or not, reconnects, what overflowed).
    pub fn stats_json(&self) -> serde_json::Value {
        let (sessions, cluster) = {
            let g = self.inner.lock();
            let cluster = g.cluster.as_ref().map(|c| (c.node.origin().to_owned(), c.node.stats()));
            (g.messenger.hub().sessions(), cluster)
        };
        let cluster = cluster.map_or(serde_json::Value::Null, |(origin, s)| {
            serde_json::json!({
                "node": origin,
                "redis_up": s.up,
                "rooms_subscribed": s.rooms_subscribed,
                "published": s.published,
                "publish_dropped": s.publish_dropped,
                "remote_delivered": s.remote_delivered,
                "duplicates_dropped": s.duplicates,
                "reconnects": s.link.reconnects,
                "link_losses": s.link.losses,
                "commands_overflowed": s.link.overflowed,
                "commands_refused_down": s.link.refused_down,
                "commands_failed": s.link.failed,
                "redis_errors": s.link.errors,
            })
        });
        serde_json::json!({
            "sessions": sessions,
            "history_dropped": self.history_dropped(),
            "cluster": cluster,
        })
    }

    /// Adds [`stats_json`](Chat::stats_json) to a web server's
    /// `/_cport/stats` as `"chat"`.
    #[must_use]
    pub fn with_stats(self: &Arc<Self>, cfg: HttpConfig) -> HttpConfig {
        let chat = Arc::downgrade(self);
        cfg.stats_section("chat", move || {
            chat.upgrade().map_or(serde_json::Value::Null, |c| c.stats_json())
        })
    }

    /// A completion of the Redis link's operations.
    fn on_link_completion(&self, tag: u64, c: Completion) {
        let now = Instant::now();
        let mut g = self.inner.lock();
        let Inner {
            messenger,
            cluster,
            sends,
            ..
        } = &mut *g;
        let Some(cl) = cluster else { return };
        cl.on_completion(tag, c, now);
        let now_ms = now_ms();
        cl.node.tick(now, now_ms);
        cl.node.pump(messenger, now, now_ms, sends);
        cl.drive(now);
        g.flush(&Extra::default());
    }

    /// Sessions connected now (both transports).
    pub fn sessions(&self) -> usize {
        self.inner.lock().messenger.hub().sessions()
    }

    /// Messages the history writer could not keep up with.
    pub fn history_dropped(&self) -> u64 {
        self.history.lock().as_ref().map_or(0, History::dropped)
    }

    /// Writes out what is queued for the database and stops its thread;
    /// messages said afterwards are not stored. Call it after the servers
    /// have shut down, before the process exits.
    pub fn close_history(&self) {
        let h = self.history.lock().take();
        drop(h); // joins the writer after it wrote the queue
    }

    fn connect(&self, id: u64, peer: Peer) {
        let mut g = self.inner.lock();
        g.peers.insert(id, peer);
        let Inner {
            messenger,
            out,
            cluster,
            ..
        } = &mut *g;
        messenger.connect(id, out);
        if let Some(cl) = cluster {
            cl.node.connect(messenger, id, now_ms());
            cl.drive(Instant::now());
        }
        g.flush(&Extra::default());
    }

    fn line(&self, id: u64, line: &[u8]) {
        let now = now_ms();
        let mut g = self.inner.lock();
        let Inner {
            messenger,
            out,
            cluster,
            sends,
            ..
        } = &mut *g;
        let extra = match cluster {
            Some(cl) => {
                cl.node.line(messenger, id, line, now, out, sends);
                cl.drive(Instant::now());
                Extra::default()
            }
            None => messenger.line(id, line, now, out),
        };
        g.flush(&extra);
        drop(g);
        if let Some(e) = extra.store {
            if let Some(h) = &*self.history.lock() {
                h.store(e);
            }
        }
    }

    fn disconnect(&self, id: u64) {
        let mut g = self.inner.lock();
        g.peers.remove(&id);
        let Inner {
            messenger,
            out,
            cluster,
            ..
        } = &mut *g;
        match cluster {
            Some(cl) => {
                cl.node.disconnect(messenger, id, now_ms(), out);
                cl.drive(Instant::now());
            }
            None => messenger.disconnect(id, out),
        }
        g.flush(&Extra::default());
    }

    /// The handler for TCP line clients.
    pub fn tcp_handler(self: &Arc<Self>) -> TcpChat {
        TcpChat(self.clone())
    }

    /// The handler for browsers (register it on a WebSocket path).
    pub fn ws_handler(self: &Arc<Self>) -> Arc<dyn WsHandler> {
        Arc::new(WsChat(self.clone()))
    }
}

impl Inner {
    /// Sends what the hub asked for, in order, then the history, then
    /// closes who quit. Runs under the lock.
    fn flush(&mut self, extra: &Extra) {
        let Inner { peers, out, sends, .. } = self;
        for d in out.deliveries() {
            deliver(peers, d.to, d.data);
        }
        for (id, line) in &extra.history {
            match peers.get(id) {
                Some(Peer::Tcp(s)) => {
                    let _ = s.send(line.clone());
                }
                Some(Peer::Ws(w)) => {
                    w.send_frame(ws_frames(line));
                }
                None => {}
            }
        }
        for (to, data) in sends.items.drain(..) {
            deliver(peers, &to, &data);
        }
        for id in out.closes() {
            match peers.get(id) {
                Some(Peer::Tcp(s)) => s.close(),
                Some(Peer::Ws(w)) => w.close(1000, "bye"),
                None => {}
            }
        }
        out.clear();
    }
}

/// Sends `data` to each of `to` that is still connected.
fn deliver(peers: &HashMap<u64, Peer>, to: &[u64], data: &Bytes) {
    let mut tcp = Vec::new();
    let mut ws = Vec::new();
    for id in to {
        match peers.get(id) {
            Some(Peer::Tcp(s)) => tcp.push(s),
            Some(Peer::Ws(w)) => ws.push(w),
            None => {}
        }
    }
    broadcast(tcp, data);
    if !ws.is_empty() {
        let frames = ws_frames(data);
        for w in ws {
            w.send_frame(frames.clone());
        }
    }
}

/// One text frame per line of `data` (lines end with `\n`, dropped), in
/// one buffer: encoded once, queued on every WebSocket recipient.
fn ws_frames(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    for line in split_newlines(data).filter(|l| !l.is_empty()) {
        b.put_slice(&encode_frame(Opcode::Text, line));
    }
    b.freeze()
}

/// TCP line clients.
pub struct TcpChat(Arc<Chat>);

impl Handler for TcpChat {
    type State = ();

    fn on_connect(&self, session: &Session) {
        self.0
            .connect(tcp_id(self.0.id_base, session), Peer::Tcp(session.clone()));
    }

    fn on_message(&self, session: &Session, _: &mut (), msg: Message) {
        self.0.line(tcp_id(self.0.id_base, session), &msg);
    }

    fn on_disconnect(&self, session: &Session, _: (), _: &DisconnectReason) {
        self.0.disconnect(tcp_id(self.0.id_base, session));
    }

    /// The Redis link's operations (cluster mode) run on this server's port.
    fn on_completion(&self, _: &ServerHandle, tag: u64, c: Completion) {
        if ClusterIo::owns(tag) {
            self.0.on_link_completion(tag, c);
        }
    }

    fn on_frame_error(&self, session: &Session, _: &mut (), err: &FrameError) -> FrameAction {
        match err {
            FrameError::TooLarge { max, .. } => {
                let _ = session.send(format!("! line too long (at most {max} bytes); dropped\n"));
                FrameAction::Skip
            }
            _ => FrameAction::Close, // Malformed, and any later kind.
        }
    }
}

/// Browsers: each text message is one line of the protocol (a message
/// holding several lines is taken line by line, as TCP would).
struct WsChat(Arc<Chat>);

impl WsHandler for WsChat {
    fn on_open(&self, ws: &WsSession) {
        self.0.connect(ws_id(self.0.id_base, ws), Peer::Ws(ws.clone()));
    }

    fn on_message(&self, ws: &WsSession, msg: WsMessage) {
        let WsMessage::Text(text) = msg else {
            ws.send_text("! binary messages are not part of the chat protocol; dropped");
            return;
        };
        for line in split_newlines(&text) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > self.0.max_line {
                ws.send_text(&format!("! line too long (at most {} bytes); dropped", self.0.max_line));
                continue;
            }
            self.0.line(ws_id(self.0.id_base, ws), line);
        }
    }

    fn on_close(&self, ws: &WsSession, _: Option<&WsClose>) {
        self.0.disconnect(ws_id(self.0.id_base, ws));
    }
}

/// The WebSocket limits for chat: a message may hold a few lines; much
/// larger closes with 1009.
#[must_use]
pub fn ws_config(max_line: usize) -> WsConfig {
    WsConfig {
        max_message: (max_line.saturating_mul(4)).max(16 << 10),
        ..WsConfig::default()
    }
}

/// A builder for the TCP side on `addr`: lines of at most `max_line`
/// bytes, a line started and not finished within `line_timeout` cut off.
pub fn tcp_builder(addr: SocketAddr, max_line: usize, line_timeout: Option<Duration>) -> ServerBuilder {
    Server::builder()
        .name("chat")
        .bind(addr)
        .framing(Framing::Lines {
            max_line: max_line.max(1),
        })
        .frame_timeout(line_timeout)
}

/// The web side for `cport chat --web`: the page from `root` at `/` and
/// the socket at `/ws`.
pub fn web_config(chat: &Arc<Chat>, root: PathBuf, addr: SocketAddr) -> HttpConfig {
    chat.with_stats(HttpConfig::new(root))
        .listen(addr)
        .websocket("/ws", chat.ws_handler())
        .ws_config(ws_config(chat.max_line))
}

/// Starts the web side.
///
/// # Errors
/// When the server cannot start.
pub fn start_web(cfg: HttpConfig) -> io::Result<HttpServer> {
    HttpServer::start(cfg)
}

/// The page's directory: `www/chat` of the bundled web root.
#[must_use]
pub fn bundled_page() -> Option<PathBuf> {
    cport_http::bundled_www()
        .map(|w| w.join("chat"))
        .filter(|p| p.join("index.html").is_file())
}
