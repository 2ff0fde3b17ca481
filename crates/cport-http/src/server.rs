//! The HTTP server: a [`cport_server::Handler`] with raw framing that parses
//! each connection's request stream and queues the answers, in order.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cport::{Backend, Port, Stats};
use cport_proto::http::{
    check_method, decode_path, CanonicalRoot, DateCache, Event, Flow, HttpError, Limits, Method, Request,
    RequestStream, ResponseHead,
};
use cport_server::{
    DisconnectReason, Framing, Handler, Message, Server, ServerHandle, ServerStats, Session, ShutdownReport,
    ShutdownSignals,
};

use crate::cache::FileCache;
use crate::files::{Body, Files, Reply};
use crate::stats::{self, HttpCounters, HttpStats, Snapshot};
use crate::upload::{Start, Upload, Uploads, TEMP_DIR};
use crate::ws::{Upgraded, WsRoutes};
use crate::HttpConfig;

/// The request path of the JSON stats endpoint.
pub const STATS_PATH: &str = "/_cport/stats";

/// The request path of the oldest operations in flight on every port of the
/// process (JSON), served with the stats endpoint.
pub const OPS_PATH: &str = "/_cport/ops";

/// The request path of the recent uploads (JSON), when uploads are on.
pub const UPLOADS_PATH: &str = "/_cport/uploads";

/// Finished uploads are served under this path (from the upload directory).
const FILES_PREFIX: &str = "files";

/// File bodies are queued in ranges of at most this many bytes: each range's
/// completion counts as progress for the idle timeout, so a client that
/// stops reading a long download is cut off, and one that reads is not.
const FILE_CHUNK: u64 = 4 << 20;

thread_local! {
    static DATE: RefCell<DateCache> = RefCell::new(DateCache::new());
}

/// What a running server's stats endpoint reads.
struct Live {
    handle: ServerHandle,
    port: Port,
}

/// State shared by the workers (and the WebSocket timer).
struct App {
    files: Files,
    limits: Limits,
    access_log: bool,
    stats_endpoint: bool,
    request_timeout: Duration,
    threads: usize,
    started: Instant,
    counters: HttpCounters,
    live: OnceLock<Live>,
    ws: WsRoutes,
    uploads: Option<Uploads>,
    /// The upload directory, served under `/files/`.
    upload_files: Option<Files>,
    /// The application's parts of the stats document.
    stats_sections: Vec<crate::StatsSection>,
}

/// A connection's state, owned by the worker handling it.
#[derive(Debug, Default)]
pub(crate) struct Conn {
    stream: RequestStream,
    /// When the pending partial request started; `Some` exactly while the
    /// session's timer runs for it (the request timeout: 408).
    since: Option<Instant>,
    /// Set once the connection upgraded to WebSocket: every chunk goes there.
    ws: Option<Upgraded>,
    /// The upload whose body is arriving.
    upload: Option<Arc<parking_lot::Mutex<Upload>>>,
    /// An upload's body is in and its answer not yet out: the stream is
    /// paused (the session's input is held) until `on_resume`.
    finishing: bool,
    /// A refused upload's body is being read and dropped; the connection
    /// closes at its end.
    draining: bool,
}

struct HttpHandler(Arc<App>);

impl Handler for HttpHandler {
    type State = Conn;

    fn on_connect(&self, _: &Session) -> Conn {
        if self.0.ws.is_empty() {
            Conn::default()
        } else {
            Conn {
                stream: RequestStream::with_upgrades(),
                ..Conn::default()
            }
        }
    }

    fn on_message(&self, s: &Session, conn: &mut Conn, msg: Message) {
        match &mut conn.ws {
            Some(ws) => ws.on_chunk(&msg),
            None => self.0.on_message(s, conn, &msg),
        }
    }

    fn on_timer(&self, s: &Session, conn: &mut Conn) {
        // The request (its head, or an upload's body) made no progress in
        // time (the server core does not fire the timer while it has paused
        // reading this connection: the rest may be waiting unread in the
        // kernel).
        if let Some(ws) = &mut conn.ws {
            ws.on_timer();
        } else if conn.since.take().is_some() {
            conn.stream.finish();
            self.0.expire(s);
        }
    }

    fn on_resume(&self, s: &Session, conn: &mut Conn) {
        self.0.on_resume(s, conn);
    }

    fn on_completion(&self, _: &ServerHandle, tag: u64, c: cport::Completion) {
        if let Some(uploads) = &self.0.uploads {
            uploads.on_completion(tag, c);
        }
    }

