//! cport: the Windows I/O completion port (IOCP) model for Linux.
//!
//! A [`Port`] is one completion queue shared by any number of threads. I/O
//! objects (sockets, files, any owned fd) are [associated](Port::associate)
//! with it under a [`Key`] the program chooses; operations are issued and
//! return at once; each one later yields exactly one final [`Completion`] that
//! any thread can dequeue with [`Port::get`]. As with IOCP, at most
//! `concurrency` threads run completions at once and waiting threads are
//! released last-in, first-out.
//!
//! Buffers are owned by the port while the kernel may touch them and are handed
//! back in the completion, so the public API needs no `unsafe`.
//!
//! # Examples
//!
//! ```
//! use cport::{Port, Key};
//! # fn main() -> std::io::Result<()> {
//! let port = Port::builder().concurrency(1).build()?;
//! port.post(Key(7), 42, 1).expect("queue has room");
//! let c = port.get(None)?;
//! assert_eq!((c.key(), c.ctx(), c.bytes()), (Key(7), 1, 42));
//! # Ok(()) }
//! ```
//!
//! The backend is io_uring when the kernel allows it and epoll otherwise; see
//! [`Backend`] and `docs/ARCHITECTURE.md` for how the ring is shared.

#![deny(missing_docs)]

// Leaves: small value types that import nothing else of the crate
// (`id` and `completion` build on them). See docs/ARCHITECTURE.md for the map.
mod backend;
mod completion;
mod error;
mod id;
mod index;
mod key;
mod kind;

#[allow(unsafe_code)]
mod sys;

mod handle;
mod handoff;
mod introspect;
mod monitor;
mod port;
mod sched;
mod stats;
mod worker;

pub use backend::Backend;
pub use completion::{Completion, Issued, SubmitError};
pub use error::{BuildError, GetError, SubmitErrorKind};
pub use id::{Handle, OpId};
pub use index::GenIndex;
pub use introspect::{InFlightOp, KindInFlight, KindLatency, Snapshot, WorkerSnapshot, WorkerState};
pub use key::{Ctx, Key, Priority};
pub use kind::OpKind;
pub use port::{FullPolicy, Port, PortBuilder};
pub use stats::{Stats, ThreadStats};
pub use sys::buf::{Buf, BufPool, Datagram, Payload, PoolUsage, PooledBuf};
/// `select(2)` over borrowed descriptors, for the I/O-models demo (`cport
/// models`): not part of the completion port.
#[doc(hidden)]
pub use sys::select;
pub use worker::WorkerPool;

/// Test support: expands each `fn name(backend: Backend) { body }` into a
/// module `name` holding two tests, `name::uring` and `name::epoll`, that
/// run the body with [`Backend::IoUring`] and [`Backend::Epoll`]: one body,
/// both backends. Used by this workspace's integration tests; filter with
/// `cargo test -- ::uring`.
#[doc(hidden)]
#[macro_export]
macro_rules! backend_tests {
    ($($(#[$meta:meta])* fn $name:ident($backend:ident: Backend) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($backend: $crate::Backend) $body

            #[test]
            fn uring() {
                run($crate::Backend::IoUring)
            }

            #[test]
            fn epoll() {
                run($crate::Backend::Epoll)
            }
        }
    )*};
}
