//! The messenger on many machines, with Redis as the backbone: rooms span
//! every node, presence and nicknames are kept in Redis, and each room's
//! history is a Redis stream (see `docs/CLUSTER.md`).

pub mod link;
pub mod resp;