    fn on_disconnect(&self, _: &Session, conn: Conn, _: &DisconnectReason) {
        if let (Some(up), Some(uploads)) = (&conn.upload, &self.0.uploads) {
            uploads.disconnected(up);
        }
        if let Some(ws) = conn.ws {
            ws.on_disconnect();
        }
    }
}

impl App {
    fn on_message(&self, s: &Session, conn: &mut Conn, chunk: &[u8]) {
        let was_partial = conn.stream.has_partial();
        let mut upgraded = None;
        let Conn {
            stream,
            upload,
            finishing,
            draining,
            ..
        } = conn;
        let fed = DATE.with_borrow_mut(|dates| {
            let date = dates.get(SystemTime::now());
            stream.feed(chunk, &self.limits, |ev| match ev {
                Event::Upgrade(req, head) => self.upgrade(s, &req, head, date, &mut upgraded),
                Event::Request(req) if self.uploads.is_some() && Uploads::is_upload_path(req.target) => {
                    self.start_upload(s, &req, date, upload, draining)
                }
                Event::Body(piece) => {
                    if let (Some(up), Some(uploads)) = (upload.as_ref(), &self.uploads) {
                        uploads.body(up, piece);
                    }
                    Flow::Continue
                }
                Event::BodyEnd => match (upload.take(), &self.uploads) {
                    (Some(up), Some(uploads)) => {
                        uploads.body_end(&up);
                        *finishing = true;
                        Flow::Pause
                    }
                    _ if std::mem::take(draining) => {
                        s.close();
                        Flow::Stop
                    }
                    _ => Flow::Continue,
                },
                ev => self.answer(s, ev, date),
            })
        });
        if conn.finishing {
            // Waiting for an upload's answer: no request deadline meanwhile.
            if conn.since.take().is_some() {
                s.set_timer(None);
            }
            return;
        }
        if let Some(mut ws) = upgraded {
            // The request's timeout is over: the timer is the WebSocket's.
            conn.since = None;
            ws.start_timer();
            if let Some(rest) = &fed.rest {
                ws.on_chunk(rest);
            }
            conn.ws = Some(ws);
        }
        if conn.stream.has_partial() {
            // The deadline runs from the start of the pending request, or
            // from its body's last bytes: body bytes are progress.
            if conn.since.is_none() || !was_partial || fed.events > 0 || fed.body_bytes > 0 {
                conn.since = Some(Instant::now());
                s.set_timer(Some(self.request_timeout));
            }
        } else if conn.since.take().is_some() {
            s.set_timer(None);
        }
    }

    /// Receiving resumed after an upload's answer: go on with what followed
    /// its body.
    fn on_resume(&self, s: &Session, conn: &mut Conn) {
        if conn.ws.is_some() {
            return;
        }
        if std::mem::take(&mut conn.finishing) {
            self.on_message(s, conn, &[]);
        } else if conn.since.is_some() {
            // Held for the upload's writes: the wait was the disk's, not
            // the client's; the deadline starts again.
            conn.since = Some(Instant::now());
            s.set_timer(Some(self.request_timeout));
        }
    }

