//! What the program attaches to its I/O: the completion key of an object,
//! the context and priority of an operation.

/// The completion key: chosen by the program when it associates an I/O object
/// (IOCP's `CompletionKey`), usually "which connection is this".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u64);

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
    /// The value handed back in [`Completion::ctx`](crate::Completion::ctx).
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
