//! The names a port hands out: handles of associated objects and ids of
//! issued operations, both generation-checked and tied to their port.

use crate::index::GenIndex;
use crate::key::Key;

/// An I/O object associated with a port (IOCP's association of a handle with
/// a completion port and a key).
///
/// A handle is a small copyable name: the port owns the fd. It is
/// generation-checked, so a handle that was closed never reaches the fd number
/// the OS hands out next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    /// The slot of the port's handle table, and its generation.
    pub(crate) slot: GenIndex,
    /// The port whose table holds it: every port's table starts at slot 0.
    pub(crate) port: u32,
    pub(crate) key: Key,
}

impl Handle {
    /// The key chosen at association.
    pub fn key(&self) -> Key {
        self.key
    }
}

/// Identifies one issued operation, for [`Port::cancel_op`](crate::Port::cancel_op).
///
/// Generation-tagged: an id whose operation has completed never matches a
/// later one. It names its port too: another port refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId {
    pub(crate) port: u32,
    /// The backend's name for the operation: the slot of its in-flight
    /// table and the slot's generation (packed, the `user_data` the kernel
    /// hands back: IOCP's OVERLAPPED pointer).
    pub(crate) op: GenIndex,
}
