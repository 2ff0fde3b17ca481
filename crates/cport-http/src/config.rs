//! What an [`HttpServer`](crate::HttpServer) is started with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cport::Backend;
use cport_proto::http::Limits;

use crate::ws::{WsHandler, WsRoutes};

/// Settings of an HTTP server. Build it with [`HttpConfig::new`] and the
/// setters, or fill the public fields directly.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use cport_http::HttpConfig;
///
/// let cfg = HttpConfig::new("www")
///     .listen("127.0.0.1:8080".parse().unwrap())
///     .threads(2)
///     .listing(true)
///     .request_timeout(Duration::from_secs(5));
/// assert_eq!(cfg.threads, 2);
/// ```
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The directory served. Nothing outside it is ever served.
    pub root: PathBuf,
    /// Where to listen (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Worker threads of the completion port (default 1).
    pub threads: usize,
    /// Threads that may run completions at once (default: `threads`).
    pub concurrency: Option<usize>,
    /// The port's backend (default `Auto`: io_uring, else epoll).
    pub backend: Backend,
    /// Answer a directory without `index.html` with an HTML listing instead
    /// of 404 (default off).
    pub listing: bool,
    /// One `tracing` event per request (target `cport_http::access`, level
    /// INFO) (default off).
    pub access_log: bool,
    /// Time from the first byte of a request to the end of its head; past it
    /// the client gets 408 and the connection is closed: the slow-loris
    /// defence (default 10 s).
    pub request_timeout: Duration,
    /// A connection with nothing received or sent for this long is closed
    /// (keep-alive idle time; also bounds how long a client may stall a
    /// download) (default 60 s).
    pub idle_timeout: Duration,
    /// Request-head limits: request line (414), header bytes and count (431),
    /// body (413). Default: 8 KiB, 16 KiB, 100 fields, 64 KiB of body (read
    /// and ignored).
    pub limits: Limits,
    /// Files up to this size are kept in memory once read (default 64 KiB;
    /// 0 disables the cache). Larger files always go out with `send_file`.
    pub cache_max_file: u64,
    /// Total bytes of file contents the cache may hold (default 32 MiB).
    pub cache_max_total: u64,
    /// Serve live counters as JSON at [`STATS_PATH`](crate::STATS_PATH)
    /// (default on).
    pub stats_endpoint: bool,
    /// Cap on bytes queued per connection (response heads and in-memory
    /// bodies; file ranges do not count). Answers to a connection's own
    /// requests never reach it: reading its requests pauses first (see
    /// [`water_marks`](Self::water_marks)) (default 4 MiB).
    pub max_queued_bytes: usize,
    /// WebSocket endpoints, allowed origins and the codec's limits (default:
    /// none; see [`websocket`](Self::websocket)).
    pub ws: WsRoutes,
    /// Back-pressure: past `.0` bytes of answers still to go (file ranges
    /// included) the connection's requests are no longer read, until the
    /// answers drain to `.1` (default 512 KiB and 128 KiB; see
    /// `cport_server::ServerBuilder::water_marks`).
    pub water_marks: (usize, usize),
    /// How long a connection's queue may stay past the cap before it is cut
    /// off as a slow consumer (default 5 s).
    pub slow_consumer_timeout: Duration,
    /// Where `PUT /upload/<name>` stores files (default: none, uploads off).
    /// They are served under `/files/<name>`.
    pub upload_dir: Option<PathBuf>,
    /// The bearer token uploads must carry (required with `upload_dir`).
    pub upload_token: Option<String>,
    /// Largest upload, in bytes (413 past it) (default 16 GiB).
    pub max_upload: u64,
    /// Run on this runtime's completion port and workers, beside other
    /// servers, instead of a port and threads of its own (default: none;
    /// `threads`, `concurrency` and `backend` are then the runtime's).
    pub runtime: Option<cport_server::Runtime>,
    /// Sections an application adds to the stats document (see
    /// [`stats_section`](Self::stats_section)).
    pub stats_sections: Vec<StatsSection>,
}

/// A named part of the stats document that an application fills in (the
/// chat cluster's Redis link, say): called on each request of the page.
#[derive(Clone)]
pub struct StatsSection {
    /// The key in the document.
    pub name: String,
    /// Produces the section's value.
    pub value: std::sync::Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

impl std::fmt::Debug for StatsSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSection").field("name", &self.name).finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            root: PathBuf::from("."),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threads: 1,
            concurrency: None,
            backend: Backend::Auto,
            listing: false,
            access_log: false,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            cache_max_file: 64 * 1024,
            cache_max_total: 32 << 20,
            stats_endpoint: true,
            max_queued_bytes: 4 << 20,
            ws: WsRoutes::default(),
            water_marks: (512 << 10, 128 << 10),
            slow_consumer_timeout: Duration::from_secs(5),
            upload_dir: None,
            upload_token: None,
            max_upload: 16 << 30,
            stats_sections: Vec::new(),
            runtime: None,
        }
    }
}

