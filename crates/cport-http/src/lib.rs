//! cport's web and file-transfer server: HTTP/1.1 static files on the
//! completion port.
//!
//! Web servers and file-transfer servers are what IOCP was made for. This
//! crate puts a static file server on [`cport_server`]: each connection is a
//! session with raw framing, its received chunks go through the sans-I/O
//! parser of [`cport_proto::http`], and every answer is queued on the
//! session's send queue in request order, so pipelined requests come back in
//! order and many small answers leave in one gathering send.
//!
//! - GET and HEAD; HTTP/1.1 keep-alive by default, `Connection: close` and
//!   HTTP/1.0 honoured; pipelining.
//! - `Content-Type`, `Content-Length`, `Last-Modified`, a strong `ETag`;
//!   304 from `If-None-Match`/`If-Modified-Since`; a single `Range` gives
//!   206 with `Content-Range`, an unsatisfiable one 416.
//! - Bodies go from the file to the socket through the port's `send_file`
//!   (splice on io_uring, sendfile on epoll): no copy through user space.
//!   Files up to 64 KiB are kept in memory and checked against the file
//!   system (inode, length, mtime, ctime) on every request.
//! - Directories: `index.html`, else 404 (or a listing, if enabled).
//! - Safety: paths are decoded once and normalized; `..`, `%2e%2e`,
//!   backslashes, NUL and symlinks leading out of the root are refused; the
//!   request line, header size and count, and bodies are limited (414, 431,
//!   413); other methods get 405 with `Allow`; a request head that does not
//!   arrive within the request timeout gets 408 and a close; idle
//!   connections are closed.
//! - Uploads, off by default ([`HttpConfig::uploads`]): `PUT /upload/<name>`
//!   with a bearer token, streamed to disk with the port's `write_at` under
//!   flow control, atomic (temp file, fsync, rename), checked against
//!   `Repr-Digest` (RFC 9530), resumable with tus 1.0 `HEAD`/`PATCH`, and
//!   served back under `/files/` (docs/UPLOADS.md).
//! - WebSocket (RFC 6455) on configured paths: `Upgrade: websocket`, then
//!   the session speaks WebSocket on the same port ([`WsHandler`]).
//! - Live counters as JSON at [`STATS_PATH`], and an optional access log line
//!   per request through `tracing` (target `cport_http::access`).
//!
//! # Examples
//!
//! ```no_run
//! use cport_http::{HttpConfig, HttpServer};
//!
//! let cfg = HttpConfig::new("www").listen("127.0.0.1:8080".parse().unwrap()).threads(1);
//! let server = HttpServer::start(cfg)?;
//! println!("http://{}/ ({})", server.local_addr(), server.backend().name());
//! server.run_until_signal()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(missing_docs)]

mod cache;
mod config;
mod files;
mod listing;
mod process;
mod server;
mod stats;
mod upload;
mod ws;

pub use cache::CacheStats;
pub use config::{bundled_www, HttpConfig, StatsSection};
pub use cport::Backend;
pub use cport_proto::http::Limits;
pub use cport_proto::ws::{Close as WsClose, CloseCause as WsCloseCause, WsConfig};
pub use server::{HttpServer, OPS_PATH, STATS_PATH, UPLOADS_PATH};
pub use stats::HttpStats;
pub use ws::{WsHandler, WsMessage, WsRoutes, WsSession};
