//! Several servers on one `Runtime`: one completion port, one worker pool
//! (IOCP's one port per process). Each completion reaches its own server,
//! a server shuts down while the others go on, and the application's own
//! operations complete once, in the right server's handler.

use cport_testutil::server as util;

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread::ThreadId;
use std::time::Duration;

use cport::{Key, SubmitErrorKind};
use cport_server::{Backend, Completion, Handler, Message, ReasonKind, Runtime, ServerHandle, Session};
use parking_lot::Mutex;
use util::*;

/// What a handler reports of its own completions: (server, tag, ok).
type Seen = (&'static [u8], u64, bool);

/// Echoes with a prefix naming the server, records the threads that ran
/// it, and reports its own completions as (server, tag, ok).
#[derive(Clone)]
struct Named {
    name: &'static [u8],
    threads: Arc<Mutex<HashSet<ThreadId>>>,
    seen: Arc<Mutex<mpsc::Sender<Seen>>>,
    gone: Disconnects,
}

impl Handler for Named {
    type State = ();
    fn on_connect(&self, _: &Session) {}
    fn on_message(&self, s: &Session, _: &mut (), msg: Message) {
        self.threads.lock().insert(std::thread::current().id());
        let mut v = self.name.to_vec();
        v.extend_from_slice(&msg);
        let _ = s.send(v);
    }
    fn on_disconnect(&self, s: &Session, _: (), reason: &cport_server::DisconnectReason) {
        self.gone.lock().push((s.id(), reason.kind()));
    }
    fn on_completion(&self, _: &ServerHandle, tag: u64, c: Completion) {
        self.threads.lock().insert(std::thread::current().id());
        let _ = self.seen.lock().send((self.name, tag, c.result().is_ok()));
    }
}

fn named(name: &'static [u8], seen: &mpsc::Sender<Seen>) -> Named {
    Named {
        name,
        threads: Arc::default(),
        seen: Arc::new(Mutex::new(seen.clone())),
        gone: Disconnects::default(),
    }
}

/// A connected loopback pair.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

fn servers_share_one_port_and_one_pool(backend: Backend) {
    // One worker for two servers: with a pool each, two threads would run them.
    let rt = Runtime::builder()
        .threads(1)
        .concurrency(1)
        .backend(backend)
        .build()
        .unwrap();
    assert_eq!((rt.sizes().threads, rt.sizes().concurrency), (1, 1));
    let (tx, rx) = mpsc::channel();
    let (ha, hb) = (named(b"a:", &tx), named(b"b:", &tx));
    let a = builder(backend).runtime(&rt).start(ha.clone()).unwrap();
    let b = builder(backend).runtime(&rt).start(hb.clone()).unwrap();
    assert_eq!(a.backend(), rt.backend());

    for _ in 0..3 {
        let mut ca = connect(a.local_addr());
        let mut cb = connect(b.local_addr());
        assert_eq!(round_trip(&mut ca, b"one", 5), b"a:one");
        assert_eq!(round_trip(&mut cb, b"two", 5), b"b:two");
    }
    let (ta, tb) = (ha.threads.lock().clone(), hb.threads.lock().clone());
    assert_eq!(ta.len(), 1, "server a ran on the runtime's one worker");
    assert_eq!(ta, tb, "both servers ran on the same worker");

    // One port: a handle associated through one server's port is the other's.
    let (ours, _theirs) = pair();
    let h = a.port().associate(ours, Key(9)).unwrap();
    match b.port().cancel(&h) {
        Err(e) if e.kind == SubmitErrorKind::ForeignPort => panic!("the servers have different ports"),
        _ => {}
    }
    let _ = a.port().close(&h);

    // The application's own packets reach the server that issued them, from
    // any thread (the handle's context names its server).
    b.port().post(Key(1), 0, b.handle().app_ctx(21)).unwrap();
    a.port().post(Key(1), 0, a.handle().app_ctx(12)).unwrap();
    let mut got: Vec<_> = (0..2).map(|_| rx.recv_timeout(LONG).expect("posted job ran")).collect();
    got.sort();
    assert_eq!(got, vec![(&b"a:"[..], 12, true), (&b"b:"[..], 21, true)]);

    // One server shuts down, with its sessions; the other keeps serving.
    let mut ca = connect(a.local_addr());
    assert_eq!(round_trip(&mut ca, b"x", 3), b"a:x");
    let r = a.shutdown(LONG);
    assert_eq!((r.sessions, r.aborted), (1, 0));
    assert!(
        eventually(LONG, || ha.gone.lock().iter().any(|&(_, k)| k == ReasonKind::Shutdown)),
        "a's session ended with the shutdown"
    );
    let mut cb = connect(b.local_addr());
    assert_eq!(round_trip(&mut cb, b"still", 7), b"b:still");

    // An operation of b's own still in flight when everything stops
    // completes exactly once, in b's handler, with the shutdown.
    let (ours, _theirs) = pair();
    let link = b.port().associate(ours, Key(3)).unwrap();
    b.port()
        .recv(&link, Vec::with_capacity(16), b.handle().app_ctx(33))
        .unwrap();
    drop(cb);
    b.shutdown(LONG);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing completes while the runtime lives on"
    );
    drop(rt);
    assert_eq!(
        rx.recv_timeout(LONG).expect("completed at the runtime's end"),
        (&b"b:"[..], 33, false)
    );
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "completed once");
}

fn many_workers_serve_many_servers(backend: Backend) {
    let rt = Runtime::builder()
        .threads(4)
        .concurrency(2)
        .backend(backend)
        .build()
        .unwrap();
    let (tx, _rx) = mpsc::channel();
    let servers: Vec<_> = (0..3)
        .map(|_| builder(backend).runtime(&rt).start(named(b"s:", &tx)).unwrap())
        .collect();
    let clients: Vec<_> = servers
        .iter()
        .flat_map(|s| (0..4).map(|_| connect(s.local_addr())))
        .collect();
    std::thread::scope(|sc| {
        for mut c in clients {
            sc.spawn(move || {
                for i in 0..50u32 {
                    let msg = format!("{i:04}");
                    let mut want = b"s:".to_vec();
                    want.extend_from_slice(msg.as_bytes());
                    assert_eq!(round_trip(&mut c, msg.as_bytes(), 6), want);
                }
            });
        }
    });
    for s in servers {
        let r = s.shutdown(LONG);
        assert_eq!(r.aborted, 0);
    }
    assert!(
        rt.port().stats().max_running <= 2,
        "never more than the concurrency ran"
    );
}

backend_tests! {
    fn servers_share_one_port_and_one_pool(backend: Backend) {
        servers_share_one_port_and_one_pool(backend);
    }
    fn many_workers_serve_many_servers(backend: Backend) {
        many_workers_serve_many_servers(backend);
    }
}
