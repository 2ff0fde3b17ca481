//! `cport http`: the static web and file-transfer server (cport-http).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use cport_http::{HttpConfig, HttpServer};
use cport_server::Server;

use super::{announce, run_until_signal, signals, ServerArgs};

/// `cport http` flags.
#[derive(Args, Clone, Debug)]
pub struct HttpArgs {
    /// Directory to serve (default: the bundled `www/`).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// List directories that have no index.html (HTML-escaped).
    #[arg(long)]
    pub listing: bool,
    /// Log one line per request.
    #[arg(long)]
    pub access_log: bool,
    /// Take uploads (`PUT /upload/<name>`) into this directory, served back
    /// under /files/ (needs --upload-token-file; docs/UPLOADS.md).
    #[arg(long, requires = "upload_token_file")]
    pub upload_dir: Option<PathBuf>,
    /// File holding the bearer token uploads must carry.
    #[arg(long, requires = "upload_dir")]
    pub upload_token_file: Option<PathBuf>,
    /// Largest upload in bytes (413 past it).
    #[arg(long, default_value_t = 16 << 30)]
    pub max_upload: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Starts the HTTP server on `listen`, serving `root` (or the bundled web
/// root), with `more` adding to the configuration (WebSocket routes, uploads).
///
/// # Errors
/// No web root, or the server cannot start.
pub fn start_with(
    root: Option<PathBuf>,
    listen: SocketAddr,
    listing: bool,
    access_log: bool,
    args: &ServerArgs,
    more: impl FnOnce(HttpConfig) -> HttpConfig,
) -> io::Result<Server> {
    let root = match root.or_else(cport_http::bundled_www) {
        Some(r) => r,
        None => return Err(io::Error::new(io::ErrorKind::NotFound, "no web root: pass --root DIR")),
    };
    let cfg = more(
        args.apply_http(
            HttpConfig::new(root)
                .listen(listen)
                .listing(listing)
                .access_log(access_log),
        ),
    );
    Ok(HttpServer::start(cfg)?.into_server())
}

/// Runs `cport http` until SIGINT/SIGTERM.
pub fn run(args: HttpArgs) -> io::Result<()> {
    let sig = signals()?;
    let token = match &args.upload_token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| io::Error::new(e.kind(), format!("upload token file {}: {e}", f.display())))?,
        ),
        None => None,
    };
    let (dir, max) = (args.upload_dir.clone(), args.max_upload);
    let server = start_with(
        args.root,
        args.listen,
        args.listing,
        args.access_log,
        &args.server,
        |cfg| match (dir, token) {
            (Some(d), Some(t)) => cfg.uploads(d, t.trim()).max_upload(max),
            _ => cfg,
        },
    )?;
    announce("http", &server);
    run_until_signal(sig, vec![("http", server)], args.server.shutdown_deadline());
    Ok(())
}
