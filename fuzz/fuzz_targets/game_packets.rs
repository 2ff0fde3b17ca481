//! The game protocol's packets over arbitrary bytes:
//! `cport_proto::game::fuzz_stream` checks that every packet that decodes
//! re-encodes to the bytes it came from, and that nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cport_proto::game::fuzz_stream(data));
