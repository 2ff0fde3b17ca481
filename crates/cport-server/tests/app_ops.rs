//! The application's own operations on the server's port: a socket it
//! associates itself, a timer and a posted job, each completed once on the
//! server's workers in `Handler::on_completion`, beside ordinary sessions.

use cport_testutil::server as util;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use cport::{Key, Payload};
use cport_server::{app_ctx, Backend, Completion, Handler, Message, ServerHandle, Session};
use parking_lot::Mutex;
use util::*;

const LINK_RECV: u64 = 1;
const TICK: u64 = 2;
const JOB: u64 = 3;

/// One completion as the handler saw it: tag, result, bytes received.
type Seen = (u64, Result<usize, String>, Vec<u8>);

/// Echoes its sessions, and reports each of its own completions as
/// (tag, result, bytes received, on a worker thread).
struct Relay {
    seen: Mutex<mpsc::Sender<Seen>>,
}

impl Handler for Relay {
    type State = ();
    fn on_connect(&self, _: &Session) {}
    fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
        let _ = s.send(msg);
    }
    fn on_completion(&self, _: &ServerHandle, tag: u64, c: Completion) {
        let (res, payload) = c.into_parts();
        let bytes = match (&res, payload) {
            (Ok(_), Payload::Buf(b)) => b.to_vec(),
            _ => Vec::new(),
        };
        let _ = self.seen.lock().send((tag, res.map_err(|e| e.to_string()), bytes));
    }
}

/// A connected loopback pair.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

fn app_operations_complete_in_the_handler(backend: Backend) {
    let (tx, rx) = mpsc::channel();
    let server = builder(backend).start(Relay { seen: Mutex::new(tx) }).unwrap();
    let port = server.handle().port().clone();

    // A socket of the application's own (a link to another service).
    let (ours, mut theirs) = pair();
    let link = port.associate(ours, Key(7)).unwrap();
    port.recv(&link, Vec::with_capacity(64), app_ctx(LINK_RECV)).unwrap();
    theirs.write_all(b"PING from the link").unwrap();
    let (tag, res, bytes) = rx.recv_timeout(LONG).expect("the link's receive completed");
    assert_eq!((tag, res), (LINK_RECV, Ok(18)));
    assert_eq!(bytes, b"PING from the link");

    // A timer and a posted job of its own.
    port.timeout(Duration::from_millis(20), app_ctx(TICK)).unwrap();
    port.post(Key(0), 5, app_ctx(JOB)).unwrap();
    let mut tags: Vec<u64> = (0..2).map(|_| rx.recv_timeout(LONG).expect("completed").0).collect();
    tags.sort_unstable();
    assert_eq!(tags, vec![TICK, JOB]);

    // The sessions on the same port are served as ever.
    let mut c = connect(server.local_addr());
    assert_eq!(round_trip(&mut c, b"echo me", 7), b"echo me");

    // A receive still in flight at shutdown completes, exactly once.
    port.recv(&link, Vec::with_capacity(64), app_ctx(LINK_RECV)).unwrap();
    drop(c);
    server.shutdown(LONG);
    let (tag, res, _) = rx
        .recv_timeout(LONG)
        .expect("the pending receive completed at shutdown");
    assert_eq!(tag, LINK_RECV);
    assert!(res.is_err(), "cancelled by the shutdown: {res:?}");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "completed once, nothing more"
    );
}

backend_tests! {
    fn app_operations_complete_in_the_handler(backend: Backend) {
        app_operations_complete_in_the_handler(backend);
    }
}
