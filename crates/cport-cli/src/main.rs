//! `cport`: the completion-port servers, the load generator and the I/O-model shootout.
//!
//! Logs go to stderr through `tracing` (`RUST_LOG` sets the filter, default
//! `info`); what a user or a script needs (where each server listens, with
//! which backend) is printed on stdout.

mod apps;
mod args;
mod bench;
mod models;
mod top;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Windows I/O completion port model on Linux, and the servers it exists for.
#[derive(Parser, Debug)]
#[command(name = "cport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Echo server: raw bytes back, no framing (the benchmark workhorse).
    Echo(apps::echo::EchoArgs),
    /// Messenger: nicknames, rooms and private messages over a line protocol (try `nc`).
    Chat(apps::chat::ChatArgs),
    /// Web and file-transfer server: HTTP/1.1 static files, zero-copy bodies.
    Http(apps::http::HttpArgs),
    /// Game server: zones on a grid, a fixed tick on the port's workers, area of interest.
    Game(apps::game::GameArgs),
    /// Everything cport serves, on default ports (echo 7000, chat 7001, game 7002, web 8080).
    Serve(apps::serve::ServeArgs),
    /// Request/response server whose handlers sometimes block: the hand-off benchmark's server.
    Blocking(apps::blocking::BlockingArgs),
    /// Load generator (echo, http, chat, idle), on cport's own port.
    Bench(bench::BenchArgs),
    /// The classic server I/O models (thread per connection, select, poll, epoll, the completion port) side by side under the same echo load.
    Models(models::shootout::ModelsArgs),
    /// A live console for a running cport process (its `/_cport/stats`): completions/s, operations in flight, workers, latency, sessions.
    Top(top::TopArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers log at info; the load tools, which build a port per run, at
    // warn. The CLI prints one line per server as it starts and stops
    // (`apps::announce`): the libraries' own start and stop records (the
    // port's backend, the server core's "listening" and "shut down", the web
    // server's "listening") would say it a second time, so they show only
    // with RUST_LOG.
    let default = if matches!(cli.command, Command::Bench(_) | Command::Models(_) | Command::Top(_)) {
        "warn"
    } else {
        "info,cport::port=warn,cport_server::server=warn,cport_http::server=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    apps::raise_fd_limit();
    let result = match cli.command {
        Command::Echo(a) => apps::echo::run(a),
        Command::Chat(a) => apps::chat::run(a),
        Command::Http(a) => apps::http::run(a),
        Command::Game(a) => apps::game::run(a),
        Command::Serve(a) => apps::serve::run(a),
        Command::Blocking(a) => apps::blocking::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Models(a) => models::shootout::main(a),
        Command::Top(a) => top::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cport: {e}");
            ExitCode::FAILURE
        }
    }
}
