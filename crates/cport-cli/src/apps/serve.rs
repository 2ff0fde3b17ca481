//! `cport serve`: everything cport serves (echo, chat, game, web), on default
//! ports, all on ONE completion port with one worker pool (IOCP's one port
//! per process: every socket of every server associated with it). The
//! README's first command.

use std::io;
use std::net::SocketAddr;

use clap::Args;
use cport_server::Server;

use super::chat::{self, ChatArgs, HistoryArgs};
use super::echo::{self, Echo};
use super::game::{self, GameArgs};
use super::http;
use super::{announce, run_until_signal, signals, ServerArgs};

/// `cport serve` flags.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Where the echo server listens.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub echo: SocketAddr,
    /// Where the chat server listens.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub chat: SocketAddr,
    /// The longest chat line, in bytes.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    pub max_line: usize,
    /// Where the game server listens.
    #[arg(long, default_value = "127.0.0.1:7002")]
    pub game: SocketAddr,
    /// Where the web server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// The web root (default: the bundled `www/`).
    #[arg(long)]
    pub root: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs every server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> io::Result<()> {
    let sig = signals()?;
    let rt = args.server.runtime().build()?;
    // One line with the pool's sizes and why (scripts and tests read it).
    println!(
        "cport serve: one completion port (backend {}) for echo, chat, web and game: {}",
        rt.backend().name(),
        rt.sizes().describe()
    );
    let echo = echo::builder(args.echo, &args.server).runtime(&rt).start(Echo)?;
    announce("echo", &echo);
    let chat_args = ChatArgs {
        listen: args.chat,
        max_line: args.max_line,
        line_timeout: chat::LINE_TIMEOUT_SECS,
        web: None,
        allow_origin: Vec::new(),
        history: args.history.clone(),
        server: args.server.clone(),
    };
    let messenger = cport_chat::Chat::new(&args.history.config(args.max_line)?)?;
    let chat = chat::builder(args.chat, &chat_args)
        .runtime(&rt)
        .start(messenger.tcp_handler())?;
    messenger.attach(&chat.handle())?;
    announce("chat", &chat);
    let game_args = GameArgs {
        listen: args.game,
        web: None,
        data: None,
        tick_hz: 20,
        zones: 4,
        zone_threads: 0,
        max_players: 10_000,
        grace: 10,
        no_interest: false,
        server: args.server.clone(),
    };
    let game = game::start_on(
        args.game,
        &game_args,
        args.server.apply(Server::builder().name("game")).runtime(&rt),
    )?;
    // The web clients at /chat/ and /game/ (from the web root), their
    // sockets at /chat/ws and /game/ws.
    let web = http::start_with(args.root.clone(), args.http, false, false, &args.server, |cfg| {
        messenger
            .with_stats(cfg.runtime(&rt))
            .websocket("/chat/ws", messenger.ws_handler())
            .websocket("/game/ws", game.viewer())
            .ws_config(cport_chat::ws_config(args.max_line))
    })?;
    announce("http", &web);
    let hint = chat.local_addr();
    let page = web.local_addr();
    let servers = vec![("echo", echo), ("chat", chat), ("http", web)];
    println!(
        "cport serve: ready; Ctrl-C stops (try: nc {} {}, then /help; or open http://{page}/chat/ and http://{page}/game/)",
        hint.ip(),
        hint.port()
    );
    run_until_signal(sig, servers, args.server.shutdown_deadline());
    let r = game.shutdown(args.server.shutdown_deadline());
    println!(
        "cport game: shut down in {:.0?} ({} sessions open)",
        r.elapsed, r.sessions
    );
    messenger.close_history();
    // The last server is gone: the port shuts down and the workers stop.
    drop(rt);
    Ok(())
}
