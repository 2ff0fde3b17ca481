//! Building, running and shutting down a server.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cport::{Backend, Port, WorkerPool};
use cport_proto::framing::{LengthPrefixed, LengthWidth};
use parking_lot::{Condvar, Mutex};

use crate::config::{Config, Tick};
use crate::context::{Context, Route, SERVER_KEY};
use crate::dispatch::Dispatcher;
use crate::error::DisconnectReason;
use crate::handler::Handler;
use crate::message::Framing;
use crate::runtime::{Routed, Runtime};
use crate::server_core::{ServerCore, WorkerIds};
use crate::session::{broadcast, sessions_of, Broadcast, ServerHandle, Session};
use crate::stats::{ServerCounters, ServerStats};
use crate::table::{FreeList, Table};
use crate::timer::TimerPlan;
use crate::wheel::Wheel;

/// How long sessions get to finish closing once they are forced to.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// How each session keeps its receive pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecvMode {
    /// Multishot with one worker thread, single-shot with more (the default).
    #[default]
    Auto,
    /// One multishot receive armed for the session's whole life: no
    /// re-arming per message. Only valid with one worker thread: two workers
    /// could otherwise run two chunks of one session out of order.
    Multishot,
    /// One receive at a time, re-armed after its chunk was handled (the
    /// classic IOCP pattern): order holds with any number of workers.
    Single,
}

/// Configures and starts a [`Server`].
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use cport_server::{Framing, Server};
/// # use cport_server::{Handler, Message, Session};
/// # struct Chat;
/// # impl Handler for Chat {
/// #     type State = ();
/// #     fn on_connect(&self, _: &Session) {}
/// #     fn on_message(&self, _: &Session, _: &mut (), _: Message) {}
/// # }
/// let server = Server::builder()
///     .bind("127.0.0.1:7001".parse().unwrap())
///     .framing(Framing::Lines { max_line: 4096 })
///     .idle_timeout(Some(Duration::from_secs(600)))
///     .start(Chat)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ServerBuilder {
    name: String,
    addrs: Vec<SocketAddr>,
    listeners: Vec<TcpListener>,
    threads: usize,
    concurrency: Option<usize>,
    backend: Backend,
    framing: Framing,
    max_queued: usize,
    water_marks: (usize, usize),
    slow_consumer_timeout: Duration,
    idle_timeout: Option<Duration>,
    frame_timeout: Option<Duration>,
    close_linger: Duration,
    tick: Duration,
    /// The receive pool: fewest and most buffers in service, buffer size.
    recv_buffers: (u16, u16, usize),
    nodelay: bool,
    max_sessions: usize,
    backlog: i32,
    recv_mode: RecvMode,
    shutdown_deadline: Duration,
    runtime: Option<Runtime>,
}

/// The default receive pool's bounds (see [`ServerBuilder::recv_pool`]):
/// fixed at 4,096 for now. Starting at 256 made the fault suite's 64 MiB
/// single-connection echo on io_uring take 18 s instead of 1.4 s and keep
/// 62 MiB resident (cause not found yet; docs/ARCHITECTURE.md), and a
/// shrink on io_uring cannot take back buffers still in the kernel's ring.
const RECV_POOL_MIN: u16 = 4096;
const RECV_POOL_MAX: u16 = 4096;

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            name: "server".into(),
            addrs: Vec::new(),
            listeners: Vec::new(),
            threads: 1,
            concurrency: None,
            backend: Backend::Auto,
            framing: Framing::Raw,
            max_queued: 4 << 20,
            water_marks: (512 << 10, 128 << 10),
            slow_consumer_timeout: Duration::from_secs(5),
            idle_timeout: None,
            frame_timeout: Some(Duration::from_secs(30)),
            close_linger: Duration::from_secs(5),
            tick: Duration::from_millis(100),
            recv_buffers: (RECV_POOL_MIN, RECV_POOL_MAX, 4096),
            nodelay: true,
            max_sessions: 1 << 20,
            backlog: 4096,
            recv_mode: RecvMode::Auto,
            shutdown_deadline: Duration::from_secs(5),
            runtime: None,
        }
    }
}

