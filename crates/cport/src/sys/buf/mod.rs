//! Buffer memory: the buffers operations own while they are in flight
//! ([`Buf`]), what an operation hands back ([`Payload`]), and the pools of
//! receive buffers the kernel picks from ([`BufPool`], in `pool`).
//!
//! Imports nothing else of the crate: the value types above it (a
//! completion, a refused operation) and the backends below it both hold
//! these buffers.

mod pool;

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;

pub use pool::{BufPool, PoolUsage, PooledBuf};
pub(crate) use pool::{FreeStack, KernelRing, PoolInner, Provider};

/// One buffer handed to the port for an operation and handed back in its completion.
///
/// The port owns it while the kernel may read or write it: safe code can
/// never free or reuse a buffer that is still in flight.
#[derive(Debug)]
pub enum Buf {
    /// A plain vector: received data is appended in its spare capacity.
    Vec(Vec<u8>),
    /// A shared, reference-counted buffer: one broadcast, many sends, no copy.
    Bytes(Bytes),
    /// A buffer from a [`BufPool`](crate::BufPool), picked by the kernel when data arrived.
    Pooled(PooledBuf),
}

impl Buf {
    /// The bytes the buffer holds.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Vec(v) => v,
            Buf::Bytes(b) => b,
            Buf::Pooled(p) => p,
        }
    }

    /// Turns the buffer into a `Vec`, copying only when it is not one already.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Buf::Vec(v) => v,
            Buf::Bytes(b) => Vec::from(b),
            Buf::Pooled(p) => p.to_vec(),
        }
    }

    /// Turns the buffer into shared [`Bytes`] (no copy for `Vec` and `Bytes`).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Buf::Vec(v) => Bytes::from(v),
            Buf::Bytes(b) => b,
            Buf::Pooled(p) => Bytes::copy_from_slice(&p),
        }
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for Buf {
    fn from(v: Vec<u8>) -> Self {
        Buf::Vec(v)
    }
}
impl From<Bytes> for Buf {
    fn from(b: Bytes) -> Self {
        Buf::Bytes(b)
    }
}
impl From<PooledBuf> for Buf {
    fn from(p: PooledBuf) -> Self {
        Buf::Pooled(p)
    }
}
impl From<&'static [u8]> for Buf {
    fn from(s: &'static [u8]) -> Self {
        Buf::Bytes(Bytes::from_static(s))
    }
}
impl From<&'static str> for Buf {
    fn from(s: &'static str) -> Self {
        Buf::Bytes(Bytes::from_static(s.as_bytes()))
    }
}
impl From<String> for Buf {
    fn from(s: String) -> Self {
        Buf::Vec(s.into_bytes())
    }
}

/// A datagram and its peer address (boxed in [`Payload`], which every
/// completion carries, to keep completions small).
#[derive(Debug)]
pub struct Datagram {
    /// The datagram's bytes.
    pub buf: Buf,
    /// Where it came from (`recv_from`), or where it went (`send_to`).
    pub addr: SocketAddr,
}

/// What an operation hands back with its completion besides the result.
#[derive(Debug, Default)]
pub enum Payload {
    /// Nothing (posted packets, timeouts, connect, shutdown, fsync, nop).
    #[default]
    None,
    /// The operation's one buffer (recv, send, read_at, write_at, recv_pooled).
    Buf(Buf),
    /// The buffers of a gathering send, in order.
    Bufs(Vec<Buf>),
    /// A connection taken by `accept`; not yet associated with any port.
    Accepted(TcpStream),
    /// A datagram buffer and its peer (`recv_from`), or what `send_to` sent and where.
    Datagram(Box<Datagram>),
    /// The file that `send_file` sent from.
    File(Arc<File>),
    /// An fd the operation produced that is not a TCP stream.
    Fd(OwnedFd),
}
