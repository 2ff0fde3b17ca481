//! The WebSocket codec (RFC 6455) over arbitrary bytes, fed in pieces
//! whose size the first byte picks: `cport_proto::ws::fuzz_feed` checks
//! that the events do not depend on the cut and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cport_proto::ws::fuzz_feed(data));