impl ServerBuilder {
    /// A name for logs (default `server`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Listens on `addr` (may be called more than once; port 0 picks a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addrs.push(addr);
        self
    }
    /// Listens on a socket bound already.
    pub fn listener(mut self, l: TcpListener) -> Self {
        self.listeners.push(l);
        self
    }
    /// Worker threads (default 1: one thread drives the whole port, with
    /// submission batched per wake-up; add threads for handlers that do
    /// real work per message).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }
    /// Threads allowed to run completions at once (the port's concurrency;
    /// default: the number of threads).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
    /// The port's backend (default `Auto`: io_uring, else epoll).
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// How messages are cut from the byte stream (default [`Framing::Raw`]).
    pub fn framing(mut self, f: Framing) -> Self {
        self.framing = f;
        self
    }
    /// Length-prefixed binary packets (little-endian `width`, at most `max_frame` bytes).
    pub fn length_prefixed(self, width: LengthWidth, max_frame: usize) -> Self {
        self.framing(Framing::LengthPrefixed(LengthPrefixed::new(width, max_frame)))
    }
    /// The cap on bytes queued per session (default 4 MiB): what a session
    /// that does not read what *others* send it (a broadcast) may pile up.
    /// A session whose queue stays past the cap for the
    /// [slow-consumer timeout](Self::slow_consumer_timeout), or would pass
    /// twice the cap, is cut off as a slow consumer. Output a session
    /// produces in answer to its own input never gets there: its receiving
    /// pauses first (see [`water_marks`](Self::water_marks)).
    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.max_queued = n.max(1);
        self
    }
    /// Back-pressure (default 512 KiB and 128 KiB): when a session's output
    /// still to go (queued bytes and file ranges) passes `high`, its
    /// receiving pauses after the chunk being handled; it resumes once the
    /// output drains to `low`. A client that sends faster than it reads is
    /// slowed down by TCP instead of being cut off, and a burst of requests
    /// never turns into more queued output than `high` plus one chunk's
    /// answers. `high` is kept at most half the cap.
    pub fn water_marks(mut self, high: usize, low: usize) -> Self {
        let high = high.max(1);
        self.water_marks = (high, low.min(high));
        self
    }
    /// How long a session's queue may stay past the cap before it is cut
    /// off as a slow consumer (default 5 s).
    pub fn slow_consumer_timeout(mut self, t: Duration) -> Self {
        self.slow_consumer_timeout = t;
        self
    }
    /// Close sessions that neither receive nor send for this long (default: never).
    pub fn idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.idle_timeout = t;
        self
    }
    /// Close sessions that start a frame and do not finish it within this
    /// time: the slow-loris defence (default 30 s; not used for raw framing).
    pub fn frame_timeout(mut self, t: Option<Duration>) -> Self {
        self.frame_timeout = t;
        self
    }
    /// How long a graceful close may take to flush before it is made abortive (default 5 s).
    pub fn close_linger(mut self, t: Duration) -> Self {
        self.close_linger = t;
        self
    }
    /// The timer's resolution (default 100 ms): timeouts never fire early
    /// and fire up to two ticks late.
    pub fn tick(mut self, t: Duration) -> Self {
        self.tick = t.max(Duration::from_millis(1));
        self
    }
    /// The shared receive pool at a fixed size: `count` buffers of `size`
    /// bytes. Idle sessions hold none of them. By default the pool sizes
    /// itself instead (see [`recv_pool`](Self::recv_pool)).
    pub fn recv_buffers(mut self, count: u16, size: usize) -> Self {
        self.recv_buffers = (count, count, size);
        self
    }
    /// The shared receive pool, sizing itself: `min` buffers of `size`
    /// bytes in service at first, doubled up to `max` while receives find
    /// it empty, halved back a second at a time once demand is low and it
    /// has not grown for ten seconds (the default is a fixed 4,096 of
    /// 4 KiB for now; e.g. `recv_pool(256, 16384, 4096)` for thousands of
    /// busy sessions, which hold one buffer each).
    pub fn recv_pool(mut self, min: u16, max: u16, size: usize) -> Self {
        self.recv_buffers = (min.max(1), max.max(min).max(1), size);
        self
    }
    /// Set `TCP_NODELAY` on accepted connections (default on).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
    /// The most sessions at once (default 2^20); connections past it are refused.
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }
    /// The listen backlog (default 4096, capped by `net.core.somaxconn`).
    pub fn backlog(mut self, n: i32) -> Self {
        self.backlog = n;
        self
    }
    /// How receives are kept pending (default [`RecvMode::Auto`]).
    pub fn recv_mode(mut self, m: RecvMode) -> Self {
        self.recv_mode = m;
        self
    }
    /// The flush deadline used when the server is dropped without
    /// [`Server::shutdown`] (default 5 s).
    pub fn shutdown_deadline(mut self, t: Duration) -> Self {
        self.shutdown_deadline = t;
        self
    }

    /// Runs the server on `rt`'s port and workers, beside the other servers
    /// there, instead of on a port and threads of its own: one completion
    /// port for the whole process. [`threads`](Self::threads),
    /// [`concurrency`](Self::concurrency) and [`backend`](Self::backend)
    /// are then the runtime's.
    pub fn runtime(mut self, rt: &Runtime) -> Self {
        self.runtime = Some(rt.clone());
        self
    }

    /// Binds, starts the workers and starts accepting.
    ///
    /// # Errors
    /// When the port cannot be built (e.g. io_uring was required and is
    /// unavailable), an address cannot be bound, no address was given, a
    /// worker cannot be spawned, or `RecvMode::Multishot` is combined with
    /// more than one thread.
    pub fn start<H: Handler>(self, handler: H) -> io::Result<Server> {
        let threads = match &self.runtime {
            Some(rt) => rt.sizes().threads,
            None => self.threads.max(1),
        };
        let multishot = match self.recv_mode {
            RecvMode::Auto => threads == 1,
            RecvMode::Multishot if threads > 1 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "multishot receive needs exactly one worker thread",
                ))
            }
            RecvMode::Multishot => true,
            RecvMode::Single => false,
        };
        let (port, route, ids) = match &self.runtime {
            Some(rt) => (rt.port().clone(), rt.reserve_route()?, rt.worker_ids()),
            None => {
                let port = Port::builder()
                    .concurrency(self.concurrency.unwrap_or(threads))
                    .backend(self.backend)
                    .build()?;
                (port, Route(0), Arc::new(WorkerIds::default()))
            }
        };
        let (min, max, size) = self.recv_buffers;
        let pool = port.buf_pool_sized(min, max.min(32768), size)?;
        let mut sockets = self.listeners;
        for a in &self.addrs {
            sockets.push(bind(*a, self.backlog)?);
        }
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "server has no address to listen on",
            ));
        }
        let mut local_addrs = Vec::new();
        let mut listeners = Vec::new();
        for l in sockets {
            local_addrs.push(l.local_addr()?);
            listeners.push(port.associate(l, SERVER_KEY)?);
        }
        let tick = self.tick;
        let ticks = |d: Duration| -> Tick { Config::ticks(tick, d) };
        let framed = self.framing != Framing::Raw;
        let high_water = self.water_marks.0.min(self.max_queued / 2).max(1);
        let cfg = Config {
            name: self.name,
            framing: self.framing,
            max_queued: self.max_queued,
            high_water,
            low_water: self.water_marks.1.min(high_water),
            slow_ticks: ticks(self.slow_consumer_timeout),
            recv_size: self.recv_buffers.2.max(1),
            idle_ticks: self.idle_timeout.map(ticks),
            frame_ticks: self.frame_timeout.filter(|_| framed).map(ticks),
            linger_ticks: ticks(self.close_linger),
            tick: self.tick,
            multishot,
            nodelay: self.nodelay,
            threads,
        };
        let shared = Arc::new(ServerCore {
            port: port.clone(),
            pool,
            cfg,
            slots: Table::new(self.max_sessions),
            free: FreeList::new(self.max_sessions),
            wheel: Mutex::new(Wheel::new(512)),
            start: Instant::now(),
            now: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            all_closed: (Mutex::new(()), Condvar::new()),
            starved: Mutex::new(Vec::new()),
            starved_any: AtomicBool::new(false),
            timer: Mutex::new(TimerPlan::default()),
            to_finalize: Mutex::new(Vec::new()),
            finalize_posted: AtomicBool::new(false),
            counters: ServerCounters::new(threads),
            workers: ids,
            route,
            next_id: AtomicU64::new(1),
            local_addrs,
            listeners,
        });
        let disp = Dispatcher::new(shared.clone(), handler, self.max_sessions);
        let workers = match &self.runtime {
            Some(rt) => {
                rt.install(route, Arc::new(disp));
                None
            }
            None => Some(WorkerPool::start(&port, threads, move |_, c| disp.handle(c))?),
        };
        let mut server = Server {
            shared,
            workers,
            runtime: self.runtime,
            done: false,
            shutdown_deadline: self.shutdown_deadline,
        };
        // A worker arms the accepts and the timer: see `ServerCore::worker`.
        if let Err(e) = server
            .shared
            .port
            .post(SERVER_KEY, 0, server.shared.ctx(Context::Start))
        {
            server.shutdown_inner(Duration::ZERO);
            return Err(e.into());
        }
        crate::registry::register(&server.shared);
        tracing::info!(
            server = %server.shared.cfg.name,
            addrs = ?server.shared.local_addrs,
            backend = server.backend().name(),
            threads,
            multishot,
            route = route.0,
            "listening"
        );
        Ok(server)
    }
}

