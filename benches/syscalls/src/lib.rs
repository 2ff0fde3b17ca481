//! Only the bench in `benches/syscalls.rs`.
