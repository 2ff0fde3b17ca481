//! The process's running servers, so one stats endpoint covers them all.
//!
//! Every [`Server`](crate::Server) registers itself when it starts and
//! leaves when it shuts down; the registry holds them weakly, so it never
//! keeps a server alive. A stats endpoint (cport-http's `/_cport/stats`)
//! reads [`running_servers`]; servers that share one completion port show
//! the same port (tell them apart with [`Port::same_port`](cport::Port::same_port)).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Arc, Weak};

use cport::Port;
use parking_lot::Mutex;

use crate::server_core::ServerCore;
use crate::stats::ServerStats;

/// One running server, as [`running_servers`] reads it.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The name given to its builder (`echo`, `chat`, `http`, `game`...).
    pub name: String,
    /// Where it listens.
    pub addrs: Vec<SocketAddr>,
    /// Its worker threads.
    pub threads: usize,
    /// Its counters now.
    pub stats: ServerStats,
    /// Its completion port (for `Port::snapshot`).
    pub port: Port,
    /// Its open sessions with the most bytes moved, most first.
    pub top_sessions: Vec<SessionBytes>,
}

/// One session's traffic, for a "top sessions" list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionBytes {
    /// The session's id (as [`Session::id`](crate::Session::id)).
    pub id: u64,
    /// The peer's address, if known.
    pub peer: Option<SocketAddr>,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes sent to the peer.
    pub bytes_out: u64,
}

static REGISTRY: Mutex<Vec<Weak<ServerCore>>> = Mutex::new(Vec::new());

/// Lists a server that just started.
pub(crate) fn register(core: &Arc<ServerCore>) {
    let mut all = REGISTRY.lock();
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(core));
}

/// Forgets a server that shut down.
pub(crate) fn unregister(core: &Arc<ServerCore>) {
    REGISTRY
        .lock()
        .retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(core)));
}

/// Every server of this process that is running now, in the order they
/// started, each with its `top` busiest sessions (O(sessions) per server).
pub fn running_servers(top: usize) -> Vec<ServerInfo> {
    let cores: Vec<Arc<ServerCore>> = REGISTRY.lock().iter().filter_map(Weak::upgrade).collect();
    cores
        .iter()
        .filter(|c| !c.finished.load(SeqCst))
        .map(|c| ServerInfo {
            name: c.cfg.name.clone(),
            addrs: c.local_addrs.clone(),
            threads: c.cfg.threads,
            stats: c.counters.snapshot(),
            port: c.port.clone(),
            top_sessions: top_sessions(c, top),
        })
        .collect()
}

/// The `n` open sessions of `core` with the most bytes in and out.
fn top_sessions(core: &ServerCore, n: usize) -> Vec<SessionBytes> {
    if n == 0 {
        return Vec::new();
    }
    let mut all = Vec::new();
    for idx in 0..core.free.high_water() {
        let Some(slot) = core.slots.get(idx) else { continue };
        let (bytes_in, bytes_out) = (slot.flags.bytes_in.load(Relaxed), slot.flags.bytes_out.load(Relaxed));
        all.push((bytes_in + bytes_out, idx, bytes_in, bytes_out));
    }
    all.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    let mut out = Vec::new();
    for (_, idx, bytes_in, bytes_out) in all {
        if out.len() == n {
            break;
        }
        let Some(slot) = core.slots.get(idx) else { continue };
        let st = slot.state.lock();
        if st.live && st.close.is_none() {
            out.push(SessionBytes {
                id: st.id,
                peer: st.peer,
                bytes_in,
                bytes_out,
            });
        }
    }
    out
}
