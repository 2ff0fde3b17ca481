//! `cport echo` and `cport serve` as a user runs them: the listening line
//! names the backend; bytes come back identical over many connections with
//! random sizes up to 1 MiB, on both backends; `serve` runs echo and chat.

use cport_testutil::cli as util;

use std::io::{Read, Write};
use std::thread;

use util::*;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn echo_integrity(backend: &str) {
    let cli = Cli::spawn(&["echo", "--listen", "127.0.0.1:0", "--backend", backend], &["echo"]);
    let addr = cli.addr("echo");
    let clients: Vec<_> = (0..16u64)
        .map(|i| {
            thread::spawn(move || {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ (i + 1));
                let mut data = Vec::new();
                for _ in 0..3 {
                    let size = 1 + (rng.next() % (1 << 20)) as usize;
                    data.extend((0..size).map(|_| rng.next() as u8));
                }
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(LONG)).unwrap();
                let mut r = s.try_clone().unwrap();
                let n = data.len();
                let reader = thread::spawn(move || {
                    let mut got = vec![0u8; n];
                    r.read_exact(&mut got).map(|_| got)
                });
                s.write_all(&data).unwrap();
                assert!(reader.join().unwrap().unwrap() == data, "client {i}: bytes differ");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn echo_returns_identical_bytes_on_io_uring() {
    echo_integrity("uring");
}

#[test]
fn echo_returns_identical_bytes_on_epoll() {
    echo_integrity("epoll");
}

#[test]
fn serve_runs_echo_chat_and_web_and_says_where() {
    let cli = Cli::spawn(&SERVE, &["echo", "chat", "http", "game"]);
    let mut e = LineClient::connect(cli.addr("echo"));
    e.send("ping\n");
    assert_eq!(e.line().unwrap(), "ping");
    let mut c = LineClient::connect(cli.addr("chat"));
    assert!(c.line().unwrap().starts_with("* welcome"));
    // The bundled web root, and the live counters it shows.
    let mut w = std::net::TcpStream::connect(cli.addr("http")).unwrap();
    std::io::Write::write_all(&mut w, b"GET /_cport/stats HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut w, &mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"backend\""), "{reply}");
    let ready = cli.next_line(LONG).expect("a ready line");
    assert!(ready.starts_with("cport serve: ready"), "{ready}");
}
