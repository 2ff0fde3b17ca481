//! cport's load generator.
//!
//! The client runs on the cport completion port itself, in one thread, so it
//! can be pinned to one core and never becomes the bottleneck it measures
//! unnoticed: every report says how busy the client's own thread was.

#![deny(missing_docs)]

pub mod blocking;
pub mod chat;
pub mod conn;
pub mod echo;
pub mod game;
pub mod http;
pub mod idle;
pub mod report;
pub mod ws;

pub use report::{LatencyRecorder, Report};
