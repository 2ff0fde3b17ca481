//! Completion packets and the small value types that travel with them.

use std::fmt;
use std::io;

use crate::buf::{Buf, Payload};
use crate::error::ShutDownError;
use crate::handle::Handle;

/// The completion key: chosen by the program when it associates an I/O object
/// (IOCP's `CompletionKey`), usually "which connection is this".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u64);

/// Identifies one issued operation, for [`Port::cancel_op`](crate::Port::cancel_op).
///
/// Generation-tagged: an id whose operation has completed never matches a
/// later one. It names its port too: another port refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId {
    pub(crate) port: u32,
    pub(crate) op: OpRef,
}

/// A backend's name for one operation: the slot of its in-flight table and
/// the slot's generation, packed into the `user_data` the kernel hands back
/// (IOCP's OVERLAPPED pointer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct OpRef(pub(crate) u64);

impl OpRef {
    /// The op in slot `idx` of a driver's table, generation `gen`.
    pub(crate) fn new(gen: u32, idx: usize) -> OpRef {
        OpRef(((gen as u64) << 32) | idx as u64)
    }
    /// The slot in the driver's table.
    pub(crate) fn idx(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    /// The generation the slot had when the op was pushed.
    pub(crate) fn gen(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Whether a completion jumps the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Dequeued in arrival order.
    #[default]
    Normal,
    /// Dequeued before every ready normal-priority completion.
    High,
}

/// The per-operation context (IOCP's `OVERLAPPED` pointer): a value the
/// program chooses, and the operation's priority.
///
/// A plain `u64` converts into a normal-priority context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ctx {
    /// The value handed back in [`Completion::ctx`].
    pub value: u64,
    /// Where the completion goes in the queue.
    pub priority: Priority,
}

impl Ctx {
    /// A normal-priority context.
    pub const fn new(value: u64) -> Self {
        Ctx {
            value,
            priority: Priority::Normal,
        }
    }
    /// A high-priority context: its completion is dequeued before normal ones.
    pub const fn high(value: u64) -> Self {
        Ctx {
            value,
            priority: Priority::High,
        }
    }
}

impl From<u64> for Ctx {
    fn from(value: u64) -> Self {
        Ctx::new(value)
    }
}

/// The kind of operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum OpKind {
    Post,
    Nop,
    Timeout,
    Accept,
    Connect,
    Recv,
    RecvPooled,
    Send,
    SendVectored,
    RecvFrom,
    SendTo,
    Shutdown,
    ReadAt,
    WriteAt,
    Fsync,
    SendFile,
    /// A packet posted by [`Port::post_quit`](crate::Port::post_quit): the receiving worker should exit.
    Quit,
}

impl OpKind {
    /// Every kind, in counter order.
    pub const ALL: [OpKind; 17] = [
        OpKind::Post,
        OpKind::Nop,
        OpKind::Timeout,
        OpKind::Accept,
        OpKind::Connect,
        OpKind::Recv,
        OpKind::RecvPooled,
        OpKind::Send,
        OpKind::SendVectored,
        OpKind::RecvFrom,
        OpKind::SendTo,
        OpKind::Shutdown,
        OpKind::ReadAt,
        OpKind::WriteAt,
        OpKind::Fsync,
        OpKind::SendFile,
        OpKind::Quit,
    ];

    /// A short lowercase name, for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Post => "post",
            OpKind::Nop => "nop",
            OpKind::Timeout => "timeout",
            OpKind::Accept => "accept",
            OpKind::Connect => "connect",
            OpKind::Recv => "recv",
            OpKind::RecvPooled => "recv_pooled",
            OpKind::Send => "send",
            OpKind::SendVectored => "send_vectored",
            OpKind::RecvFrom => "recv_from",
            OpKind::SendTo => "send_to",
            OpKind::Shutdown => "shutdown",
            OpKind::ReadAt => "read_at",
            OpKind::WriteAt => "write_at",
            OpKind::Fsync => "fsync",
            OpKind::SendFile => "send_file",
            OpKind::Quit => "quit",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
/// Kept small (40 bytes): it rides in every completion, and completions are
/// moved several times between the kernel and the handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub key: Key,
    /// The context value ([`Ctx::value`]).
    pub ctx: u64,
    pub id: OpRef,
    /// The slot of the handle whose in-flight count this operation holds
    /// (`NO_HANDLE`: none), and its generation.
    handle_idx: u32,
    handle_gen: u32,
    /// The port the operation (and its handle) belongs to.
    pub port: u32,
    pub kind: OpKind,
    pub priority: Priority,
    /// On a completion: its multishot operation stays armed.
    pub more: bool,
}

/// `Meta::handle_idx` of an operation on no handle (no table holds 2^32 slots).
const NO_HANDLE: u32 = u32::MAX;

impl Meta {
    pub(crate) fn new(port: u32, key: Key, ctx: Ctx, kind: OpKind, handle: Option<&Handle>) -> Meta {
        Meta {
            key,
            ctx: ctx.value,
            id: OpRef(0),
            port,
            handle_idx: handle.map_or(NO_HANDLE, |h| h.idx),
            handle_gen: handle.map_or(0, |h| h.gen),
            kind,
            priority: ctx.priority,
            more: false,
        }
    }
    /// The handle the operation holds, if any.
    pub(crate) fn handle(&self) -> Option<Handle> {
        (self.handle_idx != NO_HANDLE).then_some(Handle {
            idx: self.handle_idx,
            gen: self.handle_gen,
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
        matches!(&self.result, Err(e) if e.raw_os_error() == Some(libc::ECANCELED))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Completions are moved several times on their way to a handler: a
    /// field added carelessly here costs every completion.
    #[test]
    fn completions_stay_small() {
        assert!(std::mem::size_of::<Meta>() <= 40);
        assert!(std::mem::size_of::<Completion>() <= 96);
    }
}