impl HttpConfig {
    /// The defaults, serving `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HttpConfig {
            root: root.into(),
            ..HttpConfig::default()
        }
    }
    /// Sets [`listen`](Self::listen).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Sets [`threads`](Self::threads) (at least 1).
    #[must_use]
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }
    /// Sets [`concurrency`](Self::concurrency).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n);
        self
    }
    /// Sets [`backend`](Self::backend).
    #[must_use]
    pub fn backend(mut self, b: Backend) -> Self {
        self.backend = b;
        self
    }
    /// Sets [`runtime`](Self::runtime).
    #[must_use]
    pub fn runtime(mut self, rt: &cport_server::Runtime) -> Self {
        self.runtime = Some(rt.clone());
        self
    }
    /// Sets [`listing`](Self::listing).
    #[must_use]
    pub fn listing(mut self, on: bool) -> Self {
        self.listing = on;
        self
    }
    /// Sets [`access_log`](Self::access_log).
    #[must_use]
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }
    /// Sets [`request_timeout`](Self::request_timeout).
    #[must_use]
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }
    /// Sets [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }
    /// Sets [`limits`](Self::limits).
    #[must_use]
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }
    /// Sets the in-memory cache bounds: the largest file kept and the total.
    #[must_use]
    pub fn cache(mut self, max_file: u64, max_total: u64) -> Self {
        self.cache_max_file = max_file;
        self.cache_max_total = max_total;
        self
    }
    /// Adds `name` to the stats document, its value from `value` at each
    /// request.
    pub fn stats_section(
        mut self,
        name: impl Into<String>,
        value: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.stats_sections.push(StatsSection {
            name: name.into(),
            value: std::sync::Arc::new(value),
        });
        self
    }

    /// Sets [`stats_endpoint`](Self::stats_endpoint).
    #[must_use]
    pub fn stats_endpoint(mut self, on: bool) -> Self {
        self.stats_endpoint = on;
        self
    }
    /// Sets [`max_queued_bytes`](Self::max_queued_bytes).
    #[must_use]
    pub fn max_queued_bytes(mut self, n: usize) -> Self {
        self.max_queued_bytes = n.max(1);
        self
    }
    /// Accepts WebSocket upgrades on `path` (exact match), handled by `handler`.
    #[must_use]
    pub fn websocket(mut self, path: impl Into<String>, handler: std::sync::Arc<dyn WsHandler>) -> Self {
        self.ws.add(path, handler);
        self
    }
    /// Only browser pages from these origins may open a WebSocket (empty:
    /// any). Compared without case, e.g. `http://127.0.0.1:8080`.
    #[must_use]
    pub fn ws_origins(mut self, origins: Vec<String>) -> Self {
        self.ws.origins = origins;
        self
    }
    /// Sets the WebSocket codec's limits and timers.
    #[must_use]
    pub fn ws_config(mut self, cfg: cport_proto::ws::WsConfig) -> Self {
        self.ws.config = cfg;
        self
    }
    /// Sets [`water_marks`](Self::water_marks).
    #[must_use]
    pub fn water_marks(mut self, high: usize, low: usize) -> Self {
        self.water_marks = (high, low);
        self
    }
    /// Turns uploads on: `PUT /upload/<name>` with `Authorization: Bearer
    /// <token>` stores files in `dir`, served back under `/files/<name>`.
    #[must_use]
    pub fn uploads(mut self, dir: impl Into<PathBuf>, token: impl Into<String>) -> Self {
        self.upload_dir = Some(dir.into());
        self.upload_token = Some(token.into());
        self
    }
    /// Sets [`max_upload`](Self::max_upload).
    #[must_use]
    pub fn max_upload(mut self, n: u64) -> Self {
        self.max_upload = n;
        self
    }
    /// Sets [`slow_consumer_timeout`](Self::slow_consumer_timeout).
    #[must_use]
    pub fn slow_consumer_timeout(mut self, t: Duration) -> Self {
        self.slow_consumer_timeout = t;
        self
    }
}

/// The web root bundled with cport (`www/` at the repository root, found
/// from where this crate was built): what `cport serve` serves. `None` when
/// it is not there, for example for a binary copied away from its source tree.
///
/// # Examples
///
/// ```
/// let www = cport_http::bundled_www().expect("built from the repository");
/// assert!(www.join("index.html").is_file());
/// ```
pub fn bundled_www() -> Option<PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../www");
    p.join("index.html").is_file().then(|| p.canonicalize().unwrap_or(p))
}
