//! The session's own timer (`Session::set_timer`, `Handler::on_timer`)
//! through real sockets: it fires once, not before its time, in order with
//! the session's messages; cleared, it does not fire.

use cport_testutil::server as util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cport_server::{Backend, Handler, Message, Session};
use util::*;

const AFTER: Duration = Duration::from_millis(150);

/// Sets the timer at connect; "clear" clears it, "again" sets it anew;
/// the timer writes "fired".
struct Timed;

impl Handler for Timed {
    type State = u32;
    fn on_connect(&self, s: &Session) -> u32 {
        s.set_timer(Some(AFTER));
        0
    }
    fn on_message(&self, s: &Session, _: &mut u32, msg: Message) {
        match &msg[..] {
            b"clear" => s.set_timer(None),
            b"again" => s.set_timer(Some(AFTER)),
            _ => {}
        }
        let _ = s.send(b"ok".to_vec());
    }
    fn on_timer(&self, s: &Session, fired: &mut u32) {
        *fired += 1;
        let _ = s.send(format!("fired {fired}").into_bytes());
    }
}

fn the_session_timer_fires_once_and_can_be_cleared(backend: Backend) {
    let server = builder(backend).start(Timed).unwrap();
    let t0 = Instant::now();
    let mut a = connect(server.local_addr());
    let mut cleared = connect(server.local_addr());
    assert_eq!(round_trip(&mut cleared, b"clear", 2), b"ok");

    let mut got = [0u8; 7];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fired 1");
    assert!(t0.elapsed() >= AFTER, "fired early: {:?}", t0.elapsed());
    // Set again from a message: fires a second time, once.
    assert_eq!(round_trip(&mut a, b"again", 2), b"ok");
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fired 2");

    // Nothing more comes on either connection within several timer periods.
    for c in [&mut a, &mut cleared] {
        c.set_read_timeout(Some(AFTER * 4)).unwrap();
        let mut more = [0u8; 1];
        let r = c.read(&mut more);
        assert!(r.is_err(), "nothing more was sent: {r:?}");
        c.write_all(b"still here").unwrap();
    }
    server.shutdown(LONG);
}

backend_tests! {
    fn the_session_timer_fires_once_and_can_be_cleared(backend: Backend) {
        the_session_timer_fires_once_and_can_be_cleared(backend);
    }
}
