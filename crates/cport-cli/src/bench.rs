//! `cport bench`: load from the command line, on cport's own port.
//!
//! A progress bar shows on a terminal and stays quiet otherwise; `--json`
//! prints one machine-readable line instead of the human report.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use cport::Backend;
use cport_bench::{blocking, chat, echo, game, http, idle, ws, Report};

use crate::args::{parse_backend, parse_duration};

/// Arguments of `cport bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Subcommand, Debug)]
enum Kind {
    /// Echo load: each connection sends a message and waits for the whole echo.
    Echo(EchoArgs),
    /// HTTP load: keep-alive GETs of one URL.
    Http(HttpArgs),
    /// Chat load: clients in rooms posting on a schedule; measures fan-out latency.
    Chat(ChatArgs),
    /// Opens and holds many idle connections; checks each still answers.
    Idle(IdleArgs),
    /// WebSocket echo load: each connection upgrades, then sends a binary
    /// message and waits for its echo (point it at `cport echo --ws`).
    Ws(WsArgs),
    /// Game load: bots log in, random-walk across zones, chat, reconcile.
    Game(GameArgs),
    /// Request/response load where some requests make the server block
    /// (point it at `cport blocking` or its peers); non-blocking requests'
    /// latency reported apart.
    Blocking(BlockingArgs),
}

