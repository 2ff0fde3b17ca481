//! `cport game`: an authoritative real-time game server on the completion port.
//!
//! Game servers come first among IOCP's classic uses. This one is built
//! the way they are: the server core (`cport-server`) accepts connections,
//! keeps one receive pending per session and gathers each session's
//! outgoing packets into one send; the game itself is a world of zones on a
//! grid, stepped at a fixed tick by the worker threads of a completion port.
//!
//! - [`zone`]: one zone as a sans-I/O state machine (movement validated
//!   against the [`Rules`], in-zone chat, area of interest on the world's
//!   grid cells, across zone edges: enter, move and leave with each
//!   player's last applied input sequence).
//! - [`World`]: the tick on one thread (inputs in every zone, hand-offs,
//!   then every zone's views with its neighbours' edge cells): the
//!   reference the engine follows, used by the tests.
//! - the engine: the world runs on the game server's own port and
//!   workers ([`Game`]: a [`Handler`](cport_server::Handler) plus the
//!   world's completions, so any server core can host it). A timer on the
//!   port starts each tick; one packet per zone lets the workers apply
//!   zones' inputs concurrently, each under its own lock (with one worker
//!   the zones are stepped in place); the last to finish hands players
//!   over and takes the zones' edge cells; a second packet per zone works
//!   out the views; the last to finish queues every player's bytes of the
//!   tick from the worker itself (no lock held, no wake-up per session:
//!   they leave in the worker's next batched submission) and arms the
//!   next tick.
//! - [`store`]: player state in SQLite on a thread of its own; loads answer
//!   through a packet posted to the port, so the tick never waits for disk.
//! - the viewer: a WebSocket endpoint ([`GameServer::viewer`]) for the
//!   browser page in `www/game/`, fed the whole world each tick.
//!
//! The wire protocol is `cport_proto::game`, documented in `docs/GAME.md`.

#![deny(missing_docs)]

mod conn;
mod engine;
pub mod rules;
mod stats;
pub mod store;
mod web;
mod world;
pub mod zone;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cport_proto::game::{KickReason, Stats};
use cport_server::{Backend, LengthWidth, Server, ServerBuilder, ServerHandle, ShutdownReport};

pub use rules::{PlayerId, Rules};
pub use web::{bundled_page, web_config};
pub use world::{World, WorldStep};

pub use conn::GameHandler;
use engine::{Engine, EngineOptions};
use store::Store;

/// How a game server is set up.
#[derive(Debug, Clone)]
pub struct GameConfig {
    /// Geometry and limits.
    pub rules: Rules,
    /// Where player state is kept (`DIR/game.sqlite3`); `None`: in memory.
    pub data: Option<PathBuf>,
    /// The game server's worker threads, which serve the sessions and step
    /// the zones (0: one per processor the process may run on).
    pub zone_threads: usize,
    /// `false` sends every player the whole world each tick instead of its
    /// area of interest (to measure what the filter saves).
    pub interest: bool,
    /// How often every player in the world is saved.
    pub save_every: Duration,
    /// The largest packet a client may send (type + version + body).
    pub max_packet: usize,
    /// Packets per second one connection may send.
    pub packet_rate: u32,
    /// Bytes that may wait to be sent to one client; past this it is cut
    /// (a client that does not read), others are unaffected.
    pub max_queued: usize,
    /// The completion port's backend.
    pub backend: Backend,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            rules: Rules::default(),
            data: None,
            zone_threads: 0,
            interest: true,
            save_every: Duration::from_secs(10),
            max_packet: 256,
            packet_rate: 100,
            max_queued: 1 << 20,
            backend: Backend::Auto,
        }
    }
}

/// The game as an application of the server core: its [`GameHandler`]
/// for the sessions and a world that runs on the server's own port and
/// workers once [attached](Game::attach). [`GameServer`] is one server
/// hosting it; a process that runs several servers on one port hosts it
/// the same way.
pub struct Game {
    engine: Arc<Engine>,
    cfg: GameConfig,
}

impl std::fmt::Debug for Game {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Game").field("players", &self.players()).finish()
    }
}

impl Game {
    /// A world with `cfg`'s rules, its database thread started (nothing
    /// ticks until [`attach`](Self::attach)).
    ///
    /// # Errors
    /// When the database cannot be opened or its thread started.
    pub fn new(cfg: GameConfig) -> io::Result<Game> {
        let engine = Arc::new(Engine::new(
            cfg.rules,
            EngineOptions {
                interest: cfg.interest,
                save_every: cfg.save_every,
            },
        ));
        let e = engine.clone();
        let store = Store::open(cfg.data.as_deref(), move |p, saved| e.on_store_answer(p, saved))?;
        if let Some(p) = store.path() {
            tracing::info!(path = %p.display(), "game database");
        }
        *engine.store.lock() = Some(store);
        Ok(Game { engine, cfg })
    }

