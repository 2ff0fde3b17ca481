//! `cport chat`: the messenger (crate `cport-chat`). A line protocol usable
//! from `nc`: nicknames, rooms, private messages; with `--web`, the same
//! rooms in a browser (the page at `http://ADDR/`, its WebSocket at
//! `ws://ADDR/ws`); every room message kept in SQLite under `--data`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cport_chat::{Chat, ChatConfig, ClusterConfig, HistoryLimits, RecentLimits};
use cport_server::ServerBuilder;

use super::{announce, run_until_signal, signals, ServerArgs};

/// The default `--line-timeout`, in seconds; also what `cport serve` uses.
pub const LINE_TIMEOUT_SECS: u64 = 30;

/// `cport chat` flags.
#[derive(Args, Clone, Debug)]
pub struct ChatArgs {
    /// Address to listen on (TCP line clients, e.g. `nc`).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// Also serve the web client: the page at http://ADDR/ and its
    /// WebSocket at ws://ADDR/ws, in the same rooms as TCP clients.
    #[arg(long, value_name = "ADDR")]
    pub web: Option<SocketAddr>,
    /// Only pages from these origins may open the WebSocket (repeatable;
    /// default: any).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// The longest line accepted, in bytes; a longer one gets an error line
    /// and is dropped.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub max_line: usize,
    /// A client that starts a line and does not finish it within this many
    /// seconds is disconnected (slow-loris defence; 0: never).
    #[arg(long, default_value_t = LINE_TIMEOUT_SECS, value_name = "SECS")]
    pub line_timeout: u64,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Where and how much chat history is kept.
#[derive(Args, Clone, Debug)]
pub struct HistoryArgs {
    /// Directory of the history database (chat.sqlite3). Default:
    /// $CPORT_DATA, else the working directory.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Keep no history at all.
    #[arg(long)]
    pub no_history: bool,
    /// Messages kept per room in the database (0: no limit).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub history_per_room: u64,
    /// Messages older than this many days are deleted (0: kept forever).
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub history_days: u64,
    /// Messages shown to someone joining a room.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub history_on_join: usize,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// One messenger on many machines: Redis as the backbone (docs/CLUSTER.md).
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Run as one node of a chat cluster on this Redis (6 or later; 7
    /// uses sharded pub/sub): rooms, presence, nicknames and history span
    /// every node started with the same Redis. History then lives in
    /// Redis streams, not in SQLite.
    #[arg(long, value_name = "redis://HOST:PORT")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (default: HOSTNAME-PID).
    #[arg(long, value_name = "ID", requires = "cluster")]
    pub node_id: Option<String>,
    /// Seconds after which the users of a node that stopped (crashed, cut
    /// off) leave presence; the node refreshes every third of it.
    #[arg(long, default_value_t = 10, value_name = "SECS", requires = "cluster")]
    pub presence_ttl: u64,
}

impl ClusterArgs {
    /// The cluster settings, if `--cluster` was given.
    ///
    /// # Errors
    /// When the Redis address is not `redis://HOST[:PORT]` or does not resolve.
    pub fn config(&self, history_on_join: usize) -> io::Result<Option<ClusterConfig>> {
        let Some(url) = &self.cluster else { return Ok(None) };
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("--cluster {url}: {why}"));
        let rest = url.strip_prefix("redis://").unwrap_or(url);
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad("expected redis://HOST:PORT (no database number, no credentials)"));
        }
        let with_port = if rest.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            rest.to_owned()
        } else {
            format!("{rest}:6379")
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port)
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("the host does not resolve"))?;
        let node_id = self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let mut cfg = ClusterConfig::new(addr, node_id);
        cfg.presence_ttl = Duration::from_secs(self.presence_ttl.max(1));
        cfg.history_on_join = history_on_join;
        Ok(Some(cfg))
    }
}

impl HistoryArgs {
    /// The messenger's configuration for lines of at most `max_line` bytes.
    ///
    /// # Errors
    /// When `--cluster` is given a bad address.
    pub fn config(&self, max_line: usize) -> io::Result<ChatConfig> {
        let data = self
            .data
            .clone()
            .or_else(|| std::env::var_os("CPORT_DATA").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(ChatConfig {
            max_line,
            data_dir: (!self.no_history).then_some(data),
            history: HistoryLimits {
                max_per_room: self.history_per_room,
                max_age: (self.history_days > 0).then(|| Duration::from_secs(self.history_days * 24 * 3600)),
            },
            recent: RecentLimits {
                per_room: self.history_on_join,
                ..RecentLimits::default()
            },
            cluster: self.cluster.config(self.history_on_join)?,
        })
    }
}

/// A builder for the chat server's TCP side on `addr` with `args`.
pub fn builder(addr: SocketAddr, args: &ChatArgs) -> ServerBuilder {
    let line_timeout = (args.line_timeout > 0).then(|| Duration::from_secs(args.line_timeout));
    args.server
        .apply(cport_chat::tcp_builder(addr, args.max_line, line_timeout))
}

/// Runs `cport chat` until SIGINT/SIGTERM.
pub fn run(args: ChatArgs) -> io::Result<()> {
    let sig = signals()?;
    let chat: Arc<Chat> = Chat::new(&args.history.config(args.max_line)?)?;
    let server = builder(args.listen, &args).start(chat.tcp_handler())?;
    chat.attach(&server.handle())?;
    announce("chat", &server);
    let mut servers = vec![("chat", server)];
    if let Some(web) = args.web {
        let page = cport_chat::bundled_page()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the chat page (www/chat) was not found"))?;
        let cfg = cport_chat::web_config(&chat, page, web).ws_origins(args.allow_origin.clone());
        let web = cport_chat::start_web(args.server.apply_http(cfg))?.into_server();
        announce("chat-web", &web);
        servers.push(("chat-web", web));
    }
    run_until_signal(sig, servers, args.server.shutdown_deadline());
    chat.close_history();
    Ok(())
}