#[derive(Args, Debug)]
struct BlockingArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7500")]
    target: SocketAddr,
    /// Connections, each with one request outstanding.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// One request in this many asks the server to block (20: 5%).
    #[arg(long, default_value_t = 20)]
    block_every: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct WsArgs {
    /// WebSocket echo URL, e.g. ws://127.0.0.1:7000/
    #[arg(long, default_value = "ws://127.0.0.1:7000/")]
    target: String,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Message payload size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct GameArgs {
    /// Game server address.
    #[arg(long, default_value = "127.0.0.1:7002")]
    target: SocketAddr,
    /// Bots.
    #[arg(long, default_value_t = 100)]
    bots: usize,
    /// Inputs per second per bot.
    #[arg(long, default_value_t = 10.0)]
    input_rate: f64,
    /// Chance that an input is followed by a chat line. The default,
    /// 0.002 at 10 inputs/s, is one line per bot every 50 s; zone chat
    /// reaches every player of the zone, so with 5,000 bots in 16 zones
    /// each bot hears about 6 lines a second, a busy channel (0.01, the
    /// earlier default, made it 31 a second).
    #[arg(long, default_value_t = 0.002)]
    chat_chance: f64,
    /// Share of the bots (0 to 1) that also take the whole world each tick,
    /// as a server without area of interest would send: their bytes per
    /// second are reported apart, showing what the filter saves in one run.
    #[arg(long, default_value_t = 0.0)]
    whole_world_share: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct Common {
    /// Measured time (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time first.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    #[command(flatten)]
    client: Client,
}

/// Flags every load takes, the timed ones and `idle`.
#[derive(Args, Debug)]
struct Client {
    /// Backend of the client's own port.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    backend: Backend,
    /// Print one JSON line instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct EchoArgs {
    /// Echo server address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Open loop: messages per second over all connections (latency counted
    /// from the intended send time).
    #[arg(long)]
    rate: Option<f64>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct HttpArgs {
    /// URL to fetch, e.g. http://127.0.0.1:8080/index.html
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    target: String,
    /// Connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Upload instead: each connection PUTs files of this size (1MiB, 1GiB)
    /// under the target path, e.g. http://127.0.0.1:8080/upload/
    #[arg(long, value_parser = http::parse_size)]
    upload: Option<u64>,
    /// File holding the bearer token for uploads.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct ChatArgs {
    /// Chat server address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    target: SocketAddr,
    /// Several chat nodes of one cluster (`cport chat --cluster`): clients
    /// are spread over them in turn, so each room has members on every
    /// node. Overrides `--target`.
    #[arg(long, value_delimiter = ',', value_name = "A,B,C")]
    targets: Vec<SocketAddr>,
    /// Clients.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Rooms the clients are spread over.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Messages per second each client posts.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct IdleArgs {
    /// An echo server.
    #[arg(long, default_value = "127.0.0.1:7000")]
    target: SocketAddr,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// How long to hold them before checking them.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    hold: Duration,
    /// The server's pid: its memory growth per connection is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 2000)]
    parallel: usize,
    #[command(flatten)]
    client: Client,
}

/// Runs `cport bench`.
///
/// # Errors
/// When the load cannot start (bad address, port setup); failures during the
/// run are counted in the report.
pub fn run(args: BenchArgs) -> io::Result<()> {
    match args.kind {
        Kind::Blocking(a) => {
            let cfg = blocking::BlockingConfig {
                target: a.target,
                conns: a.conns,
                block_every: a.block_every,
                duration: a.common.duration,
                warmup: a.common.warmup,
                backend: a.common.client.backend,
            };
            let r = with_progress(&a.common, || blocking::run(&cfg))?;
            if a.common.client.json {
                println!("{}", serde_json::to_string(&r).map_err(io::Error::other)?);
            } else {
                println!("{r}");
            }
            Ok(())
        }
        Kind::Echo(a) => {
            let cfg = echo::EchoConfig {
                target: a.target,
                conns: a.conns,
                size: a.size,
                duration: a.common.duration,
                warmup: a.common.warmup,
                rate: a.rate,
                backend: a.common.client.backend,
            };
            run_timed(&a.common, || echo::run(&cfg))
        }
        Kind::Http(a) => {
            let (target, host, path) = http::parse_url(&a.target)?;
            let cfg = http::HttpConfig {
                target,
                host,
                path,
                conns: a.conns,
                duration: a.common.duration,
                warmup: a.common.warmup,
                backend: a.common.client.backend,
                upload: a.upload,
                token: match &a.token_file {
                    Some(f) => Some(std::fs::read_to_string(f)?.trim().to_owned()),
                    None => None,
                },
            };
            run_timed(&a.common, || http::run(&cfg))
        }
        Kind::Chat(a) => {
            let cfg = chat::ChatConfig {
                target: a.target,
                targets: a.targets.clone(),
                conns: a.conns,
                rooms: a.rooms,
                rate_per_client: a.rate,
                duration: a.common.duration,
                warmup: a.common.warmup,
                backend: a.common.client.backend,
            };
            run_timed(&a.common, || chat::run(&cfg))
        }
        Kind::Ws(a) => {
            let (target, host, path) = ws::parse_url(&a.target)?;
            let cfg = ws::WsLoadConfig {
                target,
                host,
                path,
                conns: a.conns,
                size: a.size,
                duration: a.common.duration,
                warmup: a.common.warmup,
                backend: a.common.client.backend,
            };
            run_timed(&a.common, || ws::run(&cfg))
        }
        Kind::Game(a) => {
            let cfg = game::GameConfig {
                target: a.target,
                bots: a.bots,
                input_rate: a.input_rate.max(0.01),
                duration: a.common.duration,
                warmup: a.common.warmup,
                backend: a.common.client.backend,
                chat_chance: a.chat_chance.clamp(0.0, 1.0),
                whole_world_share: a.whole_world_share.clamp(0.0, 1.0),
            };
            let r = with_progress(&a.common, || game::run(&cfg))?;
            if a.common.client.json {
                println!("{}", serde_json::to_string(&r).map_err(io::Error::other)?);
            } else {
                println!("{r}");
            }
            Ok(())
        }
        Kind::Idle(a) => {
            let cfg = idle::IdleConfig {
                target: a.target,
                conns: a.conns,
                hold: a.hold,
                server_pid: a.server_pid,
                parallel: a.parallel,
                backend: a.client.backend,
            };
            let r = idle::run(&cfg)?;
            if a.client.json {
                println!("{}", serde_json::to_string(&r).map_err(io::Error::other)?);
            } else {
                println!(
                    "idle {}: {}/{} connected in {:.1}s over {} source address(es), {} answered after the hold",
                    a.target, r.connected, r.conns, r.connect_seconds, r.source_addrs, r.answered
                );
                match r.rss_per_conn_bytes {
                    Some(b) => println!(
                        "  server RSS {} KiB -> {} KiB: {b:.0} bytes per connection",
                        r.rss_before_kib.unwrap_or(0),
                        r.rss_after_kib.unwrap_or(0)
                    ),
                    None => println!("  (give --server-pid to see the server's memory per connection)"),
                }
            }
            if r.connected < r.conns || r.answered < r.connected {
                return Err(io::Error::other("not every connection was established and answering"));
            }
            Ok(())
        }
    }
}

/// Runs a timed load (with a progress bar, see [`with_progress`]) and prints
/// its report.
fn run_timed(c: &Common, f: impl FnOnce() -> io::Result<Report>) -> io::Result<()> {
    let r = with_progress(c, f)?;
    print(&r, c.client.json);
    Ok(())
}

fn print(r: &Report, json: bool) {
    if json {
        println!("{}", r.to_json());
    } else {
        println!("{r}");
    }
}

/// Runs `f` with a time bar on stderr when stderr is a terminal.
fn with_progress<T>(c: &Common, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::IsTerminal;
    if c.client.json || !std::io::stderr().is_terminal() {
        return f();
    }
    let total = c.warmup + c.duration;
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {elapsed}/{duration}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("warming up");
    let start = Instant::now();
    let warmup = c.warmup;
    let ticker = {
        let bar = bar.clone();
        std::thread::spawn(move || {
            while !bar.is_finished() {
                let e = start.elapsed();
                bar.set_position(e.as_millis() as u64);
                if e >= warmup {
                    bar.set_message("measuring");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let r = f();
    bar.finish_and_clear();
    let _ = ticker.join();
    r
}
