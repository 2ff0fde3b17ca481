//! The messenger on many machines, with Redis as the backbone: rooms span
//! every node, presence and nicknames are kept in Redis, and each room's
//! history is a Redis stream (see `docs/CLUSTER.md`).

pub mod io;
pub mod link;
pub mod node;
pub mod resp;

pub use io::{probe, ClusterIo};
pub use link::{LinkConfig, LinkStats};
pub use node::{ClusterConfig, ClusterNode, ClusterStats, Sends};
