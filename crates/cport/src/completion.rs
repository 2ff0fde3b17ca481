//! What an operation hands back: its completion packet, or, when it was
//! refused, its buffers with the reason.

use std::error::Error;
use std::fmt;
use std::io;

use crate::error::{ShutDownError, SubmitErrorKind};
use crate::id::{Handle, OpId};
use crate::index::GenIndex;
use crate::key::{Ctx, Key, Priority};
use crate::kind::OpKind;
use crate::sys::buf::{Buf, Payload};

/// How an operation started by a `try_` method (such as
/// [`Port::try_send`](crate::Port::try_send)) went.
#[derive(Debug)]
#[must_use = "a finished operation's completion carries its result and buffers"]
pub enum Issued {
    /// In flight: its completion comes out of `get` as usual.
    Pending(OpId),
    /// It finished while being issued. This is its completion, and none is
    /// queued for it (IOCP's `FILE_SKIP_COMPLETION_PORT_ON_SUCCESS`).
    Done(Completion),
}

/// The port's bookkeeping for one operation, carried from issue to completion.
///
/// Kept small (48 bytes): it rides in every completion, and completions are
/// moved several times between the kernel and the handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub key: Key,
    /// The context value ([`Ctx::value`]).
    pub ctx: u64,
    /// The backend's name for the operation (its in-flight slot).
    pub id: GenIndex,
    /// The slot of the handle whose in-flight count this operation holds
    /// (index `NO_HANDLE`: none), and its generation.
    handle: GenIndex,
    /// The port the operation (and its handle) belongs to.
    pub port: u32,
    pub kind: OpKind,
    pub priority: Priority,
    /// On a completion: its multishot operation stays armed.
    pub more: bool,
    /// When the operation was issued (for `Port::snapshot`'s ages and
    /// latencies); unset while introspection is off.
    pub issued: Stamp,
}

/// When an operation was issued, in nanoseconds since the process's
/// introspection epoch, and whether it is multishot (a multishot op's age
/// is how long it has been armed, not a latency): one `u64`, the low bit
/// the flag. 0 means "not stamped".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// A stamp for an op issued at `nanos` (clamped so it is never unset).
    pub(crate) fn new(nanos: u64, multishot: bool) -> Stamp {
        Stamp((nanos.max(1) << 1) | u64::from(multishot))
    }
    /// Whether the op was stamped at all.
    pub(crate) fn is_set(self) -> bool {
        self.0 != 0
    }
    /// The issue time in nanoseconds since the epoch.
    pub(crate) fn nanos(self) -> u64 {
        self.0 >> 1
    }
    /// The op is multishot.
    pub(crate) fn multishot(self) -> bool {
        self.0 & 1 == 1
    }
}

/// `Meta::handle`'s index for an operation on no handle (no table holds 2^32 slots).
const NO_HANDLE: u32 = u32::MAX;

impl Meta {
    pub(crate) fn new(port: u32, key: Key, ctx: Ctx, kind: OpKind, handle: Option<&Handle>) -> Meta {
        Meta {
            key,
            ctx: ctx.value,
            id: GenIndex::default(),
            port,
            handle: handle.map_or(GenIndex::new(NO_HANDLE, 0), |h| h.slot),
            kind,
            priority: ctx.priority,
            more: false,
            issued: Stamp::default(),
        }
    }
    /// The handle the operation holds, if any.
    pub(crate) fn handle(&self) -> Option<Handle> {
        (self.handle.index() != NO_HANDLE).then_some(Handle {
            slot: self.handle,
            port: self.port,
            key: self.key,
        })
    }
    /// The operation's public id.
    pub(crate) fn op_id(&self) -> OpId {
        OpId {
            port: self.port,
            op: self.id,
        }
    }
}

/// One completion packet (IOCP's `OVERLAPPED_ENTRY`), owning the buffers its
/// operation borrowed.
#[derive(Debug)]
pub struct Completion {
    pub(crate) meta: Meta,
    pub(crate) result: io::Result<usize>,
    pub(crate) payload: Payload,
}

impl Completion {
    pub(crate) fn new(mut meta: Meta, result: io::Result<usize>, payload: Payload, more: bool) -> Self {
        meta.more = more;
        Completion { meta, result, payload }
    }

