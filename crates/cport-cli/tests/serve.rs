//! `cport serve` runs every server on ONE completion port with one worker
//! pool: every server answers, the process holds one port (plus the game
//! world's own until it moves onto the shared one) and one pool's threads,
//! and SIGINT still stops everything cleanly.

use cport_testutil::cli::{self as util, Cli, LineClient, Signal, LONG};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .count()
}

/// Completion ports the process holds: io_uring instances or epoll sets.
fn ports(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|f| std::fs::read_link(f.path()).ok())
        .filter(|l| {
            let l = l.to_string_lossy();
            l.contains("[io_uring]") || l.contains("[eventpoll]")
        })
        .count()
}

fn every_server_answers_on_one_port(backend: &str) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cli = Cli::spawn(
        &util::serve_args(&["--threads", "3", "--concurrency", "2", "--backend", backend]),
        &["echo", "chat", "game", "http"],
    );
    // echo
    let mut e = TcpStream::connect(cli.addr("echo")).unwrap();
    e.set_read_timeout(Some(LONG)).unwrap();
    e.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    e.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    // chat
    let mut c = LineClient::connect(cli.addr("chat"));
    c.send("/nick one\n/join lobby\n");
    c.until(|l| l.contains("joined lobby"));
    // web
    let mut w = TcpStream::connect(cli.addr("http")).unwrap();
    w.set_read_timeout(Some(LONG)).unwrap();
    write!(w, "GET /chat/ HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    w.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // game: a connection is accepted and held
    let g = TcpStream::connect(cli.addr("game")).unwrap();

    let pid = cli.pid().as_raw_nonzero().get() as u32;
    // Before, each server had its own port and pool: 5 ports, and 4 x 3
    // workers plus the game world's.
    let p = ports(pid);
    assert!(
        (1..=2).contains(&p),
        "{p} completion ports: want the shared one (and the game world's, until it moves)"
    );
    let workers = threads_named(pid, "cport-worker-");
    assert!(
        (3..=3 + cpus).contains(&workers),
        "{workers} worker threads: want the runtime's 3 (and the game world's {cpus}, until it moves)"
    );

    drop((e, w, g));
    cli.signal(Signal::INT);
    let status = cli.wait_exit(LONG).expect("cport exited");
    assert!(status.success(), "{status:?}");
    assert!(c.line().is_none(), "the chat session was closed");
    let mut said = Vec::new();
    while let Some(l) = cli.next_line(Duration::from_secs(2)) {
        said.push(l);
    }
    for s in ["echo", "chat", "http", "game"] {
        assert!(
            said.iter().any(|l| l.starts_with(&format!("cport {s}: shut down"))),
            "{s}: {said:?}"
        );
    }
}

#[test]
fn every_server_answers_on_one_port_uring() {
    every_server_answers_on_one_port("uring");
}

#[test]
fn every_server_answers_on_one_port_epoll() {
    every_server_answers_on_one_port("epoll");
}

#[test]
fn serve_prints_the_pool_it_chose_and_why() {
    let (mut cmd, _data) = util::command(&util::SERVE);
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read in a thread so that a missing line fails the test instead of hanging it.
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            if l.starts_with("cport serve: one completion port") {
                let _ = tx.send(l);
                return;
            }
        }
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let found = rx.recv_timeout(LONG).ok();
    let _ = child.kill();
    let _ = child.wait();
    let line = found.expect("the pool line");
    assert!(
        line.contains(&format!("{} worker threads", 2 * cpus)) && line.contains(&format!("concurrency {cpus}")),
        "{line}"
    );
    assert!(
        line.contains("2 x concurrency") && line.contains("one per CPU"),
        "{line}"
    );
}