    /// A PUT, PATCH, HEAD or OPTIONS of `/upload/<name>`: answered at once,
    /// or its body is read into the upload.
    fn start_upload(
        &self,
        s: &Session,
        req: &Request<'_>,
        date: &str,
        upload: &mut Option<Arc<parking_lot::Mutex<Upload>>>,
        draining: &mut bool,
    ) -> Flow {
        let Some(uploads) = &self.uploads else {
            return Flow::Stop;
        };
        let status = |head: &Bytes| {
            head.get(9..12)
                .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok())
                .unwrap_or(0)
        };
        match uploads.start(s, req, date) {
            Start::Body(up) => {
                *upload = Some(up);
                Flow::ReadBody
            }
            Start::Refuse(head) => {
                self.counters.answered(status(&head), 0, false);
                if s.send(head).is_err() {
                    return Flow::Stop;
                }
                *draining = true;
                Flow::ReadBody
            }
            Start::Answer(head, keep_alive) => {
                self.counters.answered(status(&head), 0, false);
                if s.send(head).is_err() {
                    return Flow::Stop;
                }
                if !keep_alive {
                    s.close();
                    return Flow::Stop;
                }
                Flow::Continue
            }
        }
    }

    /// A request asking for `Upgrade: websocket`: on a WebSocket path,
    /// the handshake (101, or 400/426/403 and a close); elsewhere an
    /// ordinary request.
    fn upgrade(
        &self,
        s: &Session,
        req: &Request<'_>,
        head: &[u8],
        date: &str,
        upgraded: &mut Option<Upgraded>,
    ) -> Flow {
        let Some(handler) = self.ws.find(req.target) else {
            return self.answer(s, Event::Request(req.clone()), date);
        };
        match cport_proto::ws::upgrade(head, &self.ws.origins) {
            Ok(up) => {
                self.counters.answered(101, 0, false);
                if s.send(up.response).is_err() {
                    return Flow::Stop;
                }
                *upgraded = Some(Upgraded::open(s, handler.clone(), &self.ws.config));
                Flow::Upgrade
            }
            Err(e) => {
                self.counters.answered(e.status(), 0, false);
                tracing::debug!(session = s.id(), status = e.status(), error = ?e, "websocket handshake refused");
                let _ = s.send(e.response());
                s.close();
                Flow::Stop
            }
        }
    }

    /// Answers one event of the request stream.
    fn answer(&self, s: &Session, ev: Event<'_>, date: &str) -> Flow {
        match ev {
            Event::Request(req) | Event::Upgrade(req, _) => {
                // An upload-sized body off the upload path is not read.
                let reply = if req.chunked || req.content_length > self.limits.max_body {
                    let refusal = match &req.method {
                        Method::Other(m) => cport_proto::http::method_refusal(m.as_bytes()),
                        _ => HttpError::PAYLOAD_TOO_LARGE,
                    };
                    let err = HttpError { close: true, ..refusal };
                    Reply::error(err, false, req.method == Method::Head, date)
                } else {
                    self.reply(&req, date)
                };
                if self.access_log {
                    access_log(s, method_name(&req.method), req.target, req.version_minor, &reply);
                }
                self.queue(s, reply)
            }
            Event::Refused(err) => {
                let reply = Reply::error(err, false, false, date);
                if self.access_log {
                    access_log(s, "-", "-", 1, &reply);
                }
                self.queue(s, reply)
            }
            Event::Body(_) | Event::BodyEnd => Flow::Continue,
        }
    }

    fn reply(&self, req: &Request<'_>, date: &str) -> Reply {
        let head_only = req.method == Method::Head;
        if let Err(e) = check_method(req) {
            return Reply::error(e, req.keep_alive, head_only, date);
        }
        let path = match decode_path(req.target) {
            Ok(p) => p,
            Err(e) => return Reply::error(e.into(), req.keep_alive, head_only, date),
        };
        if self.stats_endpoint && !path.dir && path.rel.as_os_str() == &STATS_PATH[1..] {
            let mut head = ResponseHead::new(200, 0, req.keep_alive);
            head.content_type = Some("application/json; charset=utf-8");
            head.extra = &[("Cache-Control", "no-store")];
            return Reply::in_memory(head, Bytes::from(self.stats_json()), head_only, date);
        }
        if self.stats_endpoint && !path.dir && path.rel.as_os_str() == &OPS_PATH[1..] {
            let mut head = ResponseHead::new(200, 0, req.keep_alive);
            head.content_type = Some("application/json; charset=utf-8");
            head.extra = &[("Cache-Control", "no-store")];
            let ops = crate::process::ops_json(crate::process::OPS_LISTED);
            return Reply::in_memory(head, Bytes::from(ops), head_only, date);
        }
        // Uploads in progress are never served, wherever they are.
        if path.rel.components().any(|c| c.as_os_str() == TEMP_DIR) {
            return Reply::error(HttpError::NOT_FOUND, req.keep_alive, head_only, date);
        }
        if let (Some(uploads), Some(files)) = (&self.uploads, &self.upload_files) {
            if !path.dir && path.rel.as_os_str() == &UPLOADS_PATH[1..] {
                let mut head = ResponseHead::new(200, 0, req.keep_alive);
                head.content_type = Some("application/json; charset=utf-8");
                head.extra = &[("Cache-Control", "no-store")];
                return Reply::in_memory(head, Bytes::from(uploads.recent_json()), head_only, date);
            }
            if let Ok(rel) = path.rel.strip_prefix(FILES_PREFIX) {
                if rel.as_os_str().is_empty() || path.dir {
                    return Reply::error(HttpError::NOT_FOUND, req.keep_alive, head_only, date);
                }
                let inner = cport_proto::http::DecodedPath {
                    rel: rel.to_path_buf(),
                    dir: false,
                };
                return files.respond(req, &inner, date);
            }
        }
        self.files.respond(req, &path, date)
    }

    /// Queues a reply on the session, in order after everything before it.
    fn queue(&self, s: &Session, reply: Reply) -> Flow {
        let is_file = matches!(reply.body, Body::File { .. });
        self.counters.answered(reply.status, reply.body.len(), is_file);
        let mut ok = s.send(reply.head).is_ok();
        match reply.body {
            Body::None | Body::Inline(_) => {}
            Body::Bytes(b) => ok = ok && s.send(b).is_ok(),
            Body::File { file, offset, len } => {
                let end = offset + len;
                let mut at = offset;
                while ok && at < end {
                    let n = (end - at).min(FILE_CHUNK);
                    ok = s.send_file(file.clone(), at, n).is_ok();
                    at += n;
                }
            }
        }
        if !ok {
            return Flow::Stop; // the session is closing (or was cut off)
        }
        if !reply.keep_alive {
            s.close();
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// 408 for a request whose head did not arrive in time (the session's timer).
    fn expire(&self, s: &Session) {
        self.counters
            .timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let date = cport_proto::http::http_date(SystemTime::now());
        let reply = Reply::error(HttpError::new(408, true), false, false, &date);
        if self.access_log {
            access_log(s, "-", "-", 1, &reply);
        }
        tracing::debug!(session = s.id(), peer = ?s.peer_addr(), "request head not received in time: 408");
        let _ = self.queue(s, reply);
    }

    fn http_stats(&self) -> HttpStats {
        self.counters.snapshot(self.files.cache_stats())
    }

    fn stats_json(&self) -> String {
        let doc = self.core_stats_json();
        if self.stats_sections.is_empty() {
            return doc;
        }
        let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(&doc) else {
            return doc;
        };
        for s in &self.stats_sections {
            map.insert(s.name.clone(), (s.value)());
        }
        serde_json::Value::Object(map).to_string()
    }

    fn core_stats_json(&self) -> String {
        let live = self.live.get();
        let backend = live.map_or("starting", |l| l.port.backend().name());
        stats::to_json(&Snapshot {
            backend,
            threads: self.threads,
            uptime: self.started.elapsed(),
            server: live.map(|l| l.handle.stats()),
            port: live.map(|l| l.port.stats()),
            http: self.http_stats(),
        })
    }
}

fn method_name(m: &Method) -> &str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Other(s) => s,
    }
}

