//! `cport echo`: every byte received goes back, unframed. The benchmark
//! workhorse: the pooled receive buffer itself is queued for sending (no
//! copy), and with one worker thread each connection keeps one multishot
//! receive armed for its whole life.
//!
//! With `--ws` it is a WebSocket echo instead (text and binary messages
//! come back as they were sent), on the HTTP server's port: the endpoint a
//! conformance client or `cport bench ws` is pointed at.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use cport_http::{HttpConfig, HttpServer, WsConfig, WsHandler, WsMessage, WsSession};
use cport_server::{Handler, Message, Server, ServerBuilder, Session};

use super::{announce, run_until_signal, signals, ServerArgs};

/// `cport echo` flags.
#[derive(Args, Clone, Debug)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    /// Speak WebSocket (RFC 6455) instead of raw bytes: the upgrade is
    /// accepted on every path of ws://LISTEN/.
    #[arg(long)]
    pub ws: bool,
    /// With --ws: the largest message accepted (larger closes with 1009).
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_message: usize,
    /// A receive pool of this many 4 KiB buffers, fixed (1..=32768; the
    /// default is 4,096).
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u16).range(1..=32768))]
    pub recv_buffers: Option<u16>,
    /// A receive pool that sizes itself: 256 buffers of 4 KiB at first,
    /// grown up to this many while receives find it empty (a closed-loop
    /// echo holds one per busy connection), shrunk back when idle.
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u16).range(256..=32768),
          conflicts_with = "recv_buffers")]
    pub recv_pool_max: Option<u16>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The echo handler.
pub struct Echo;

impl Handler for Echo {
    type State = ();

    fn on_connect(&self, _: &Session) {}

    fn on_message(&self, session: &Session, _: &mut (), msg: Message) {
        // Closed or cut off as a slow consumer: nothing more to do here.
        let _ = session.send(msg);
    }
}

/// The WebSocket echo handler: each message goes back as it came (its
/// payload is not copied).
pub struct WsEcho;

impl WsHandler for WsEcho {
    fn on_message(&self, ws: &WsSession, msg: WsMessage) {
        let _ = ws.send(msg);
    }
}

/// Starts the WebSocket echo on `addr`: upgrades on `/` and `/ws`; any
/// plain HTTP request gets 404 (the web root is an empty directory).
///
/// # Errors
/// When the server cannot start.
pub fn start_ws(addr: SocketAddr, max_message: usize, args: &ServerArgs) -> io::Result<Server> {
    let empty = std::env::temp_dir().join("cport-ws-echo-root");
    std::fs::create_dir_all(&empty)?;
    let handler: Arc<dyn WsHandler> = Arc::new(WsEcho);
    let cfg = HttpConfig::new(empty)
        .listen(addr)
        .stats_endpoint(false)
        .websocket("/", handler.clone())
        .websocket("/ws", handler)
        .ws_config(WsConfig {
            max_message,
            ..WsConfig::default()
        });
    Ok(HttpServer::start(args.apply_http(cfg))?.into_server())
}

/// A builder for the echo server on `addr` with `args`.
pub fn builder(addr: SocketAddr, args: &ServerArgs) -> ServerBuilder {
    args.apply(Server::builder().name("echo").bind(addr))
}

/// Runs `cport echo` until SIGINT/SIGTERM.
pub fn run(args: EchoArgs) -> io::Result<()> {
    let sig = signals()?;
    let server = if args.ws {
        start_ws(args.listen, args.max_message, &args.server)?
    } else {
        let b = builder(args.listen, &args.server);
        match (args.recv_buffers, args.recv_pool_max) {
            (Some(n), _) => b.recv_buffers(n, 4096),
            (None, Some(max)) => b.recv_pool(256, max, 4096),
            (None, None) => b,
        }
        .start(Echo)?
    };
    announce("echo", &server);
    run_until_signal(sig, vec![("echo", server)], args.server.shutdown_deadline());
    Ok(())
}
