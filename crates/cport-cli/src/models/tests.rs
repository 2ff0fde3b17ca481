//! Every model held to the same echo behaviour, plus `select`'s refusal.
//!
//! The models run in one process alongside each other's tests, so checks on
//! descriptors look only at sockets bound to the server's own port, and the
//! one test that pushes descriptor numbers past `FD_SETSIZE` runs alone.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::net::sockopt::set_socket_linger;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use super::select::FD_SETSIZE;

use super::{spawn, Model, ModelServer};

/// Held for reading by every test that runs a model, and for writing by the
/// test that fills the descriptor table past `FD_SETSIZE`, which would make
/// `select` refuse everyone else's connections too.
static DESCRIPTOR_TABLE: RwLock<()> = RwLock::new(());

fn share_descriptor_table() -> RwLockReadGuard<'static, ()> {
    DESCRIPTOR_TABLE.read().unwrap_or_else(PoisonError::into_inner)
}

fn own_descriptor_table() -> RwLockWriteGuard<'static, ()> {
    DESCRIPTOR_TABLE.write().unwrap_or_else(PoisonError::into_inner)
}

/// No test should wait on the server longer than this.
const PATIENCE: Duration = Duration::from_secs(10);

fn start(model: Model) -> ModelServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    spawn(model, listener).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Bytes that differ from message to message and position to position, so
/// reordered, mixed-up or dropped bytes show.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn assert_same(echoed: &[u8], sent: &[u8]) {
    assert_eq!(echoed.len(), sent.len(), "echoed length");
    if let Some(at) = echoed.iter().zip(sent).position(|(a, b)| a != b) {
        panic!("echo differs from what was sent at byte {at}");
    }
}

/// Sends `payload` while reading the echo, half-closes, and returns all that
/// came back before the server closed.
fn echo_once(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let mut echoed = Vec::new();
    thread::scope(|scope| {
        let sending = scope.spawn(move || {
            writer.write_all(payload).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        stream.read_to_end(&mut echoed).unwrap();
        sending.join().unwrap();
    });
    echoed
}

/// Sends `payload` on an open connection while reading it back.
fn round_trip(stream: &mut TcpStream, payload: &[u8]) {
    let mut writer = stream.try_clone().unwrap();
    let mut echoed = vec![0; payload.len()];
    thread::scope(|scope| {
        scope.spawn(move || writer.write_all(payload).unwrap());
        stream.read_exact(&mut echoed).unwrap();
    });
    assert_same(&echoed, payload);
}

/// How many of this process's descriptors are TCP sockets bound to local
/// `port`: the server's listener and its side of each connection.
fn server_sockets(port: u16) -> usize {
    let mut inodes = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed since the listing
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.push(inode.to_owned());
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16) == Ok(port) && inodes.iter().any(|i| i == fields[9])
        })
        .count()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Messages from one byte to 256 KiB, on concurrent connections, each
/// half-closed after sending: everything comes back, then the server closes.
fn echoes_messages_of_every_size(model: Model) {
    let _table = share_descriptor_table();
    let server = start(model);
    let sizes = [1, 100, 16 * 1024, 16 * 1024 + 1, 65_537, 256 * 1024];
    thread::scope(|scope| {
        for (seed, &size) in sizes.iter().enumerate() {
            let addr = server.addr();
            scope.spawn(move || {
                let payload = pattern(seed as u64, size);
                assert_same(&echo_once(addr, &payload), &payload);
            });
        }
    });
    let report = server.stop().unwrap();
    assert_eq!(report.accepted, sizes.len() as u64);
    assert_eq!(report.refused, 0);
    assert_eq!(report.bytes_echoed, sizes.iter().sum::<usize>() as u64);
}

