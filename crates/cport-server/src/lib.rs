//! An IOCP-style server core on the cport completion port.
//!
//! This is the small "server core" that IOCP game servers, messengers and
//! web servers are built on, so that applications never touch raw
//! completions:
//!
//! - a [`Server`] binds its listeners and keeps a multishot accept posted;
//!   each connection becomes a [`Session`] whose completion key is its slot
//!   in a table, so a completion finds its session without a table lock;
//! - one receive is always pending per session, through the port's shared
//!   provided-buffer pool: idle sessions pin no receive memory, and a
//!   reassembly buffer exists only while a frame is half received;
//! - a [`Handler`] gets `on_connect`, `on_message` (one decoded frame at a
//!   time, see [`Framing`]) and `on_disconnect` with a [`DisconnectReason`];
//! - [`Session::send`] from any thread queues a buffer; everything queued
//!   while a send is in flight leaves in one gathering send, one send in
//!   flight per session, short sends resumed; [`Session::send_file`] puts a
//!   zero-copy file range in the same queue, in order;
//! - flow control, never loss: when the answers to a session's own input
//!   back its queue up past a high-water mark, its receiving pauses until
//!   they drain to a low-water mark ([`ServerBuilder::water_marks`]), and
//!   the handler may hold a session's input itself while work it started
//!   on it is pending ([`Session::pause_receiving`]; on release a worker
//!   runs [`Handler::on_resume`] before receiving resumes); the
//!   per-session cap on queued bytes only cuts a session that does not read
//!   what others send it, after a deadline, and never mid-message;
//! - [`broadcast`] queues one reference-counted buffer on many sessions;
//! - idle, frame-completion (slow-loris), linger and slow-consumer timeouts,
//!   and each session's own timer ([`Session::set_timer`], delivered to
//!   [`Handler::on_timer`]), run on one port timer and a timing wheel: each
//!   tick costs what can expire then, and no timeout fires before its time;
//! - a session's life is one state machine that takes events and the time
//!   and returns actions, which the dispatcher alone carries out on the
//!   port (so every timeout is tested with a fake clock);
//! - the application's own operations (its sockets, timers, posted jobs)
//!   run on the same port and workers: see below;
//! - [`Server::shutdown`] (or [`ShutdownSignals`] for SIGINT/SIGTERM) stops
//!   accepting, flushes within a deadline, closes every session, cancels
//!   what is in flight and joins the workers.
//!
//! # Examples
//!
//! An echo server: the received buffer goes straight back out.
//!
//! ```no_run
//! use cport_server::{Handler, Message, Server, Session};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type State = ();
//!     fn on_connect(&self, _: &Session) {}
//!     fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
//!         let _ = s.send(msg);
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1:7000".parse().unwrap()).start(Echo)?;
//! println!("echo on {} ({})", server.local_addr(), server.backend().name());
//! // ... later:
//! server.shutdown(std::time::Duration::from_secs(5));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The application's own operations
//!
//! One port per process: what an application does beside its sessions (a
//! link to Redis, a game world's tick, another server's sockets) runs on
//! the server's port and workers too. Issue an operation on
//! [`ServerHandle::port`] with a context from [`app_ctx`]`(tag)`; its
//! completion comes to [`Handler::on_completion`] with that tag, exactly
//! once (with an error if it was cancelled or the server shut down).
//!
//! ```no_run
//! use cport_server::{app_ctx, Completion, Handler, Message, Server, ServerHandle, Session};
//!
//! const LINK: u64 = 1; // the application's tags: any 56-bit values
//!
//! struct App;
//! impl Handler for App {
//!     type State = ();
//!     fn on_connect(&self, _: &Session) {}
//!     fn on_message(&self, _: &Session, _: &mut (), _: Message) {}
//!     fn on_completion(&self, server: &ServerHandle, tag: u64, c: Completion) {
//!         if tag == LINK {
//!             // A reply from the link: hand it to the sessions that wait for it,
//!             // then issue the next receive on `server.port()`.
//!             let _ = (server, c);
//!         }
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1:7002".parse().unwrap()).start(App)?;
//! let port = server.handle().port().clone();
//! let link = std::net::TcpStream::connect("127.0.0.1:6379")?;
//! let h = port.associate(link, cport::Key(1))?;
//! port.recv(&h, Vec::with_capacity(4096), app_ctx(LINK))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads
//!
//! The default is one worker thread: it owns the port, and every operation a
//! handler issues is submitted in one batch at its next wait. With one
//! thread each session keeps a multishot receive armed for its whole life.
//! With more threads ([`ServerBuilder::threads`]) sessions are served in
//! parallel and each receive is re-armed after its chunk is handled, which
//! keeps one session's messages in order ([`RecvMode`]).

#![deny(missing_docs)]

mod config;
mod context;
mod dispatch;
mod error;
mod handler;
mod lifecycle;
mod message;
mod queue;
mod registry;
mod runtime;
mod server;
mod server_core;
mod session;
mod signal;
mod stats;
mod table;
mod timer;
mod wheel;

pub use context::{app_ctx, MAX_APP_TAG};
pub use cport::{Backend, Buf, Completion, Port};
pub use cport_proto::framing::{FrameError, LengthPrefixed, LengthWidth};
pub use error::{DisconnectReason, ReasonKind, SendError, SendErrorKind};
pub use handler::Handler;
pub use message::{FrameAction, Framing, Message};
pub use registry::{running_servers, ServerInfo, SessionBytes};
pub use runtime::{PoolSizes, Runtime, RuntimeBuilder};
pub use server::{RecvMode, Server, ServerBuilder, ShutdownReport};
pub use session::{broadcast, Broadcast, ServerHandle, Session};
pub use signal::ShutdownSignals;
pub use stats::ServerStats;
