//! A runnable cport HTTP server until `cport http` exists in the CLI.
//!
//! ```text
//! cargo run --release -p cport-http --example serve -- ROOT [ADDR] [THREADS] [BACKEND] [--listing] [--log]
//! ```
//!
//! Defaults: `127.0.0.1:8080`, 1 thread, backend `auto` (`uring`, `epoll`).
//! Stops on SIGINT/SIGTERM.

use std::process::ExitCode;

use cport_http::{Backend, HttpConfig, HttpServer};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let Some(root) = pos.first() else {
        eprintln!("usage: serve ROOT [ADDR] [THREADS] [auto|uring|epoll] [--listing] [--log]");
        return ExitCode::from(2);
    };
    let addr = pos.get(1).map_or("127.0.0.1:8080", |s| s.as_str());
    let Ok(addr) = addr.parse() else {
        eprintln!("bad address: {addr}");
        return ExitCode::from(2);
    };
    let threads = pos.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let backend = pos.get(3).and_then(|s| Backend::parse(s)).unwrap_or(Backend::Auto);
    let cfg = HttpConfig::new(root.as_str())
        .listen(addr)
        .threads(threads)
        .backend(backend)
        .listing(flag("--listing"))
        .access_log(flag("--log"));
    let server = match HttpServer::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "serving {} on http://{}/ ({} backend, {threads} thread(s))",
        server.root().display(),
        server.local_addr(),
        server.backend().name()
    );
    match server.run_until_signal() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}