impl<H: Handler> Routed for Dispatcher<H> {
    fn handle(&self, c: cport::Completion) {
        Dispatcher::handle(self, c);
    }
}

fn bind(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s.into())
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Sessions open when the shutdown began.
    pub sessions: usize,
    /// Sessions that had not flushed by the deadline and were cut.
    pub aborted: usize,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

/// A running server: listeners with accepts always posted, one session per
/// connection, worker threads on one completion port.
///
/// Dropping it shuts it down (with the builder's shutdown deadline).
pub struct Server {
    shared: Arc<ServerCore>,
    /// Its own workers; `None` on a runtime.
    workers: Option<WorkerPool>,
    /// The runtime it runs on, kept alive while the server is.
    runtime: Option<Runtime>,
    done: bool,
    shutdown_deadline: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.shared.cfg.name)
            .field("addrs", &self.shared.local_addrs)
            .field("backend", &self.backend())
            .finish()
    }
}

impl Server {
    /// A builder with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The first address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addrs[0]
    }

    /// Every address the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.local_addrs
    }

    /// The backend the server's port runs on (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.shared.backend()
    }

    /// Worker threads (on a runtime: the runtime's, shared with its other
    /// servers).
    pub fn threads(&self) -> usize {
        self.shared.cfg.threads
    }

    /// The runtime this server shares its port and workers with, if any.
    pub fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }

    /// The server's completion port, for its counters ([`Port::stats`]).
    /// Do not dequeue from it: the workers own that.
    pub fn port(&self) -> &Port {
        &self.shared.port
    }

    /// The server's counters now.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// The shared receive pool: buffers in service and held, and how it resized.
    pub fn recv_pool_usage(&self) -> cport::PoolUsage {
        self.shared.pool.usage()
    }

    /// A handle for other threads and handlers.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle::new(self.shared.clone())
    }

    /// Handles of every open session (a snapshot; O(sessions)).
    pub fn sessions(&self) -> Vec<Session> {
        sessions_of(&self.shared)
    }

    /// Queues `msg` on every session given: one shared buffer, no copy.
    pub fn broadcast<'a>(&self, sessions: impl IntoIterator<Item = &'a Session>, msg: &Bytes) -> Broadcast {
        broadcast(sessions, msg)
    }

    /// Shuts down gracefully: stops accepting, lets every session flush what
    /// is queued for up to `deadline`, then cuts the rest, cancels what is in
    /// flight and joins the workers. Every session's `on_disconnect` runs
    /// (reason [`DisconnectReason::Shutdown`]) and every socket is closed.
    ///
    /// # Panics
    /// When called from one of this server's handlers (on a runtime: from
    /// any worker of the runtime): it waits for the worker threads, so it
    /// must run on another thread.
    pub fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        assert!(
            self.shared.worker().is_none(),
            "Server::shutdown called from its own handler (a worker thread)"
        );
        self.shutdown_inner(deadline)
    }

    fn shutdown_inner(&mut self, deadline: Duration) -> ShutdownReport {
        let t0 = Instant::now();
        if self.done {
            return ShutdownReport::default();
        }
        self.done = true;
        let sh = &*self.shared;
        sh.stopping.store(true, SeqCst);
        for h in &sh.listeners {
            let _ = sh.port.close(h);
        }
        let sessions = sh.open_sessions();
        self.close_all(true);
        let mut aborted = 0;
        if !self.wait_closed(t0 + deadline) {
            aborted = sh.open_sessions();
            tracing::warn!(server = %sh.cfg.name, sessions = aborted, "shutdown deadline passed: cutting sessions that did not flush");
            self.close_all(false);
            if !self.wait_closed(Instant::now() + ABORT_GRACE) {
                tracing::error!(server = %sh.cfg.name, left = sh.open_sessions(), "sessions still open after abort");
            }
        }
        sh.finished.store(true, SeqCst);
        crate::registry::unregister(&self.shared);
        // A runtime's port and workers go on serving its other servers;
        // this server's last completions (its timer, the listeners'
        // cancelled accepts) still reach its dispatcher, which drops them.
        if let Some(w) = self.workers.take() {
            sh.port.shutdown();
            w.stop();
        }
        let report = ShutdownReport {
            sessions,
            aborted,
            elapsed: t0.elapsed(),
        };
        tracing::info!(server = %sh.cfg.name, sessions, aborted, elapsed = ?report.elapsed, "shut down");
        report
    }

    /// Starts closing every open session (gracefully, or cutting them).
    fn close_all(&self, graceful: bool) {
        let sh = &*self.shared;
        for idx in 0..sh.free.high_water() {
            let Some(slot) = sh.slots.get(idx) else { continue };
            let gen = slot.state.lock().gen;
            sh.close_session(idx, gen, DisconnectReason::Shutdown, graceful);
        }
    }

    /// Waits until no session is open, or `until`. Returns whether none is.
    fn wait_closed(&self, until: Instant) -> bool {
        let sh = &*self.shared;
        let mut g = sh.all_closed.0.lock();
        while sh.open_sessions() > 0 {
            if sh.all_closed.1.wait_until(&mut g, until).timed_out() {
                return sh.open_sessions() == 0;
            }
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let d = self.shutdown_deadline;
        self.shutdown_inner(d);
    }
}