/// A peer that sends 16 MiB before it starts reading: more than the socket
/// buffers both ways hold (send buffers grow to 4 MiB by default), so the
/// server has to hold bytes back, stop reading, and resume when the peer does.
fn catches_up_with_a_peer_that_reads_late(model: Model) {
    let _table = share_descriptor_table();
    let server = start(model);
    let mut stream = connect(server.addr());
    let mut writer = stream.try_clone().unwrap();
    let payload = pattern(8, 16 << 20);
    let mut echoed = Vec::new();
    thread::scope(|scope| {
        scope.spawn(|| {
            writer.write_all(&payload).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        thread::sleep(Duration::from_millis(100));
        stream.read_to_end(&mut echoed).unwrap();
    });
    assert_same(&echoed, &payload);
    assert_eq!(server.stop().unwrap().bytes_echoed, payload.len() as u64);
}

/// One connection kept open across round trips of different sizes.
fn keeps_a_connection_across_round_trips(model: Model) {
    let _table = share_descriptor_table();
    let server = start(model);
    let mut stream = connect(server.addr());
    for (seed, size) in [1, 1000, 40_000, 7, 100_000].into_iter().enumerate() {
        round_trip(&mut stream, &pattern(seed as u64, size));
    }
    drop(stream);
    assert_eq!(server.stop().unwrap().accepted, 1);
}

/// Forty connections open at once, half closed, twenty more opened: every
/// connection gets back its own bytes, whichever slots were reused.
fn serves_many_connections_at_once(model: Model) {
    let _table = share_descriptor_table();
    let server = start(model);
    let message = |id: usize| pattern(1000 + id as u64, 64);
    let mut conns: Vec<(usize, TcpStream)> = (0..40).map(|id| (id, connect(server.addr()))).collect();
    let check_all = |conns: &mut Vec<(usize, TcpStream)>| {
        for (id, stream) in conns.iter_mut() {
            stream.write_all(&message(*id)).unwrap();
        }
        for (id, stream) in conns.iter_mut() {
            let mut echoed = [0; 64];
            stream.read_exact(&mut echoed).unwrap();
            assert_same(&echoed, &message(*id));
        }
    };
    check_all(&mut conns);
    conns.retain(|(id, _)| id % 2 == 0);
    conns.extend((40..60).map(|id| (id, connect(server.addr()))));
    check_all(&mut conns);
    drop(conns);
    let report = server.stop().unwrap();
    assert_eq!(report.accepted, 60);
    assert!(report.peak_connections >= 40, "peak {}", report.peak_connections);
}

/// A peer that resets mid-stream and one that leaves without reading its
/// echo cost only their own connections.
fn survives_peers_that_reset_or_leave(model: Model) {
    let _table = share_descriptor_table();
    let server = start(model);
    let mut steady = connect(server.addr());
    round_trip(&mut steady, &pattern(1, 5000));

    let mut resetting = connect(server.addr());
    resetting.write_all(&pattern(2, 100_000)).unwrap();
    set_socket_linger(&resetting, Some(Duration::ZERO)).unwrap();
    drop(resetting); // closes with RST, unread echo and all

    let mut leaving = connect(server.addr());
    leaving.write_all(&pattern(3, 100_000)).unwrap();
    drop(leaving);

    round_trip(&mut steady, &pattern(4, 70_000));
    let payload = pattern(5, 3000);
    assert_same(&echo_once(server.addr(), &payload), &payload);
    drop(steady);
    let report = server.stop().unwrap();
    assert_eq!(report.accepted, 4);
}

/// Stopping is prompt even with connections idle and a peer that sends
/// without reading, and leaves no server socket open.
fn stops_promptly_and_closes_its_sockets(model: Model) {
    let _table = share_descriptor_table();
    let server = start(model);
    let port = server.addr().port();
    let mut idle = connect(server.addr());
    round_trip(&mut idle, b"hello");
    let flooding = connect(server.addr());
    let mut flood_writer = flooding.try_clone().unwrap();
    let flood = thread::spawn(move || {
        // Fails once the server goes away, which is the point.
        let _ = flood_writer.write_all(&pattern(6, 4 << 20));
    });
    wait_for("both connections", || server_sockets(port) == 3);

    let stopping = Instant::now();
    let report = server.stop().unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        stopping.elapsed()
    );
    assert_eq!(server_sockets(port), 0);
    assert_eq!(report.accepted, 2);

    // The server's side is gone: the idle peer sees the connection end.
    let mut rest = Vec::new();
    match idle.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
    }
    flood.join().unwrap();
    drop(flooding);
}

macro_rules! every_model {
    ($($module:ident: $model:expr;)*) => {$(
        mod $module {
            use super::*;

            #[test]
            fn echoes_messages_of_every_size() {
                super::echoes_messages_of_every_size($model);
            }

            #[test]
            fn catches_up_with_a_peer_that_reads_late() {
                super::catches_up_with_a_peer_that_reads_late($model);
            }

            #[test]
            fn keeps_a_connection_across_round_trips() {
                super::keeps_a_connection_across_round_trips($model);
            }

            #[test]
            fn serves_many_connections_at_once() {
                super::serves_many_connections_at_once($model);
            }

            #[test]
            fn survives_peers_that_reset_or_leave() {
                super::survives_peers_that_reset_or_leave($model);
            }

            #[test]
            fn stops_promptly_and_closes_its_sockets() {
                super::stops_promptly_and_closes_its_sockets($model);
            }
        }
    )*};
}

every_model! {
    blocking: Model::Blocking;
    select: Model::Select;
    poll: Model::Poll;
    epoll: Model::Epoll;
    cport: Model::CompletionPort;
}

#[test]
fn model_names_round_trip() {
    for model in Model::ALL {
        assert_eq!(Model::from_name(model.name()), Some(model));
    }
    assert_eq!(Model::from_name("iocp"), None);
}

/// With every descriptor below `FD_SETSIZE` taken, `select` closes the new
/// connection and says why, and serves again once descriptors are free.
#[test]
fn select_refuses_connections_beyond_fd_setsize() {
    let _table = own_descriptor_table();
    let wanted = FD_SETSIZE as u64 + 256;
    let old = getrlimit(Resource::Nofile);
    let (soft, hard) = (old.current.unwrap_or(u64::MAX), old.maximum.unwrap_or(u64::MAX));
    if hard < wanted {
        eprintln!("skipped: RLIMIT_NOFILE hard limit {hard} is below {wanted}");
        return;
    }
    if soft < wanted {
        let raised = Rlimit {
            current: Some(wanted),
            maximum: old.maximum,
        };
        setrlimit(Resource::Nofile, raised).unwrap();
    }

    let server = start(Model::Select);
    let null = File::open("/dev/null").unwrap();
    let mut filler = Vec::new();
    // Each duplicate takes the lowest free number, so once one lands past
    // FD_SETSIZE every number below it is taken.
    while filler
        .last()
        .map_or(0, |file: &File| std::os::fd::AsRawFd::as_raw_fd(file))
        < FD_SETSIZE as i32 + 8
    {
        filler.push(null.try_clone().unwrap());
    }

    let mut refused = connect(server.addr());
    let mut rest = Vec::new();
    match refused.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
    }
    drop((refused, filler, null));

    let payload = pattern(7, 2000);
    assert_same(&echo_once(server.addr(), &payload), &payload);
    let report = server.stop().unwrap();
    if soft < wanted {
        setrlimit(Resource::Nofile, old).unwrap();
    }
    assert_eq!(report.refused, 1);
    assert_eq!(report.accepted, 1);
    assert!(report.refusal_reason.is_some_and(|why| why.contains("FD_SETSIZE")));
}