    /// The key of the handle the operation was issued on (or the posted key).
    pub fn key(&self) -> Key {
        self.meta.key
    }
    /// The per-operation context value given when the operation was issued.
    pub fn ctx(&self) -> u64 {
        self.meta.ctx
    }
    /// The priority the operation was issued with.
    pub fn priority(&self) -> Priority {
        self.meta.priority
    }
    /// What kind of operation completed.
    pub fn kind(&self) -> OpKind {
        self.meta.kind
    }
    /// The handle the operation was issued on (`None` for posts, nops, timeouts).
    pub fn handle(&self) -> Option<Handle> {
        self.meta.handle()
    }
    /// The id the issuing call returned.
    pub fn op_id(&self) -> OpId {
        self.meta.op_id()
    }
    /// Bytes transferred, or the OS error.
    pub fn result(&self) -> &io::Result<usize> {
        &self.result
    }
    /// Bytes transferred, or 0 on error.
    pub fn bytes(&self) -> usize {
        *self.result.as_ref().unwrap_or(&0)
    }
    /// `true` while a multishot operation (accept, pooled receive) stays armed
    /// and more completions of it will follow; the last one has `false`.
    pub fn more(&self) -> bool {
        self.meta.more
    }
    /// `true` when the operation was cancelled (by `cancel`, `close` or a timeout).
    pub fn is_cancelled(&self) -> bool {
        matches!(&self.result, Err(e) if e.raw_os_error() == Some(rustix::io::Errno::CANCELED.raw_os_error()))
    }
    /// `true` when the operation was ended by the port shutting down.
    pub fn is_shutdown(&self) -> bool {
        matches!(&self.result, Err(e) if ShutDownError::is(e))
    }
    /// The payload, by reference.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }
    /// Takes the result and payload apart from the packet.
    pub fn into_parts(self) -> (io::Result<usize>, Payload) {
        (self.result, self.payload)
    }
    /// Takes the operation's single buffer back, if it had one.
    pub fn take_buf(&mut self) -> Option<Buf> {
        match std::mem::take(&mut self.payload) {
            Payload::Buf(b) => Some(b),
            Payload::Datagram(d) => Some(d.buf),
            other => {
                self.payload = other;
                None
            }
        }
    }
    /// Takes the connection an accept produced.
    pub fn take_accepted(&mut self) -> Option<std::net::TcpStream> {
        match std::mem::take(&mut self.payload) {
            Payload::Accepted(s) => Some(s),
            other => {
                self.payload = other;
                None
            }
        }
    }
}

/// An operation that was not accepted; the buffers it was given come back in
/// `payload`, so nothing the caller owned is lost.
#[derive(Debug)]
pub struct SubmitError {
    /// Why.
    pub kind: SubmitErrorKind,
    /// The buffers (or file) the call was given, handed back.
    pub payload: Payload,
}

impl SubmitError {
    pub(crate) fn new(kind: SubmitErrorKind, payload: Payload) -> Self {
        SubmitError { kind, payload }
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SubmitErrorKind::QueueFull => "completion port queue limit reached",
            SubmitErrorKind::InvalidHandle => "handle is closed or stale",
            SubmitErrorKind::Closing => "handle is closing",
            SubmitErrorKind::ShutDown => "completion port is shut down",
            SubmitErrorKind::Unsupported => "operation not supported by this backend",
            SubmitErrorKind::ForeignPort => "handle or operation belongs to another completion port",
            SubmitErrorKind::NoRoom => "receive buffer has no capacity",
        })
    }
}

impl Error for SubmitError {}

impl From<SubmitError> for io::Error {
    fn from(e: SubmitError) -> io::Error {
        let kind = match e.kind {
            SubmitErrorKind::QueueFull => io::ErrorKind::WouldBlock,
            SubmitErrorKind::InvalidHandle | SubmitErrorKind::Closing => io::ErrorKind::NotFound,
            SubmitErrorKind::ShutDown => io::ErrorKind::BrokenPipe,
            SubmitErrorKind::Unsupported => io::ErrorKind::Unsupported,
            SubmitErrorKind::ForeignPort | SubmitErrorKind::NoRoom => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Completions are moved several times on their way to a handler: a
    /// field added carelessly here costs every completion.
    #[test]
    fn completions_stay_small() {
        // 48: the issue stamp (introspection's ages and latencies) is the
        // one field added on purpose since the first stage's 40.
        assert!(std::mem::size_of::<Meta>() <= 48);
        assert!(std::mem::size_of::<Completion>() <= 104);
    }
}
