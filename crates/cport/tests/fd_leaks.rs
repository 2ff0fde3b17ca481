//! Tests that read the process's fd table: no fd outlives a port, even one
//! dropped with thousands of operations in flight; a handle closes its fd
//! only after its last operation; a stale handle never reaches the fd that
//! reuses its number.
//!
//! Every test here holds [`FD_TABLE`] for its whole run, so no other test
//! of this binary opens or closes fds meanwhile (tests run on parallel
//! threads of one process, and the fd table is shared).

use cport_testutil::port as util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cport::{Backend, Key, OpKind, Port, SubmitErrorKind};
use util::*;

static FD_TABLE: Mutex<()> = Mutex::new(());

/// Takes the fd table for this test, after a warm-up port (so one-time,
/// process-wide set-up is not counted as a leak).
fn own_fd_table(backend: Backend) -> MutexGuard<'static, ()> {
    let g = FD_TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    raise_fd_limit();
    let warm = port(backend);
    warm.nop(0u64).unwrap();
    next(&warm);
    drop(warm);
    g
}

/// What a busy port holds: thousands of pending receives, a multishot
/// accept with connections waiting, a pooled multishot receive, a timer, a
/// `send_file` stalled on a peer that does not read, and queued packets.
struct Busy {
    port: Port,
    peers: Vec<TcpStream>,
    clients: Vec<TcpStream>,
    pool: cport::BufPool,
    _file: TempFile,
    ops: usize,
}

fn busy_port(backend: Backend) -> Busy {
    let conns = affordable_connections(500);
    let port = port(backend);
    let l = listener();
    let mut peers = Vec::new();
    let mut handles = Vec::new();
    let mut ops = 0;
    for i in 0..conns {
        let (peer, ours) = tcp_pair_on(&l);
        let h = port.associate(ours, Key(i as u64)).unwrap();
        for _ in 0..4 {
            port.recv(&h, Vec::with_capacity(64), 0u64).unwrap();
            ops += 1;
        }
        peers.push(peer);
        handles.push(h);
    }
    let lst = listener();
    let addr = lst.local_addr().unwrap();
    let lh = port.associate(lst, Key(1 << 40)).unwrap();
    port.accept_multi(&lh, 0u64).unwrap();
    let clients = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let pool = port.buf_pool(8, 1024).unwrap();
    let (ph, peer) = associated_pair(&port, Key(1 << 41));
    port.recv_pooled_multi(&ph, &pool, 0u64).unwrap();
    peers.push(peer);
    port.timeout(Duration::from_secs(3600), 0u64).unwrap();
    let file = TempFile::with_contents("busy", &pattern(8 << 20, 3));
    let (sh, peer) = associated_pair(&port, Key(1 << 42));
    port.send_file(&sh, Arc::new(File::open(file.path()).unwrap()), 0, 8 << 20, 0u64)
        .unwrap();
    peers.push(peer);
    ops += 4;
    for _ in 0..3 {
        port.post(Key(0), 0, 0u64).unwrap();
    }
    assert!(ops >= 2_000 || conns < 500, "{ops} operations");
    Busy {
        port,
        peers,
        clients,
        pool,
        _file: file,
        ops,
    }
}

