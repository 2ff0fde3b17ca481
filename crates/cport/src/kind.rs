//! The kinds of operation a port runs.

use std::fmt;

/// The kind of operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum OpKind {
    /// A packet of the program's own ([`Port::post`](crate::Port::post)).
    Post,
    /// [`Port::nop`](crate::Port::nop): a round trip through the backend.
    Nop,
    /// [`Port::timeout`](crate::Port::timeout) fired (or was cancelled).
    Timeout,
    /// [`Port::accept`](crate::Port::accept) or a delivery of `accept_multi` (AcceptEx).
    Accept,
    /// [`Port::connect`](crate::Port::connect) (ConnectEx).
    Connect,
    /// [`Port::recv`](crate::Port::recv) into a caller's buffer (WSARecv).
    Recv,
    /// [`Port::recv_pooled`](crate::Port::recv_pooled) or a delivery of `recv_pooled_multi`.
    RecvPooled,
    /// [`Port::send`](crate::Port::send) or `try_send` (WSASend).
    Send,
    /// [`Port::send_vectored`](crate::Port::send_vectored): one gathering send.
    SendVectored,
    /// [`Port::recv_from`](crate::Port::recv_from): one datagram (WSARecvFrom).
    RecvFrom,
    /// [`Port::send_to`](crate::Port::send_to): one datagram (WSASendTo).
    SendTo,
    /// [`Port::shutdown_socket`](crate::Port::shutdown_socket).
    Shutdown,
    /// [`Port::read_at`](crate::Port::read_at) (ReadFile at an offset).
    ReadAt,
    /// [`Port::write_at`](crate::Port::write_at) (WriteFile at an offset).
    WriteAt,
    /// [`Port::fsync`](crate::Port::fsync).
    Fsync,
    /// [`Port::send_file`](crate::Port::send_file) (TransmitFile).
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