    /// The worker threads the configuration asks for (`zone_threads`, or
    /// one per processor the process may run on).
    pub fn threads(&self) -> usize {
        match self.cfg.zone_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// `builder` set up for the game's sessions: its framing (16-bit
    /// length prefix), the send cap, the backend and [`threads`](Self::threads).
    pub fn configure(&self, builder: ServerBuilder) -> ServerBuilder {
        builder
            .backend(self.cfg.backend)
            .threads(self.threads())
            .length_prefixed(LengthWidth::U16, self.cfg.max_packet.clamp(2, u16::MAX as usize))
            .max_queued_bytes(self.cfg.max_queued)
    }

    /// The server core's handler for the game's sessions; it also runs the
    /// world's completions ([`Handler::on_completion`](cport_server::Handler::on_completion)).
    pub fn handler(&self) -> GameHandler {
        GameHandler {
            engine: self.engine.clone(),
            packet_rate: self.cfg.packet_rate.max(1),
        }
    }

    /// Runs the world on `server`'s port, whose handler is this game's:
    /// a worker arms the first tick. `workers` is how many threads serve
    /// that port; with more than one, zones are stepped concurrently.
    ///
    /// # Errors
    /// When the world runs on a port already, or the port refuses the packet.
    pub fn attach(&self, server: &ServerHandle, workers: usize) -> io::Result<()> {
        self.engine.attach(server.port(), workers)
    }

    /// The tick counters (what a stats request for all kept ticks answers).
    pub fn stats(&self) -> Stats {
        self.engine.stats.snapshot(0)
    }

    /// Players in the world.
    pub fn players(&self) -> usize {
        self.engine.players()
    }

    /// Where each player is: the ids in each zone, and those being handed
    /// over. A player is in exactly one of these lists.
    pub fn census(&self) -> (Vec<Vec<PlayerId>>, Vec<PlayerId>) {
        self.engine.census()
    }

    /// The browser viewer's WebSocket handler: mount it on an HTTP server
    /// (`/ws` beside the page from [`bundled_page`], or `/game/ws` in
    /// `cport serve`).
    pub fn viewer(&self) -> Arc<dyn cport_http::WsHandler> {
        Arc::new(web::Viewer {
            engine: self.engine.clone(),
        })
    }

    /// The whole world as a spectator sees it (`Snapshot` packets).
    pub fn spectator_snapshot(&self) -> Bytes {
        self.engine.spectator()
    }

    /// The first half of a shutdown, before the hosting server's: stops
    /// ticking (the tick in progress finishes) and tells every player.
    pub fn begin_shutdown(&self) {
        self.engine.stop_ticking();
        self.engine.kick_all(KickReason::SHUTDOWN);
    }

    /// The second half, once the hosting server's workers have stopped (no
    /// tick can run): saves every player and stops the database thread.
    /// Returns how many players were saved.
    pub fn finish(&self) -> usize {
        self.engine.stop_ticking();
        let all = self.engine.saved_all();
        let n = all.len();
        if let Some(mut store) = self.engine.store.lock().take() {
            store.save(all);
            store.stop();
        }
        tracing::info!(players = n, "game world saved");
        n
    }
}

impl Drop for Game {
    /// A game dropped without [`finish`](Game::finish) still saves its
    /// players and stops its database thread (which holds the world).
    fn drop(&mut self) {
        if self.engine.store.lock().is_some() {
            self.finish();
        }
    }
}

/// A running game server: one server core hosting a [`Game`].
pub struct GameServer {
    server: Option<Server>,
    game: Game,
}

impl std::fmt::Debug for GameServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameServer").field("server", &self.server).finish()
    }
}

impl GameServer {
    /// Starts a game server on `addr` with `cfg`, its sessions on a server
    /// built from `builder` (name and flags already applied; the game sets
    /// its framing, send cap, backend and worker threads), the world on
    /// that server's port and workers.
    ///
    /// # Errors
    /// When the port, the listener, the database or a thread cannot be set up.
    pub fn start(builder: ServerBuilder, addr: SocketAddr, cfg: GameConfig) -> io::Result<GameServer> {
        let game = Game::new(cfg)?;
        let server = match game.configure(builder.bind(addr)).start(game.handler()) {
            Ok(s) => s,
            Err(e) => {
                game.finish();
                return Err(e);
            }
        };
        if let Err(e) = game.attach(&server.handle(), server.threads()) {
            server.shutdown(Duration::ZERO);
            game.finish();
            return Err(e);
        }
        Ok(GameServer {
            server: Some(server),
            game,
        })
    }

    /// Starts with the default server builder.
    ///
    /// # Errors
    /// As for [`start`](Self::start).
    pub fn bind(addr: SocketAddr, cfg: GameConfig) -> io::Result<GameServer> {
        Self::start(Server::builder().name("game"), addr, cfg)
    }

    /// The session server (address, backend, counters).
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("present until shutdown")
    }

    /// The game it hosts.
    pub fn game(&self) -> &Game {
        &self.game
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    /// The tick counters (what a stats request for all kept ticks answers).
    pub fn stats(&self) -> Stats {
        self.game.stats()
    }

    /// Players in the world.
    pub fn players(&self) -> usize {
        self.game.players()
    }

    /// Where each player is: the ids in each zone, and those being handed
    /// over. A player is in exactly one of these lists.
    pub fn census(&self) -> (Vec<Vec<PlayerId>>, Vec<PlayerId>) {
        self.game.census()
    }

    /// The browser viewer's WebSocket handler (see [`Game::viewer`]).
    pub fn viewer(&self) -> Arc<dyn cport_http::WsHandler> {
        self.game.viewer()
    }

    /// The whole world as a spectator sees it (`Snapshot` packets).
    pub fn spectator_snapshot(&self) -> Bytes {
        self.game.spectator_snapshot()
    }

    /// Stops ticking, tells every player, closes every session within
    /// `deadline`, saves every player and stops the database thread.
    pub fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.shutdown_inner(deadline)
    }

    fn shutdown_inner(&mut self, deadline: Duration) -> ShutdownReport {
        let Some(server) = self.server.take() else {
            return ShutdownReport::default();
        };
        self.game.begin_shutdown();
        let report = server.shutdown(deadline);
        self.game.finish();
        report
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        self.shutdown_inner(Duration::from_secs(2));
    }
}