backend_tests! {
    fn dropping_a_busy_port_closes_every_fd_without_hanging(backend: Backend) {
        let _fds = own_fd_table(backend);
        let before = fd_count();
        let Busy { port, peers, clients, pool, _file, ops } = busy_port(backend);
        assert!(fd_count() > before + ops / 4);
        assert!(port.stats().in_flight >= ops);
        within(LONG, "dropping a port with thousands of operations in flight", move || drop(port));
        drop((pool, peers, clients));
        assert_eq!(fd_count(), before, "fds leaked");
    }

    fn shutdown_then_drop_closes_every_fd(backend: Backend) {
        let _fds = own_fd_table(backend);
        let before = fd_count();
        let Busy { port, peers, clients, pool, _file, ops } = busy_port(backend);
        port.shutdown();
        let mut n = 0;
        drain_until_shut_down(&port, |mut c| {
            // Drop what the completion hands back, as a program would.
            drop(c.take_accepted());
            // Connections the multishot accept took before the
            // shutdown arrive with `more` set; count final completions.
            n += usize::from(!c.more());
        });
        assert_eq!(n, ops + 3, "every operation and queued packet was delivered once");
        within(LONG, "dropping a shut-down port", move || drop(port));
        drop((pool, peers, clients));
        assert_eq!(fd_count(), before, "fds leaked");
    }

    fn a_closed_handle_keeps_its_fd_until_its_last_operation_completes(backend: Backend) {
        let _fds = own_fd_table(backend);
        let port = port(backend);
        let (peer, ours) = tcp_pair();
        let fd = ours.as_raw_fd();
        let target = fd_target(fd).expect("open");
        let h = port.associate(ours, Key(1)).unwrap();
        port.recv(&h, Vec::with_capacity(8), 1u64).unwrap();
        port.close(&h).unwrap();
        assert_eq!(fd_target(fd).as_ref(), Some(&target), "closed while the kernel may still use it");
        let c = next_of(&port, OpKind::Recv, 1);
        assert!(c.is_cancelled(), "{:?}", c.result());
        assert_ne!(fd_target(fd).as_ref(), Some(&target), "not closed after its last operation");
        drop(peer);
    }

    fn a_stale_handle_never_touches_the_fd_that_reuses_its_number(backend: Backend) {
        let _fds = own_fd_table(backend);
        let port = port(backend);
        for op_in_flight_at_close in [false, true] {
            let (_peer1, ours) = tcp_pair();
            let fd = ours.as_raw_fd();
            let h1 = port.associate(ours, Key(1)).unwrap();
            let (mut peer2, other) = tcp_pair();
            if op_in_flight_at_close {
                port.recv(&h1, Vec::with_capacity(8), 1u64).unwrap();
                port.close(&h1).unwrap();
                assert!(next_of(&port, OpKind::Recv, 1).is_cancelled());
            } else {
                port.close(&h1).unwrap();
            }
            assert!(fd_target(fd).is_none(), "fd {fd} still open");
            // Duplicate the second connection until a copy lands on the
            // freed number (dups fill the lowest free numbers first).
            let mut dups = Vec::new();
            let reused = loop {
                let d = other.try_clone().unwrap();
                assert!(d.as_raw_fd() <= fd, "fd {fd} was not reused");
                if d.as_raw_fd() == fd {
                    break d;
                }
                dups.push(d);
            };
            drop((dups, other));
            let h2 = port.associate(reused, Key(2)).unwrap();

            // The stale handle is refused, by every call.
            let e = port.send(&h1, "stale", 2u64).unwrap_err();
            assert_eq!(e.kind, SubmitErrorKind::InvalidHandle);
            assert_eq!(port.recv(&h1, Vec::with_capacity(8), 3u64).unwrap_err().kind, SubmitErrorKind::InvalidHandle);
            assert_eq!(port.shutdown_socket(&h1, std::net::Shutdown::Both, 4u64).unwrap_err().kind, SubmitErrorKind::InvalidHandle);
            assert_eq!(port.cancel(&h1).unwrap_err().kind, SubmitErrorKind::InvalidHandle);
            assert_eq!(port.close(&h1).unwrap_err().kind, SubmitErrorKind::InvalidHandle);
            assert_nothing_more(&port);

            // The new handle on the same fd number works, and nothing the
            // stale one tried reached its socket.
            port.recv(&h2, Vec::with_capacity(8), 5u64).unwrap();
            peer2.write_all(b"fresh").unwrap();
            assert_eq!(next_of(&port, OpKind::Recv, 5).bytes(), 5);
            port.send(&h2, "ok", 6u64).unwrap();
            assert_eq!(next_of(&port, OpKind::Send, 6).bytes(), 2);
            let mut got = [0; 2];
            peer2.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ok");
            peer2.set_nonblocking(true).unwrap();
            assert_eq!(peer2.read(&mut [0; 8]).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
            port.close(&h2).unwrap();
        }
    }
}
