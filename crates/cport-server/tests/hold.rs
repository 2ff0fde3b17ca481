//! The handler's hold on a session's input (`Session::pause_receiving`):
//! nothing more is delivered while it holds; `resume_receiving` (from any
//! thread, or from the handler's own completion on a worker) has a worker
//! run `on_resume` first, then what arrived meanwhile, in order.

use cport_testutil::server as util;

use std::io::{Read, Write};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cport_server::{app_ctx, Backend, Completion, Handler, Message, ServerHandle, Session};
use parking_lot::Mutex;
use util::*;

/// Holds the input on `hold` (released by the test thread) and on `wait`
/// (released by its own port timer, on a worker); echoes everything else.
/// Logs each call in order.
struct Holder {
    log: Arc<Mutex<Vec<String>>>,
    held: Mutex<mpsc::Sender<Session>>,
    waiting: Mutex<Option<Session>>,
}

impl Handler for Holder {
    type State = ();
    fn on_connect(&self, _: &Session) {}
    fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
        let text = String::from_utf8_lossy(&msg).into_owned();
        self.log.lock().push(text.clone());
        match text.as_str() {
            "hold" => {
                s.pause_receiving();
                let _ = s.send(&b"held"[..]);
                let _ = self.held.lock().send(s.clone());
            }
            "wait" => {
                s.pause_receiving();
                *self.waiting.lock() = Some(s.clone());
                s.port().timeout(Duration::from_millis(150), app_ctx(1)).unwrap();
                let _ = s.send(&b"wait"[..]);
            }
            _ => {
                let _ = s.send(msg);
            }
        }
    }
    fn on_resume(&self, s: &Session, _: &mut ()) {
        self.log.lock().push("on_resume".into());
        let _ = s.send(&b"[resumed]"[..]);
    }
    fn on_completion(&self, _: &ServerHandle, tag: u64, c: Completion) {
        assert_eq!(tag, 1);
        assert!(c.into_parts().0.is_ok(), "the timer fired");
        if let Some(s) = self.waiting.lock().take() {
            s.resume_receiving();
        }
    }
}

fn read_exactly(c: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    c.read_exact(&mut got).unwrap();
    got
}

fn a_held_input_waits_and_on_resume_runs_first(backend: Backend) {
    let (tx, rx) = mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let server = builder(backend)
        .start(Holder {
            log: log.clone(),
            held: Mutex::new(tx),
            waiting: Mutex::new(None),
        })
        .unwrap();
    let mut c = connect(server.local_addr());

    // Released by another thread.
    assert_eq!(round_trip(&mut c, b"hold", 4), b"held");
    let s = rx.recv_timeout(LONG).expect("held");
    c.write_all(b"after").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut probe = [0u8; 1];
    c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(c.read(&mut probe).is_err(), "nothing delivered while held");
    c.set_read_timeout(Some(LONG)).unwrap();
    assert!(s.is_receiving_paused(), "receiving paused while held");
    s.resume_receiving();
    assert_eq!(
        read_exactly(&mut c, 9 + 5),
        b"[resumed]after",
        "on_resume, then the input"
    );

    // Released by the handler's own completion, on a worker.
    assert_eq!(round_trip(&mut c, b"wait", 4), b"wait");
    c.write_all(b"later").unwrap();
    assert_eq!(read_exactly(&mut c, 9 + 5), b"[resumed]later");
    assert!(!s.is_receiving_paused());
    assert_eq!(round_trip(&mut c, b"free", 4), b"free", "receiving as ever");
    assert_eq!(
        *log.lock(),
        ["hold", "on_resume", "after", "wait", "on_resume", "later", "free"],
        "on_resume in order with the messages"
    );

    drop(c);
    server.shutdown(LONG);
}

backend_tests! {
    fn a_held_input_waits_and_on_resume_runs_first(backend: Backend) {
        a_held_input_waits_and_on_resume_runs_first(backend);
    }
}
