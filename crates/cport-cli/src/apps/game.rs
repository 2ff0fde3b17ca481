//! `cport game`: the authoritative game server (`cport-game`): zones on a
//! grid stepped at a fixed tick on the game server's own port and worker
//! threads,
//! area of interest, server-side movement checks, SQLite persistence.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use cport_game::{GameConfig, GameServer, Rules};
use cport_server::{Server, ShutdownSignals};

use super::{announce, signals, ServerArgs};

/// `cport game` flags.
#[derive(Args, Clone, Debug)]
pub struct GameArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7002")]
    pub listen: SocketAddr,
    /// Also serve the browser viewer: the page at http://ADDR/ and its
    /// WebSocket at ws://ADDR/ws.
    #[arg(long, value_name = "ADDR")]
    pub web: Option<SocketAddr>,
    /// Directory for the player database (game.sqlite3); default: in memory.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Ticks per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tick_hz: u16,
    /// Zones across and down (the world is ZONES x ZONES zones).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub zones: u16,
    /// The game server's worker threads: they serve the sessions and step
    /// the zones, all on one completion port (0: one per processor the
    /// process may run on; this sets the server's threads, not --threads).
    #[arg(long, default_value_t = 0)]
    pub zone_threads: usize,
    /// The most players at once.
    #[arg(long, default_value_t = 10_000)]
    pub max_players: usize,
    /// Seconds a dropped player stays in the world, waiting for a resume.
    #[arg(long, default_value_t = 10)]
    pub grace: u64,
    /// Send every player the whole world each tick instead of its area of
    /// interest (to compare the bytes the filter saves).
    #[arg(long)]
    pub no_interest: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl GameArgs {
    /// The game configuration these flags describe.
    pub fn config(&self) -> GameConfig {
        let mut rules = Rules::default();
        rules.world.tick_hz = self.tick_hz;
        rules.world.zones_x = self.zones;
        rules.world.zones_y = self.zones;
        rules.max_players = self.max_players.max(1);
        rules.grace = Duration::from_secs(self.grace);
        GameConfig {
            rules,
            data: self.data.clone(),
            zone_threads: self.zone_threads,
            interest: !self.no_interest,
            max_queued: self.server.max_queued,
            backend: self.server.backend,
            ..GameConfig::default()
        }
    }
}

/// Starts the game server on `addr`.
pub fn start(addr: SocketAddr, args: &GameArgs) -> io::Result<GameServer> {
    start_on(addr, args, args.server.apply(Server::builder().name("game")))
}

/// Starts the game server on `addr`, its sessions on a server built from
/// `b` (`cport serve` gives a builder on its shared runtime).
pub fn start_on(addr: SocketAddr, args: &GameArgs, b: cport_server::ServerBuilder) -> io::Result<GameServer> {
    let g = GameServer::start(b, addr, args.config())?;
    announce("game", g.server());
    Ok(g)
}

/// Runs `cport game` until SIGINT/SIGTERM.
pub fn run(args: GameArgs) -> io::Result<()> {
    let sig = signals()?;
    let g = start(args.listen, &args)?;
    let web = match args.web {
        Some(addr) => {
            let page = cport_game::bundled_page()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the viewer page (www/game) was not found"))?;
            let cfg = cport_game::web_config(g.viewer(), page).listen(addr);
            let web = cport_http::HttpServer::start(args.server.apply_http(cfg))?.into_server();
            announce("game-web", &web);
            Some(web)
        }
        None => None,
    };
    wait_and_stop(sig, g, web, args.server.shutdown_deadline());
    Ok(())
}

/// Waits for SIGINT/SIGTERM, then stops the game (players saved).
fn wait_and_stop(mut sig: ShutdownSignals, g: GameServer, web: Option<Server>, deadline: Duration) {
    let s = sig.wait();
    tracing::info!(signal = ShutdownSignals::name(s), "shutting down");
    if let Some(web) = web {
        web.shutdown(deadline);
    }
    let r = g.shutdown(deadline);
    println!(
        "cport game: shut down in {:.0?} ({} sessions open)",
        r.elapsed, r.sessions
    );
}
