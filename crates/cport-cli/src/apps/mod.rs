//! The servers behind `cport echo`, `cport chat` and `cport serve`, built on
//! the `cport-server` framework, and what they share: the common flags, the
//! startup line, and running until SIGINT/SIGTERM.

pub mod blocking;
pub mod chat;
pub mod echo;
pub mod game;
pub mod http;
pub mod serve;

use std::io;
use std::time::Duration;

use clap::Args;
use cport_http::HttpConfig;
use cport_server::{Backend, Runtime, RuntimeBuilder, Server, ServerBuilder, ShutdownSignals};

use crate::args::parse_backend;

/// Flags every server command takes.
#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Worker threads. Default 1 for one server: a single worker drives
    /// the port and batches every submission; add threads for handlers
    /// that do real work per message. `cport serve` runs every server on
    /// one completion port whose pool defaults to 2 x --concurrency (a
    /// handler that blocks hands its slot to a waiting thread).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Threads allowed to run completions at once (the port's
    /// concurrency, IOCP's NumberOfConcurrentThreads). Default: --threads
    /// for one server, the CPU count for `cport serve`.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,
    /// The completion port's backend: auto, uring or epoll.
    ///
    /// auto: io_uring when the kernel allows it, else epoll (`CPORT_BACKEND`
    /// may force one). uring: io_uring only; fail, naming the cause, if it
    /// is unavailable. epoll: readiness turned into completions.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: Backend,
    /// Bytes that may be queued for one client by what others send it (a
    /// chat room's messages); a client whose queue stays past this for
    /// --slow-consumer-timeout, or reaches twice it, is disconnected (slow
    /// consumer).
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub max_queued: usize,
    /// Back-pressure: when a client's answers still to go pass this many
    /// bytes, the server stops reading from it until they drain to
    /// --low-water (TCP then slows the client down; nothing is lost).
    #[arg(long, default_value_t = 512 << 10, value_name = "BYTES")]
    pub high_water: usize,
    /// Where a paused client's reading resumes (see --high-water).
    #[arg(long, default_value_t = 128 << 10, value_name = "BYTES")]
    pub low_water: usize,
    /// How long a client's queue may stay past --max-queued before it is
    /// disconnected as a slow consumer.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub slow_consumer_timeout: f64,
    /// Close connections idle for this many seconds (0: never).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub idle_timeout: u64,
    /// On SIGINT/SIGTERM, how long queued data may take to flush before
    /// the remaining connections are cut.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub shutdown_timeout: f64,
}

impl ServerArgs {
    /// `--threads` for a server of its own (default 1).
    fn threads(&self) -> usize {
        self.threads.map_or(1, usize::from)
    }

    /// A runtime (one port, one pool for several servers) sized by the
    /// flags, or by the I/O models' rule where they are not given.
    pub fn runtime(&self) -> RuntimeBuilder {
        let mut b = Runtime::builder().backend(self.backend);
        if let Some(t) = self.threads {
            b = b.threads(t.into());
        }
        if let Some(c) = self.concurrency {
            b = b.concurrency(c.into());
        }
        b
    }

    /// Applies the flags to a builder.
    pub fn apply(&self, b: ServerBuilder) -> ServerBuilder {
        let b = b
            .threads(self.threads())
            .backend(self.backend)
            .max_queued_bytes(self.max_queued)
            .water_marks(self.high_water, self.low_water)
            .slow_consumer_timeout(self.slow_timeout())
            .idle_timeout(self.idle());
        match self.concurrency {
            Some(c) => b.concurrency(c as usize),
            None => b,
        }
    }

    /// Applies the flags to the HTTP server's configuration, as [`apply`]
    /// does to a builder, except that `--idle-timeout 0` keeps HTTP's own
    /// keep-alive limit.
    ///
    /// [`apply`]: ServerArgs::apply
    pub fn apply_http(&self, cfg: HttpConfig) -> HttpConfig {
        let mut cfg = cfg
            .threads(self.threads())
            .backend(self.backend)
            .max_queued_bytes(self.max_queued)
            .water_marks(self.high_water, self.low_water)
            .slow_consumer_timeout(self.slow_timeout());
        if let Some(c) = self.concurrency {
            cfg = cfg.concurrency(c as usize);
        }
        match self.idle() {
            Some(t) => cfg.idle_timeout(t),
            None => cfg,
        }
    }

    /// `--idle-timeout` as a limit; `None` (never) for 0.
    fn idle(&self) -> Option<Duration> {
        (self.idle_timeout > 0).then(|| Duration::from_secs(self.idle_timeout))
    }

    /// `--slow-consumer-timeout` as a duration.
    fn slow_timeout(&self) -> Duration {
        let secs = self.slow_consumer_timeout;
        Duration::from_secs_f64(if secs.is_nan() { 5.0 } else { secs.clamp(0.0, 3600.0) })
    }

    /// The flush deadline for shutdown.
    pub fn shutdown_deadline(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_timeout.clamp(0.0, 3600.0))
    }
}

/// Prints where a server listens: one line per address, on stdout, naming
/// the backend (scripts and tests read this line).
pub fn announce(what: &str, server: &Server) {
    let threads = server.threads();
    let shared = if server.runtime().is_some() {
        ", the shared port"
    } else {
        ""
    };
    for addr in server.local_addrs() {
        println!(
            "cport {what}: listening on {addr} (backend {}, {threads} worker thread{}{shared})",
            server.backend().name(),
            if threads == 1 { "" } else { "s" }
        );
    }
}

/// Lets this process open as many sockets as its hard limit allows (a
/// server for 100,000 connections needs far more than the usual 1024).
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is RLIM_INFINITY: nothing to raise.
    let (Some(soft), Some(hard)) = (getrlimit(Resource::Nofile).current, getrlimit(Resource::Nofile).maximum) else {
        return;
    };
    let both = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    // Privileged processes may lift the hard limit too, up to fs.nr_open:
    // 100,000 connections need that many descriptors.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard)
        .min(1 << 20);
    if ceiling > hard && setrlimit(Resource::Nofile, both(ceiling)).is_ok() {
        return;
    }
    if soft < hard && setrlimit(Resource::Nofile, both(hard)).is_err() {
        tracing::debug!(soft, hard, "could not raise the open-file limit");
    }
}

/// Runs `servers` until SIGINT or SIGTERM, then shuts each down within
/// `deadline`. A second signal exits at once.
pub fn run_until_signal(mut signals: ShutdownSignals, servers: Vec<(&str, Server)>, deadline: Duration) {
    let sig = signals.wait();
    tracing::info!(signal = ShutdownSignals::name(sig), ?deadline, "shutting down");
    std::thread::spawn(move || {
        let again = signals.wait();
        eprintln!("cport: {} again: exiting now", ShutdownSignals::name(again));
        std::process::exit(130);
    });
    for (what, server) in servers {
        let r = server.shutdown(deadline);
        println!(
            "cport {what}: shut down in {:.0?} ({} session{} open, {} cut at the deadline)",
            r.elapsed,
            r.sessions,
            if r.sessions == 1 { "" } else { "s" },
            r.aborted
        );
    }
}

/// Starts catching SIGINT/SIGTERM before any server starts, so an early
/// signal is not lost.
pub fn signals() -> io::Result<ShutdownSignals> {
    ShutdownSignals::new()
}
