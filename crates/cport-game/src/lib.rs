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
//! - the engine: a timer on the port starts each tick; one packet per zone
//!   lets the workers apply zones' inputs concurrently, each under its own
//!   lock; the last to finish hands players over and takes the zones'
//!   edge cells; a second packet per zone works out the views; the last to
//!   finish queues every player's bytes of the tick (no lock held) and
//!   arms the next tick.
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
use cport::{Port, WorkerPool};
use cport_proto::game::{KickReason, Stats};
use cport_server::{Backend, LengthWidth, Server, ServerBuilder, ShutdownReport};

pub use rules::{PlayerId, Rules};
pub use web::{bundled_page, web_config};
pub use world::{World, WorldStep};

use conn::GameHandler;
use engine::{Engine, EngineOptions};
use store::Store;

/// How a game server is set up.
#[derive(Debug, Clone)]
pub struct GameConfig {
    /// Geometry and limits.
    pub rules: Rules,
    /// Where player state is kept (`DIR/game.sqlite3`); `None`: in memory.
    pub data: Option<PathBuf>,
    /// Worker threads stepping zones (0: one per processor).
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

/// A running game server.
pub struct GameServer {
    server: Option<Server>,
    engine: Arc<Engine>,
    workers: Option<WorkerPool>,
}

impl std::fmt::Debug for GameServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameServer").field("server", &self.server).finish()
    }
}

impl GameServer {
    /// Starts a game server on `addr` with `cfg`, its sessions on a server
    /// built from `builder` (name, threads, flags already applied).
    ///
    /// # Errors
    /// When a port, the listener, the database or a thread cannot be set up.
    pub fn start(builder: ServerBuilder, addr: SocketAddr, cfg: GameConfig) -> io::Result<GameServer> {
        let threads = if cfg.zone_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.zone_threads
        };
        let port = Port::builder().concurrency(threads).backend(cfg.backend).build()?;
        let engine = Arc::new(Engine::new(
            port.clone(),
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
        let e = engine.clone();
        let workers = WorkerPool::start(&port, threads, move |_, c| e.handle(c))?;
        let handler = GameHandler {
            engine: engine.clone(),
            packet_rate: cfg.packet_rate.max(1),
        };
        let server = builder
            .bind(addr)
            .backend(cfg.backend)
            .length_prefixed(LengthWidth::U16, cfg.max_packet.clamp(2, u16::MAX as usize))
            .max_queued_bytes(cfg.max_queued)
            .start(handler);
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                workers.stop();
                engine.store.lock().take();
                return Err(e);
            }
        };
        engine.start()?;
        Ok(GameServer {
            server: Some(server),
            engine,
            workers: Some(workers),
        })
    }

    /// Starts with the default server builder (one session thread).
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

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.server().local_addr()
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

    /// Stops ticking, tells every player, closes every session within
    /// `deadline`, saves every player and stops the database thread.
    pub fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.shutdown_inner(deadline)
    }

    fn shutdown_inner(&mut self, deadline: Duration) -> ShutdownReport {
        let Some(server) = self.server.take() else {
            return ShutdownReport::default();
        };
        self.engine.stop_ticking();
        if let Some(w) = self.workers.take() {
            w.stop();
        }
        self.engine.kick_all(KickReason::SHUTDOWN);
        let report = server.shutdown(deadline);
        let all = self.engine.saved_all();
        let n = all.len();
        if let Some(mut store) = self.engine.store.lock().take() {
            store.save(all);
            store.stop();
        }
        self.engine.port.shutdown();
        tracing::info!(players = n, "game world saved");
        report
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        self.shutdown_inner(Duration::from_secs(2));
    }
}
