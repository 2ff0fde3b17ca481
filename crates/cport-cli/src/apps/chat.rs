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
use cport_chat::{Chat, ChatConfig, HistoryLimits, RecentLimits};
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
}

impl HistoryArgs {
    /// The messenger's configuration for lines of at most `max_line` bytes.
    pub fn config(&self, max_line: usize) -> ChatConfig {
        let data = self
            .data
            .clone()
            .or_else(|| std::env::var_os("CPORT_DATA").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        ChatConfig {
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
        }
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
    let chat: Arc<Chat> = Chat::new(&args.history.config(args.max_line))?;
    let server = builder(args.listen, &args).start(chat.tcp_handler())?;
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
