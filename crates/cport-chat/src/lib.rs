//! cport's messenger: TCP line clients (`nc`) and browsers (WebSocket)
//! in the same rooms, with each room's history in SQLite.
//!
//! - [`Messenger`] is the state, sans-I/O: the line protocol's hub
//!   (`cport_proto::chat`) plus each room's recent messages, so a joiner
//!   gets the last 50 from memory in the same step as the join;
//! - [`History`] keeps every room message in SQLite (`--data DIR`), on a
//!   thread of its own fed through a bounded queue: no worker of the
//!   completion port ever waits on the database; size and age limits
//!   prune it;
//! - [`Chat`] wires both to sessions: a [`TcpChat`] handler for the line
//!   server and a WebSocket handler for the HTTP server's `/ws` (or
//!   `/chat/ws` in `cport serve`). Over WebSocket each text message is one
//!   line of the same protocol, so `/nick`, `/join`, `/who` and `/msg`
//!   work across transports; a broadcast is encoded once per transport and
//!   the same buffer queued on every member.
//!
//! History lines a joiner receives read `[history ROOM UNIX_MS] NICK: TEXT`.

#![deny(missing_docs)]

pub mod cluster;
mod history;
mod messenger;
mod server;

pub use cluster::{ClusterConfig, ClusterStats};
pub use history::{now_ms, History, HistoryLimits, DB_FILE};
pub use messenger::{Entry, Extra, Messenger, RecentLimits};
pub use server::{
    bundled_page, start_web, tcp_builder, web_config, ws_config, Chat, ChatConfig, TcpChat, NODE_ID_STRIDE,
};
