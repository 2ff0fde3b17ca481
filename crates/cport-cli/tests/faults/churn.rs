//! Connections by the ten thousand: closed by reset (SO_LINGER 0) at every
//! stage of their life, and churned open-echo-close. Nothing stays behind:
//! fds and threads come back to where they were, and RSS stays flat.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::clients::{echo_once, echo_works, warm_echo};
use crate::server::{Backend, Launch, Server, Tolerance, Usage};

/// Client threads (the machine has two cores; the server gets one).
const THREADS: usize = 4;

/// Runs `per_thread` connections on each of `THREADS` threads, each made
/// by `conn(index)`; returns how many succeeded.
fn run(per_thread: usize, conn: fn(SocketAddr, usize) -> io::Result<()>, addr: SocketAddr) -> usize {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                (0..per_thread)
                    .filter(|i| conn(addr, t * per_thread + i).is_ok())
                    .count()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

/// A connection made with a retry when the machine is briefly out of
/// ephemeral ports (others' tests share them).
fn connect_retrying(addr: SocketAddr) -> io::Result<TcpStream> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable && Instant::now() < end => {
                thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// One connection closed by reset at a stage chosen by `i`: right after
/// connecting, after sending (unread echo pending), or after a round trip.
fn reset_close(addr: SocketAddr, i: usize) -> io::Result<()> {
    let mut s = connect_retrying(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    match i % 3 {
        0 => {}
        1 => s.write_all(&[7u8; 300])?,
        _ => echo_once(&mut s, 64)?,
    }
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    Ok(())
}

/// 10,000 connections closed by reset.
pub fn resets(b: Backend) {
    let server = Launch::new(&["echo", "--listen", "127.0.0.1:0"], &["echo"]).spawn(b);
    let addr = server.addr("echo");
    let before = warm(&server, addr);
    let ok = run(10_000 / THREADS, reset_close, addr);
    assert_eq!(ok, 10_000, "{b:?}: connections failed");
    assert!(echo_works(addr), "{b:?}: served after the resets");
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}

/// One ordinary connection: a round trip, then the client closes.
fn open_echo_close(addr: SocketAddr, _: usize) -> io::Result<()> {
    let mut s = connect_retrying(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    echo_once(&mut s, 16)?;
    s.shutdown(std::net::Shutdown::Write)?;
    // The server closes after the client's FIN.
    let mut end = [0u8; 1];
    match s.read(&mut end)? {
        0 => Ok(()),
        _ => Err(io::Error::other("bytes after the echo")),
    }
}

/// 50,000 connections churned; fds and RSS checked half-way and at the end.
pub fn churn(b: Backend) {
    let server = Launch::new(&["echo", "--listen", "127.0.0.1:0"], &["echo"]).spawn(b);
    let addr = server.addr("echo");
    let before = warm(&server, addr);
    let t0 = Instant::now();
    for half in 0..2 {
        let ok = run(25_000 / THREADS, open_echo_close, addr);
        assert_eq!(
            ok,
            25_000 / THREADS * THREADS,
            "{b:?}: connections failed in half {half}"
        );
        let now = server.usage();
        assert!(
            now.rss_kib <= before.rss_kib + Tolerance::CONNECTIONS.rss_kib,
            "{b:?}: RSS grew with churn: {before:?} -> {now:?}"
        );
    }
    eprintln!("{b:?}: 50,000 connections churned in {:?}", t0.elapsed());
    server.assert_flat(&before, Tolerance::CONNECTIONS);
    server.assert_no_panic();
}

/// The server's usage after its receive pool was warmed and a first round
/// of connections came and went (so tables that grow to the peak number of
/// sessions have grown).
fn warm(server: &Server, addr: SocketAddr) -> Usage {
    warm_echo(addr);
    assert_eq!(run(250, open_echo_close, addr), 1000);
    server.quiet_usage()
}
