//! Stopping `cport` with SIGTERM or SIGINT: under load it exits cleanly
//! (status 0) within its shutdown deadline and says so; connections that
//! come and go leave no fd behind; a second signal exits at once.

use cport_testutil::cli as util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use util::Signal;
use util::*;

/// `n` clients echoing as fast as they can until `stop` (or the server goes).
fn load(addr: std::net::SocketAddr, n: usize, stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<usize>> {
    (0..n)
        .map(|i| {
            let stop = stop.clone();
            thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(addr) else { return 0 };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let msg = vec![i as u8; 64 + i * 13];
                let mut back = vec![0u8; msg.len()];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&msg).is_err() || s.read_exact(&mut back).is_err() {
                        break;
                    }
                    n += 1;
                }
                n
            })
        })
        .collect()
}

#[test]
fn sigterm_under_load_exits_cleanly_within_the_deadline_and_no_fd_leaks() {
    let mut cli = Cli::spawn(
        &["echo", "--listen", "127.0.0.1:0", "--shutdown-timeout", "2"],
        &["echo"],
    );
    let addr = cli.addr("echo");
    let idle_fds = cli.fd_count();
    // Connections that come and go leave nothing behind.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(addr, 32, &stop);
    thread::sleep(Duration::from_millis(300));
    assert!(cli.fd_count() >= idle_fds + 32);
    stop.store(true, Ordering::Relaxed);
    let echoed: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(echoed > 100, "the load ran ({echoed} echoes)");
    let end = Instant::now() + LONG;
    while cli.fd_count() != idle_fds && Instant::now() < end {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cli.fd_count(), idle_fds, "every connection's fd was closed");
    // Now stop it in the middle of the load.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(addr, 32, &stop);
    thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    cli.signal(Signal::TERM);
    let status = cli.wait_exit(Duration::from_secs(10)).expect("cport exited");
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(2) + Duration::from_secs(3), "took {took:?}");
    let said = cli.next_line(LONG).expect("a shutdown line");
    assert!(said.starts_with("cport echo: shut down in"), "{said}");
}

#[test]
fn sigint_stops_every_server_of_serve() {
    let mut cli = Cli::spawn(&SERVE, &["echo", "chat"]);
    let mut chat = LineClient::connect(cli.addr("chat"));
    chat.line();
    cli.signal(Signal::INT);
    let status = cli.wait_exit(LONG).expect("cport exited");
    assert!(status.success(), "{status:?}");
    assert!(chat.line().is_none(), "the chat session was closed");
    let mut said = Vec::new();
    while let Some(l) = cli.next_line(Duration::from_secs(2)) {
        said.push(l);
    }
    assert!(said.iter().any(|l| l.starts_with("cport echo: shut down")), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.starts_with("cport chat: shut down in") && l.contains("1 session open")),
        "{said:?}"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    // A client that never reads keeps the flush waiting for the whole
    // (long) deadline; the second signal cuts it short.
    let args = [
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--shutdown-timeout",
        "60",
        "--max-queued",
        "1073741824",
        // No back-pressure: the server reads all 32 MiB while nothing is read back.
        "--high-water",
        "1073741824",
    ];
    let mut cli = Cli::spawn(&args, &["echo"]);
    let mut s = TcpStream::connect(cli.addr("echo")).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // 32 MiB echoed to a client that never reads: most of it waits in the server.
    let chunk = vec![0u8; 1 << 19];
    for _ in 0..64 {
        s.write_all(&chunk).unwrap();
    }
    thread::sleep(Duration::from_millis(200));
    cli.signal(Signal::TERM);
    thread::sleep(Duration::from_millis(300));
    assert!(cli.wait_exit(Duration::ZERO).is_none(), "still flushing");
    let t0 = Instant::now();
    cli.signal(Signal::TERM);
    let status = cli.wait_exit(LONG).expect("cport exited");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(130));
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf);
}