fn access_log(s: &Session, method: &str, target: &str, minor: u8, reply: &Reply) {
    tracing::info!(
        target: "cport_http::access",
        peer = %s.peer_addr().map_or_else(|| "-".to_owned(), |a| a.to_string()),
        method,
        target,
        version = if minor == 0 { "HTTP/1.0" } else { "HTTP/1.1" },
        status = reply.status,
        bytes = reply.body.len(),
        "request"
    );
}

/// A static file server over a cport completion port: GET and HEAD,
/// keep-alive and pipelining, validators, single ranges, zero-copy bodies.
///
/// Dropping it shuts it down.
///
/// # Examples
///
/// ```no_run
/// use cport_http::{HttpConfig, HttpServer};
///
/// let server = HttpServer::start(HttpConfig::new("www").listen("127.0.0.1:8080".parse().unwrap()))?;
/// println!("serving {} on http://{}/", server.root().display(), server.local_addr());
/// server.run_until_signal()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct HttpServer {
    app: Arc<App>,
    server: Option<Server>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("root", &self.app.files.root())
            .field("server", &self.server)
            .finish()
    }
}

impl HttpServer {
    /// Binds, starts the workers, and serves.
    ///
    /// # Errors
    /// When the root cannot be resolved, the address cannot be bound, or
    /// the port or its threads cannot be created.
    pub fn start(cfg: HttpConfig) -> io::Result<HttpServer> {
        let root = CanonicalRoot::new(&cfg.root)
            .map_err(|e| io::Error::new(e.kind(), format!("web root {}: {e}", cfg.root.display())))?;
        if !root.as_path().is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("web root {} is not a directory", root.as_path().display()),
            ));
        }
        let threads = cfg.runtime.as_ref().map_or(cfg.threads.max(1), |rt| rt.sizes().threads);
        let mut limits = cfg.limits.clone();
        let (uploads, upload_files) = match (&cfg.upload_dir, &cfg.upload_token) {
            (Some(dir), Some(token)) => {
                let uploads = Uploads::new(dir, token, cfg.max_upload)
                    .map_err(|e| io::Error::new(e.kind(), format!("upload dir {}: {e}", dir.display())))?;
                let files = Files::new(
                    CanonicalRoot::new(uploads.dir())?,
                    FileCache::new(cfg.cache_max_file, cfg.cache_max_total / 4),
                    false,
                );
                limits.max_upload = cfg.max_upload.max(1);
                (Some(uploads), Some(files))
            }
            (None, None) => (None, None),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "uploads need both an upload directory and a token",
                ))
            }
        };
        let app = Arc::new(App {
            files: Files::new(
                root,
                FileCache::new(cfg.cache_max_file, cfg.cache_max_total),
                cfg.listing,
            ),
            limits,
            access_log: cfg.access_log,
            stats_endpoint: cfg.stats_endpoint,
            request_timeout: cfg.request_timeout,
            threads,
            started: Instant::now(),
            counters: HttpCounters::default(),
            live: OnceLock::new(),
            ws: cfg.ws.clone(),
            uploads,
            upload_files,
            stats_sections: cfg.stats_sections.clone(),
        });
        // One timer for the idle and the request timeouts: a tick fine
        // enough for the shorter.
        let tick = (cfg.idle_timeout / 4)
            .min(cfg.request_timeout / 8)
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        let mut builder = Server::builder();
        if let Some(c) = cfg.concurrency {
            builder = builder.concurrency(c);
        }
        if let Some(rt) = &cfg.runtime {
            builder = builder.runtime(rt);
        }
        let server = builder
            .name("http")
            .bind(cfg.listen)
            .threads(threads)
            .backend(cfg.backend)
            .framing(Framing::Raw)
            .idle_timeout(Some(cfg.idle_timeout))
            .tick(tick)
            // A response that closes the connection may be a long download:
            // the linger is how long it may take.
            .close_linger(cfg.idle_timeout.max(Duration::from_secs(300)))
            .max_queued_bytes(cfg.max_queued_bytes)
            .water_marks(cfg.water_marks.0, cfg.water_marks.1)
            .slow_consumer_timeout(cfg.slow_consumer_timeout)
            .start(HttpHandler(app.clone()))?;
        let _ = app.live.set(Live {
            handle: server.handle(),
            port: server.port().clone(),
        });
        tracing::info!(
            root = %app.files.root().display(),
            addr = %server.local_addr(),
            backend = server.backend().name(),
            threads,
            "http server listening"
        );
        Ok(HttpServer {
            app,
            server: Some(server),
        })
    }

    /// The server core underneath (for its addresses, backend, counters).
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("the server runs until shutdown")
    }

    /// The server core underneath, to run and shut down beside other
    /// `cport_server` servers (WebSocket timers are its sessions' timers).
    pub fn into_server(mut self) -> Server {
        self.server.take().expect("the server runs until shutdown")
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    /// The backend the port runs on (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.server().backend()
    }

    /// The canonical web root.
    pub fn root(&self) -> &Path {
        self.app.files.root()
    }

    /// The HTTP layer's counters.
    pub fn stats(&self) -> HttpStats {
        self.app.http_stats()
    }

    /// The server core's counters (sessions, bytes, disconnects by reason).
    pub fn server_stats(&self) -> ServerStats {
        self.server().stats()
    }

    /// The completion port's counters.
    pub fn port_stats(&self) -> Stats {
        self.server().port().stats()
    }

    /// The JSON document [`STATS_PATH`] serves.
    pub fn stats_json(&self) -> String {
        self.app.stats_json()
    }

    /// Blocks until SIGINT or SIGTERM, then shuts down (flushing for up to 5 s).
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn run_until_signal(self) -> io::Result<ShutdownReport> {
        let mut signals = ShutdownSignals::new()?;
        let sig = signals.wait();
        tracing::info!(signal = ShutdownSignals::name(sig), "shutting down");
        Ok(self.shutdown(Duration::from_secs(5)))
    }

    /// Stops accepting, lets connections flush for up to `deadline`, closes
    /// them and joins the threads.
    pub fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> ShutdownReport {
        let Some(server) = self.server.take() else {
            return ShutdownReport::default(); // handed out by `into_server`
        };
        server.shutdown(deadline)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
